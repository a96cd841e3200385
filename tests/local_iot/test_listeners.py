"""MQTT over TCP, TLS with ALPN `mqtt`, and WebSockets reach the broker as
what the client presented (docs/local-iot.md#listeners). Real clients
(paho-mqtt, the websockets library, Python's ssl) against real sockets; the
broker is a probe that records and answers CONNACK."""
import socket
import ssl

import pytest
from websockets.sync.client import connect as ws_connect

from tests.support.local_iot import ProbeBroker, RunningListeners
from tests.support.mqtt_client import Client

QUERY = "x-amz-customauthorizer-name=devshare&devshare-token=a.b.c&x-amz-customauthorizer-signature=s%2Bg%3D%3D"
USERNAME = "devshare?" + QUERY + "&SDK=Python&Platform=Linux"


@pytest.fixture
def probe():
    return ProbeBroker()


@pytest.fixture
def running(probe, certificates):
    started = RunningListeners(probe, certificates=certificates)
    yield started
    started.stop()


def paho_connects(port, *, version: int = 4, **options) -> bool:
    """Whether paho gets its CONNACK: the bytes went both ways."""
    client = Client(port, "u1.7.app", b"secret", username=USERNAME, version=version, keepalive=30, **options)
    try:
        return client.connect()
    finally:
        client.close()


def test_mqtt_over_tcp_is_presented_as_plain_mqtt(running, probe):
    assert paho_connects(running.ports["mqtt"])
    (presented,) = probe.presented
    assert (presented.protocol, presented.tls, presented.server_name) == ("mqtt", False, None)
    assert presented.source_ip == "127.0.0.1"
    # The CONNECT reached the broker as sent: the broker, not the listener, reads it.
    assert probe.first_packets[0][0] == 0x10 and USERNAME.encode() in probe.first_packets[0]


def test_tls_with_alpn_mqtt_is_mqtt_with_the_server_name_the_client_asked_for(running, probe, certificates):
    assert paho_connects(running.ports["tls"], tls_context=certificates.client_context(["mqtt"]), host="localhost")
    (presented,) = probe.presented
    assert (presented.protocol, presented.tls, presented.server_name) == ("mqtt", True, "localhost")
    assert USERNAME.encode() in probe.first_packets[0]


def test_the_server_name_is_the_sni_even_when_it_is_not_the_address_dialled(running, probe, certificates):
    context = certificates.client_context(["mqtt"])
    with socket.create_connection(("127.0.0.1", running.ports["tls"])) as raw, \
            context.wrap_socket(raw, server_hostname="iot.devshare.localhost") as tls:
        assert tls.selected_alpn_protocol() == "mqtt"
        tls.sendall(b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c")
        assert tls.recv(4) == ProbeBroker.CONNACK
    assert probe.presented[0].server_name == "iot.devshare.localhost"


def test_the_server_certificate_names_the_local_hosts(running, certificates):
    for host in ("localhost", "iot.devshare.localhost", "127.0.0.1"):
        context = certificates.client_context(["mqtt"])
        with socket.create_connection(("127.0.0.1", running.ports["tls"])) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_client_that_does_not_trust_the_local_ca_is_refused(running):
    context = ssl.create_default_context()  # the system's roots only
    with socket.create_connection(("127.0.0.1", running.ports["tls"])) as raw, pytest.raises(ssl.SSLError):
        context.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("version", [4, 5], ids=["3.1.1", "5"])
def test_mqtt_over_a_websocket_carries_the_urls_query_string_and_the_headers(running, probe, version):
    assert paho_connects(running.ports["http"], transport="websockets", ws_path="/mqtt?" + QUERY,
                         ws_headers={"X-Custom": "yes"}, version=version)
    (presented,) = probe.presented
    assert (presented.protocol, presented.tls) == ("ws", False)
    assert presented.query_string == QUERY
    assert presented.headers["x-custom"] == "yes"
    assert presented.headers["sec-websocket-protocol"] == "mqtt"
    assert presented.server_name is None  # no TLS, no SNI: the Host header does not stand in for it
    assert USERNAME.encode() in probe.first_packets[0]


def test_mqtt_over_a_secure_websocket_shares_the_tls_port(running, probe, certificates):
    assert paho_connects(running.ports["tls"], transport="websockets", tls_context=certificates.client_context(),
                         host="localhost", ws_path="/mqtt?" + QUERY)
    (presented,) = probe.presented
    assert (presented.protocol, presented.tls, presented.server_name) == ("ws", True, "localhost")
    assert presented.query_string == QUERY


def test_mqtt_packets_may_span_websocket_messages(running, probe):
    connect = b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x3c\x00\x01c"
    with ws_connect(f"ws://127.0.0.1:{running.ports['http']}/mqtt", subprotocols=["mqtt"]) as ws:
        assert ws.subprotocol == "mqtt"
        ws.send(connect[:5])
        ws.send(connect[5:])
        assert ws.recv(timeout=10) == ProbeBroker.CONNACK
        ws.send(b"\xe0\x00")  # DISCONNECT
    assert probe.first_packets == [connect]
    assert probe.served.wait(10)


UPGRADE = b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
MQTT_PROTOCOL = b"Sec-WebSocket-Protocol: mqtt\r\n"


@pytest.mark.parametrize(("upgrade", "status"), [
    (UPGRADE + KEY + b"\r\n", b"400"),
    (UPGRADE.replace(b"/mqtt", b"/other") + KEY + MQTT_PROTOCOL + b"\r\n", b"404"),
    (UPGRADE + MQTT_PROTOCOL + b"\r\n", b"400"),
], ids=["without the mqtt subprotocol", "on another path", "without a websocket key"])
def test_an_upgrade_the_listener_refuses_never_reaches_the_broker(running, probe, upgrade, status):
    with socket.create_connection(("127.0.0.1", running.ports["http"])) as raw:
        raw.sendall(upgrade)
        assert raw.recv(4096).startswith(b"HTTP/1.1 " + status)
    assert probe.presented == []
