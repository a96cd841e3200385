"""MQTT's primitive data types and MQTT 5 properties (docs/local-iot.md#the-broker).

The types are those of the specifications, section 1.5 of MQTT 3.1.1
(http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html) and
of MQTT 5 (https://docs.oasis-open.org/mqtt/mqtt/v5.0/os/mqtt-v5.0-os.html):
two-byte integers, four-byte integers, variable byte integers, UTF-8
strings and binary data, each with its length in front.
"""
from __future__ import annotations

import struct


class MalformedPacket(ValueError):
    """Bytes that are not a well-formed packet (MQTT 5 reason code 0x81)."""

    code = 0x81


class ProtocolError(ValueError):
    """A well-formed packet the protocol forbids here (MQTT 5 reason code 0x82)."""

    code = 0x82


class Reader:
    """Reads one packet's body, front to back; running off the end is malformed."""

    def __init__(self, data: bytes | memoryview):
        self.data, self.pos = memoryview(data), 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise MalformedPacket("packet ends early")
        chunk = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        value = 0
        for shift in range(0, 28, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
        raise MalformedPacket("variable byte integer longer than four bytes")

    def binary(self) -> bytes:
        return self.take(self.u16())

    def utf8(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not UTF-8") from None
        # MQTT 3.1.1 1.5.3 and MQTT 5 1.5.4: U+0000 is never allowed in a string.
        if "\x00" in text:
            raise MalformedPacket("string contains U+0000")
        return text


def varint(value: int) -> bytes:
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        value, digit = value >> 7, value & 0x7F
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def binary(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError("binary data longer than 65,535 bytes")
    return struct.pack("!H", len(data)) + data


def utf8(text: str) -> bytes:
    return binary(text.encode("utf-8"))


# MQTT 5 section 2.2.2.2: identifier → (name, type). Names are snake_case
# versions of the specification's.
_PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "utf8"),
    0x08: ("response_topic", "utf8"),
    0x09: ("correlation_data", "binary"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "utf8"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "utf8"),
    0x16: ("authentication_data", "binary"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "utf8"),
    0x1C: ("server_reference", "utf8"),
    0x1F: ("reason_string", "utf8"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
_IDS = {name: (ident, kind) for ident, (name, kind) in _PROPERTIES.items()}
# The only properties that may appear more than once (MQTT 5 2.2.2.2, 3.8.2.1.2).
_REPEATABLE = {"user_property", "subscription_identifier"}


def read_properties(r: Reader) -> dict:
    """An MQTT 5 property list: {name: value}; user properties as a list of
    (name, value) pairs, in order, under "user_property"."""
    end = r.varint()
    if end > r.remaining:
        raise MalformedPacket("property length beyond the packet")
    end += r.pos
    found: dict = {}
    while r.pos < end:
        ident = r.varint()
        if ident not in _PROPERTIES:
            raise MalformedPacket(f"unknown property 0x{ident:02x}")
        name, kind = _PROPERTIES[ident]
        value = (r.utf8(), r.utf8()) if kind == "pair" else getattr(r, kind)()
        if name in _REPEATABLE:
            found.setdefault(name, []).append(value)
        elif name in found:
            raise ProtocolError(f"property {name} given twice")
        else:
            found[name] = value
    if r.pos != end:
        raise MalformedPacket("property list overruns its length")
    return found


def write_properties(properties: dict | None) -> bytes:
    out = bytearray()
    for name, value in (properties or {}).items():
        ident, kind = _IDS[name]
        for one in value if name in _REPEATABLE else [value]:
            out += varint(ident)
            if kind == "pair":
                out += utf8(one[0]) + utf8(one[1])
            elif kind == "byte":
                out.append(one)
            elif kind == "u16":
                out += struct.pack("!H", one)
            elif kind == "u32":
                out += struct.pack("!I", one)
            elif kind == "varint":
                out += varint(one)
            elif kind == "utf8":
                out += utf8(one)
            else:
                out += binary(one)
    return varint(len(out)) + bytes(out)
