"""Issue 14's acceptance as real clients see it: paho-mqtt 3.1.1 and 5 over
TCP, TLS, WebSockets and secure WebSockets, the AWS IoT Device SDK v2 for
Python, MQTT.js in Chromium, curl and boto3, against local_iot running the
real handler on the table the platform writes (moto), with credentials from
the credentials API (docs/local-iot.md, docs/credentials.md#which-field-each-client-uses).

For every client: the owner's, a sharee's and the device's allowed actions
succeed; another tenant's device, another client id and an expired token are
refused. The verdict is what the client observes: a CONNACK, a SUBACK code,
a PUBACK code or a closed connection, and which messages arrive."""
import json
import subprocess
from datetime import timedelta
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config
from django.utils import timezone

from authz.snapshots import outbox
from authz.tokens import credentials, rotation
from devices import services
from devices.models import Level, Membership, Tenant
from tests.support import browser_mqtt
from tests.support.api import issued_credentials
from tests.support.browser_mqtt import BrowserMqtt
from tests.support.lambda_env import lambda_env
from tests.support.local_iot import RunningLocalIot, lambda_reasons
from tests.support.mqtt_client import SdkClient, with_credentials
from tests.support.services import require

pytestmark = pytest.mark.django_db

# What a refusal looks like to the client (docs/local-iot.md#the-broker).
SUBACK_REFUSED = {4: 0x80, 5: 0x87}
PUBACK_REFUSED_5 = 0x87


class Live:
    """The platform with its keys and snapshots in moto, local_iot in front."""

    def __init__(self, iot, world, other, client_for):
        self.iot, self.world, self.other, self.client_for = iot, world, other, client_for
        self.lamp, self.foreign = world.lamp.thing_name, other.lamp.thing_name

    def creds(self, user, *, device=None, credential=None) -> dict:
        return issued_credentials(self.client_for(user), self.world, device=device, credential=credential)

    def expired_creds(self, user) -> dict:
        """A real token for `user`, issued an hour ago with the shortest lifetime."""
        issued = credentials.issue_user_credentials(actor=user, tenant=self.world.tenant,
                                                    lifetime=credentials.MIN_LIFETIME_SECONDS,
                                                    now=timezone.now() - timedelta(hours=1))
        return {"token": issued.token, "tokenSignature": issued.token_signature, "clientId": issued.client_id,
                "authorizerName": issued.authorizer_name, "tokenKeyName": issued.token_key_name,
                "endpoint": issued.endpoint, "mqttUsername": issued.mqtt_username, "wssUrl": issued.wss_url}


@pytest.fixture
def live(world, other, table, settings, dynamodb_endpoint, client_for, django_capture_on_commit_callbacks,
         tmp_path):
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        # Alice controls the lamp through the group; the lock stays the owner's.
        services.create_share(actor=world.owner, grantee=world.alice, group=world.group, level=Level.CONTROL)
        outbox.record_everyone(tenants=Tenant.objects.all())
    with RunningLocalIot(lambda_env(table.name, dynamodb_endpoint), cert_dir=tmp_path / "certs") as iot:
        # The credentials' endpoint, mqttUsername and wssUrl point at it, as in `make run`.
        settings.IOT_ENDPOINT = f"localhost:{iot.tls_port}"
        yield Live(iot, world, other, client_for)


def exchange_and_refusals(live: Live, make, version: int) -> None:
    """The checks every MQTT client goes through; `make(creds, client_id=None)`
    gives an unconnected client of the kind under test."""
    lamp, foreign = live.lamp, live.foreign
    device = make(live.creds(live.world.owner, device=live.world.lamp))
    sharee, owner = make(live.creds(live.world.alice)), make(live.creds(live.world.owner))
    assert [device.connect(), sharee.connect(), owner.connect()] == [True, True, True]
    try:
        assert device.subscribe(f"dev/{lamp}/in/#") == [1]
        assert sharee.subscribe(f"dev/{lamp}/out/#") == [1]
        assert owner.subscribe(f"dev/{lamp}/out/#") == [1]

        assert device.publish(f"dev/{lamp}/out/telemetry", b"21.5") == 0
        assert sharee.received() == [(f"dev/{lamp}/out/telemetry", b"21.5")]
        assert owner.received() == [(f"dev/{lamp}/out/telemetry", b"21.5")]
        assert sharee.publish(f"dev/{lamp}/in/on", b"sharee") == 0
        assert owner.publish(f"dev/{lamp}/in/off", b"owner") == 0
        assert sorted(device.received(2)) == [(f"dev/{lamp}/in/off", b"owner"), (f"dev/{lamp}/in/on", b"sharee")]

        # Another tenant's device: the filter is refused, nothing of it arrives.
        assert sharee.subscribe(f"dev/{foreign}/out/#") == [SUBACK_REFUSED[version]]
        assert owner.subscribe(f"dev/{live.world.lock.thing_name}/out/#") == [1]  # the owner's other device
        # The sharee's grant is the lamp only: the lock is out of reach.
        assert sharee.subscribe(f"dev/{live.world.lock.thing_name}/out/#") == [SUBACK_REFUSED[version]]
    finally:
        for client in (device, sharee, owner):
            client.close()

    # Someone else's client id with the sharee's token, and an expired token.
    assert make(live.creds(live.world.alice), client_id=f"u{live.world.tenant.pk}.{live.world.owner.pk}.x"
                ).connect() is False
    assert make(live.expired_creds(live.world.alice)).connect() is False


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
@pytest.mark.parametrize("via", ["tcp", "tls", "ws", "wss"])
def test_paho(live, via, version):
    exchange_and_refusals(live, lambda creds, client_id=None: with_credentials(
        live.iot, creds, via=via, version=version, client_id=client_id), version)


