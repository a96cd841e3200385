"""MQTT over WebSockets (docs/local-iot.md#listeners): the upgrade of
`GET /mqtt` with subprotocol `mqtt`, then the connection's binary messages
as a byte stream the broker reads like a TCP one.

The handshake and framing are the `websockets` library's sans-I/O
ServerProtocol; this module only moves bytes between it and the socket.
AWS: https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html
(MQTT over WSS, path /mqtt, subprotocol mqtt).

MQTT travels in binary frames only: "If any other type of data frame is
received the recipient MUST close the Network Connection" (MQTT 5 section
6.0, [MQTT-6.0.0-1]; MQTT 3.1.1 section 6.0 alike), so a TEXT frame closes.
Reading pauses while the broker has more than READ_AHEAD bytes unread.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.exceptions import InvalidState
from websockets.frames import Opcode
from websockets.server import ServerProtocol

log = logging.getLogger("local_iot.websocket")
# The library logs the upgrade request line and headers at DEBUG through this
# logger, and they carry the authorizer's token and signature: never log them,
# whatever level the application configures.
log.setLevel(logging.INFO)

SUBPROTOCOL = "mqtt"
# A frame may carry a whole 128 KB publish and its MQTT header.
MAX_MESSAGE = 256 * 1024
_DATA = (Opcode.BINARY, Opcode.CONT)
READ_AHEAD = 256 * 1024  # assumed: bytes received but not yet read by the broker before reading pauses
_UNSUPPORTED_DATA = 1003  # RFC 6455 7.4.1 close code


class WebSocketWriter:
    """The broker's Writer over a WebSocket: each write is one binary message."""

    def __init__(self, protocol: ServerProtocol, transport: asyncio.StreamWriter):
        self.protocol, self.transport = protocol, transport
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._closed or self.transport.is_closing():
            return
        try:
            self.protocol.send_binary(bytes(data))
        except InvalidState:  # the client has started closing
            return
        self.flush()

    async def drain(self) -> None:
        await self.transport.drain()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(InvalidState):
            self.protocol.send_close(1000)
        self.flush()
        self.transport.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.transport.wait_closed()

    def is_closing(self) -> bool:
        return self._closed or self.transport.is_closing()

    def get_extra_info(self, name: str, default=None):
        return self.transport.get_extra_info(name, default)

    def flush(self) -> None:
        """Send what the protocol has queued (messages, pongs, the close
        handshake); an empty chunk means the protocol is done with the socket."""
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()


async def handshake(raw_head: bytes, transport: asyncio.StreamWriter) -> ServerProtocol | None:
    """Answer the upgrade request `raw_head`. The protocol when the connection
    is now a WebSocket; None when the request was refused (and answered)."""
    protocol = ServerProtocol(subprotocols=[SUBPROTOCOL], max_size=MAX_MESSAGE, logger=log)
    protocol.receive_data(raw_head)
    requests = protocol.events_received()
    if not requests:
        # The head was complete, so the library found it malformed and queued a 400.
        _send(protocol, transport)
        return None
    response = protocol.accept(requests[0])
    protocol.send_response(response)
    _send(protocol, transport)
    await transport.drain()
    return protocol if response.status_code == 101 else None


def _send(protocol: ServerProtocol, transport: asyncio.StreamWriter) -> None:
    for chunk in protocol.data_to_send():
        if chunk:
            transport.write(chunk)


class _Valve:
    """The transport a StreamReader pauses and resumes (asyncio.StreamReader
    does so above twice its limit): here it only tells pump() when to read."""

    def __init__(self):
        self.open = asyncio.Event()
        self.open.set()

    def pause_reading(self) -> None:
        self.open.clear()

    def resume_reading(self) -> None:
        self.open.set()


def message_stream() -> tuple[asyncio.StreamReader, _Valve]:
    """The stream the broker reads a WebSocket's bytes from, and its valve."""
    stream, valve = asyncio.StreamReader(limit=READ_AHEAD // 2), _Valve()
    stream.set_transport(valve)
    return stream, valve


async def pump(reader: asyncio.StreamReader, protocol: ServerProtocol, writer: WebSocketWriter,
               stream: asyncio.StreamReader, valve: _Valve) -> None:
    """Feed the socket's bytes to the protocol and the messages' bytes to
    `stream`, until either side closes. MQTT packets may span messages and a
    message may hold several (MQTT 5, 6.0), so bytes are all that matter."""
    try:
        while True:
            await valve.open.wait()
            data = await reader.read(65536)
            if data:
                protocol.receive_data(data)
            else:
                protocol.receive_eof()
            for frame in protocol.events_received():
                if frame.opcode in _DATA:
                    stream.feed_data(frame.data)
                elif frame.opcode == Opcode.TEXT:
                    log.info("a TEXT frame: closing (MQTT 5 6.0)")
                    protocol.fail(_UNSUPPORTED_DATA, "MQTT needs binary frames")
                    writer.flush()
                    return
            writer.flush()  # pongs and the answer to a close
            if not data or protocol.close_expected() or protocol.state.name == "CLOSED":
                break
    except (ConnectionError, OSError):
        pass
    finally:
        stream.feed_eof()
