"""What happens over a connection's life, as real paho-mqtt clients observe
it: persistent sessions and QoS 1 redelivery, client-id takeover, wills,
keep-alive, the grant's refresh and end, lifecycle events, and the data
plane's DeleteConnection and GetConnection (docs/local-iot.md#the-broker).

Durations are AWS's, scaled down with the broker's time_scale; the tests
wait for the event, never for a clock."""
import json
import time

import pytest

from local_iot.mqtt import MQTT5, MQTT311
from tests.support.policy_gateway import EVERYTHING, document


def event(client, kind: str, client_id: str) -> dict:
    return json.loads(client.expect(f"$aws/events/presence/{kind}/{client_id}").payload)


@pytest.fixture
def everyone(gateway):
    gateway.allow(b"pw", document(EVERYTHING), principal_id="owner-principal")
    gateway.allow(b"watch", document(EVERYTHING))  # for watchers of a server of the test's own


# --- sessions -----------------------------------------------------------------------------


def persistent(client, client_id, version, **options):
    if version == MQTT5:
        return client(client_id, version=MQTT5, clean=False, session_expiry=300, **options)
    return client(client_id, version=MQTT311, clean=False, **options)


def test_a_persistent_session_keeps_subscriptions_and_queues_qos1(everyone, client, version):
    first = persistent(client, "dev", version)
    assert first.connack[1] is False
    first.subscribe("q/+", qos=1)
    first.disconnect()
    pub = client("pub")
    pub.publish("q/1", b"one", qos=1)
    pub.publish("q/2", b"zero", qos=0)  # QoS 0 is not queued for an absent client
    pub.publish("q/3", b"three", qos=1)
    again = persistent(client, "dev", version)
    assert again.connack[1] is True  # session present
    assert [again.expect().payload, again.expect().payload] == [b"one", b"three"]
    pub.publish("q/4", b"live", qos=1)  # the subscription itself was kept
    assert again.expect("q/4").payload == b"live"


def test_a_clean_connection_drops_the_session(everyone, client, version):
    first = persistent(client, "dev", version)
    first.subscribe("q/+", qos=1)
    first.disconnect()
    client("pub").publish("q/1", b"queued", qos=1)
    clean = client("dev", version=version, clean=True)
    assert clean.connack[1] is False
    clean.subscribe("mark")
    client("pub2").publish("mark", b"m", qos=1)
    assert clean.expect().topic == "mark"  # the queued message went with the session


def test_unacknowledged_messages_are_sent_again_with_dup(everyone, client, version):
    first = persistent(client, "dev", version, manual_ack=True)
    first.subscribe("q/1", qos=1)
    client("pub").publish("q/1", b"unacked", qos=1)
    got = first.expect("q/1")
    assert got.dup is False
    first.kill()  # gone without a PUBACK
    again = persistent(client, "dev", version)
    resent = again.expect("q/1")
    assert (resent.payload, resent.dup, resent.qos) == (b"unacked", True, 1)


def test_an_mqtt5_session_expires_after_its_interval(everyone, serve, client):
    server = serve(time_scale=0.01)  # 20 AWS seconds are 0.2 s
    first = client("dev", version=MQTT5, clean=False, session_expiry=20, port=server.port)
    first.subscribe("q/1", qos=1)
    first.disconnect()
    time.sleep(1.0)  # five times the scaled interval
    again = client("dev", version=MQTT5, clean=False, session_expiry=20, port=server.port)
    assert again.connack[1] is False


def test_mqtt5_session_expiry_zero_ends_with_the_connection(everyone, client):
    first = client("dev", version=MQTT5, clean=False, session_expiry=0)
    first.subscribe("q/1")
    first.disconnect()
    assert client("dev", version=MQTT5, clean=False, session_expiry=0).connack[1] is False


def test_session_expiry_above_the_aws_quota_is_capped(everyone, client):
    capped = client("dev", version=MQTT5, clean=False, session_expiry=7 * 86400)
    assert capped.connack[2].SessionExpiryInterval == 3600


# --- takeover -----------------------------------------------------------------------------


def test_a_second_connection_with_the_same_client_id_drops_the_first(everyone, watcher, client, version):
    first = client("dev", version=version)
    second = client("dev", version=version)
    reason = first.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x8E  # session taken over
    assert second.accepted and not second.disconnected.is_set()
    assert event(watcher, "connected", "dev")["versionNumber"] == 1
    gone = event(watcher, "disconnected", "dev")
    assert (gone["disconnectReason"], gone["clientInitiatedDisconnect"]) == ("DUPLICATE_CLIENTID", False)
    assert event(watcher, "connected", "dev")["versionNumber"] == 2


# --- wills --------------------------------------------------------------------------------


def test_the_will_is_published_when_a_client_vanishes(everyone, watcher, client, version):
    dev = client("dev", version=version, will=("dev/status", b"offline", 1, False))
    dev.kill()
    event(watcher, "connected", "dev")
    assert watcher.expect("dev/status").payload == b"offline"
    assert event(watcher, "disconnected", "dev")["disconnectReason"] == "CONNECTION_LOST"


