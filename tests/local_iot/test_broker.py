"""The broker's enforcement and MQTT features, as real paho-mqtt clients
(3.1.1 and 5) observe them over TCP: CONNECT, SUBSCRIBE, PUBLISH and
delivery judged by the grant's policy, retained messages, QoS, topic rules
and AWS's limits (docs/local-iot.md#the-broker).

"Not delivered" is shown without waiting on a clock: a later message from
the same publisher, which the broker routes in order, arrives first."""
import json
import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from local_iot.mqtt import MQTT5, MQTT311, ConnAck, Connect, Disconnect, Subscribe, Subscription, encode
from local_iot.shadow import Shadows
from tests.support.mqtt_client import RawClient
from tests.support.policy_gateway import EVERYTHING, document


def allow(gateway, password=b"pw", **grants):
    """Grant `password` what EVERYTHING grants, with the given actions replaced."""
    gateway.allow(password, document({**EVERYTHING, **grants}))


def test_an_allowed_client_connects_and_exchanges_messages(gateway, client, version):
    allow(gateway)
    sub = client("sub", version=version)
    pub = client("pub", version=MQTT311 if version == MQTT5 else MQTT5)  # across versions, as AWS allows
    assert sub.accepted and pub.accepted
    assert sub.connack[1] is False  # no session was resumed
    assert sub.subscribe("dev/+/out", qos=1) == [1]
    assert pub.publish("dev/1/out", b"qos1", qos=1) == 0
    pub.publish("dev/2/out", b"qos0", qos=0)
    first, second = sub.expect("dev/1/out"), sub.expect("dev/2/out")
    assert (first.payload, first.qos, first.retain) == (b"qos1", 1, False)
    assert (second.payload, second.qos) == (b"qos0", 0)


def test_the_connect_carries_what_the_gateway_is_shown(gateway, client, server):
    allow(gateway)
    client("dev-7", b"pw")
    [presented] = gateway.calls
    assert (presented.client_id, presented.username, presented.password) == ("dev-7", "user", b"pw")
    assert (presented.protocol, presented.tls, presented.source_ip) == ("mqtt", False, "127.0.0.1")


def test_a_refused_token_gets_not_authorized(gateway, client, version):
    allow(gateway)
    refused = client("c1", b"wrong", version=version)
    assert not refused.accepted
    assert refused.connack[0].getName() == "Not authorized"
    assert refused.wait_disconnected() is not None


def test_a_client_id_the_policy_does_not_allow_gets_not_authorized(gateway, client, version):
    allow(gateway, **{"iot:Connect": ["device-1"]})
    assert client("device-1", version=version).accepted
    other = client("device-2", version=version)
    assert other.connack[0].getName() == "Not authorized"
    if version == MQTT5:  # MQTT 5 can say why
        assert "device-2" in other.connack[2].ReasonString


@pytest.mark.parametrize(("version", "expected"), [(MQTT311, 5), (MQTT5, 0x87)])
def test_the_refusal_code_on_the_wire(gateway, server, version, expected):
    """MQTT 3.1.1 CONNACK return code 5, MQTT 5 reason code 0x87, then the connection closes."""
    raw = RawClient(server.port, version)
    raw.send(encode(Connect("c1", version, password=b"wrong", username="u"), version))
    connack = raw.read()
    assert isinstance(connack, ConnAck) and connack.code == expected
    assert raw.read() is None
    raw.close()


def test_a_client_id_over_128_bytes_is_refused(gateway, client, version):
    allow(gateway)
    assert client("x" * 128, version=version).accepted
    too_long = client("y" * 129, version=version)
    assert too_long.connack[0].getName() == "Client identifier not valid"
    assert len(gateway.calls) == 1  # refused before the authorizer was asked


def test_keep_alive_outside_aws_range_is_adjusted_for_mqtt5(gateway, client):
    allow(gateway)
    short = client("short", keepalive=5)
    assert short.connack[2].ServerKeepAlive == 30
    usual = client("usual", keepalive=60)
    assert not hasattr(usual.connack[2], "ServerKeepAlive")


# --- SUBSCRIBE ----------------------------------------------------------------------------


def test_a_filter_the_policy_does_not_allow_is_refused_in_the_suback(gateway, client, version):
    allow(gateway, **{"iot:Subscribe": ["dev/1/*"]})
    sub = client("sub", version=version)
    codes = sub.subscribe("dev/2/out")
    # MQTT 3.1.1 has only the failure code 0x80; MQTT 5 says 0x87, not authorized.
    assert codes == [0x87 if version == MQTT5 else 0x80]
    assert sub.subscribe("dev/1/out") == [1]
    assert not sub.disconnected.is_set()


