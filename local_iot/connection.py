"""One client connection while it lasts (docs/local-iot.md#the-broker):
what the client presented and negotiated, and the bytes it is sent."""
from __future__ import annotations

import asyncio
import uuid
from typing import Protocol

from local_iot import limits
from local_iot.gateway import Grant, Presented
from local_iot.mqtt import MQTT5, MQTT311, encode
from local_iot.sessions import Session


class Writer(Protocol):
    """What the broker writes a connection's bytes to: asyncio.StreamWriter,
    or the WebSocket adapter's equivalent. Either has a `transport` whose
    write buffer tells a slow consumer."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Connection:
    def __init__(self, writer: Writer, presented: Presented):
        self.id = str(uuid.uuid4())  # connectionMetadata.id and the lifecycle sessionIdentifier
        self.writer, self.presented = writer, presented
        self.version = MQTT311
        self.client_id: str | None = None
        self.grant: Grant | None = None
        self.session: Session | None = None
        self.will = None
        self.keep_alive = 0
        self.read_timeout: float = 0.0
        self.aliases: dict[int, str] = {}
        self.max_packet_out: int | None = None  # the client's own Maximum Packet Size (MQTT 5)
        # QoS 1 messages in flight at once: AWS's 100, or fewer if an MQTT 5
        # client's Receive Maximum asks for fewer (MQTT 5 3.1.2.11.3).
        self.window = limits.OUTBOUND_IN_FLIGHT
        self.problems = True  # MQTT 5 Request Problem Information
        self.connected = self.ended = False
        self.connected_at = 0
        self.version_number = 0
        self.loop_task: asyncio.Task | None = None
        self.timers: list = []  # asyncio tasks and timer handles to cancel at the end

    @property
    def v5(self) -> bool:
        return self.version == MQTT5

    def problem(self, text: str) -> dict:
        """A reason string for an acknowledgement, unless the client asked for none
        (MQTT 5 3.1.2.11.7: Request Problem Information 0)."""
        return {"reason_string": text} if self.problems else {}

    def send(self, packet) -> bool:
        """Write the packet; False when it was not sent: the connection has
        ended, or the packet is bigger than the client's Maximum Packet Size
        (MQTT 5 3.1.2.11.4). Encoded once: the size is the encoded one."""
        if self.ended:
            return False
        data = encode(packet, self.version)
        if self.max_packet_out is not None and len(data) > self.max_packet_out:
            return False  # MQTT 5 3.1.2-25: a packet too big for the client is dropped, not sent
        self.writer.write(data)
        return True

    def unsent_bytes(self) -> int:
        """What the client has not yet read off its socket, as far as this process holds it."""
        transport = getattr(self.writer, "transport", None)
        while transport is not None and not hasattr(transport, "get_write_buffer_size"):
            transport = getattr(transport, "transport", None)  # the WebSocket adapter wraps a StreamWriter
        return transport.get_write_buffer_size() if transport is not None else 0
