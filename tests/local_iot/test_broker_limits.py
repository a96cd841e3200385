"""The broker under pressure and at AWS's limits (docs/local-iot.md#the-broker):
the QoS 1 in-flight window, slow and silent clients, the subscription and
retained quotas, subscribe-only reserved topics, the end of a grant at
refresh, and the WebSocket path's framing, backpressure and logging.

Real paho-mqtt clients, or raw bytes where paho hides what matters. "Not
delivered" is shown without a clock: a later message from the same
publisher, which the broker routes in order, arrives first."""
import asyncio
import contextlib
import logging
import socket
import threading

import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as websocket_connect

from local_iot import limits
from local_iot.broker import Broker
from local_iot.mqtt import MQTT5, MQTT311, ConnAck, Connect, PubAck, Publish, SubAck, Subscribe, Subscription, encode
from tests.support.broker_server import BrokerServer
from tests.support.local_iot import RunningListeners
from tests.support.mqtt_client import WAIT, Client, RawClient
from tests.support.policy_gateway import ACCOUNT, REGION, PolicyGateway, document

EVERYTHING = {"iot:Connect": ["*"], "iot:Publish": ["*"], "iot:RetainPublish": ["*"], "iot:Subscribe": ["*"],
              "iot:Receive": ["*"]}


@pytest.fixture
def full_grant(gateway):
    """Password b"pw" may do anything."""
    gateway.allow(b"pw", document(EVERYTHING))


def raw_client(port: int, client_id: str, version: int = MQTT5, **properties) -> RawClient:
    raw = RawClient(port, version)
    raw.send(encode(Connect(client_id, version, username="u", password=b"pw", properties=properties), version))
    connack = raw.read()
    assert isinstance(connack, ConnAck) and connack.code == 0, connack
    return raw


def read_until(raw: RawClient, kind):
    """The next packet of this kind (others in between are skipped)."""
    while True:
        packet = raw.read()
        assert packet is not None, f"closed before a {kind.__name__}"
        if isinstance(packet, kind):
            return packet


def session_of(server: BrokerServer, client_id: str):
    return server.call(lambda: server.broker.router.sessions[client_id])


# --- QoS 1 flow control -------------------------------------------------------------------

def test_a_subscriber_that_never_acknowledges_does_not_break_the_publisher(full_grant, server, client):
    """65,536 QoS 1 messages to a subscriber that acknowledges none: once broke the publisher
    (packet ids ran out inside its PUBLISH). Now AWS's window of 100 holds the rest back."""
    stuck = raw_client(server.port, "stuck", MQTT311)
    stuck.send(encode(Subscribe(1, [Subscription("a", 1)]), MQTT311))
    assert read_until(stuck, SubAck).codes == [1]
    publisher = raw_client(server.port, "publisher", MQTT311)
    count = 65_536
    publisher.sock.sendall(b"".join(encode(Publish("a", b"x", 1, packet_id=i % 65535 + 1), MQTT311)
                                    for i in range(count)))
    acks = [read_until(publisher, PubAck) for _ in range(count)]
    assert all(ack.code == 0 for ack in acks)

    session = session_of(server, "stuck")
    assert len(session.inflight) == limits.OUTBOUND_IN_FLIGHT
    first = [read_until(stuck, Publish) for _ in range(limits.OUTBOUND_IN_FLIGHT)]
    # Acknowledging one lets exactly the next one through.
    stuck.send(encode(PubAck(first[0].packet_id), MQTT311))
    assert read_until(stuck, Publish).packet_id not in {p.packet_id for p in first[1:]}

    # A subscriber arriving later is served, and the publisher still publishes.
    later = client("later")
    later.subscribe("a", 1)
    publisher.send(encode(Publish("a", b"after", 1, packet_id=7), MQTT311))
    assert read_until(publisher, PubAck).code == 0
    assert later.expect("a").payload == b"after"
    stuck.close()
    publisher.close()