def test_no_will_after_a_disconnect(everyone, watcher, client, version):
    dev = client("dev", version=version, will=("dev/status", b"offline", 1, False))
    dev.disconnect()
    event(watcher, "connected", "dev")
    # The will would be published before the disconnected event; the event comes first.
    gone = event(watcher, "disconnected", "dev")
    assert (gone["disconnectReason"], gone["clientInitiatedDisconnect"]) == ("CLIENT_INITIATED_DISCONNECT", True)


def test_a_will_needs_publish_permission_on_its_topic(everyone, gateway, watcher, client):
    gateway.allow(b"limited", document({**EVERYTHING, "iot:Publish": ["dev/data"]}))
    dev = client("dev", b"limited", will=("dev/status", b"offline", 1, False))
    dev.kill()
    event(watcher, "connected", "dev")
    assert event(watcher, "disconnected", "dev")["disconnectReason"] == "CONNECTION_LOST"


def test_a_retained_will_needs_retain_publish(everyone, gateway, watcher, client):
    gateway.allow(b"no-retain", document({**EVERYTHING, "iot:RetainPublish": ["other"]}))
    dev = client("dev", b"no-retain", will=("dev/status", b"offline", 1, True))
    dev.kill()
    event(watcher, "connected", "dev")
    event(watcher, "disconnected", "dev")


def test_an_mqtt5_will_delay_is_cancelled_by_a_reconnect(everyone, serve, client):
    server = serve(time_scale=0.01)  # keep-alive 1200 s: 18 s here
    watcher = client("watcher", b"watch", port=server.port, keepalive=1200)
    watcher.subscribe("dev/status")
    dev = client("dev", version=MQTT5, clean=False, session_expiry=600, port=server.port, keepalive=1200,
                 will=("dev/status", b"late", 1, False), will_properties={"WillDelayInterval": 300})
    dev.kill()
    client("dev", version=MQTT5, clean=False, session_expiry=600, port=server.port, keepalive=1200)  # within 3 s
    time.sleep(6)  # twice the scaled delay
    client("pub", port=server.port, keepalive=1200).publish("dev/status", b"marker", qos=1)
    assert watcher.expect("dev/status").payload == b"marker"


def test_a_clean_start_publishes_a_delayed_will_at_once(everyone, client):
    watcher = client("watcher", b"watch")
    watcher.subscribe("dev/status")
    dev = client("dev", version=MQTT5, clean=False, session_expiry=600,
                 will=("dev/status", b"gone", 1, False), will_properties={"WillDelayInterval": 3000})
    dev.kill()
    client("dev", version=MQTT5, clean=True)  # ends the old session, and with it the delay
    assert watcher.expect("dev/status").payload == b"gone"


def test_an_mqtt5_will_delay_publishes_the_will_later(everyone, serve, client):
    server = serve(time_scale=0.01)
    watcher = client("watcher", b"watch", port=server.port, keepalive=1200)
    watcher.subscribe("dev/status")
    dev = client("dev", version=MQTT5, clean=False, session_expiry=600, port=server.port, keepalive=1200,
                 will=("dev/status", b"late", 1, False), will_properties={"WillDelayInterval": 30})
    dev.kill()
    assert watcher.expect("dev/status").payload == b"late"


# --- keep-alive and the grant's lifetime --------------------------------------------------


