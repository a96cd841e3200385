"""MQTT.js in Chromium against a Mosquitto of the test's own: what the harness
reports is what the broker did (docs/testing.md#mqttjs-in-chromium)."""
import shutil
import subprocess

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import browser_mqtt
from tests.support.browser_mqtt import BrowserMqtt
from tests.support.mosquitto import OwnMosquitto
from tests.support.services import require

pytestmark = pytest.mark.browser

NOT_AUTHORIZED_311, NOT_AUTHORIZED_5 = 5, 135  # CONNACK return code, MQTT 5 reason code 0x87


def ws_url(broker) -> str:
    return f"ws://127.0.0.1:{broker.ws_port}/mqtt"


def wss_url(broker) -> str:
    return f"wss://127.0.0.1:{broker.wss_port}/mqtt"


def paho_publish(broker, topic: str, payload: bytes, *, qos=1, retain=False) -> None:
    """Publish from a Python client over plain MQTT and wait for the broker's PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="paho-publisher", protocol=paho.MQTTv311)
    client.connect("127.0.0.1", broker.mqtt_port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_mqtt_311_over_ws_subscribe_publish_receive(mosquitto, browser):
    subscriber, publisher = browser.client(), browser.client()
    assert subscriber.connect(ws_url(mosquitto), clientId="browser-sub")["connack"]["returnCode"] == 0
    assert publisher.connect(ws_url(mosquitto), clientId="browser-pub")["connack"]["returnCode"] == 0

    assert subscriber.subscribe("harness/+/out", qos=1) == {"granted": [1]}
    assert publisher.publish("harness/lamp/out", "on", qos=1)["ok"] is True
    assert publisher.publish("harness/lamp/in", "not for the subscriber", qos=0)["ok"] is True
    paho_publish(mosquitto, "harness/fan/out", b"from paho")

    messages = subscriber.wait_for_messages(2)
    assert sorted((m["topic"], m["payload"], m["qos"]) for m in messages) == [
        ("harness/fan/out", "from paho", 1), ("harness/lamp/out", "on", 1)]


def test_mqtt_5_over_wss_with_a_trusted_certificate_receives_retained(mosquitto, browser):
    paho_publish(mosquitto, "harness/retained/state", b"kept", retain=True)
    client = browser.client()
    connack = client.connect(wss_url(mosquitto), clientId="browser-5", protocolVersion=5)["connack"]
    assert connack["reasonCode"] == 0

    assert client.subscribe("harness/retained/#", qos=0) == {"granted": [0]}
    [message] = client.wait_for_messages(1)
    assert (message["topic"], message["payload"], message["retain"]) == ("harness/retained/state", "kept", True)


def test_a_second_connection_with_the_client_id_closes_the_first(mosquitto, browser):
    first, second = browser.client(), browser.client()
    assert first.connect(ws_url(mosquitto), clientId="browser-dup", protocolVersion=5)["connack"]["reasonCode"] == 0
    assert first.events() == []
    assert second.connect(ws_url(mosquitto), clientId="browser-dup", protocolVersion=5)["connack"]["reasonCode"] == 0

    first.wait_for_event("close")
    assert not first.connected()
    assert second.connected()
    assert second.events() == []


@pytest.mark.parametrize(("version", "code"), [(4, NOT_AUTHORIZED_311), (5, NOT_AUTHORIZED_5)])
def test_a_refused_connect_reports_the_return_or_reason_code(version, code):
    require(OwnMosquitto.available(), "mosquitto")
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    with OwnMosquitto(anonymous=False) as broker, BrowserMqtt(call_timeout_ms=1000) as chromium:
        client = chromium.client()
        result = client.connect(ws_url(broker), clientId="browser-anonymous", protocolVersion=version)
        closed = client.wait_for_event("close")
        # Without a connection MQTT.js would hold these forever; the harness answers.
        after = client.subscribe("harness/#", qos=1), client.publish("harness/x", "late", qos=1)
    assert result["code"] == code, result
    assert closed == {"type": "close"}
    assert [("error" in r, "granted" in r or "ok" in r) for r in after] == [(True, False)] * 2, after


@pytest.mark.parametrize("version", [4, 5])
def test_a_denied_publish_is_puback_135_in_mqtt_5_and_silently_dropped_in_3_1_1(version):
    require(OwnMosquitto.available(), "mosquitto")
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    with OwnMosquitto(acl=["topic readwrite harness/#", "topic read readonly/#"]) as broker, \
            BrowserMqtt() as chromium:
        client = chromium.client()
        assert "connack" in client.connect(ws_url(broker), clientId="browser-acl", protocolVersion=version)
        assert client.subscribe("readonly/#", qos=1) == {"granted": [1]}
        assert client.subscribe("harness/#", qos=1) == {"granted": [1]}

        denied = client.publish("readonly/state", "not allowed", qos=1)
        allowed = client.publish("harness/state", "allowed", qos=1)
        # One connection's messages are handled in order: had the first been
        # delivered, it would have arrived before the second.
        messages = client.wait_for_messages(1)
    if version == 5:
        assert denied["code"] == NOT_AUTHORIZED_5, denied
    else:
        assert denied["ok"] is True, denied  # MQTT 3.1.1's PUBACK has no way to say no
    assert allowed["ok"] is True, allowed
    assert [m["topic"] for m in messages] == ["harness/state"]


def test_wss_is_refused_without_the_trust_parameter(mosquitto, tls):
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    with BrowserMqtt() as untrusting:
        client = untrusting.client()
        result = client.connect(wss_url(mosquitto), clientId="browser-untrusting")
    assert "connack" not in result, result


def test_trusting_the_ca_works_when_the_server_sends_it_in_its_chain(tls, tmp_path):
    require(OwnMosquitto.available(), "mosquitto")
    reason = browser_mqtt.missing()
    require(reason is None, reason or "")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(tls.cert.read_bytes() + tls.ca.read_bytes())
    with OwnMosquitto(tls=(chain, tls.key)) as broker, BrowserMqtt(trust=tls.ca) as chromium:
        client = chromium.client()
        result = client.connect(wss_url(broker), clientId="browser-ca")
    assert result["connack"]["returnCode"] == 0, result


def openssl_spki_hash(pem: bytes) -> str:
    """The recipe Chromium's documentation gives for the flag, run with openssl."""
    def run(args, data):
        return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout
    der = run(["pkey", "-pubin", "-outform", "der"], run(["x509", "-pubkey", "-noout"], pem))
    return run(["base64"], run(["dgst", "-sha256", "-binary"], der)).decode().strip()


def test_spki_hashes_are_openssls_for_every_certificate_in_the_file(tls, tmp_path):
    require(shutil.which("openssl") is not None, "openssl")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(tls.cert.read_bytes() + tls.ca.read_bytes())
    assert browser_mqtt.spki_hashes(chain) == [openssl_spki_hash(tls.cert.read_bytes()),
                                               openssl_spki_hash(tls.ca.read_bytes())]
