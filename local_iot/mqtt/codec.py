"""MQTT 3.1.1 and 5 control packets: decoding from a byte buffer that grows
as the network delivers, and encoding (docs/local-iot.md#the-broker).

Sans-IO: `Decoder.feed(bytes)` returns the packets now complete; `encode`
turns a packet into bytes. The protocol version comes from the CONNECT
packet; every later packet of that connection is read in that version.

QoS 2 (PUBREC, PUBREL, PUBCOMP) is not spoken: AWS IoT does not support it
(https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-qos).
A PUBLISH asking for QoS 2 decodes, so the broker can refuse it as AWS
does; the QoS 2 acknowledgements are protocol errors. AUTH (MQTT 5
enhanced authentication) is not spoken either.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from local_iot.mqtt.wire import (
    MalformedPacket,
    ProtocolError,
    Reader,
    binary,
    read_properties,
    utf8,
    varint,
    write_properties,
)

MQTT311, MQTT5 = 4, 5  # the protocol level byte of CONNECT

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)  # MQTT 5: will_delay_interval, message_expiry_interval, ...


@dataclass
class Connect:
    client_id: str
    version: int = MQTT311
    clean_start: bool = True  # "clean session" in 3.1.1
    keep_alive: int = 60
    username: str | None = None
    password: bytes | None = None
    will: Will | None = None
    properties: dict = field(default_factory=dict)


@dataclass
class ConnAck:
    code: int = 0  # 3.1.1 return code (0-5) or MQTT 5 reason code
    session_present: bool = False
    properties: dict = field(default_factory=dict)


@dataclass
class Publish:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict = field(default_factory=dict)


@dataclass
class PubAck:
    packet_id: int
    code: int = 0
    properties: dict = field(default_factory=dict)


@dataclass
class Subscription:
    filter: str
    qos: int = 0
    no_local: bool = False  # MQTT 5 subscription options
    retain_as_published: bool = False
    retain_handling: int = 0


@dataclass
class Subscribe:
    packet_id: int
    subscriptions: list[Subscription]
    properties: dict = field(default_factory=dict)


@dataclass
class SubAck:
    packet_id: int
    codes: list[int]
    properties: dict = field(default_factory=dict)


@dataclass
class Unsubscribe:
    packet_id: int
    filters: list[str]
    properties: dict = field(default_factory=dict)


@dataclass
class UnsubAck:
    packet_id: int
    codes: list[int] = field(default_factory=list)  # MQTT 5 only
    properties: dict = field(default_factory=dict)


@dataclass
class PingReq:
    pass


@dataclass
class PingResp:
    pass


@dataclass
class Disconnect:
    code: int = 0  # MQTT 5 only
    properties: dict = field(default_factory=dict)


# --- decoding --------------------------------------------------------------------------


class Decoder:
    """Packets out of a growing buffer. `version` is None until a CONNECT is
    read. A packet longer than `max_packet_size` bytes (whole packet) is
    refused as soon as its length is known, before its body arrives."""

    def __init__(self, *, version: int | None = None, max_packet_size: int = 268_435_460):
        self.version = version
        self.max_packet_size = max_packet_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list:
        self._buffer += data
        packets = []
        while True:
            header = self._header()
            if header is None:
                return packets
            first, length, start = header
            if start + length > len(self._buffer):
                return packets
            body = bytes(self._buffer[start:start + length])
            del self._buffer[:start + length]
            packets.append(self._packet(first, body))

    def _header(self) -> tuple[int, int, int] | None:
        """(first byte, remaining length, where the body starts), or None until known."""
        if len(self._buffer) < 2:
            return None
        length = 0
        for i in range(1, 5):
            if i >= len(self._buffer):
                return None
            b = self._buffer[i]
            length |= (b & 0x7F) << (7 * (i - 1))
            if not b & 0x80:
                if i + 1 + length > self.max_packet_size:
                    raise PacketTooLarge(f"a packet of {i + 1 + length} bytes")
                return self._buffer[0], length, i + 1
        raise MalformedPacket("remaining length longer than four bytes")

    def _packet(self, first: int, body: bytes):
        kind, flags = first >> 4, first & 0x0F
        if self.version is None and kind != CONNECT:
            raise ProtocolError("the first packet must be CONNECT")
        if kind == CONNECT and self.version is not None:
            raise ProtocolError("a second CONNECT")  # 3.1.1 3.1.0-2, MQTT 5 3.1.0-2
        # Fixed header flags are reserved except on PUBLISH (3.1.1 2.2.2, MQTT 5 2.1.3).
        expected = {SUBSCRIBE: 0b0010, UNSUBSCRIBE: 0b0010}.get(kind, 0)
        if kind != PUBLISH and flags != expected:
            raise MalformedPacket(f"reserved flags 0x{flags:x} on packet type {kind}")
        r = Reader(body)
        decode = _DECODERS.get(kind)
        if decode is None:
            raise ProtocolError(f"packet type {kind} not accepted from a client")
        packet = decode(self, r, flags)
        if r.remaining:
            raise MalformedPacket(f"{r.remaining} bytes left over in packet type {kind}")
        return packet

    @property
    def v5(self) -> bool:
        return self.version == MQTT5


class PacketTooLarge(MalformedPacket):
    """MQTT 5 reason code 0x95."""

    code = 0x95


def _connect(d: Decoder, r: Reader, _flags: int) -> Connect:
    name, level = r.utf8(), r.byte()
    if name != "MQTT" or level not in (MQTT311, MQTT5):
        raise UnsupportedProtocol(f"protocol {name!r} level {level}")
    d.version = level
    flags = r.byte()
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set")
    keep_alive = r.u16()
    properties = read_properties(r) if d.v5 else {}
    client_id = r.utf8()
    will = None
    will_qos, will_retain = (flags >> 3) & 0x03, bool(flags & 0x20)
    if flags & 0x04:
        will_properties = read_properties(r) if d.v5 else {}
        will = Will(r.utf8(), r.binary(), will_qos, will_retain, will_properties)
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")
    elif will_qos or will_retain:
        raise MalformedPacket("will QoS or retain without a will")
    username = r.utf8() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    if password is not None and username is None and not d.v5:
        raise MalformedPacket("password without user name")  # 3.1.1 3.1.2-22; MQTT 5 allows it
    return Connect(client_id, level, bool(flags & 0x02), keep_alive, username, password, will, properties)


class UnsupportedProtocol(ProtocolError):
    """Neither MQTT 3.1.1 nor 5: CONNACK 0x01 (3.1.1) or 0x84 (MQTT 5)."""

    code = 0x84


def _publish(d: Decoder, r: Reader, flags: int) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    dup, retain = bool(flags & 0x08), bool(flags & 0x01)
    if dup and qos == 0:
        raise MalformedPacket("DUP on a QoS 0 PUBLISH")  # MQTT 5 3.3.1-2; 3.1.1 3.3.1-2
    topic = r.utf8()
    packet_id = r.u16() if qos else None
    if packet_id == 0:
        raise MalformedPacket("packet identifier 0")
    properties = read_properties(r) if d.v5 else {}
    return Publish(topic, r.take(r.remaining), qos, retain, dup, packet_id, properties)


def _puback(d: Decoder, r: Reader, _flags: int) -> PubAck:
    packet_id = r.u16()
    code = r.byte() if d.v5 and r.remaining else 0
    properties = read_properties(r) if d.v5 and r.remaining else {}
    return PubAck(packet_id, code, properties)


def _subscribe(d: Decoder, r: Reader, _flags: int) -> Subscribe:
    packet_id = r.u16()
    properties = read_properties(r) if d.v5 else {}
    subscriptions = []
    while r.remaining:
        topic_filter, options = r.utf8(), r.byte()
        if options & (0xC0 if d.v5 else 0xFC) or options & 0x03 == 3 or (options >> 4) & 0x03 == 3:
            raise MalformedPacket(f"subscription options 0x{options:02x}")
        subscriptions.append(Subscription(topic_filter, options & 0x03, bool(options & 0x04),
                                          bool(options & 0x08), (options >> 4) & 0x03))
    if not subscriptions:
        raise ProtocolError("SUBSCRIBE with no topic filter")  # 3.1.1 3.8.3-3, MQTT 5 3.8.3-2
    return Subscribe(packet_id, subscriptions, properties)


def _unsubscribe(d: Decoder, r: Reader, _flags: int) -> Unsubscribe:
    packet_id = r.u16()
    properties = read_properties(r) if d.v5 else {}
    filters = []
    while r.remaining:
        filters.append(r.utf8())
    if not filters:
        raise ProtocolError("UNSUBSCRIBE with no topic filter")
    return Unsubscribe(packet_id, filters, properties)


def _pingreq(_d: Decoder, _r: Reader, _flags: int) -> PingReq:
    return PingReq()


def _disconnect(d: Decoder, r: Reader, _flags: int) -> Disconnect:
    code = r.byte() if d.v5 and r.remaining else 0
    properties = read_properties(r) if d.v5 and r.remaining else {}
    return Disconnect(code, properties)


def _suback(d: Decoder, r: Reader, _flags: int) -> SubAck:
    packet_id = r.u16()
    properties = read_properties(r) if d.v5 else {}
    return SubAck(packet_id, list(r.take(r.remaining)), properties)


def _unsuback(d: Decoder, r: Reader, _flags: int) -> UnsubAck:
    packet_id = r.u16()
    properties = read_properties(r) if d.v5 else {}
    return UnsubAck(packet_id, list(r.take(r.remaining)), properties)


def _connack(d: Decoder, r: Reader, _flags: int) -> ConnAck:
    flags, code = r.byte(), r.byte()
    return ConnAck(code, bool(flags & 0x01), read_properties(r) if d.v5 else {})


def _pingresp(_d: Decoder, _r: Reader, _flags: int) -> PingResp:
    return PingResp()


# What a client sends. A client-side decoder (the codec's own tests) adds the server's packets.
_DECODERS = {CONNECT: _connect, PUBLISH: _publish, PUBACK: _puback, SUBSCRIBE: _subscribe,
             UNSUBSCRIBE: _unsubscribe, PINGREQ: _pingreq, DISCONNECT: _disconnect}


class ClientDecoder(Decoder):
    """Reads what a server sends: for tests and tools that play the client."""

    def _packet(self, first: int, body: bytes):
        kind = first >> 4
        decode = {CONNACK: _connack, PUBLISH: _publish, PUBACK: _puback, SUBACK: _suback,
                  UNSUBACK: _unsuback, PINGRESP: _pingresp, DISCONNECT: _disconnect}.get(kind)
        if decode is None:
            raise ProtocolError(f"packet type {kind} not accepted from a server")
        r = Reader(body)
        packet = decode(self, r, first & 0x0F)
        if r.remaining:
            raise MalformedPacket(f"{r.remaining} bytes left over in packet type {kind}")
        return packet


# --- encoding --------------------------------------------------------------------------


def encode(packet, version: int) -> bytes:
    """The packet's bytes in that protocol version."""
    v5 = version == MQTT5
    first, body = _ENCODERS[type(packet)](packet, v5)
    return bytes([first]) + varint(len(body)) + body


