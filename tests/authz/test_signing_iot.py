"""The AWS IoT gateway against botocore's Stubber (which checks every request
against the AWS API model), and the rotation publishing through it."""
import boto3
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from authz.models import SigningKeyring
from authz.tokens import iot, publication, rotation, signing_keys
from tests.authz.signing_helpers import Clock, assert_converged, keyring

AUTHORIZER = "devshare-authorizer"
ARN = f"arn:aws:iot:us-east-1:123456789012:authorizer/{AUTHORIZER}"


@pytest.fixture
def stubbed(monkeypatch, settings):
    """The process's gateway, with a stubbed client; asserts every expected call happened."""
    settings.IOT_AUTHORIZER_NAME = AUTHORIZER
    client = boto3.client("iot", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    gateway = iot.IotGateway(client)
    monkeypatch.setattr(iot, "gateway", lambda: gateway)
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def expect_keys(stub, public_keys: dict[str, str]) -> None:
    stub.add_response("update_authorizer", {"authorizerName": AUTHORIZER, "authorizerArn": ARN},
                      {"authorizerName": AUTHORIZER, "tokenSigningPublicKeys": public_keys})


def test_gateway_sends_the_slot_map():
    client = boto3.client("iot", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        expect_keys(stub, {"A": "pem-a", "B": "pem-b"})
        iot.IotGateway(client).update_authorizer_keys(AUTHORIZER, {"A": "pem-a", "B": "pem-b"})
        stub.assert_no_pending_responses()


def test_gateway_errors_are_one_line():
    client = boto3.client("iot", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_client_error("update_authorizer", "ResourceNotFoundException", "Authorizer not found\nat all",
                              http_status_code=404)
        with pytest.raises(iot.IotError) as failed:
            iot.IotGateway(client).update_authorizer_keys(AUTHORIZER, {"A": "pem"})
    assert "ResourceNotFoundException" in str(failed.value)


def test_gateway_refuses_to_empty_the_authorizer():
    with pytest.raises(iot.IotError, match="without a signing key"):
        iot.IotGateway(object()).update_authorizer_keys(AUTHORIZER, {})


def test_gateway_from_settings_uses_the_region(settings):
    settings.AWS_REGION = "eu-central-1"
    assert iot.IotGateway.from_settings().client.meta.region_name == "eu-central-1"


@pytest.fixture
def next_keys(monkeypatch):
    """The RSA keys the rotation will generate, in order, so that the exact
    UpdateAuthorizer requests can be expected up front."""
    pool = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2)]
    queue = list(pool)
    monkeypatch.setattr(signing_keys.rsa, "generate_private_key", lambda **kwargs: queue.pop(0))
    return [k.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode() for k in pool]


@pytest.mark.django_db
def test_every_step_publishes_the_verifying_keys_to_the_authorizer(table, stubbed, next_keys):
    a, b = next_keys
    expect_keys(stubbed, {"A": a})            # bootstrap
    expect_keys(stubbed, {"A": a, "B": b})    # stage: both verify
    expect_keys(stubbed, {"A": a, "B": b})    # promote: the old key still verifies
    expect_keys(stubbed, {"B": b})            # retire: it leaves the authorizer
    clock = Clock()

    rotation.rotate(actor=None, now=clock.now)
    rotation.stage(actor=None, now=clock.now)
    rotation.promote(actor=None, now=clock.past_propagation())
    rotation.retire(actor=None, now=clock.past_token_lifetime())

    assert_converged(table)


@pytest.mark.django_db
def test_authorizer_failure_is_recorded_and_the_next_run_publishes(table, stubbed):
    clock = Clock()
    stubbed.add_client_error("update_authorizer", "ThrottlingException", "Rate exceeded", http_status_code=429)
    with pytest.raises(publication.PublishError, match="ThrottlingException"):
        rotation.rotate(actor=None, now=clock.now)
    row = SigningKeyring.objects.get()
    assert row.pushed_version < row.desired_version and "ThrottlingException" in row.last_error
    assert keyring(table) is not None  # DynamoDB went first; the version stays unpublished until both agree

    stubbed.add_response("update_authorizer", {"authorizerName": AUTHORIZER}, None)
    result = rotation.rotate(actor=None, now=clock.now)
    assert result.published_version and result.step is None
    assert_converged(table)


@pytest.mark.django_db
def test_no_authorizer_configured_means_no_iot_call(table, settings, monkeypatch):
    settings.IOT_AUTHORIZER_NAME = ""
    monkeypatch.setattr(iot, "gateway", lambda: pytest.fail("AWS IoT must not be called"))
    rotation.rotate(actor=None, now=Clock().now)
    assert_converged(table)