def test_one_suback_judges_each_filter(gateway, client):
    allow(gateway, **{"iot:Subscribe": ["ok/*"]})
    sub = client("sub", version=MQTT5)
    _, mid = sub.paho.subscribe([("ok/a", 1), ("no/b", 1), ("ok/c", 0)])
    assert sub._wait_ack(mid) == [1, 0x87, 0]


def test_qos2_subscriptions_are_granted_qos1(gateway, client, version):
    allow(gateway)
    sub = client("sub", version=version)
    assert sub.subscribe("a/b", qos=2) == [1]


def test_invalid_and_oversized_filters_fail(gateway, client, version):
    allow(gateway)
    sub = client("sub", version=version)
    failure = 0x8F if version == MQTT5 else 0x80
    assert sub.subscribe("a" + "/b" * 8) == [failure]  # 8 slashes
    assert sub.subscribe("a" + "/b" * 7) == [1]
    assert sub.subscribe("x" * 257) == [failure]


@pytest.mark.parametrize(("version", "failure"), [(MQTT311, 0x80), (MQTT5, 0x8F)])
def test_misplaced_wildcards_fail(gateway, server, version, failure):
    """paho will not send these, so the bytes go on the wire by hand."""
    allow(gateway)
    raw = RawClient(server.port, version)
    raw.send(encode(Connect("raw", version, username="u", password=b"pw"), version))
    assert raw.read().code == 0
    raw.send(encode(Subscribe(1, [Subscription(f) for f in ("a/#/b", "a/b+", "a/+/#")]), version))
    assert raw.read().codes == [failure, failure, 0]
    raw.close()


def test_an_unsubscribed_filter_receives_no_more(gateway, client, version):
    allow(gateway)
    sub, pub = client("sub", version=version), client("pub")
    sub.subscribe("a/+")
    sub.subscribe("a/2")
    codes = sub.unsubscribe("a/+")
    if version == MQTT5:
        assert codes == [0]
        assert sub.unsubscribe("never/subscribed") == [0x11]  # no subscription existed
    pub.publish("a/1", b"gone", qos=1)
    pub.publish("a/2", b"still", qos=1)
    assert sub.expect("a/2").payload == b"still"


# --- PUBLISH ------------------------------------------------------------------------------


def test_an_unauthorized_publish_disconnects_an_mqtt311_client(gateway, client, watcher):
    allow(gateway, **{"iot:Publish": ["dev/1/*"]})
    pub = client("pub", version=MQTT311)
    pub.publish("dev/2/in", b"x", qos=1)
    pub.wait_disconnected()
    event = json.loads(watcher.expect("$aws/events/presence/connected/pub").payload)
    assert event["eventType"] == "connected"
    event = json.loads(watcher.expect("$aws/events/presence/disconnected/pub").payload)
    assert event["disconnectReason"] == "AUTH_ERROR"


def test_an_unauthorized_publish_gets_puback_0x87_in_mqtt5(gateway, client):
    allow(gateway, **{"iot:Publish": ["dev/1/*"]})
    sub, pub = client("sub"), client("pub", version=MQTT5)
    sub.subscribe("dev/#")
    assert pub.publish("dev/2/in", b"denied", qos=1) == 0x87
    pub.publish("dev/2/in", b"denied too", qos=0)
    assert pub.publish("dev/1/in", b"allowed", qos=1) == 0
    assert sub.expect("dev/1/in").payload == b"allowed"  # neither denied message came first
    assert not pub.disconnected.is_set()


def test_retain_needs_retain_publish(gateway, client, version):
    allow(gateway, **{"iot:RetainPublish": ["keep/*"]})
    sub, pub = client("sub"), client("pub", version=version)
    sub.subscribe("#")
    assert pub.publish("keep/1", b"kept", qos=1, retain=True) == 0
    assert sub.expect("keep/1").payload == b"kept"
    result = pub.publish("other/1", b"x", qos=1, retain=True)
    if version == MQTT5:
        assert result.value == 0x87
    else:
        pub.wait_disconnected()


def test_qos2_publish_closes_the_connection(gateway, client, version):
    allow(gateway)
    pub = client("pub", version=version)
    pub.paho.publish("a/b", b"x", qos=2)
    reason = pub.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x9B  # QoS not supported


@pytest.mark.parametrize(("topic", "reason"), [
    ("a" + "/b" * 8, 0x90),  # eight slashes
    ("t" * 257, 0x90),  # 257 bytes
    ("é" * 129, 0x90),  # 258 bytes of UTF-8 in 129 characters
])
def test_topics_beyond_aws_limits_close_the_connection(gateway, client, version, topic, reason):
    allow(gateway)
    pub = client("pub", version=version)
    pub.paho.publish(topic, b"x", qos=1)
    got = pub.wait_disconnected()
    if version == MQTT5:
        assert got.value == reason


