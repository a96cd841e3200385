"""The IoT gateway's data plane (iot-data DeleteConnection and GetConnection,
docs/deploy.md#8-the-data-plane) against botocore's Stubber, which checks
every request against AWS's own API model; network failures against real
sockets: a closed port, and a listener that never answers."""
import socket
from datetime import UTC, datetime

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from authz.tokens import iot
from tests.support.ports import free_port

APP = "u1.7.Zm9vYmFy-_x"  # a person's client id: u<tenant>.<user>.<suffix>
SECRET = "data-plane-secret-key"  # noqa: S105 (a test credential)


def data_client(endpoint_url: str = "https://data.example.test", **config) -> object:
    return boto3.client("iot-data", endpoint_url=endpoint_url, region_name="eu-west-1",
                        aws_access_key_id="AKIDTEST", aws_secret_access_key=SECRET,
                        config=Config(retries={"max_attempts": 1}, **config))


@pytest.fixture
def stubbed():
    """(gateway, stub): a gateway whose data client is stubbed; every expected call must happen."""
    client = data_client()
    with Stubber(client) as stub:
        yield iot.IotGateway(None, data_client=client), stub
        stub.assert_no_pending_responses()


# --- DeleteConnection ---------------------------------------------------------------------


def test_delete_cleans_the_session_and_prevents_the_will_by_default(stubbed):
    gateway, stub = stubbed
    stub.add_response("delete_connection", {},
                      {"clientId": APP, "cleanSession": True, "preventWillMessage": True})

    assert gateway.delete_connection(APP) is True


def test_delete_passes_the_callers_session_and_will_choices(stubbed):
    gateway, stub = stubbed
    stub.add_response("delete_connection", {},
                      {"clientId": "d-lamp00000001", "cleanSession": False, "preventWillMessage": False})

    assert gateway.delete_connection("d-lamp00000001", clean_session=False, prevent_will=False) is True


def test_delete_of_a_connection_aws_does_not_know_is_false(stubbed):
    gateway, stub = stubbed
    stub.add_client_error("delete_connection", "ResourceNotFoundException",
                          f"No connection found for client ID: {APP}", http_status_code=404)

    assert gateway.delete_connection(APP) is False


# Every other answer is a failure the caller retries (or an operator fixes):
# AWS's modelled errors for both operations, and what its front door may add.
FAILURES = [
    ("ThrottlingException", 429),
    ("ServiceUnavailableException", 503),
    ("InternalFailureException", 500),
    ("ForbiddenException", 403),
    ("UnauthorizedException", 401),
    ("InvalidRequestException", 400),
]


@pytest.mark.parametrize(("code", "status"), FAILURES)
def test_delete_failures_raise_one_line_naming_the_code(stubbed, code, status):
    gateway, stub = stubbed
    stub.add_client_error("delete_connection", code, "Rate exceeded\n  for this account " + "x" * 400,
                          http_status_code=status)

    with pytest.raises(iot.IotError) as failed:
        gateway.delete_connection(APP)

    message = str(failed.value)
    assert message.startswith(f"DeleteConnection {APP}: {code}: Rate exceeded for this account")
    assert "\n" not in message and len(message) <= 300


def test_a_failure_without_an_error_code_names_the_http_status(stubbed):
    gateway, stub = stubbed
    stub.add_client_error("delete_connection", "", "", http_status_code=502)

    with pytest.raises(iot.IotError, match="HTTP 502"):
        gateway.delete_connection(APP)


# --- GetConnection ------------------------------------------------------------------------


def test_get_asks_for_the_client_without_socket_information_and_maps_a_live_connection(stubbed):
    gateway, stub = stubbed
    stub.add_response("get_connection", {
        "connected": True, "clientId": APP, "cleanSession": False, "keepAliveDuration": 30,
        "connectedSince": 1796121572123, "sessionExpiry": 3600,
    }, {"clientId": APP})

    assert gateway.get_connection(APP) == iot.LiveConnection(
        client_id=APP, connected=True, clean_session=False, keep_alive=30,
        connected_since=datetime(2026, 12, 1, 10, 39, 32, 123000, tzinfo=UTC))


