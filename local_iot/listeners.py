"""The listeners (docs/local-iot.md#listeners): what a connection is, from its
first bytes, and who serves it.

- the MQTT port: MQTT over TCP;
- the TLS port, as AWS's port 443: ALPN `mqtt` is MQTT, anything else
  (`http/1.1`, or no ALPN) is HTTP/1.1;
- the HTTP port: HTTP/1.1 in the clear.

On HTTP, `GET /mqtt` with `Upgrade: websocket` becomes MQTT over a
WebSocket; every other request goes to the data plane.

AWS: https://docs.aws.amazon.com/iot/latest/developerguide/protocols.html
(protocols, ports and ALPN) and .../custom-auth.html (custom authentication
on port 443 needs ALPN `mqtt`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import weakref
from typing import Protocol

from local_iot import http1, websocket
from local_iot.gateway import Presented
from local_iot.http import Request, Response

log = logging.getLogger("local_iot.listeners")

ALPN_MQTT = "mqtt"
ALPN_HTTP = "http/1.1"
WEBSOCKET_PATH = "/mqtt"
# An idle keep-alive HTTP connection, or a request that stalls, is closed
# after this long (assumed; AWS does not document its own).
HTTP_IDLE_SECONDS = 60.0


class MqttServer(Protocol):
    """The broker as the listeners see it (local_iot.broker.Broker)."""

    async def serve(self, reader: asyncio.StreamReader, writer, *, presented: Presented) -> None: ...


class DataPlane(Protocol):
    """local_iot.dataplane.DataPlane as the listeners see it."""

    async def handle(self, request: Request) -> Response: ...


class Listeners:
    """The connection handlers of the three listeners, sharing one broker and
    one data plane."""

    def __init__(self, *, broker: MqttServer, dataplane: DataPlane | None = None,
                 tls_context: ssl.SSLContext | None = None):
        self.broker, self.dataplane = broker, dataplane
        self.tls_context = tls_context
        # The name each TLS connection asked for (SNI), keyed by its SSLObject:
        # the server side of Python's ssl only hands it to the SNI callback.
        self._server_names: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        if tls_context is not None:
            tls_context.sni_callback = self._remember_server_name
        self._connections: set[asyncio.Task] = set()

    @staticmethod
    def tls_alpn() -> list[str]:
        return [ALPN_MQTT, ALPN_HTTP]

    # --- starting -----------------------------------------------------------------------

    async def start(self, kind: str, host: str, port: int) -> asyncio.Server:
        """A listening server of `kind` ("mqtt", "tls" or "http") on host:port."""
        handler = {"mqtt": self.on_mqtt, "tls": self.on_tls, "http": self.on_http}[kind]
        if kind == "tls" and self.tls_context is None:
            raise ValueError("the TLS listener needs a TLS context")
        return await asyncio.start_server(self._tracked(handler), host, port,
                                          ssl=self.tls_context if kind == "tls" else None)

    async def close_connections(self) -> None:
        """End every connection still open (at shutdown)."""
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    def _tracked(self, handler):
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            self._connections.add(task)
            try:
                await handler(reader, writer)
            except asyncio.CancelledError:
                pass
            except (ConnectionError, OSError, ssl.SSLError):
                pass  # the client went away; nothing to answer
            except Exception:  # noqa: BLE001  (one connection's bug must not stop the listener)
                log.exception("connection handler failed")
            finally:
                self._connections.discard(task)
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        return run

    def _remember_server_name(self, ssl_object, server_name, context) -> None:
        if server_name:
            self._server_names[ssl_object] = server_name

    # --- per connection -----------------------------------------------------------------

    async def on_mqtt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        presented = Presented(protocol="mqtt", tls=False, **socket_ends(writer))
        await self.broker.serve(reader, writer, presented=presented)

    async def on_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        server_name = self._server_names.get(ssl_object) if ssl_object is not None else None
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == ALPN_MQTT:
            presented = Presented(protocol="mqtt", tls=True, server_name=server_name, **socket_ends(writer))
            await self.broker.serve(reader, writer, presented=presented)
        else:
            await self._serve_http(reader, writer, tls=True, server_name=server_name)

    async def on_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._serve_http(reader, writer, tls=False, server_name=None)

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool,
                          server_name: str | None) -> None:
        source_ip = socket_ends(writer)["source_ip"]
        while True:
            try:
                head = await asyncio.wait_for(http1.read_head(reader), HTTP_IDLE_SECONDS)
                if head is None:
                    return
                # tls.serverName is the TLS SNI only, as AWS sends it
                # (https://docs.aws.amazon.com/iot/latest/developerguide/custom-authorizer.html);
                # the Host header does not stand in for it.
                name = server_name
                if head.wants_websocket:
                    await self._serve_websocket(reader, writer, head, tls=tls, server_name=name)
                    return
                body = await asyncio.wait_for(http1.read_body(reader, writer, head), HTTP_IDLE_SECONDS)
            except TimeoutError:
                return
            except http1.BadRequest as bad:
                writer.write(http1.encode_response(http1.error_response(bad.status, bad.message), keep_alive=False))
                await writer.drain()
                return
            request = http1.request_from(head, body, tls=tls, server_name=name, source_ip=source_ip)
            response = await self._answer(request)
            writer.write(http1.encode_response(response, keep_alive=head.keep_alive,
                                               head_only=head.method == "HEAD"))
            await writer.drain()
            if not head.keep_alive:
                return

    async def _answer(self, request: Request) -> Response:
        if self.dataplane is None:
            return http1.error_response(404, "Not Found")
        try:
            return await self.dataplane.handle(request)
        except Exception:  # noqa: BLE001  (a data-plane bug is a 500, as AWS's InternalFailureException)
            log.exception("data plane failed on %s %s", request.method, request.path)
            return http1.error_response(500, "Internal failure")

    async def _serve_websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               head: http1.Head, *, tls: bool, server_name: str | None) -> None:
        if head.path != WEBSOCKET_PATH:
            writer.write(http1.encode_response(http1.error_response(404, "Not Found"), keep_alive=False))
            await writer.drain()
            return
        protocol = await websocket.handshake(head.raw, writer)
        if protocol is None:
            return
        presented = Presented(protocol="ws", tls=tls, server_name=server_name, headers=dict(head.headers),
                              query_string=head.query_string, **socket_ends(writer))
        stream, valve = websocket.message_stream()
        ws_writer = websocket.WebSocketWriter(protocol, writer)
        pumping = asyncio.create_task(websocket.pump(reader, protocol, ws_writer, stream, valve))
        try:
            await self.broker.serve(stream, ws_writer, presented=presented)
        finally:
            ws_writer.close()
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping


def socket_ends(writer: asyncio.StreamWriter) -> dict:
    """Presented's source and target address and port."""
    peer, own = writer.get_extra_info("peername"), writer.get_extra_info("sockname")
    peer = peer if isinstance(peer, tuple) and peer else ("", None)
    own = own if isinstance(own, tuple) and own else ("", None)
    return {"source_ip": peer[0], "source_port": peer[1], "target_ip": own[0], "target_port": own[1]}