def _props(properties: dict, v5: bool) -> bytes:
    return write_properties(properties) if v5 else b""


def _enc_connect(p: Connect, v5: bool) -> tuple[int, bytes]:
    flags = (0x02 if p.clean_start else 0) | (0x80 if p.username is not None else 0) \
        | (0x40 if p.password is not None else 0)
    payload = utf8(p.client_id)
    if p.will is not None:
        flags |= 0x04 | (p.will.qos << 3) | (0x20 if p.will.retain else 0)
        payload += _props(p.will.properties, v5) + utf8(p.will.topic) + binary(p.will.payload)
    if p.username is not None:
        payload += utf8(p.username)
    if p.password is not None:
        payload += binary(p.password)
    header = utf8("MQTT") + bytes([p.version, flags]) + struct.pack("!H", p.keep_alive)
    return CONNECT << 4, header + _props(p.properties, v5) + payload


def _enc_connack(p: ConnAck, v5: bool) -> tuple[int, bytes]:
    return CONNACK << 4, bytes([int(p.session_present), p.code]) + _props(p.properties, v5)


def _enc_publish(p: Publish, v5: bool) -> tuple[int, bytes]:
    first = (PUBLISH << 4) | (0x08 if p.dup else 0) | (p.qos << 1) | (0x01 if p.retain else 0)
    body = utf8(p.topic) + (struct.pack("!H", p.packet_id) if p.qos else b"")
    return first, body + _props(p.properties, v5) + p.payload