def test_the_limits_are_inclusive_and_skip_basic_ingest_prefixes(gateway, client):
    allow(gateway)
    sub, pub = client("sub"), client("pub")
    sub.subscribe("#")
    sub.subscribe("$aws/rules/#")
    for topic in ("a" + "/b" * 7, "t" * 256, "$aws/rules/rule1/" + "a" + "/b" * 7):
        assert pub.publish(topic, b"x", qos=1) == 0
        assert sub.expect(topic).topic == topic


def test_a_payload_over_128_kb_closes_the_connection(gateway, client, version, watcher):
    allow(gateway)
    pub = client("pub", version=version)
    assert pub.publish("a/b", b"x" * 128 * 1024, qos=1) == 0
    pub.paho.publish("a/b", b"x" * (128 * 1024 + 1), qos=1)
    reason = pub.wait_disconnected()
    if version == MQTT5:
        assert reason.value == 0x95
    watcher.expect("$aws/events/presence/connected/pub")
    assert len(watcher.expect("a/b").payload) == 128 * 1024
    event = json.loads(watcher.expect("$aws/events/presence/disconnected/pub").payload)
    assert event["disconnectReason"] == "CLIENT_ERROR"


def test_topic_aliases_are_resolved_and_user_properties_passed_on(gateway, client):
    allow(gateway)
    sub, pub = client("sub"), client("pub")
    sub.subscribe("long/topic/name")
    first = Properties(PacketTypes.PUBLISH)
    first.TopicAlias = 3
    first.UserProperty = [("trace", "1")]
    pub.publish("long/topic/name", b"one", qos=1, properties=first)
    again = Properties(PacketTypes.PUBLISH)
    again.TopicAlias = 3
    pub.publish("", b"two", qos=1, properties=again)
    one, two = sub.expect("long/topic/name"), sub.expect("long/topic/name")
    assert (one.payload, two.payload) == (b"one", b"two")
    assert one.properties.UserProperty == [("trace", "1")]
    assert not hasattr(one.properties, "TopicAlias")


def test_a_topic_alias_beyond_the_maximum_closes_the_connection(gateway, client):
    allow(gateway)
    pub = client("pub")
    assert pub.connack[2].TopicAliasMaximum == 8
    alias = Properties(PacketTypes.PUBLISH)
    alias.TopicAlias = 9
    pub.paho.publish("a", b"x", qos=1, properties=alias)
    assert pub.wait_disconnected().value == 0x94


# --- delivery -----------------------------------------------------------------------------


def test_delivery_needs_receive(gateway, client, version):
    allow(gateway, **{"iot:Receive": ["dev/1/*"]})
    sub, pub = client("sub", version=version), client("pub")
    assert sub.subscribe("dev/#") == [1]  # iot:Subscribe allows the filter
    pub.publish("dev/2/out", b"not for you", qos=1)
    pub.publish("dev/1/out", b"for you", qos=1)
    assert sub.expect().topic == "dev/1/out"


def test_wildcards_match_levels_and_dollar_topics_only_by_name(gateway, client):
    allow(gateway)
    sub, pub = client("sub"), client("pub")
    sub.subscribe("+/status")
    sub.subscribe("home/#")
    pub.publish("$SYS/status", b"x", qos=1)  # a leading wildcard never matches a $ topic
    pub.publish("a/b/status", b"x", qos=1)  # + is one level
    pub.publish("home", b"parent", qos=1)  # # matches the parent level too
    pub.publish("k/status", b"one level", qos=1)
    assert [sub.expect().payload, sub.expect().payload] == [b"parent", b"one level"]


def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(gateway, client):
    allow(gateway)
    sub, pub = client("sub"), client("pub")
    sub.subscribe("a/#", qos=0)
    sub.subscribe("a/b", qos=1)
    pub.publish("a/b", b"once", qos=1)
    pub.publish("a/c", b"next", qos=1)
    first = sub.expect("a/b")
    assert (first.payload, first.qos) == (b"once", 1)
    assert sub.expect("a/c").qos == 0


def test_messages_from_inside_aws_are_routed_and_judged(gateway, client, server):
    allow(gateway, **{"iot:Receive": ["dev/1/*"]})
    sub = client("sub")
    sub.subscribe("dev/#")
    server.run(server.broker.publish("dev/2/in", b"no", qos=1))
    server.run(server.broker.publish("dev/1/in", b"yes", qos=1))
    message = sub.expect("dev/1/in")
    assert (message.payload, message.qos) == (b"yes", 1)