def test_messages_beyond_the_window_wait_for_acknowledgements(full_grant, server, client):
    slow = client("slow", version=5, manual_ack=True)
    slow.subscribe("w", 1)
    publisher = client("publisher")
    for n in range(limits.OUTBOUND_IN_FLIGHT + 5):
        publisher.publish("w", str(n).encode(), qos=1)  # routed by the time its PUBACK is back
    assert len(session_of(server, "slow").pending) == 5  # held back, not sent
    received = [slow.expect("w") for _ in range(limits.OUTBOUND_IN_FLIGHT)]
    assert [m.payload for m in received] == [str(n).encode() for n in range(limits.OUTBOUND_IN_FLIGHT)]
    for message in received:
        slow.paho.ack(message.mid, message.qos)
    rest = [slow.expect("w").payload for _ in range(5)]
    assert rest == [str(n).encode() for n in range(limits.OUTBOUND_IN_FLIGHT, limits.OUTBOUND_IN_FLIGHT + 5)]


def test_a_client_that_stops_reading_is_closed_not_its_publisher(full_grant, server, client):
    server.broker.router.write_buffer_limit = 256 * 1024
    reader = raw_client(server.port, "never-reads", MQTT311)
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.send(encode(Subscribe(1, [Subscription("big", 0)]), MQTT311))
    publisher = client("publisher")
    payload = b"x" * (100 * 1024)
    for _ in range(2000):  # at most 200 MB: far beyond any socket buffer
        assert publisher.publish("big", payload, qos=1) == 0  # the publisher is never the one closed
        gone = server.call(server.broker.get_connection, "never-reads")
        if not gone["connected"]:
            break
    assert gone["disconnectReason"] == "THROTTLED"
    reader.close()


def test_a_qos_1_message_too_big_for_the_client_does_not_take_a_place_in_its_window(full_grant, server, client):
    """MQTT 5 3.1.2-25: discarded as if sent. Were it kept in flight, 100 of them would
    stop every later message."""
    small = raw_client(server.port, "small", MQTT5, maximum_packet_size=256)
    small.send(encode(Subscribe(1, [Subscription("t", 1)]), MQTT5))
    assert read_until(small, SubAck).codes == [1]
    publisher = client("publisher")
    for _ in range(limits.OUTBOUND_IN_FLIGHT):
        publisher.publish("t", b"x" * 1024, qos=1)
    publisher.publish("t", b"fits", qos=1)
    message = read_until(small, Publish)
    assert message.payload == b"fits"
    small.close()


# --- a CONNECT that never comes, too many connections -------------------------------------

def test_a_connect_trickled_in_is_cut_off_at_the_deadline(full_grant, server):
    server.broker.connect_timeout = 0.5
    data = encode(Connect("trickle", MQTT311, username="u", password=b"pw"), MQTT311)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    sock.settimeout(0.2)  # each byte well inside the deadline: only the overall one can end it
    closed_after = None
    for sent in range(len(data)):
        sock.sendall(data[sent:sent + 1])
        try:
            if sock.recv(16) == b"":
                closed_after = sent + 1
                break
        except TimeoutError:
            continue
        except ConnectionError:
            closed_after = sent + 1
            break
    sock.close()
    assert closed_after is not None and closed_after < len(data)


def test_connections_beyond_the_cap_are_closed_at_once(full_grant, server, client):
    server.broker.max_connections = 2
    client("one")
    client("two")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        answer = sock.recv(16)
    except ConnectionResetError:
        answer = b""
    sock.close()
    assert answer == b""  # closed before any CONNECT was sent


# --- subscription and retained quotas -----------------------------------------------------

@pytest.mark.parametrize(("version", "failure"), [(MQTT311, 0x80), (MQTT5, 0x97)], ids=["mqtt311", "mqtt5"])
def test_at_most_8_filters_per_subscribe(full_grant, server, version, failure):
    raw = raw_client(server.port, "many", version)
    raw.send(encode(Subscribe(1, [Subscription(f"f/{n}") for n in range(9)]), version))
    assert read_until(raw, SubAck).codes == [0] * 8 + [failure]
    raw.close()


def test_at_most_50_subscriptions_per_connection(full_grant, client):
    subscriber = client("subscriber")
    for n in range(limits.SUBSCRIPTIONS_PER_CONNECTION):
        assert subscriber.subscribe(f"s/{n}", 1) == [1]
    assert subscriber.subscribe("s/one-more", 1)[0].value == 0x97
    assert subscriber.subscribe("s/0", 0) == [0]  # replacing one is no new subscription


