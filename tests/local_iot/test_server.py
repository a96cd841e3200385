"""LocalIot end to end: real clients (paho-mqtt 3.1.1 and 5) over each
listener, the real lambda_bridge handler, real tokens and moto
(docs/local-iot.md#running-it)."""
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest

from lambda_bridge import snapshot
from lambda_bridge.snapshot import Entry
from local_iot.broker import Broker
from tests.support.lambda_env import KEY_NAME, lambda_env
from tests.support.local_iot import RunningLocalIot, Signed


def _broker_is_built() -> bool:
    try:
        Broker(gateway=None, region="eu-west-1", account="123456789012")
    except NotImplementedError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _broker_is_built(), reason="the broker part of issue 14 is not merged yet")

LAMP = "d-lamp00000001"


@pytest.fixture
def fn(cold_start):
    """The authorizer function, cold-started: slot A active, and user 7 of
    tenant 1 controls the lamp."""
    started = cold_start()
    started.put_keyring()
    started.put_snapshot(principal="7", entries=[Entry(LAMP, snapshot.CONTROL)])
    return started


@pytest.fixture
def env(table, dynamodb_endpoint):
    return lambda_env(table.name, dynamodb_endpoint)


@pytest.fixture
def iot(env, tmp_path):
    with RunningLocalIot(env, cert_dir=tmp_path / "certs") as running:
        yield running


def signed(fn, *, sign_with=None, **claims) -> Signed:
    token = fn.token(**claims)
    return Signed(token, fn.keys[sign_with or "a"].sign(token), KEY_NAME)


@dataclass
class Outcome:
    connected: bool
    reason: str
    messages: list = field(default_factory=list)


def paho_session(iot, credentials: Signed, *, via: str, protocol=mqtt.MQTTv311, client_id="u1.7.app",
                 exchange: tuple[str, str, bytes] | None = None) -> Outcome:
    """Connect as a real client would; when connected and given `exchange`
    (a filter, a topic, a payload), subscribe, publish and collect what
    comes back."""
    transport = "websockets" if via in ("ws", "wss") else "tcp"
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                         transport=transport)
    port = {"tcp": iot.mqtt_port, "tls": iot.tls_port, "ws": iot.http_port, "wss": iot.tls_port}[via]
    if via in ("tls", "wss"):
        context = ssl.create_default_context(cafile=iot.ca_file)
        if via == "tls":
            context.set_alpn_protocols(["mqtt"])
        client.tls_set_context(context)
    if transport == "websockets":
        client.ws_set_options(path="/mqtt?" + credentials.query())
    else:
        client.username_pw_set(credentials.username())
    answered, subscribed, received = threading.Event(), threading.Event(), threading.Event()
    outcome = Outcome(False, "")

    def on_connect(c, userdata, flags, reason, properties):
        outcome.connected, outcome.reason = not reason.is_failure, str(reason)
        answered.set()

    def on_message(c, userdata, message):
        outcome.messages.append((message.topic, message.payload))
        received.set()

    client.on_connect, client.on_message = on_connect, on_message
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_disconnect = lambda *args: answered.set()
    client.connect("localhost", port, keepalive=30)
    client.loop_start()
    try:
        assert answered.wait(15), "no CONNACK and no disconnect"
        if outcome.connected and exchange:
            subscription, topic, payload = exchange
            client.subscribe(subscription, qos=1)
            assert subscribed.wait(10)
            client.publish(topic, payload, qos=1)
            received.wait(10)
        return outcome
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.parametrize("via", ["tcp", "tls", "ws", "wss"])
@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["3.1.1", "5"])
def test_a_token_from_the_key_item_connects_over_every_listener(fn, iot, via, protocol):
    # The lamp's controller may update its shadow and read the answer.
    shadow = f"$aws/things/{LAMP}/shadow"
    desired = json.dumps({"state": {"desired": {"on": True}}}).encode()
    outcome = paho_session(iot, signed(fn), via=via, protocol=protocol,
                           exchange=(f"{shadow}/update/accepted", f"{shadow}/update", desired))
    assert outcome.connected, outcome.reason
    (topic, payload), *_ = outcome.messages
    assert topic == f"{shadow}/update/accepted"
    assert json.loads(payload)["state"]["desired"] == {"on": True}


@pytest.mark.parametrize("via", ["tcp", "wss"])
def test_a_forged_signature_is_refused_at_connect(fn, iot, via):
    outcome = paho_session(iot, signed(fn, sign_with="stranger"), via=via)
    assert not outcome.connected


def test_another_client_id_than_the_tokens_is_refused(fn, iot):
    outcome = paho_session(iot, signed(fn), via="tls", client_id="u1.7.someone-else")
    assert not outcome.connected


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