@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_a_denied_publish_as_the_client_sees_it(live, version):
    """MQTT 5: PUBACK 0x87 and the connection stays; 3.1.1: the broker closes it."""
    sharee = with_credentials(live.iot, live.creds(live.world.alice), via="tls", version=version)
    assert sharee.connect()
    try:
        outcome = sharee.publish(f"dev/{live.foreign}/in/unlock", b"x")
        if version == 5:
            assert outcome == PUBACK_REFUSED_5
            assert sharee.publish(f"dev/{live.lamp}/in/on", b"still connected") == 0
        else:
            assert outcome is None
            assert sharee.disconnected.wait(10)
    finally:
        sharee.close()


def test_a_revoked_share_is_refused_on_the_next_connection(live, django_capture_on_commit_callbacks):
    sharee = with_credentials(live.iot, live.creds(live.world.alice), via="tls", version=5)
    assert sharee.connect()
    assert sharee.subscribe(f"dev/{live.lamp}/out/#") == [1]
    sharee.close()
    share = live.world.alice.received_shares.get()
    with django_capture_on_commit_callbacks(execute=True):
        services.revoke_share(actor=live.world.owner, share=share)

    again = with_credentials(live.iot, live.creds(live.world.alice), via="tls", version=5)
    assert again.connect()
    try:
        assert again.subscribe(f"dev/{live.lamp}/out/#") == [SUBACK_REFUSED[5]]
    finally:
        again.close()


def test_a_removed_member_cannot_connect(live, django_capture_on_commit_callbacks):
    creds = live.creds(live.world.alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.remove_member(actor=live.world.admin,
                               membership=Membership.objects.get(tenant=live.world.tenant, user=live.world.alice))
    assert with_credentials(live.iot, creds, via="tls", version=4).connect() is False


def test_the_aws_iot_device_sdk(live):
    exchange_and_refusals(live, lambda creds, client_id=None: SdkClient(live.iot, creds, client_id=client_id), 5)


def test_the_aws_iot_device_sdk_as_a_compact_device(live, capsys):
    """The SDK's custom-authorizer builder with the compact credential as its
    password and no signature: it names the unsigned authorizer in the
    username among its own metrics, and the Lambda finds the token in the
    password."""
    lamp = live.lamp
    device = SdkClient(live.iot, live.creds(live.world.owner, device=live.world.lamp, credential="compact"))
    owner = SdkClient(live.iot, live.creds(live.world.owner))
    assert [device.connect(), owner.connect()] == [True, True]
    try:
        assert device.subscribe(f"dev/{lamp}/in/#") == [1]
        assert owner.subscribe(f"dev/{lamp}/out/#") == [1]
        assert device.publish(f"dev/{lamp}/out/telemetry", b"21.5") == 0
        assert owner.received() == [(f"dev/{lamp}/out/telemetry", b"21.5")]
        assert owner.publish(f"dev/{lamp}/in/off", b"owner") == 0
        assert device.received() == [(f"dev/{lamp}/in/off", b"owner")]
        # Its own topics only: another device's are out of reach.
        assert device.subscribe(f"dev/{live.world.lock.thing_name}/in/#") == [SUBACK_REFUSED[5]]
        assert device.publish(f"dev/{live.world.lock.thing_name}/out/telemetry", b"x") == PUBACK_REFUSED_5
    finally:
        device.close()
        owner.close()

    compact = live.creds(live.world.owner, device=live.world.lamp, credential="compact")
    # The lamp's token under the lock's client id, and a token one character off.
    lambda_reasons(capsys)
    assert SdkClient(live.iot, compact, client_id=live.world.lock.thing_name).connect() is False
    assert lambda_reasons(capsys) == ["client_id_mismatch"]
    password = compact["mqttPassword"]
    forged = {**compact, "mqttPassword": password[:-2] + ("A" if password[-2] != "A" else "B") + password[-1]}
    assert SdkClient(live.iot, forged).connect() is False
    assert lambda_reasons(capsys) == ["bad_signature"]


@pytest.mark.browser
@pytest.mark.parametrize("version", [4, 5], ids=["mqtt311", "mqtt5"])
def test_mqtt_js_in_chromium_opens_wss_url(live, version):
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    lamp, foreign = live.lamp, live.foreign
    device = with_credentials(live.iot, live.creds(live.world.owner, device=live.world.lamp), via="tls", version=5)
    assert device.connect()
    # Before the browser starts: Playwright's loop in this thread keeps Django's ORM out.
    sharee, expired = live.creds(live.world.alice), live.expired_creds(live.world.alice)
    try:
        with BrowserMqtt(trust=live.iot.iot.certificates.cert_file) as chromium:
            page = chromium.client()
            connack = page.connect(sharee["wssUrl"], clientId=sharee["clientId"], protocolVersion=version)
            assert connack.get("connack"), connack
            assert page.subscribe(f"dev/{lamp}/out/#", qos=1) == {"granted": [1]}
            assert device.subscribe(f"dev/{lamp}/in/#") == [1]
            assert device.publish(f"dev/{lamp}/out/telemetry", b"from the device") == 0
            [message] = page.wait_for_messages(1)
            assert (message["topic"], message["payload"]) == (f"dev/{lamp}/out/telemetry", "from the device")
            assert page.publish(f"dev/{lamp}/in/on", "from the browser", qos=1)["ok"] is True
            assert device.received() == [(f"dev/{lamp}/in/on", b"from the browser")]
            refused = page.subscribe(f"dev/{foreign}/out/#", qos=1)
            assert refused["granted"] == [SUBACK_REFUSED[version]], refused

            other_id = chromium.client().connect(sharee["wssUrl"], clientId=sharee["clientId"] + "x",
                                                 protocolVersion=version)
            assert "connack" not in other_id, other_id
            late = chromium.client().connect(expired["wssUrl"], clientId=expired["clientId"],
                                             protocolVersion=version)
            assert "connack" not in late, late
    finally:
        device.close()


def curl_publish(live, creds: dict, topic: str, payload: str) -> int:
    """HTTPS publish as the seeds' curl does: the authorizer's parameters in headers."""
    url = f"https://localhost:{live.iot.tls_port}/topics/{quote(topic, safe='')}?qos=1"
    result = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", live.iot.ca_file, "-X", "POST",
         "-H", f"x-amz-customauthorizer-name: {creds['authorizerName']}",
         "-H", f"{creds['tokenKeyName']}: {creds['token']}",
         "-H", f"x-amz-customauthorizer-signature: {creds['tokenSignature']}",
         "--data-binary", payload, url],
        capture_output=True, text=True, timeout=30, check=True)
    return int(result.stdout)