# --- retained messages --------------------------------------------------------------------


def test_retained_messages_reach_later_subscribers(gateway, client, version):
    allow(gateway)
    pub = client("pub", version=version)
    pub.publish("state/1", b"on", qos=1, retain=True)
    pub.publish("state/2", b"off", qos=0, retain=True)
    pub.publish("state/2", b"", qos=1, retain=True)  # an empty retained payload clears the topic
    pub.publish("state/3", b"unretained", qos=1)
    sub = client("sub", version=version)
    sub.subscribe("state/+")
    kept = sub.expect("state/1")
    assert (kept.payload, kept.retain, kept.qos) == (b"on", True, 1)
    pub.publish("state/4", b"marker", qos=1)
    marker = sub.expect("state/4")
    assert marker.retain is False


def test_retained_messages_on_subscribe_need_receive(gateway, client):
    allow(gateway, **{"iot:Receive": ["open/*"]})
    pub = client("pub")
    pub.publish("secret/1", b"s", qos=1, retain=True)
    pub.publish("open/1", b"o", qos=1, retain=True)
    sub = client("sub")
    sub.subscribe("+/1")
    assert sub.expect().topic == "open/1"


def test_malformed_bytes_end_the_connection_with_a_reason(gateway, server):
    allow(gateway)
    raw = RawClient(server.port, MQTT5)
    raw.send(encode(Connect("raw", MQTT5, username="u", password=b"pw"), MQTT5))
    assert raw.read().code == 0
    raw.send(b"\x36\x05\x00\x01a\x00\x01")  # PUBLISH with QoS 3
    disconnect = raw.read()
    assert isinstance(disconnect, Disconnect) and disconnect.code == 0x81
    assert "QoS 3" in disconnect.properties["reason_string"]
    assert raw.read() is None
    raw.close()


def test_an_expired_retained_message_is_not_sent(gateway, serve, client):
    allow(gateway)
    server = serve(time_scale=0.01)  # 10 AWS seconds are 0.1 s
    pub = client("pub", port=server.port, keepalive=1200)
    short, long = Properties(PacketTypes.PUBLISH), Properties(PacketTypes.PUBLISH)
    short.MessageExpiryInterval = 10
    long.MessageExpiryInterval = 100_000
    pub.publish("state/short", b"s", qos=1, retain=True, properties=short)
    pub.publish("state/long", b"l", qos=1, retain=True, properties=long)
    time.sleep(0.5)  # five times the short one's scaled interval
    sub = client("sub", port=server.port, keepalive=1200)
    sub.subscribe("state/+")
    kept = sub.expect()
    assert kept.topic == "state/long"
    # The time left in AWS seconds: about 50 of the 100,000 have passed, not the original.
    assert 90_000 < kept.properties.MessageExpiryInterval < 100_000


class AnsweringShadows(Shadows):
    """Only the broker's side of the shadow interface: it records what reaches
    on_publish and answers every request topic with one message. The shadow
    service itself is tested on its own."""

    def __init__(self):
        self.seen = []

    def on_publish(self, topic, payload):
        self.seen.append((topic, payload))
        return [(topic + "/accepted", b'{"answer": true}')] if topic.endswith("/get") else []


def test_authorized_publishes_reach_the_shadow_service_and_its_answers_are_judged(gateway, serve, client):
    shadows = AnsweringShadows()
    server = serve(shadows=shadows)
    gateway.allow(b"pw", document({**EVERYTHING, "iot:Publish": ["$aws/things/lamp/shadow/get"],
                                   "iot:Receive": ["$aws/things/lamp/shadow/get/accepted", "mark"]}))
    gateway.allow(b"other", document(EVERYTHING))
    dev = client("dev", port=server.port)
    dev.subscribe("$aws/things/+/shadow/#")
    dev.subscribe("mark")
    assert dev.publish("$aws/things/door/shadow/get", b"{}", qos=1) == 0x87  # never reaches the service
    assert dev.publish("$aws/things/lamp/shadow/get", b"{}", qos=1) == 0
    assert dev.expect("$aws/things/lamp/shadow/get/accepted").payload == b'{"answer": true}'
    client("other", b"other", port=server.port).publish("$aws/things/door/shadow/get", b"{}", qos=1)
    client("third", b"other", port=server.port).publish("mark", b"", qos=1)
    assert dev.expect().topic == "mark"  # the door's answer was not for dev to receive
    # Read on the broker's loop: it hands "mark" to the service in the same step it delivered it to dev.
    assert server.call(list, shadows.seen) == [("$aws/things/lamp/shadow/get", b"{}"),
                                               ("$aws/things/door/shadow/get", b"{}"), ("mark", b"")]
