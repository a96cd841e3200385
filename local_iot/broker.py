"""The MQTT message broker (docs/local-iot.md#the-broker).

One `serve()` per client connection, over any byte stream the listeners
hand it (TCP, TLS, a WebSocket). The CONNECT goes to the gateway, which
plays the custom authorizer and answers with a `Grant`; every SUBSCRIBE
filter, PUBLISH and delivery is then judged by the connection's current
grant, the way AWS IoT Core's message broker judges them:
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html

This module reads packets and answers them. Where accepted messages go is
local_iot/router.py, lifecycle events and wills local_iot/presence.py, what
a CONNECT or SUBSCRIBE is answered with local_iot/negotiation.py, the grant's
refresh and expiry local_iot/grant_lifetime.py, the numbers
local_iot/limits.py (documented and assumed ones marked there), the codes
local_iot/reasons.py. Durations are AWS seconds multiplied by
`time_scale`, so tests can run an hour of session expiry in a second.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

from local_iot import grant_lifetime, limits, negotiation
from local_iot import reasons as r
from local_iot.connection import Connection, Writer
from local_iot.gateway import Gateway, Presented, Refused
from local_iot.mqtt import (
    MQTT5,
    MQTT311,
    ConnAck,
    Connect,
    Decoder,
    Disconnect,
    MalformedPacket,
    PingReq,
    PingResp,
    ProtocolError,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
)
from local_iot.presence import Clients, Wills, forwarded, lifecycle_message, now_ms
from local_iot.read_deadline import ReadDeadline
from local_iot.router import Router
from local_iot.sessions import Message, Session

log = logging.getLogger(__name__)

__all__ = ["Broker", "Writer"]


class Broker:
    def __init__(self, *, gateway: Gateway, region: str, account: str, shadows=None, time_scale: float = 1.0):
        self.gateway, self.region, self.account = gateway, region, account
        self.shadows, self.scale = shadows, time_scale
        # Guards of our own (limits.py); attributes so a test can make them small.
        self.connect_timeout, self.max_connections = limits.CONNECT_TIMEOUT, limits.MAX_CONNECTIONS
        self.router = Router(time_scale=time_scale, end=self._end)
        self.wills = Wills(time_scale=time_scale, accept=self._accept)
        self.clients = Clients()
        self._open: set[Connection] = set()
        self._live: dict[str, Connection] = {}

    # --- a connection ---------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: Writer, *, presented: Presented) -> None:
        """One MQTT connection over a byte stream, until it ends. `presented`
        carries the transport's part (protocol, tls, server name, headers,
        query string, source ip); the CONNECT packet fills in the rest."""
        conn = Connection(writer, presented)
        if len(self._open) >= self.max_connections:
            log.warning("connection refused: %d connections open", len(self._open))
            writer.close()
            return
        self._open.add(conn)
        conn.loop_task = asyncio.create_task(self._read_loop(conn, reader))
        try:
            await asyncio.wait({conn.loop_task})
            if not conn.loop_task.cancelled() and conn.loop_task.exception() is not None:
                log.error("connection %s failed", conn.id, exc_info=conn.loop_task.exception())
                self._end(conn, r.SERVER_ERROR, r.UNSPECIFIED_ERROR)
        finally:
            conn.loop_task.cancel()
            self._end(conn, r.CONNECTION_LOST)
            self._open.discard(conn)

    async def _read_loop(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        decoder = Decoder(max_packet_size=limits.MAXIMUM_PACKET_SIZE)
        loop = asyncio.get_running_loop()
        # The whole CONNECT must arrive within connect_timeout, however it trickles in.
        deadline = ReadDeadline(loop, loop.time() + self.connect_timeout, lambda: self._read_timed_out(conn))
        conn.timers.append(deadline)
        try:
            while not conn.ended:
                if conn.connected:
                    deadline.connected(conn.read_timeout)
                deadline.reading()
                data = await reader.read(65536)
                deadline.handling()
                if not data:
                    return self._end(conn, r.CONNECTION_LOST)
                for packet in decoder.feed(data):
                    await self._handle(conn, packet)
                    if conn.ended:
                        return
                await conn.writer.drain()
        except UnsupportedProtocol:
            conn.version = MQTT311
            conn.send(ConnAck(r.V3_BAD_VERSION))  # a 3.1.1 return code: the client may not speak MQTT 5
            self._end(conn, r.CLIENT_ERROR)
        except (MalformedPacket, ProtocolError) as error:
            # MQTT 5 4.13: a malformed packet or protocol error closes the connection,
            # with a DISCONNECT carrying the reason once CONNACK has been sent.
            conn.version = decoder.version or MQTT311
            log.info("connection %s: %s", conn.id, error)
            self._end(conn, r.CLIENT_ERROR, error.code, why=str(error))
        except ConnectionError:
            self._end(conn, r.CONNECTION_LOST)

    def _read_timed_out(self, conn: Connection) -> None:
        if not conn.connected:
            return self._end(conn, r.CLIENT_ERROR)
        # AWS closes after 1.5 × the keep-alive without a packet
        # (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits).
        self._end(conn, r.MQTT_KEEP_ALIVE_TIMEOUT, r.KEEP_ALIVE_TIMEOUT,
                  why=f"no packet for 1.5 × the keep-alive of {conn.keep_alive} s")

    async def _handle(self, conn: Connection, packet) -> None:
        if isinstance(packet, Connect):
            await self._on_connect(conn, packet)
        elif isinstance(packet, Publish):
            self._on_publish(conn, packet)
        elif isinstance(packet, PubAck):
            self.router.acknowledged(conn, packet.packet_id)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(conn, packet)
        elif isinstance(packet, Unsubscribe):
            codes = [r.SUCCESS if conn.session.subscriptions.pop(f, None) else r.NO_SUBSCRIPTION_EXISTED
                     for f in packet.filters]
            conn.send(UnsubAck(packet.packet_id, codes))
        elif isinstance(packet, PingReq):
            conn.send(PingResp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(conn, packet)

    # --- CONNECT --------------------------------------------------------------------

    async def _on_connect(self, conn: Connection, c: Connect) -> None:
        conn.version = c.version
        client_id = c.client_id
        assigned = None
        if not client_id:
            # MQTT lets the server assign an id (3.1.1 3.1.3-6, MQTT 5 3.1.3-6), except to a
            # 3.1.1 client asking to resume a session it could not name (3.1.3-8).
            if not c.version == MQTT5 and not c.clean_start:
                return self._refuse(conn, r.V3_IDENTIFIER_REJECTED, r.CLIENT_ID_NOT_VALID, "empty client id")
            client_id = assigned = f"local-{uuid.uuid4().hex}"
        if len(client_id.encode("utf-8")) > limits.MAX_CLIENT_ID_BYTES:
            return self._refuse(conn, r.V3_IDENTIFIER_REJECTED, r.CLIENT_ID_NOT_VALID,
                                f"client id over {limits.MAX_CLIENT_ID_BYTES} bytes")
        presented = dataclasses.replace(conn.presented, client_id=client_id, username=c.username,
                                        password=c.password)
        try:
            grant = await self.gateway.authorize(presented, connection_id=conn.id)
        except Refused as refusal:
            log.info("connection %s refused: %s", conn.id, refusal)
            return self._refuse(conn, r.V3_NOT_AUTHORIZED, r.NOT_AUTHORIZED, "the authorizer refused")
        if conn.ended:
            return
        if not grant.can("iot:Connect", client_id):
            return self._refuse(conn, r.V3_NOT_AUTHORIZED, r.NOT_AUTHORIZED, f"iot:Connect not allowed for {client_id}")

        # https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences:
        # a second connection with a client id in use is accepted, the first one closed.
        if client_id in self._live:
            self._end(self._live[client_id], r.DUPLICATE_CLIENTID, r.SESSION_TAKEN_OVER,
                      why="another connection with this client id")
        self.wills.reconnected(client_id, clean_start=c.clean_start)

        session, present = self._take_session(client_id, c)
        keep_alive = negotiation.keep_alive_for(c.keep_alive)
        conn.client_id, conn.grant, conn.session, conn.will = client_id, grant, session, c.will
        conn.keep_alive, conn.read_timeout = keep_alive, 1.5 * keep_alive * self.scale
        negotiation.take_client_options(conn, c)
        conn.connected, conn.connected_at = True, now_ms()
        session.owner = conn
        self._live[client_id] = conn
        conn.version_number = self.clients.next_version(client_id)
        conn.send(ConnAck(r.SUCCESS, present, negotiation.connack_properties(
            c, keep_alive=keep_alive, assigned=assigned, session_expiry=session.expiry)))
        self._lifecycle(conn, "connected")
        grant_lifetime.start(conn, presented, grant, gateway=self.gateway, end=self._end)
        self.router.resume(conn)

    def _refuse(self, conn: Connection, v3_code: int, v5_code: int, why: str) -> None:
        conn.send(ConnAck(v5_code, properties={"reason_string": why}) if conn.v5 else ConnAck(v3_code))
        self._end(conn, r.AUTH_ERROR)

    def _take_session(self, client_id: str, c: Connect) -> tuple[Session, bool]:
        """(the session, whether it was resumed: CONNACK's session present flag)."""
        sessions = self.router.sessions
        session = sessions.get(client_id)
        if session is not None and session.expiry_timer is not None:
            session.expiry_timer.cancel()
        present = session is not None and not c.clean_start
        if not present:
            session = sessions[client_id] = Session(client_id)
        session.expiry, session.clean, session.expiry_timer = negotiation.session_expiry_for(c), c.clean_start, None
        return session, present

    # --- PUBLISH --------------------------------------------------------------------

    def _on_publish(self, conn: Connection, p: Publish) -> None:
        try:
            topic = negotiation.publish_topic(conn, p)
        except negotiation.Malformed as error:
            return self._end(conn, r.CLIENT_ERROR, error.code, why=error.why)
        if not negotiation.may_publish(conn, topic, p.retain):
            # MQTT 3.1.1 has no way to say no but to disconnect, and AWS does
            # (lifecycle reason AUTH_ERROR). MQTT 5 answers a QoS 1 PUBLISH with
            # PUBACK 0x87 and keeps the connection; a QoS 0 one is dropped (assumed).
            if not conn.v5:
                return self._end(conn, r.AUTH_ERROR)
            if p.qos:
                conn.send(PubAck(p.packet_id, r.NOT_AUTHORIZED, conn.problem(f"not allowed to publish to {topic}")))
            return
        if p.qos:
            conn.send(PubAck(p.packet_id))
        self._accept(Message(topic, p.payload, p.qos, p.retain, forwarded(p.properties),
                             self._expires_at(p.properties)), origin=conn)

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """A message from inside AWS (the shadow service, the data plane's
        Publish, an HTTPS publish already authorized): routed to subscribers,
        each delivery checked against the subscriber's iot:Receive. A shadow
        request topic also reaches the shadow service, as it would on AWS."""
        self._accept(Message(topic, payload, min(qos, limits.MAXIMUM_QOS), retain))

    def _accept(self, message: Message, origin: Connection | None = None) -> None:
        if message.retain:
            self.router.keep_retained(message)
        self.router.route(message, origin)
        if self.shadows is not None:
            for topic, payload in self.shadows.on_publish(message.topic, message.payload):
                self.router.route(Message(topic, payload, qos=1))

    def _expires_at(self, properties: dict) -> float | None:
        interval = properties.get("message_expiry_interval")
        return None if interval is None else asyncio.get_running_loop().time() + interval * self.scale

    # --- SUBSCRIBE ------------------------------------------------------------------

    def _on_subscribe(self, conn: Connection, s: Subscribe) -> None:
        if "subscription_identifier" in s.properties:
            # AWS does not support subscription identifiers (CONNACK says so);
            # MQTT 5 3.8.2.1.2 asks for DISCONNECT 0xA1 when one is sent anyway.
            return self._end(conn, r.CLIENT_ERROR, r.SUBSCRIPTION_IDS_NOT_SUPPORTED,
                             why="subscription identifiers are not supported")
        subscriptions = conn.session.subscriptions
        codes, granted = [], []
        for index, sub in enumerate(s.subscriptions):
            code = negotiation.subscription_code(conn, sub, index)
            codes.append(code)
            if r.is_failure(code):
                continue
            existed = sub.filter in subscriptions
            subscriptions[sub.filter] = dataclasses.replace(sub, qos=code)
            if sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                granted.append(subscriptions[sub.filter])
        conn.send(SubAck(s.packet_id, codes))
        self.router.retained_for(conn, granted)  # each judged by iot:Receive

    # --- the end of a connection ----------------------------------------------------

    def _on_disconnect(self, conn: Connection, d: Disconnect) -> None:
        if conn.v5 and "session_expiry_interval" in d.properties:
            if conn.session.expiry == 0 and d.properties["session_expiry_interval"]:
                return self._end(conn, r.CLIENT_ERROR, ProtocolError.code)  # MQTT 5 3.14.2-2
            conn.session.expiry = min(d.properties["session_expiry_interval"], limits.PERSISTENT_SESSION_EXPIRY)
        # A DISCONNECT discards the will, unless MQTT 5's "with will message" asks otherwise.
        self._end(conn, r.CLIENT_INITIATED_DISCONNECT, client_initiated=True, will=d.code == r.DISCONNECT_WITH_WILL)

    def _end(self, conn: Connection, reason: str, code: int | None = None, *,
             client_initiated: bool = False, will: bool = True, why: str = "") -> None:
        """Close the connection once, for this reason; the first reason wins. An
        MQTT 5 client gets a DISCONNECT with `code` and `why` as its reason string
        (our wording: AWS's strings are not documented)."""
        if conn.ended:
            return
        if code is not None and conn.v5 and conn.connected:
            conn.send(Disconnect(code, {"reason_string": why} if why else {}))
        conn.ended = True
        conn.writer.close()
        for timer in conn.timers:
            timer.cancel()
        if conn.loop_task is not None and conn.loop_task is not asyncio.current_task():
            conn.loop_task.cancel()
        if not conn.connected:
            return
        if self._live.get(conn.client_id) is conn:
            del self._live[conn.client_id]
        session = conn.session
        if session.owner is conn:
            session.owner = None
            if session.expiry <= 0:
                self.router.sessions.pop(conn.client_id, None)
            else:
                session.expiry_timer = asyncio.get_running_loop().call_later(
                    session.expiry * self.scale, self._expire, session)
        if will and conn.will is not None:
            self.wills.schedule(conn, self._expires_at(conn.will.properties))
        self.clients.disconnected(conn.client_id, {
            "clientId": conn.client_id, "connected": False, "cleanSession": session.clean,
            "disconnectedSince": now_ms(), "disconnectReason": reason})
        self._lifecycle(conn, "disconnected", clientInitiatedDisconnect=client_initiated, disconnectReason=reason)

    def _expire(self, session: Session) -> None:
        if self.router.sessions.get(session.client_id) is session and session.owner is None:
            del self.router.sessions[session.client_id]

    def _lifecycle(self, conn: Connection, event: str, **extra) -> None:
        message = lifecycle_message(conn, event, **extra)
        if message is not None:
            self.router.route(message)

    # --- the data plane's view ------------------------------------------------------

    async def delete_connection(self, client_id: str, *, clean_session: bool = False,
                                prevent_will: bool = False) -> bool:
        """iot-data DeleteConnection. False: no such live connection."""
        conn = self._live.get(client_id)
        if conn is None:
            return False
        if clean_session:
            conn.session.expiry = 0
        self._end(conn, r.API_INITIATED_DISCONNECT, r.ADMINISTRATIVE_ACTION, will=not prevent_will,
                  why="DeleteConnection")
        return True

    def get_connection(self, client_id: str) -> dict | None:
        """iot-data GetConnection's body, or None when no such client is known.
        https://docs.aws.amazon.com/iot/latest/apireference/API_iotdata_GetConnection.html
        Timestamps are epoch milliseconds (assumed); sessionExpiry is the
        session expiry interval in seconds (assumed)."""
        conn = self._live.get(client_id)
        if conn is None:
            return self.clients.last_disconnect(client_id)
        presented = conn.presented
        return {"clientId": client_id, "connected": True, "cleanSession": conn.session.clean,
                "keepAliveDuration": conn.keep_alive, "connectedSince": conn.connected_at,
                "sessionExpiry": int(conn.session.expiry),
                # The data plane leaves these out unless asked (includeSocketInformation).
                "sourceIp": presented.source_ip, "sourcePort": presented.source_port,
                "targetIp": presented.target_ip, "targetPort": presented.target_port}

    async def close(self) -> None:
        for conn in list(self._live.values()):
            self._end(conn, r.SERVER_INITIATED_DISCONNECT, r.SERVER_SHUTTING_DOWN)
        self.wills.close()
        for session in self.router.sessions.values():
            if session.expiry_timer is not None:
                session.expiry_timer.cancel()
