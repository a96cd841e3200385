"""Where a message goes once the broker has accepted it
(docs/local-iot.md#the-broker): the retained store, every session with a
matching subscription, and for each the QoS 1 flow control AWS applies.

iot:Receive is judged here, at every delivery, with the grant the
subscriber holds at that moment
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-actions.html).
A delivery never fails the publisher: a subscriber that cannot take its
message is dealt with on its own.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Callable

from local_iot import limits, reasons, topics
from local_iot.connection import Connection
from local_iot.mqtt import Subscription
from local_iot.sessions import Message, Session

log = logging.getLogger(__name__)


class Router:
    def __init__(self, *, time_scale: float, end: Callable[..., None]):
        self.scale = time_scale
        self.end = end  # the broker's: end(conn, reason, code, why=…)
        self.sessions: dict[str, Session] = {}
        self.retained: dict[str, Message] = {}
        self.max_retained = limits.MAX_RETAINED
        self.write_buffer_limit = limits.MAX_WRITE_BUFFER

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # --- accepting ------------------------------------------------------------------------

    def keep_retained(self, message: Message) -> None:
        """https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-retain:
        a retained message replaces the topic's; an empty payload clears it."""
        if not message.payload:
            self.retained.pop(message.topic, None)
        elif message.topic in self.retained or len(self.retained) < self.max_retained:
            self.retained[message.topic] = message
        else:
            log.warning("retained store full (%d topics): %s not kept", self.max_retained, message.topic)

    def route(self, message: Message, origin: Connection | None = None) -> None:
        for session in list(self.sessions.values()):
            own = origin is not None and session.owner is origin
            sub = session.best_subscription(message.topic, topics.matches, own_message=own)
            if sub is not None:
                self._deliver(session, message, sub)

    def _deliver(self, session: Session, message: Message, sub: Subscription) -> None:
        qos = min(message.qos, sub.qos)
        retain = sub.retain_as_published and message.retain
        if session.owner is None:
            if qos:  # a persistent session queues QoS 1 messages while its client is away
                session.pending.append((message, qos, retain))
            return
        try:
            self.send(session.owner, message, qos, retain)
        except Exception:  # noqa: BLE001  (one subscriber's failure must not reach the publisher)
            log.exception("delivery to %s failed", session.client_id)
            self.end(session.owner, reasons.SERVER_ERROR, reasons.UNSPECIFIED_ERROR, why="delivery failed")

    def retained_for(self, conn: Connection, subscriptions: list[Subscription]) -> None:
        """The retained messages new subscriptions match, after the SUBACK,
        each once at the highest QoS of the filters it matches."""
        if not subscriptions:
            return
        now = self.now()
        for message in list(self.retained.values()):
            if message.expired(now):
                continue
            granted = [sub.qos for sub in subscriptions if topics.matches(sub.filter, message.topic)]
            if granted:
                self.send(conn, message, min(message.qos, max(granted)), retain=True)

    # --- sending, with flow control -------------------------------------------------------

    def may_receive(self, conn: Connection, topic: str) -> bool:
        return conn.grant.can("iot:Receive", topic)

    def send(self, conn: Connection, message: Message, qos: int, retain: bool) -> None:
        """Send now, or for QoS 1 queue it while the client's in-flight window is
        full (AWS: at most 100 unacknowledged outbound messages per client)."""
        session = conn.session
        if qos and len(session.inflight) >= conn.window:
            session.pending.append((message, qos, retain))
            return
        self._transmit(conn, message, qos, retain)

    def _transmit(self, conn: Connection, message: Message, qos: int, retain: bool) -> None:
        if conn.ended or not self.may_receive(conn, message.topic):
            return
        packet = message.packet(qos, retain, self.now(), self.scale)
        if qos:
            packet.packet_id = conn.session.packet_id()  # taken only once it is in flight
        if not conn.send(packet):
            # MQTT 5 3.1.2-25: too big for the client is discarded "as if it had completed
            # sending": not sent, and not kept in flight to be sent again.
            return
        if qos:
            conn.session.inflight[packet.packet_id] = packet
        if conn.unsent_bytes() > self.write_buffer_limit:
            self.end(conn, reasons.THROTTLED, why="the client is not reading its messages")

    def acknowledged(self, conn: Connection, packet_id: int) -> None:
        """A PUBACK from the client: one more message fits in its window."""
        conn.session.inflight.pop(packet_id, None)
        self.drain(conn)

    def drain(self, conn: Connection) -> None:
        """Queued QoS 1 messages into the in-flight window, oldest first."""
        session, now = conn.session, self.now()
        while session.pending and len(session.inflight) < conn.window and not conn.ended:
            message, qos, retain = session.pending.popleft()
            if not message.expired(now):
                self._transmit(conn, message, qos, retain)

    def resume(self, conn: Connection) -> None:
        """A resumed session's QoS 1 messages: the unacknowledged again, with DUP,
        then those queued while the client was away (MQTT 5 4.4)."""
        session = conn.session
        for packet_id, packet in list(session.inflight.items()):
            if self.may_receive(conn, packet.topic):
                conn.send(dataclasses.replace(packet, dup=True))
            else:
                del session.inflight[packet_id]
        self.drain(conn)
