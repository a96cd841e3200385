"""What the broker says about clients coming and going
(docs/local-iot.md#the-broker): lifecycle events, wills, and the last
disconnect of each client id for GetConnection.

Lifecycle events: https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html
Wills: MQTT 3.1.1 3.1.2.5 and MQTT 5 3.1.3.2 (will delay).
"""
from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Callable

from local_iot import limits, topics
from local_iot.connection import Connection
from local_iot.sessions import FORWARDED, Message


def forwarded(properties: dict) -> dict:
    return {name: properties[name] for name in FORWARDED if name in properties}


def now_ms() -> int:
    return int(time.time() * 1000)


def lifecycle_message(conn: Connection, event: str, **extra) -> Message | None:
    """The `connected` or `disconnected` event of this connection, or None:
    "Client IDs that contain # or + do not receive lifecycle events"."""
    if "+" in conn.client_id or "#" in conn.client_id:
        return None
    body = {"clientId": conn.client_id, "timestamp": now_ms(), "eventType": event,
            "sessionIdentifier": conn.id, "principalIdentifier": conn.grant.principal_id,
            "ipAddress": conn.presented.source_ip, "versionNumber": conn.version_number, **extra}
    return Message(f"$aws/events/presence/{event}/{conn.client_id}", json.dumps(body).encode(), qos=1)


class Clients:
    """Per client id, across connections: the lifecycle versionNumber and the
    last disconnect. Only the most recently seen client ids are remembered
    (limits.REMEMBERED_CLIENTS, assumed), so many one-off ids cannot grow it."""

    def __init__(self):
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._history: OrderedDict[str, dict] = OrderedDict()

    def next_version(self, client_id: str) -> int:
        version = self._versions.pop(client_id, 0) + 1
        _remember(self._versions, client_id, version)
        return version

    def disconnected(self, client_id: str, record: dict) -> None:
        self._history.pop(client_id, None)
        _remember(self._history, client_id, record)

    def last_disconnect(self, client_id: str) -> dict | None:
        return self._history.get(client_id)


def _remember(store: OrderedDict, key: str, value) -> None:
    store[key] = value
    while len(store) > limits.REMEMBERED_CLIENTS:
        store.popitem(last=False)


class Wills:
    """Wills waiting out their MQTT 5 will delay, by client id."""

    def __init__(self, *, time_scale: float, accept: Callable[[Message], None]):
        self.scale, self.accept = time_scale, accept
        self._waiting: dict[str, tuple[asyncio.TimerHandle, Callable[[], None]]] = {}

    def schedule(self, conn: Connection, expires_at: float | None) -> None:
        """Publish the connection's will now, or after its will delay (capped by
        the session's expiry). The will is a PUBLISH by the client: it needs the
        client's iot:Publish (and iot:RetainPublish) on the will topic, judged
        when it is published (assumed: AWS documents the permission, not when)."""
        will, grant, client_id = conn.will, conn.grant, conn.client_id
        delay = min(will.properties.get("will_delay_interval", 0), conn.session.expiry)
        message = Message(will.topic, will.payload, min(will.qos, limits.MAXIMUM_QOS), will.retain,
                          forwarded(will.properties), expires_at)

        def publish() -> None:
            self._waiting.pop(client_id, None)
            if topics.name_problem(will.topic) or not topics.client_may_publish(will.topic):
                return
            if len(will.payload) > limits.MAX_PAYLOAD:
                return
            if not grant.can("iot:Publish", will.topic) or (will.retain and not grant.can(
                    "iot:RetainPublish", will.topic)):
                return
            self.accept(message)

        if delay > 0:
            handle = asyncio.get_running_loop().call_later(delay * self.scale, publish)
            self._waiting[client_id] = (handle, publish)
        else:
            publish()

    def reconnected(self, client_id: str, *, clean_start: bool) -> None:
        """MQTT 5 3.1.3.2.2: resuming the session before the delay cancels the will;
        a clean start ends the session, which publishes it now."""
        waiting = self._waiting.pop(client_id, None)
        if waiting is not None:
            handle, publish = waiting
            handle.cancel()
            if clean_start:
                publish()

    def close(self) -> None:
        for handle, _ in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
