"""The MQTT codec (local_iot/mqtt): bytes from the specifications and from a
real client (paho-mqtt) decode to the packets they mean, packets survive a
round trip in both protocol versions, input arrives in any number of
pieces, and malformed input is refused with the reason MQTT 5 names."""
import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from local_iot.mqtt import (
    MQTT5,
    MQTT311,
    ClientDecoder,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    MalformedPacket,
    PacketTooLarge,
    PingReq,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    Will,
    encode,
)
from local_iot.mqtt.wire import varint

# CONNECT, MQTT 3.1.1, client id "ab", clean session, keep alive 60: written
# out by hand from MQTT 3.1.1 section 3.1.
CONNECT_311 = bytes([0x10, 14, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 2]) + b"ab"
# CONNECT, MQTT 5, client id "ab", clean start, keep alive 60, session expiry 7 (property 0x11).
CONNECT_5 = bytes([0x10, 20, 0, 4]) + b"MQTT" + bytes([5, 0x02, 0, 60, 5, 0x11, 0, 0, 0, 7, 0, 2]) + b"ab"


@pytest.mark.parametrize(("value", "expected"), [
    # MQTT 3.1.1 table 2.4 / MQTT 5 section 1.5.5: the edges of each length.
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integers_are_the_specifications(value, expected):
    assert varint(value) == expected


def test_connect_bytes_from_the_specification_decode():
    [three] = Decoder().feed(CONNECT_311)
    assert three == Connect("ab", MQTT311, True, 60)
    [five] = Decoder().feed(CONNECT_5)
    assert five == Connect("ab", MQTT5, True, 60, properties={"session_expiry_interval": 7})


def test_fixed_packets_match_the_specification():
    assert encode(PingResp(), MQTT311) == b"\xd0\x00"
    assert encode(ConnAck(5), MQTT311) == b"\x20\x02\x00\x05"  # 3.1.1: return code 5, not authorized
    assert encode(ConnAck(0x87), MQTT5) == b"\x20\x03\x00\x87\x00"  # MQTT 5: reason code, empty properties
    assert encode(SubAck(10, [1, 0x80]), MQTT311) == b"\x90\x04\x00\x0a\x01\x80"
    # MQTT 5 3.4.2.2: a reason code without properties may end the packet.
    assert encode(PubAck(10, 0x87), MQTT5) == b"\x40\x03\x00\x0a\x87"
    assert encode(PubAck(10), MQTT5) == b"\x40\x02\x00\x0a"  # MQTT 5 3.4.2.1: success may be left out
    assert encode(Disconnect(0x8E), MQTT5) == b"\xe0\x02\x8e\x00"


def _what_paho_sends(version: int) -> bytes:
    """The bytes of paho-mqtt's CONNECT, SUBSCRIBE and PUBLISH, read off a socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def accept():
        conn, _ = listener.accept()
        conn.settimeout(5)
        while b"payload" not in received:
            received.extend(conn.recv(4096))
        conn.close()

    thread = threading.Thread(target=accept)
    thread.start()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-1",
                         protocol=mqtt.MQTTv5 if version == MQTT5 else mqtt.MQTTv311)
    client.username_pw_set("user?x-amz-customauthorizer-name=a", b"\x00\xfftoken")
    will = Properties(PacketTypes.WILLMESSAGE) if version == MQTT5 else None
    if will:
        will.WillDelayInterval = 9
    client.will_set("dev/1/will", b"gone", 1, True, properties=will)
    client.connect("127.0.0.1", listener.getsockname()[1], 45)
    publish = Properties(PacketTypes.PUBLISH) if version == MQTT5 else None
    if publish:
        publish.UserProperty = ("k", "v")
    client.subscribe("dev/+/out/#", 1)
    client.publish("dev/1/out", b"payload", 1, False, properties=publish)
    for _ in range(20):
        client.loop_write()
    thread.join(5)
    client.socket().close()
    listener.close()
    return bytes(received)


@pytest.mark.parametrize("version", [MQTT311, MQTT5])
def test_what_a_real_client_sends_decodes(version):
    data = _what_paho_sends(version)
    decoder = Decoder()
    packets = [p for i in range(len(data)) for p in decoder.feed(data[i:i + 1])]  # one byte at a time
    connect, subscribe, publish = packets
    assert (connect.client_id, connect.version, connect.keep_alive) == ("device-1", version, 45)
    assert connect.username == "user?x-amz-customauthorizer-name=a"
    assert connect.password == b"\x00\xfftoken"
    assert (connect.will.topic, connect.will.payload, connect.will.qos, connect.will.retain) == \
        ("dev/1/will", b"gone", 1, True)
    assert subscribe.subscriptions == [Subscription("dev/+/out/#", 1)]
    assert (publish.topic, publish.payload, publish.qos, publish.packet_id is not None) == \
        ("dev/1/out", b"payload", 1, True)
    if version == MQTT5:
        assert connect.will.properties == {"will_delay_interval": 9}
        assert publish.properties == {"user_property": [("k", "v")]}


ROUND_TRIP = [
    Connect("c", MQTT5, False, 30, "u", b"p", Will("w", b"x", 1, True, {"will_delay_interval": 5}),
            {"session_expiry_interval": 60, "user_property": [("a", "1"), ("a", "2")], "maximum_packet_size": 1000}),
    Publish("t/1", b"\x00" * 300, 1, True, True, 7,
            {"message_expiry_interval": 9, "topic_alias": 2, "content_type": "x", "correlation_data": b"\x01"}),
    Publish("t/2", b"", 0),
    PubAck(7),
    PubAck(7, 0x87, {"reason_string": "no"}),
    Subscribe(3, [Subscription("a/#", 1, True, True, 2), Subscription("+/b", 0)], {"user_property": [("k", "v")]}),
    Unsubscribe(4, ["a/#", "+/b"]),
    PingReq(),
    Disconnect(0x04, {"session_expiry_interval": 0}),
]


@pytest.mark.parametrize("packet", ROUND_TRIP, ids=lambda p: type(p).__name__)
def test_client_packets_round_trip_in_mqtt5(packet):
    decoder = Decoder(version=None if isinstance(packet, Connect) else MQTT5)
    assert decoder.feed(encode(packet, MQTT5)) == [packet]


def test_mqtt311_carries_no_properties():
    packet = Publish("t", b"x", 1, False, False, 9, {"user_property": [("k", "v")]})
    [decoded] = Decoder(version=MQTT311).feed(encode(packet, MQTT311))
    assert decoded == Publish("t", b"x", 1, False, False, 9)


@pytest.mark.parametrize("packet", [
    ConnAck(0, True, {"server_keep_alive": 1200, "assigned_client_identifier": "x", "maximum_qos": 1}),
    SubAck(5, [0, 1, 0x87], {"reason_string": "r"}),
    UnsubAck(6, [0, 0x11]),
    PingResp(),
    Disconnect(0x8E),
    Publish("a", b"b", 1, False, True, 12, {"user_property": [("u", "v")]}),
], ids=lambda p: type(p).__name__)
def test_server_packets_round_trip_in_mqtt5(packet):
    assert ClientDecoder(version=MQTT5).feed(encode(packet, MQTT5)) == [packet]


def test_several_packets_in_one_read_and_a_packet_across_reads():
    decoder = Decoder(version=MQTT311)
    one, two = encode(Publish("a", b"1"), MQTT311), encode(Publish("b", b"2" * 200), MQTT311)
    data = one + two + b"\xc0\x00"
    assert decoder.feed(data[:5]) == []
    assert decoder.feed(data[5:len(one) + 10]) == [Publish("a", b"1")]
    assert decoder.feed(data[len(one) + 10:]) == [Publish("b", b"2" * 200), PingReq()]


@pytest.mark.parametrize(("version", "data", "error"), [
    (None, encode(PingReq(), MQTT311), ProtocolError),  # the first packet must be CONNECT
    (MQTT311, CONNECT_311, ProtocolError),  # a second CONNECT
    (None, CONNECT_311.replace(b"\x04\x02", b"\x03\x02"), UnsupportedProtocol),  # MQTT 3.1
    (None, CONNECT_311.replace(b"\x04\x02", b"\x04\x03"), MalformedPacket),  # CONNECT reserved flag
    (MQTT311, b"\x80\x06\x00\x01\x00\x01a\x01", MalformedPacket),  # SUBSCRIBE without its 0b0010 flags
    (MQTT311, b"\x82\x02\x00\x01", ProtocolError),  # SUBSCRIBE with no filter
    (MQTT311, b"\x82\x06\x00\x01\x00\x01a\x03", MalformedPacket),  # subscription QoS 3
    (MQTT311, b"\x36\x05\x00\x01a\x00\x01", MalformedPacket),  # PUBLISH QoS 3
    (MQTT311, b"\x38\x03\x00\x01a", MalformedPacket),  # DUP on QoS 0
    (MQTT311, b"\x32\x05\x00\x01a\x00\x00", MalformedPacket),  # packet identifier 0
    (MQTT311, b"\x30\x04\x00\x02a\x00", MalformedPacket),  # U+0000 in the topic
    (MQTT311, b"\x30\x04\x00\x02\xc3\x28", MalformedPacket),  # not UTF-8
    (MQTT311, b"\x30\xff\xff\xff\xff\x01", MalformedPacket),  # remaining length of five bytes
    (MQTT311, b"\xc0\x01\x00", MalformedPacket),  # bytes left over
    (MQTT311, b"\x50\x02\x00\x01", ProtocolError),  # PUBREC: QoS 2 is not spoken
    (MQTT5, b"\x30\x08\x00\x01a\x04\x11\x00\x00\x00", MalformedPacket),  # property ends early
    (MQTT5, b"\x30\x06\x00\x01a\x02\x7f\x00", MalformedPacket),  # unknown property 0x7f
    (MQTT5, b"\x30\x0a\x00\x01a\x06\x23\x00\x01\x23\x00\x02", ProtocolError),  # topic alias given twice
])
def test_malformed_input_is_refused(version, data, error):
    with pytest.raises(error) as raised:
        Decoder(version=version).feed(data)
    assert type(raised.value) is error
    assert raised.value.code == {MalformedPacket: 0x81, ProtocolError: 0x82, UnsupportedProtocol: 0x84}[error]


def test_a_packet_too_large_is_refused_before_its_body_arrives():
    decoder = Decoder(version=MQTT311, max_packet_size=1000)
    with pytest.raises(PacketTooLarge) as raised:
        decoder.feed(b"\x30" + varint(2000))  # the header alone
    assert raised.value.code == 0x95