def test_retained_topics_beyond_the_store_are_routed_but_not_kept(full_grant, server, client):
    server.broker.router.max_retained = 2
    publisher = client("publisher")
    live = client("live")
    live.subscribe("r/#")
    for n in range(3):
        publisher.publish(f"r/{n}", b"kept?", qos=1, retain=True)
    assert [live.expect().topic for _ in range(3)] == ["r/0", "r/1", "r/2"]
    later = client("later")
    later.subscribe("r/#")
    publisher.publish("r/marker", b"", qos=1)
    assert [later.expect().topic for _ in range(3)] == ["r/0", "r/1", "r/marker"]


def test_only_recent_client_ids_are_remembered(full_grant, server, client, monkeypatch):
    monkeypatch.setattr(limits, "REMEMBERED_CLIENTS", 2)
    watcher = client("watcher")
    watcher.subscribe("$aws/events/presence/disconnected/+")
    for client_id in ("first", "second", "third"):
        client(client_id).disconnect()
    for client_id in ("first", "second", "third"):  # the broker has recorded each disconnect
        watcher.expect(f"$aws/events/presence/disconnected/{client_id}")
    assert server.call(server.broker.get_connection, "first") is None
    assert server.call(server.broker.get_connection, "third")["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"


# --- topics only AWS publishes on ---------------------------------------------------------

ANSWER_TOPICS = ["$aws/things/lamp/shadow/update/accepted", "$aws/things/lamp/shadow/update/delta",
                 "$aws/things/lamp/shadow/name/cfg/get/rejected", "$aws/things/lamp/shadow/delete/accepted",
                 "$aws/things/lamp/shadow/update/documents", "$aws/events/presence/connected/lamp"]


@pytest.mark.parametrize("topic", ANSWER_TOPICS)
def test_a_client_may_not_publish_where_only_aws_publishes(full_grant, client, topic):
    watcher = client("watcher")
    watcher.subscribe(topic)
    watcher.subscribe("marker")
    device = client("device", version=5)
    assert device.publish(topic, b"{}", qos=1).value == 0x87
    device.publish("marker", b"", qos=1)
    assert watcher.expect().topic == "marker"


def test_a_311_client_publishing_where_only_aws_publishes_is_disconnected(full_grant, client):
    device = client("device", version=4)
    device.publish("$aws/things/lamp/shadow/update/accepted", b"{}", qos=1)
    device.wait_disconnected()


def test_a_client_still_publishes_shadow_requests(full_grant, client):
    device = client("device", version=5)
    assert device.publish("$aws/things/lamp/shadow/update", b"{}", qos=1).value == 0


# --- No Local -----------------------------------------------------------------------------

def test_no_local_on_one_subscription_leaves_an_overlapping_one_to_deliver(full_grant, client):
    """The No Local subscription has the higher QoS; it once won the choice and dropped the message."""
    me = client("me", version=5)
    me.paho.subscribe("n/#", options=SubscribeOptions(qos=1, noLocal=True))
    me.subscribe("n/b", 0)  # its SUBACK follows the one above's: both are in place
    me.publish("n/b", b"mine", qos=1)
    message = me.expect("n/b")
    assert (message.payload, message.qos) == (b"mine", 0)


# --- the grant ends at refresh ------------------------------------------------------------

def test_a_refused_refresh_publishes_no_will(gateway, full_grant, client):
    gateway.allow(b"dev", document(EVERYTHING), refresh_in=0.2)
    watcher = client("watcher")
    watcher.subscribe("dev/+/in/unlock")
    watcher.subscribe("marker")
    device = client("dev", b"dev", will=("dev/other/in/unlock", b"boom", 0, False))
    gateway.revoke(b"dev")
    device.wait_disconnected()
    client("marker-publisher").publish("marker", b"", qos=1)
    assert watcher.expect().topic == "marker"


class FailingOnRefresh(PolicyGateway):
    """A gateway that answers the CONNECT, then fails (not refuses) every refresh."""

    def __init__(self):
        super().__init__()
        self.refreshes = threading.Event()

    async def authorize(self, presented, *, connection_id):
        grant = await super().authorize(presented, connection_id=connection_id)
        if sum(call.client_id == presented.client_id for call in self.calls) > 1:
            self.refreshes.set()
            raise RuntimeError("the authorizer broke")
        return grant


def test_a_refresh_that_fails_ends_the_connection_without_its_will():
    gateway = FailingOnRefresh()
    gateway.allow(b"pw", document(EVERYTHING))
    gateway.allow(b"dev", document(EVERYTHING), refresh_in=0.2)
    server = BrokerServer(gateway)
    made = []
    try:
        made.append(watcher := Client(server.port, "watcher", b"pw"))
        assert watcher.connect()
        watcher.subscribe("will/topic")
        watcher.subscribe("marker")
        made.append(device := Client(server.port, "dev", b"dev", will=("will/topic", b"boom", 0, False)))
        assert device.connect()
        assert device.wait_disconnected() is not None
        assert server.call(server.broker.get_connection, "dev")["disconnectReason"] == "SERVER_ERROR"
        made.append(marker := Client(server.port, "marker", b"pw"))
        assert marker.connect()
        marker.publish("marker", b"", qos=1)
        assert watcher.expect().topic == "marker"
    finally:
        for one in made:
            one.close()
        server.stop()


# --- the WebSocket path -------------------------------------------------------------------

@pytest.fixture
def websocket_broker(gateway, full_grant):
    """The real listeners and broker (with the policy gateway) on loopback."""
    running = RunningListeners(Broker(gateway=gateway, region=REGION, account=ACCOUNT))
    yield running
    running.stop()


def test_a_text_frame_closes_the_websocket(websocket_broker):
    url = f"ws://127.0.0.1:{websocket_broker.ports['http']}/mqtt"
    with websocket_connect(url, subprotocols=["mqtt"]) as ws:
        ws.send(encode(Connect("ws-text", MQTT311, username="u", password=b"pw"), MQTT311))
        assert ws.recv(timeout=WAIT)[:1] == b"\x20"  # CONNACK, in a binary frame
        ws.send("not MQTT")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=WAIT)
    assert closed.value.rcvd.code == 1003


