"""LocalIot end to end: real clients (paho-mqtt 3.1.1 and 5) over each
listener, the real lambda_bridge handler, real tokens and moto
(docs/local-iot.md#running-it)."""
import json
import shutil
import socket
import subprocess
from urllib.parse import quote

import pytest

from lambda_bridge import snapshot
from lambda_bridge.handler import build
from lambda_bridge.snapshot import Entry
from tests.support.lambda_env import lambda_env
from tests.support.local_iot import LAMP, RecordingHandler, RunningLocalIot, Signed, signed
from tests.support.mqtt_client import Client, over


@pytest.fixture
def iot(env, tmp_path):
    with RunningLocalIot(env, cert_dir=tmp_path / "certs") as running:
        yield running


def app(iot, credentials: Signed, *, via: str, version: int = 5, client_id: str = "u1.7.app", **options) -> Client:
    """An unconnected client of user 7's app, as a real client presents the token
    (docs/credentials.md#which-field-each-client-uses)."""
    return over(iot, via, client_id=client_id, version=version, username=credentials.username(),
                ws_query=credentials.query(), **{"keepalive": 30, **options})


@pytest.mark.parametrize("via", ["tcp", "tls", "ws", "wss"])
@pytest.mark.parametrize("version", [4, 5], ids=["3.1.1", "5"])
def test_a_token_from_the_key_item_connects_over_every_listener(fn, iot, via, version):
    # The lamp's controller may update its shadow and read the answer.
    shadow = f"$aws/things/{LAMP}/shadow"
    desired = json.dumps({"state": {"desired": {"on": True}}}).encode()
    client = app(iot, signed(fn), via=via, version=version)
    try:
        assert client.connect(), client.connack
        assert client.subscribe(f"{shadow}/update/accepted") == [1]
        assert client.publish(f"{shadow}/update", desired) == 0
        message = client.expect(f"{shadow}/update/accepted")
    finally:
        client.close()
    assert json.loads(message.payload)["state"]["desired"] == {"on": True}


@pytest.mark.parametrize("via", ["tcp", "wss"])
def test_a_forged_signature_is_refused_at_connect(fn, iot, via):
    assert app(iot, signed(fn, sign_with="stranger"), via=via).connect() is False


def test_another_client_id_than_the_tokens_is_refused(fn, iot):
    assert app(iot, signed(fn), via="tls", client_id="u1.7.someone-else").connect() is False


def test_the_listeners_share_one_port_per_kind_on_both_loopback_addresses(env, tmp_path):
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", hosts=["127.0.0.1", "::1"]) as running:
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            for port in running.iot.ports.values():
                with socket.socket(family) as probe:
                    probe.settimeout(5)
                    probe.connect((address, port))
        urls = running.urls
    assert urls["mqtt"] == f"mqtt://127.0.0.1:{running.iot.ports['mqtt']}"
    assert urls["wss"] == f"wss://127.0.0.1:{running.iot.ports['tls']}/mqtt"
    assert urls["ca_file"].endswith("ca.pem") and json.dumps(urls)


# --- refresh and disconnect (time scaled) -----------------------------------------------


def connected(iot, credentials: Signed) -> Client:
    """User 7's app, connected over TLS with MQTT 5. Keep-alive 0 asks for the
    broker's longest (20 min, scaled like every other lifetime), so only the
    authorizer's lifetimes end these connections."""
    client = app(iot, credentials, via="tls", keepalive=0)
    assert client.connect()
    return client


def test_a_refused_refresh_drops_the_connection(fn, env, tmp_path):
    calls = RecordingHandler(build(env))
    # 300 s of refresh become 3 s.
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", time_scale=0.01, handler=calls) as iot:
        client = connected(iot, signed(fn))
        try:
            fn.put_snapshot(principal="7", gone=True)  # the person was removed from the tenant
            assert client.disconnected.wait(20), "still connected after a refused refresh"
        finally:
            client.close()
    assert [a["isAuthenticated"] for a in calls.answers] == [True, False]


def test_a_connection_is_dropped_at_disconnect_after_in_seconds_even_when_refreshes_succeed(
        fn, table, dynamodb_endpoint, tmp_path):
    env = lambda_env(table.name, dynamodb_endpoint, DEVSHARE_DISCONNECT_SECONDS="900")
    calls = RecordingHandler(build(env))
    # Refresh every 300 s, disconnect at 900 s: 3 s and 9 s here.
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", time_scale=0.01, handler=calls) as iot:
        client = connected(iot, signed(fn))
        try:
            assert calls.wait_for(2), "no refresh"
            assert not client.disconnected.is_set()  # a refresh that is allowed keeps the connection
            assert client.disconnected.wait(20), "still connected past disconnectAfterInSeconds"
        finally:
            client.close()
    assert calls.answers[0]["disconnectAfterInSeconds"] == 900
    assert all(a["isAuthenticated"] for a in calls.answers)


# --- HTTPS publish through the TLS listener ---------------------------------------------


def test_curl_publishes_over_https_with_the_authorizer_headers_to_a_subscribed_device(fn, iot):
    fn.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
    device = app(iot, signed(fn, sub=f"device:{LAMP}"), via="tls", version=4, client_id=LAMP)
    try:
        assert device.connect()
        assert device.subscribe(f"dev/{LAMP}/in/#") == [1]
        person = signed(fn)  # user 7 controls the lamp
        topic = f"dev/{LAMP}/in/power"
        headers = [f"{name}: {value}" for name, value in person.headers().items()]
        result = subprocess.run(
            [shutil.which("curl"), "-sS", "--cacert", iot.ca_file, "-o", "/dev/null", "-w", "%{http_code}",
             "-X", "POST", "--data-binary", '{"on": true}', *[arg for h in headers for arg in ("-H", h)],
             f"https://localhost:{iot.tls_port}/topics/{quote(topic, safe='')}?qos=1"],
            capture_output=True, text=True, timeout=30, check=False)
        assert result.stdout == "200", result.stderr
        assert device.received() == [(topic, b'{"on": true}')]
    finally:
        device.close()