def test_get_maps_a_disconnected_clients_record(stubbed):
    gateway, stub = stubbed
    stub.add_response("get_connection", {
        "connected": False, "clientId": APP, "cleanSession": True, "keepAliveDuration": 60,
        "disconnectedSince": 1796122925500, "disconnectReason": "API_INITIATED_DISCONNECT",
    }, {"clientId": APP})

    assert gateway.get_connection(APP) == iot.LiveConnection(
        client_id=APP, connected=False, clean_session=True, keep_alive=60,
        disconnected_at=datetime(2026, 12, 1, 11, 2, 5, 500000, tzinfo=UTC),
        disconnect_reason="API_INITIATED_DISCONNECT")


def test_get_of_a_minimal_answer_leaves_the_rest_unknown(stubbed):
    gateway, stub = stubbed
    stub.add_response("get_connection", {"connected": True}, {"clientId": APP})

    assert gateway.get_connection(APP) == iot.LiveConnection(client_id=APP, connected=True)


def test_get_of_an_unknown_client_is_none(stubbed):
    gateway, stub = stubbed
    stub.add_client_error("get_connection", "ResourceNotFoundException", "No connection found",
                          http_status_code=404)

    assert gateway.get_connection("u1.7.gone") is None


@pytest.mark.parametrize(("code", "status"), FAILURES)
def test_get_failures_raise_one_line_naming_the_code(stubbed, code, status):
    gateway, stub = stubbed
    stub.add_client_error("get_connection", code, "Not now", http_status_code=status)

    with pytest.raises(iot.IotError) as failed:
        gateway.get_connection(APP)

    assert str(failed.value) == f"GetConnection {APP}: {code}: Not now"


# --- the network --------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["delete", "get"])
def test_an_unreachable_endpoint_is_an_iot_error_without_the_secret(call):
    gateway = iot.IotGateway(None, data_client=data_client(f"http://127.0.0.1:{free_port()}"))

    with pytest.raises(iot.IotError) as failed:
        gateway.delete_connection(APP) if call == "delete" else gateway.get_connection(APP)

    message = str(failed.value)
    assert "EndpointConnectionError" in message and APP in message
    assert SECRET not in message and "\n" not in message and len(message) <= 300


@pytest.fixture
def silent_endpoint():
    """A listening socket that is never read: the connection is made, no answer ever comes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_an_endpoint_that_never_answers_is_an_iot_error(silent_endpoint):
    gateway = iot.IotGateway(None, data_client=data_client(silent_endpoint, read_timeout=0.2))

    with pytest.raises(iot.IotError, match=f"^DeleteConnection {APP}: ReadTimeoutError: "):
        gateway.delete_connection(APP)


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("call", ["delete", "get"])
def test_without_a_data_endpoint_every_data_plane_call_fails(settings, call):
    settings.IOT_DATA_ENDPOINT_URL = ""
    gateway = iot.IotGateway.from_settings()

    with pytest.raises(iot.IotError, match="^IOT_DATA_ENDPOINT_URL is not set$"):
        gateway.delete_connection(APP) if call == "delete" else gateway.get_connection(APP)
    assert gateway.data_client is None


def test_from_settings_points_the_data_client_at_the_endpoint_with_short_timeouts(settings):
    settings.IOT_DATA_ENDPOINT_URL = "https://a1b2c3-ats.iot.eu-central-1.amazonaws.com"
    settings.AWS_REGION, settings.IOT_REGION = "us-east-1", "eu-central-1"

    gateway = iot.IotGateway.from_settings()

    meta = gateway.data_client.meta
    assert (meta.service_model.service_name, meta.endpoint_url, meta.region_name) == (
        "iot-data", "https://a1b2c3-ats.iot.eu-central-1.amazonaws.com", "eu-central-1")
    # A revocation waits seconds, not botocore's default 60 s reads and retries.
    assert (meta.config.connect_timeout, meta.config.read_timeout) == (2, 5)
    assert meta.config.retries["total_max_attempts"] == 2  # one try and one retry
    assert gateway.client.meta.service_model.service_name == "iot"
    assert gateway.client.meta.region_name == "us-east-1"


def test_the_process_has_one_gateway():
    iot.gateway.cache_clear()
    try:
        assert iot.gateway() is iot.gateway()
    finally:
        iot.gateway.cache_clear()