def _enc_puback(p: PubAck, v5: bool) -> tuple[int, bytes]:
    body = struct.pack("!H", p.packet_id)
    if v5 and (p.code or p.properties):
        body += bytes([p.code]) + (write_properties(p.properties) if p.properties else b"")
    return PUBACK << 4, body


def _enc_subscribe(p: Subscribe, v5: bool) -> tuple[int, bytes]:
    body = struct.pack("!H", p.packet_id) + _props(p.properties, v5)
    for s in p.subscriptions:
        options = s.qos | (s.no_local << 2) | (s.retain_as_published << 3) | (s.retain_handling << 4)
        body += utf8(s.filter) + bytes([options])
    return (SUBSCRIBE << 4) | 0b0010, body


def _enc_suback(p: SubAck, v5: bool) -> tuple[int, bytes]:
    return SUBACK << 4, struct.pack("!H", p.packet_id) + _props(p.properties, v5) + bytes(p.codes)


def _enc_unsubscribe(p: Unsubscribe, v5: bool) -> tuple[int, bytes]:
    body = struct.pack("!H", p.packet_id) + _props(p.properties, v5) + b"".join(utf8(f) for f in p.filters)
    return (UNSUBSCRIBE << 4) | 0b0010, body


def _enc_unsuback(p: UnsubAck, v5: bool) -> tuple[int, bytes]:
    body = struct.pack("!H", p.packet_id)
    return UNSUBACK << 4, body + (_props(p.properties, v5) + bytes(p.codes) if v5 else b"")


def _enc_pingreq(_p: PingReq, _v5: bool) -> tuple[int, bytes]:
    return PINGREQ << 4, b""


def _enc_pingresp(_p: PingResp, _v5: bool) -> tuple[int, bytes]:
    return PINGRESP << 4, b""


def _enc_disconnect(p: Disconnect, v5: bool) -> tuple[int, bytes]:
    if not v5 or (p.code == 0 and not p.properties):
        return DISCONNECT << 4, b""
    return DISCONNECT << 4, bytes([p.code]) + write_properties(p.properties)


_ENCODERS = {Connect: _enc_connect, ConnAck: _enc_connack, Publish: _enc_publish, PubAck: _enc_puback,
             Subscribe: _enc_subscribe, SubAck: _enc_suback, Unsubscribe: _enc_unsubscribe,
             UnsubAck: _enc_unsuback, PingReq: _enc_pingreq, PingResp: _enc_pingresp,
             Disconnect: _enc_disconnect}