def test_curl_publishes_over_https(live):
    device = with_credentials(live.iot, live.creds(live.world.owner, device=live.world.lamp), via="tls", version=4)
    assert device.connect()
    try:
        assert device.subscribe(f"dev/{live.lamp}/in/#") == [1]
        sharee = live.creds(live.world.alice)
        assert curl_publish(live, sharee, f"dev/{live.foreign}/in/on", "foreign") == 403
        assert curl_publish(live, live.expired_creds(live.world.alice), f"dev/{live.lamp}/in/on", "late") in (401, 403)
        assert curl_publish(live, sharee, f"dev/{live.lamp}/in/on", "from curl") == 200
        # The refused ones were published before it on no connection at all:
        # the device sees exactly the allowed one.
        assert device.received() == [(f"dev/{live.lamp}/in/on", b"from curl")]
        assert device.nothing_received()
    finally:
        device.close()


def test_boto3_iot_data_against_the_data_plane(live):
    iot_data = boto3.client("iot-data", endpoint_url=f"http://localhost:{live.iot.http_port}", region_name="eu-west-1",
                            aws_access_key_id="local", aws_secret_access_key="local",  # noqa: S106
                            config=Config(retries={"max_attempts": 1}))
    device_creds = live.creds(live.world.owner, device=live.world.lamp)
    device = with_credentials(live.iot, device_creds, via="tcp", version=5)
    assert device.connect()
    try:
        assert device.subscribe(f"dev/{live.lamp}/in/#") == [1]
        iot_data.publish(topic=f"dev/{live.lamp}/in/on", qos=1, payload=b"from the cloud")
        assert device.received() == [(f"dev/{live.lamp}/in/on", b"from the cloud")]

        connection = iot_data.get_connection(clientId=live.lamp)
        assert connection["connected"] is True
        iot_data.delete_connection(clientId=live.lamp)
        assert device.disconnected.wait(10)
        with pytest.raises(iot_data.exceptions.ResourceNotFoundException):
            iot_data.delete_connection(clientId=live.lamp)
    finally:
        device.close()

    accepted = json.load(iot_data.update_thing_shadow(thingName=live.lamp,
                                                      payload=b'{"state":{"desired":{"on":true}}}')["payload"])
    assert (accepted["state"], accepted["version"]) == ({"desired": {"on": True}}, 1)
    got = json.load(iot_data.get_thing_shadow(thingName=live.lamp)["payload"])
    assert (got["state"], got["version"]) == ({"desired": {"on": True}, "delta": {"on": True}}, 1)