class Calls:
    """The real handler; every answer it gave is kept, in order."""

    def __init__(self, handler):
        self.handler, self.answers = handler, []
        self.changed = threading.Condition()

    def __call__(self, event, context):
        answer = self.handler(event, context)
        with self.changed:
            self.answers.append(answer)
            self.changed.notify_all()
        return answer

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.answers) >= count, timeout)


def connected_client(iot, credentials: Signed):
    """A paho client connected over TLS, and an Event set when it is dropped."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="u1.7.app", protocol=mqtt.MQTTv5)
    context = ssl.create_default_context(cafile=iot.ca_file)
    context.set_alpn_protocols(["mqtt"])
    client.tls_set_context(context)
    client.username_pw_set(credentials.username())
    connected, dropped = threading.Event(), threading.Event()
    client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    client.on_disconnect = lambda *args: dropped.set()
    # Keep-alive 0 asks for the broker's longest (20 min, scaled like every
    # other lifetime), so only the authorizer's lifetimes end these connections.
    client.connect("localhost", iot.tls_port, keepalive=0)
    client.loop_start()
    assert connected.wait(15)
    return client, dropped


def test_a_refused_refresh_drops_the_connection(fn, table, dynamodb_endpoint, tmp_path):
    from lambda_bridge.handler import build

    env = lambda_env(table.name, dynamodb_endpoint)
    calls = Calls(build(env))
    # 300 s of refresh become 3 s.
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", time_scale=0.01, handler=calls) as iot:
        client, dropped = connected_client(iot, signed(fn))
        try:
            fn.put_snapshot(principal="7", gone=True)  # the person was removed from the tenant
            assert dropped.wait(20), "still connected after a refused refresh"
        finally:
            client.loop_stop()
    assert [a["isAuthenticated"] for a in calls.answers] == [True, False]


def test_a_connection_is_dropped_at_disconnect_after_in_seconds_even_when_refreshes_succeed(
        fn, table, dynamodb_endpoint, tmp_path):
    from lambda_bridge.handler import build

    env = lambda_env(table.name, dynamodb_endpoint, DEVSHARE_DISCONNECT_SECONDS="900")
    calls = Calls(build(env))
    # Refresh every 300 s, disconnect at 900 s: 3 s and 9 s here.
    with RunningLocalIot(env, cert_dir=tmp_path / "certs", time_scale=0.01, handler=calls) as iot:
        client, dropped = connected_client(iot, signed(fn))
        try:
            assert calls.wait_for(2), "no refresh"
            assert not dropped.is_set()  # a refresh that is allowed keeps the connection
            assert dropped.wait(20), "still connected past disconnectAfterInSeconds"
        finally:
            client.loop_stop()
    assert calls.answers[0]["disconnectAfterInSeconds"] == 900
    assert all(a["isAuthenticated"] for a in calls.answers)


# --- HTTPS publish through the TLS listener ---------------------------------------------


def _data_plane_is_built() -> bool:
    from local_iot import server

    return server.DataPlane is not None


@pytest.mark.skipif(not _data_plane_is_built(), reason="the data-plane part of issue 14 is not merged yet")
def test_curl_publishes_over_https_with_the_authorizer_headers_to_a_subscribed_device(fn, iot):
    import shutil
    import subprocess
    from urllib.parse import quote

    fn.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
    device = signed(fn, sub=f"device:{LAMP}")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=LAMP, protocol=mqtt.MQTTv311)
    context = ssl.create_default_context(cafile=iot.ca_file)
    context.set_alpn_protocols(["mqtt"])
    client.tls_set_context(context)
    client.username_pw_set(device.username())
    subscribed, received = threading.Event(), []
    got = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: c.subscribe(f"dev/{LAMP}/in/#", qos=1)
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = lambda c, u, message: (received.append((message.topic, message.payload)), got.set())
    client.connect("localhost", iot.tls_port, keepalive=30)
    client.loop_start()
    try:
        assert subscribed.wait(15)
        person = signed(fn)  # user 7 controls the lamp
        topic = f"dev/{LAMP}/in/power"
        headers = [f"{name}: {value}" for name, value in person.headers().items()]
        result = subprocess.run(
            [shutil.which("curl"), "-sS", "--cacert", iot.ca_file, "-o", "/dev/null", "-w", "%{http_code}",
             "-X", "POST", "--data-binary", '{"on": true}', *[arg for h in headers for arg in ("-H", h)],
             f"https://localhost:{iot.tls_port}/topics/{quote(topic, safe='')}?qos=1"],
            capture_output=True, text=True, timeout=30, check=False)
        assert result.stdout == "200", result.stderr
        assert got.wait(10)
        assert received == [(topic, b'{"on": true}')]
    finally:
        client.disconnect()
        client.loop_stop()