def test_silence_beyond_one_and_a_half_keep_alives_closes_the_connection(everyone, serve, client, version):
    server = serve(time_scale=0.01)  # keep-alive 30 s: closed after 0.45 s without a packet
    watcher = client("watcher", b"watch", port=server.port, keepalive=1200)
    watcher.subscribe("$aws/events/presence/disconnected/+")
    quiet = client("quiet", version=version, keepalive=30, port=server.port)
    reason = quiet.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x8D  # keep alive timeout
    assert event(watcher, "disconnected", "quiet")["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"


def test_the_keep_alive_deadline_moves_with_every_packet(everyone, serve, client, version):
    server = serve(time_scale=0.04)  # keep-alive 30 s: closed after 1.8 s without a packet
    watcher = client("watcher", b"watch", port=server.port, keepalive=1200)
    watcher.subscribe("$aws/events/presence/disconnected/+")
    busy = client("busy", version=version, keepalive=30, port=server.port)
    for n in range(20):  # 4 s of traffic: over two deadlines, never one without a packet
        assert busy.publish("busy/tick", str(n).encode(), qos=1) == 0  # a PUBACK, not None: still connected
        time.sleep(0.2)
    reason = busy.wait_disconnected()  # then silence, and the deadline passes
    if version == MQTT5:
        assert reason.value == 0x8D
    assert event(watcher, "disconnected", "busy")["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT"


def test_the_connection_ends_at_disconnect_after(everyone, gateway, watcher, client, version):
    gateway.allow(b"short", document(EVERYTHING), disconnect_in=0.3)
    dev = client("dev", b"short", version=version)
    reason = dev.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0xA0  # maximum connect time
    event(watcher, "connected", "dev")
    assert event(watcher, "disconnected", "dev")["disconnectReason"] == "CUSTOMAUTH_TTL_EXPIRATION"


def test_a_refused_refresh_disconnects(everyone, gateway, watcher, client, version):
    gateway.allow(b"token", document(EVERYTHING), refresh_in=0.2)
    dev = client("dev", b"token", version=version)
    gateway.revoke(b"token")
    reason = dev.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x87
    event(watcher, "connected", "dev")
    assert event(watcher, "disconnected", "dev")["disconnectReason"] == "AUTH_ERROR"
    assert len(gateway.calls) >= 3  # watcher, the CONNECT, the refresh


def test_a_refreshed_grant_replaces_the_old_one(gateway, client):
    gateway.allow(b"token", document({**EVERYTHING, "iot:Publish": ["old"]}), refresh_in=0.1)
    dev = client("dev", b"token", version=MQTT5)
    assert dev.publish("new", b"x", qos=1) == 0x87
    calls = len(gateway.calls)
    gateway.allow(b"token", document({**EVERYTHING, "iot:Publish": ["new"]}), refresh_in=0.1)
    dev.wait(lambda: len(gateway.calls) >= calls + 2, "two refreshes")  # one surely saw the new policy
    assert dev.publish("new", b"x", qos=1) == 0
    assert dev.publish("old", b"x", qos=1) == 0x87


# --- lifecycle events and the data plane --------------------------------------------------


def test_lifecycle_events_carry_aws_fields(everyone, watcher, client):
    dev = client("dev-1", version=MQTT5)
    dev.disconnect()
    came = event(watcher, "connected", "dev-1")
    went = event(watcher, "disconnected", "dev-1")
    for body in (came, went):
        assert body["clientId"] == "dev-1"
        assert body["principalIdentifier"] == "owner-principal"
        assert body["ipAddress"] == "127.0.0.1"
        assert body["versionNumber"] == 1
        assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_600_000_000_000  # milliseconds
    assert came["sessionIdentifier"] == went["sessionIdentifier"]
    assert (came["eventType"], went["eventType"]) == ("connected", "disconnected")
    assert "disconnectReason" not in came and "clientInitiatedDisconnect" not in came


def test_lifecycle_events_are_judged_by_receive(gateway, client):
    gateway.allow(b"pw", document(EVERYTHING))
    gateway.allow(b"narrow", document({**EVERYTHING, "iot:Receive": ["$aws/events/presence/connected/mine"]}))
    seen = client("watcher", b"narrow")
    seen.subscribe("$aws/events/presence/connected/+")
    client("theirs")
    client("mine")
    assert seen.expect().topic == "$aws/events/presence/connected/mine"


def test_client_ids_with_wildcards_get_no_lifecycle_events(everyone, watcher, client):
    client("odd+id")
    client("plain")
    assert watcher.expect().topic == "$aws/events/presence/connected/plain"


def test_delete_connection_disconnects_and_publishes_the_will(everyone, watcher, client, server, version):
    dev = client("dev", version=version, will=("dev/status", b"offline", 1, False))
    assert server.run(server.broker.delete_connection("dev")) is True
    reason = dev.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x98  # administrative action
    event(watcher, "connected", "dev")
    assert watcher.expect("dev/status").payload == b"offline"
    assert event(watcher, "disconnected", "dev")["disconnectReason"] == "API_INITIATED_DISCONNECT"
    assert server.run(server.broker.delete_connection("dev")) is False


def test_delete_connection_can_prevent_the_will_and_clean_the_session(everyone, watcher, client, server):
    dev = persistent(client, "dev", MQTT5, will=("dev/status", b"offline", 1, False))
    dev.subscribe("q/1")
    server.run(server.broker.delete_connection("dev", clean_session=True, prevent_will=True))
    dev.wait_disconnected()
    event(watcher, "connected", "dev")
    event(watcher, "disconnected", "dev")  # and no will before it
    assert persistent(client, "dev", MQTT5).connack[1] is False


def test_get_connection_describes_live_and_gone_clients(everyone, client, server):
    assert server.call(server.broker.get_connection, "dev") is None
    dev = client("dev", version=MQTT5, keepalive=60)
    live = server.call(server.broker.get_connection, "dev")
    assert (live["connected"], live["clientId"], live["cleanSession"], live["keepAliveDuration"]) == \
        (True, "dev", True, 60)
    assert live["connectedSince"] > 1_600_000_000_000
    dev.disconnect()
    dev.wait(lambda: not server.call(server.broker.get_connection, "dev")["connected"], "the disconnect")
    gone = server.call(server.broker.get_connection, "dev")
    assert gone["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT"
    assert gone["disconnectedSince"] >= live["connectedSince"]