def test_the_upgrade_requests_token_is_not_logged_even_at_debug(websocket_broker, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"ws://127.0.0.1:{websocket_broker.ports['http']}/mqtt?token=SECRET-TOKEN&x-amz-sig=SECRET-SIG"
    with websocket_connect(url, subprotocols=["mqtt"], additional_headers={"X-Token": "SECRET-HEADER"}) as ws:
        ws.send(encode(Connect("ws-log", MQTT311, username="u", password=b"pw"), MQTT311))
        assert ws.recv(timeout=WAIT)[:1] == b"\x20"
    ours = [record.getMessage() for record in caplog.records if record.name.startswith("local_iot")]
    assert ours and not any("SECRET" in line for line in ours)  # the client library's own log is not ours


def test_a_websocket_client_that_outruns_the_broker_is_held_back(websocket_broker, gateway):
    """While the broker waits for the authorizer it reads nothing; the client's
    further bytes then stay in the socket buffers instead of piling up in the
    server, so a client pushing 64 MB is held back."""
    release = threading.Event()
    answer = gateway.authorize

    async def after_release(presented, *, connection_id):
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await answer(presented, connection_id=connection_id)

    gateway.authorize = after_release
    url = f"ws://127.0.0.1:{websocket_broker.ports['http']}/mqtt"
    pushed, total = 0, 64 * 1024 * 1024

    def push(ws):
        nonlocal pushed
        chunk = encode(Publish("a", b"x" * 60_000), MQTT311)
        with contextlib.suppress(ConnectionClosed):
            while pushed < total:
                ws.send(chunk)
                pushed += len(chunk)

    try:
        with websocket_connect(url, subprotocols=["mqtt"]) as ws:
            ws.send(encode(Connect("ws-fast", MQTT311, username="u", password=b"pw"), MQTT311))
            pusher = threading.Thread(target=push, args=(ws,), daemon=True)
            pusher.start()
            pusher.join(WAIT)  # the wait for a pusher the server does not hold back to finish
            held_back = pusher.is_alive()
            release.set()
    finally:
        release.set()
    assert held_back and pushed < total
