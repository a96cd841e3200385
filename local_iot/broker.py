"""The MQTT message broker (docs/local-iot.md#the-broker).

SKELETON: the names and signatures below are the contract between the
broker, the listeners, the data plane and the shadow service.
"""
from __future__ import annotations

import asyncio
from typing import Protocol

from local_iot.gateway import Gateway, Presented


class Writer(Protocol):
    """What the broker writes a connection's bytes to: asyncio.StreamWriter,
    or the WebSocket adapter's equivalent."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class Broker:
    def __init__(self, *, gateway: Gateway, region: str, account: str, shadows=None, time_scale: float = 1.0):
        raise NotImplementedError

    async def serve(self, reader: asyncio.StreamReader, writer: Writer, *, presented: Presented) -> None:
        """One MQTT connection over a byte stream, until it ends. `presented`
        carries the transport's part (protocol, tls, server name, headers,
        query string, source ip); the CONNECT packet fills in the rest."""
        raise NotImplementedError

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """A message from inside AWS (the shadow service, the data plane's
        Publish, an HTTPS publish already authorized): routed to subscribers,
        each delivery checked against the subscriber's iot:Receive."""
        raise NotImplementedError

    async def delete_connection(self, client_id: str, *, clean_session: bool = False,
                                prevent_will: bool = False) -> bool:
        """iot-data DeleteConnection. False: no such live connection."""
        raise NotImplementedError

    def get_connection(self, client_id: str) -> dict | None:
        """iot-data GetConnection's body, or None when no such client is known."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
