"""The MQTT message broker (docs/local-iot.md#the-broker).

One `serve()` per client connection, over any byte stream the listeners
hand it (TCP, TLS, a WebSocket). The CONNECT goes to the gateway, which
plays the custom authorizer and answers with a `Grant`; every SUBSCRIBE
filter, PUBLISH and delivery is then judged by the connection's current
grant, the way AWS IoT Core's message broker judges them:
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html

Denials, limits and the numbers below are AWS's; each is cited where it is
used, and docs/local-iot.md#the-broker lists which are documented and which
are assumed. Durations are AWS seconds multiplied by `time_scale`, so tests
can run an hour of session expiry in a second.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
import uuid
from typing import Protocol

from local_iot import topics
from local_iot.gateway import Gateway, Grant, Presented, Refused
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
    Subscription,
    UnsubAck,
    Unsubscribe,
    UnsupportedProtocol,
    encode,
)
from local_iot.sessions import FORWARDED, Message, Session

log = logging.getLogger(__name__)

# https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits
MAX_PAYLOAD = 128 * 1024
MAX_CLIENT_ID_BYTES = 128
KEEP_ALIVE_RANGE = (30, 1200)  # a requested 0 gets the maximum (assumed: AWS documents the range only)
PERSISTENT_SESSION_EXPIRY = 3600  # the default quota, one hour
# https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt5 (CONNACK properties AWS sends)
MAXIMUM_PACKET_SIZE = 149_504  # 146 KB
RECEIVE_MAXIMUM = 100
TOPIC_ALIAS_MAXIMUM = 8
CONNECT_TIMEOUT = 10  # assumed: how long a silent new connection is kept before its CONNECT

# disconnectReason values: https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html
AUTH_ERROR = "AUTH_ERROR"
CLIENT_INITIATED_DISCONNECT = "CLIENT_INITIATED_DISCONNECT"
CLIENT_ERROR = "CLIENT_ERROR"
CONNECTION_LOST = "CONNECTION_LOST"
DUPLICATE_CLIENTID = "DUPLICATE_CLIENTID"
MQTT_KEEP_ALIVE_TIMEOUT = "MQTT_KEEP_ALIVE_TIMEOUT"
SERVER_ERROR = "SERVER_ERROR"
SERVER_INITIATED_DISCONNECT = "SERVER_INITIATED_DISCONNECT"
API_INITIATED_DISCONNECT = "API_INITIATED_DISCONNECT"
CUSTOMAUTH_TTL_EXPIRATION = "CUSTOMAUTH_TTL_EXPIRATION"

# MQTT 5 reason codes (MQTT 5 section 2.4) the broker sends.
NOT_AUTHORIZED, CLIENT_ID_NOT_VALID, UNSUPPORTED_VERSION = 0x87, 0x85, 0x84
KEEP_ALIVE_TIMEOUT, SESSION_TAKEN_OVER, SERVER_SHUTTING_DOWN = 0x8D, 0x8E, 0x8B
TOPIC_FILTER_INVALID, TOPIC_NAME_INVALID, PACKET_TOO_LARGE = 0x8F, 0x90, 0x95
TOPIC_ALIAS_INVALID, QOS_NOT_SUPPORTED, ADMINISTRATIVE_ACTION = 0x94, 0x9B, 0x98
SHARED_NOT_SUPPORTED, MAXIMUM_CONNECT_TIME, SUBSCRIPTION_IDS_NOT_SUPPORTED = 0x9E, 0xA0, 0xA1
NO_SUBSCRIPTION_EXISTED, UNSPECIFIED_ERROR = 0x11, 0x80
# MQTT 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3) and the SUBACK failure code.
V3_BAD_VERSION, V3_IDENTIFIER_REJECTED, V3_NOT_AUTHORIZED, V3_SUBACK_FAILURE = 0x01, 0x02, 0x05, 0x80


class Writer(Protocol):
    """What the broker writes a connection's bytes to: asyncio.StreamWriter,
    or the WebSocket adapter's equivalent."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...


class _Connection:
    """One client connection while it lasts."""

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

    def send(self, packet) -> None:
        if self.ended:
            return
        data = encode(packet, self.version)
        if self.max_packet_out is not None and len(data) > self.max_packet_out:
            return  # MQTT 5 3.1.2-25: a packet too big for the client is dropped, not sent
        self.writer.write(data)


class Broker:
    def __init__(self, *, gateway: Gateway, region: str, account: str, shadows=None, time_scale: float = 1.0):
        self.gateway, self.region, self.account = gateway, region, account
        self.shadows, self.scale = shadows, time_scale
        self._live: dict[str, _Connection] = {}
        self._sessions: dict[str, Session] = {}
        self._retained: dict[str, Message] = {}
        self._wills: dict[str, tuple] = {}  # MQTT 5 delayed wills by client id: (timer, publish it)
        self._versions: dict[str, int] = {}  # lifecycle versionNumber, by client id
        self._history: dict[str, dict] = {}  # the last disconnect, for GetConnection

    # --- a connection ---------------------------------------------------------------

    async def serve(self, reader: asyncio.StreamReader, writer: Writer, *, presented: Presented) -> None:
        """One MQTT connection over a byte stream, until it ends. `presented`
        carries the transport's part (protocol, tls, server name, headers,
        query string, source ip); the CONNECT packet fills in the rest."""
        conn = _Connection(writer, presented)
        conn.loop_task = asyncio.create_task(self._read_loop(conn, reader))
        try:
            await asyncio.wait({conn.loop_task})
            if not conn.loop_task.cancelled() and conn.loop_task.exception() is not None:
                log.error("connection %s failed", conn.id, exc_info=conn.loop_task.exception())
                self._end(conn, SERVER_ERROR, UNSPECIFIED_ERROR)
        finally:
            conn.loop_task.cancel()
            self._end(conn, CONNECTION_LOST)

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        decoder = Decoder(max_packet_size=MAXIMUM_PACKET_SIZE)
        conn.read_timeout = CONNECT_TIMEOUT  # not scaled: it guards the broker, it is no AWS behaviour to test
        try:
            while not conn.ended:
                try:
                    data = await asyncio.wait_for(reader.read(65536), conn.read_timeout)
                except TimeoutError:
                    # AWS closes after 1.5 × the keep-alive without a packet
                    # (https://docs.aws.amazon.com/general/latest/gr/iot-core.html#message-broker-limits).
                    return self._end(conn, MQTT_KEEP_ALIVE_TIMEOUT, KEEP_ALIVE_TIMEOUT,
                                     why=f"no packet for 1.5 × the keep-alive of {conn.keep_alive} s")
                if not data:
                    return self._end(conn, CONNECTION_LOST)
                for packet in decoder.feed(data):
                    await self._handle(conn, packet)
                    if conn.ended:
                        return
                await conn.writer.drain()
        except UnsupportedProtocol:
            conn.version = MQTT311
            conn.send(ConnAck(V3_BAD_VERSION))  # a 3.1.1 return code: the client may not speak MQTT 5
            self._end(conn, CLIENT_ERROR)
        except (MalformedPacket, ProtocolError) as error:
            # MQTT 5 4.13: a malformed packet or protocol error closes the connection,
            # with a DISCONNECT carrying the reason once CONNACK has been sent.
            conn.version = decoder.version or MQTT311
            log.info("connection %s: %s", conn.id, error)
            self._end(conn, CLIENT_ERROR, error.code, why=str(error))
        except ConnectionError:
            self._end(conn, CONNECTION_LOST)

    async def _handle(self, conn: _Connection, packet) -> None:
        if isinstance(packet, Connect):
            await self._on_connect(conn, packet)
        elif isinstance(packet, Publish):
            await self._on_publish(conn, packet)
        elif isinstance(packet, PubAck):
            conn.session.inflight.pop(packet.packet_id, None)
        elif isinstance(packet, Subscribe):
            self._on_subscribe(conn, packet)
        elif isinstance(packet, Unsubscribe):
            codes = [0 if conn.session.subscriptions.pop(f, None) else NO_SUBSCRIPTION_EXISTED
                     for f in packet.filters]
            conn.send(UnsubAck(packet.packet_id, codes))
        elif isinstance(packet, PingReq):
            conn.send(PingResp())
        elif isinstance(packet, Disconnect):
            self._on_disconnect(conn, packet)

    # --- CONNECT --------------------------------------------------------------------

    async def _on_connect(self, conn: _Connection, c: Connect) -> None:
        conn.version = c.version
        client_id = c.client_id
        assigned = None
        if not client_id:
            # MQTT lets the server assign an id (3.1.1 3.1.3-6, MQTT 5 3.1.3-6), except to a
            # 3.1.1 client asking to resume a session it could not name (3.1.3-8).
            if not c.version == MQTT5 and not c.clean_start:
                return self._refuse(conn, V3_IDENTIFIER_REJECTED, CLIENT_ID_NOT_VALID, "empty client id")
            client_id = assigned = f"local-{uuid.uuid4().hex}"
        if len(client_id.encode("utf-8")) > MAX_CLIENT_ID_BYTES:
            return self._refuse(conn, V3_IDENTIFIER_REJECTED, CLIENT_ID_NOT_VALID,
                                f"client id over {MAX_CLIENT_ID_BYTES} bytes")
        presented = dataclasses.replace(conn.presented, client_id=client_id, username=c.username,
                                        password=c.password)
        try:
            grant = await self.gateway.authorize(presented, connection_id=conn.id)
        except Refused as refusal:
            log.info("connection %s refused: %s", conn.id, refusal)
            return self._refuse(conn, V3_NOT_AUTHORIZED, NOT_AUTHORIZED, "the authorizer refused")
        if conn.ended:
            return
        if not grant.can("iot:Connect", client_id):
            return self._refuse(conn, V3_NOT_AUTHORIZED, NOT_AUTHORIZED, f"iot:Connect not allowed for {client_id}")

        # https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences:
        # a second connection with a client id in use is accepted, the first one closed.
        if client_id in self._live:
            self._end(self._live[client_id], DUPLICATE_CLIENTID, SESSION_TAKEN_OVER,
                      why="another connection with this client id")
        delayed_will = self._wills.pop(client_id, None)
        if delayed_will is not None:
            # MQTT 5 3.1.3.2.2: resuming the session before the delay cancels the will;
            # a clean start ends the session, which publishes it now.
            handle, publish_will = delayed_will
            handle.cancel()
            if c.clean_start:
                publish_will()

        session, present = self._take_session(client_id, c)
        requested = c.keep_alive
        keep_alive = KEEP_ALIVE_RANGE[1] if requested == 0 else min(max(requested, KEEP_ALIVE_RANGE[0]),
                                                                      KEEP_ALIVE_RANGE[1])
        conn.client_id, conn.grant, conn.session, conn.will = client_id, grant, session, c.will
        conn.keep_alive, conn.read_timeout = keep_alive, 1.5 * keep_alive * self.scale
        conn.max_packet_out = c.properties.get("maximum_packet_size")
        conn.problems = c.properties.get("request_problem_information", 1) == 1
        conn.connected, conn.connected_at = True, _now_ms()
        session.owner = conn
        self._live[client_id] = conn
        self._versions[client_id] = conn.version_number = self._versions.get(client_id, 0) + 1

        properties = {}
        if conn.v5:
            properties = {"receive_maximum": RECEIVE_MAXIMUM, "maximum_qos": 1, "retain_available": 1,
                          "maximum_packet_size": MAXIMUM_PACKET_SIZE, "topic_alias_maximum": TOPIC_ALIAS_MAXIMUM,
                          "wildcard_subscription_available": 1, "subscription_identifier_available": 0,
                          "shared_subscription_available": 0}
            if keep_alive != requested:
                properties["server_keep_alive"] = keep_alive
            if assigned:
                properties["assigned_client_identifier"] = assigned
            if c.properties.get("session_expiry_interval", 0) > session.expiry:
                properties["session_expiry_interval"] = int(session.expiry)
        conn.send(ConnAck(0, present, properties))
        self._lifecycle(conn, "connected")
        self._start_timers(conn, presented, grant)
        self._resume(conn, session)

    def _refuse(self, conn: _Connection, v3_code: int, v5_code: int, why: str) -> None:
        if conn.v5:
            conn.send(ConnAck(v5_code, properties={"reason_string": why}))
        else:
            conn.send(ConnAck(v3_code))
        self._end(conn, AUTH_ERROR)

    def _take_session(self, client_id: str, c: Connect) -> tuple[Session, bool]:
        """(the session, whether it was resumed: CONNACK's session present flag)."""
        if c.version == MQTT5:
            expiry = min(c.properties.get("session_expiry_interval", 0), PERSISTENT_SESSION_EXPIRY)
        else:
            expiry = 0 if c.clean_start else PERSISTENT_SESSION_EXPIRY
        session = self._sessions.get(client_id)
        if session is not None and session.expiry_timer is not None:
            session.expiry_timer.cancel()
        present = session is not None and not c.clean_start
        if not present:
            session = self._sessions[client_id] = Session(client_id)
        session.expiry, session.clean, session.expiry_timer = expiry, c.clean_start, None
        return session, present

    def _resume(self, conn: _Connection, session: Session) -> None:
        """A resumed session's QoS 1 messages: the unacknowledged again, with DUP,
        then those queued while the client was away (MQTT 5 4.4)."""
        now = asyncio.get_running_loop().time()
        for packet_id, packet in list(session.inflight.items()):
            if conn.grant.can("iot:Receive", packet.topic):
                conn.send(dataclasses.replace(packet, dup=True))
            else:
                del session.inflight[packet_id]
        while session.pending:
            message, qos, retain = session.pending.popleft()
            if not message.expired(now):
                self._send(conn, session, message, qos, retain)

    def _start_timers(self, conn: _Connection, presented: Presented, grant: Grant) -> None:
        loop = asyncio.get_running_loop()
        # The gateway caches the policy for refreshAfterInSeconds, then asks again; the
        # connection ends at the first answer's disconnectAfterInSeconds
        # (https://docs.aws.amazon.com/iot/latest/developerguide/config-custom-auth.html).
        conn.timers.append(loop.call_later(grant.disconnect_in, functools.partial(
            self._end, conn, CUSTOMAUTH_TTL_EXPIRATION, MAXIMUM_CONNECT_TIME, why="disconnectAfterInSeconds reached")))
        conn.timers.append(asyncio.create_task(self._refresh(conn, presented, grant.refresh_in)))

    async def _refresh(self, conn: _Connection, presented: Presented, wait: float) -> None:
        while not conn.ended:
            await asyncio.sleep(wait)
            try:
                grant = await self.gateway.authorize(presented, connection_id=conn.id)
            except Refused as refusal:
                log.info("connection %s: refresh refused: %s", conn.id, refusal)
                return self._end(conn, AUTH_ERROR, NOT_AUTHORIZED, why="the authorizer refused on refresh")
            if not grant.can("iot:Connect", conn.client_id):
                return self._end(conn, AUTH_ERROR, NOT_AUTHORIZED, why="iot:Connect no longer allowed")
            conn.grant, wait = grant, grant.refresh_in

    # --- PUBLISH --------------------------------------------------------------------

    async def _on_publish(self, conn: _Connection, p: Publish) -> None:
        topic = p.topic
        alias = p.properties.get("topic_alias")
        if alias is not None:
            if not 1 <= alias <= TOPIC_ALIAS_MAXIMUM:
                return self._end(conn, CLIENT_ERROR, TOPIC_ALIAS_INVALID, why=f"topic alias {alias}")
            if topic:
                conn.aliases[alias] = topic
            elif alias in conn.aliases:
                topic = conn.aliases[alias]
            else:
                return self._end(conn, CLIENT_ERROR, ProtocolError.code, why=f"unknown topic alias {alias}")
        if p.qos == 2:
            # AWS does not support QoS 2 (https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-qos);
            # closing the connection is assumed. MQTT 5 3.3.1-4 names the reason code.
            return self._end(conn, CLIENT_ERROR, QOS_NOT_SUPPORTED, why="AWS IoT does not support QoS 2")
        problem = topics.name_problem(topic)
        if problem:
            return self._end(conn, CLIENT_ERROR, TOPIC_NAME_INVALID, why=f"topic name: {problem}")
        if len(p.payload) > MAX_PAYLOAD:
            # CLIENT_ERROR, "Message payload exceeds size limit for message type"
            # (https://docs.aws.amazon.com/iot/latest/developerguide/topicdata.html).
            return self._end(conn, CLIENT_ERROR, PACKET_TOO_LARGE, why=f"payload over {MAX_PAYLOAD} bytes")
        allowed = conn.grant.can("iot:Publish", topic) and (
            not p.retain or conn.grant.can("iot:RetainPublish", topic))
        if not allowed:
            # MQTT 3.1.1 has no way to say no but to disconnect, and AWS does
            # (lifecycle reason AUTH_ERROR). MQTT 5 answers a QoS 1 PUBLISH with
            # PUBACK 0x87 and keeps the connection; a QoS 0 one is dropped (assumed).
            if not conn.v5:
                return self._end(conn, AUTH_ERROR)
            if p.qos:
                conn.send(PubAck(p.packet_id, NOT_AUTHORIZED, conn.problem(f"not allowed to publish to {topic}")))
            return
        if p.qos:
            conn.send(PubAck(p.packet_id))
        self._accept(Message(topic, p.payload, p.qos, p.retain, _forwarded(p.properties),
                                   self._expires_at(p.properties)), origin=conn)

    async def publish(self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False) -> None:
        """A message from inside AWS (the shadow service, the data plane's
        Publish, an HTTPS publish already authorized): routed to subscribers,
        each delivery checked against the subscriber's iot:Receive. A shadow
        request topic also reaches the shadow service, as it would on AWS."""
        self._accept(Message(topic, payload, min(qos, 1), retain))

    def _accept(self, message: Message, origin: _Connection | None = None) -> None:
        if message.retain:
            # https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-retain:
            # a retained message with an empty payload clears the topic's.
            if message.payload:
                self._retained[message.topic] = message
            else:
                self._retained.pop(message.topic, None)
        self._route(message, origin)
        if self.shadows is not None:
            for topic, payload in self.shadows.on_publish(message.topic, message.payload):
                self._route(Message(topic, payload, qos=1))

    def _route(self, message: Message, origin: _Connection | None = None) -> None:
        for session in list(self._sessions.values()):
            sub = session.best_subscription(message.topic, topics.matches)
            if sub is None or (sub.no_local and origin is not None and session.owner is origin):
                continue
            self._deliver(session, message, sub, retain=sub.retain_as_published and message.retain)

    def _deliver(self, session: Session, message: Message, sub: Subscription, *, retain: bool) -> None:
        qos = min(message.qos, sub.qos)
        if session.owner is None:
            if qos:  # a persistent session queues QoS 1 messages while its client is away
                session.pending.append((message, qos, retain))
            return
        self._send(session.owner, session, message, qos, retain)

    def _send(self, conn: _Connection, session: Session, message: Message, qos: int, retain: bool) -> None:
        # iot:Receive is judged at every delivery, with the grant the connection holds now
        # (https://docs.aws.amazon.com/iot/latest/developerguide/iot-policy-actions.html).
        if not conn.grant.can("iot:Receive", message.topic):
            return
        packet = message.packet(qos, retain, asyncio.get_running_loop().time(), self.scale)
        if qos:
            packet.packet_id = session.packet_id()
            session.inflight[packet.packet_id] = packet
        conn.send(packet)

    def _expires_at(self, properties: dict) -> float | None:
        interval = properties.get("message_expiry_interval")
        return None if interval is None else asyncio.get_running_loop().time() + interval * self.scale

    # --- SUBSCRIBE ------------------------------------------------------------------

    def _on_subscribe(self, conn: _Connection, s: Subscribe) -> None:
        if "subscription_identifier" in s.properties:
            # AWS does not support subscription identifiers (CONNACK says so);
            # MQTT 5 3.8.2.1.2 asks for DISCONNECT 0xA1 when one is sent anyway.
            return self._end(conn, CLIENT_ERROR, SUBSCRIPTION_IDS_NOT_SUPPORTED,
                             why="subscription identifiers are not supported")
        codes, granted = [], []
        for sub in s.subscriptions:
            code = self._subscription_code(conn, sub)
            codes.append(code)
            if code <= 1:
                existed = sub.filter in conn.session.subscriptions
                conn.session.subscriptions[sub.filter] = dataclasses.replace(sub, qos=code)
                if sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                    granted.append(conn.session.subscriptions[sub.filter])
        conn.send(SubAck(s.packet_id, codes))
        now = asyncio.get_running_loop().time()
        for sub in granted:  # retained messages follow the SUBACK, each judged by iot:Receive
            for message in list(self._retained.values()):
                if topics.matches(sub.filter, message.topic) and not message.expired(now):
                    self._send(conn, conn.session, message, min(message.qos, sub.qos), retain=True)

    def _subscription_code(self, conn: _Connection, sub: Subscription) -> int:
        """The SUBACK code for one filter: the granted QoS, or a failure."""
        if topics.filter_problem(sub.filter):
            return TOPIC_FILTER_INVALID if conn.v5 else V3_SUBACK_FAILURE
        if sub.filter.startswith("$share/"):
            return SHARED_NOT_SUPPORTED if conn.v5 else V3_SUBACK_FAILURE
        if not conn.grant.can("iot:Subscribe", sub.filter):
            # https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt5-reason-codes:
            # 0x87 on SUBACK in MQTT 5; 3.1.1 has only the failure code 0x80.
            return NOT_AUTHORIZED if conn.v5 else V3_SUBACK_FAILURE
        return min(sub.qos, 1)  # QoS 2 is granted as QoS 1 (assumed; AWS has no QoS 2)

    # --- the end of a connection ----------------------------------------------------

    def _on_disconnect(self, conn: _Connection, d: Disconnect) -> None:
        if conn.v5 and "session_expiry_interval" in d.properties:
            if conn.session.expiry == 0 and d.properties["session_expiry_interval"]:
                return self._end(conn, CLIENT_ERROR, ProtocolError.code)  # MQTT 5 3.14.2-2
            conn.session.expiry = min(d.properties["session_expiry_interval"], PERSISTENT_SESSION_EXPIRY)
        # A DISCONNECT discards the will, unless MQTT 5's 0x04 "with will message" asks otherwise.
        self._end(conn, CLIENT_INITIATED_DISCONNECT, client_initiated=True, will=d.code == 0x04)

    def _end(self, conn: _Connection, reason: str, code: int | None = None, *,
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
                self._sessions.pop(conn.client_id, None)
            else:
                session.expiry_timer = asyncio.get_running_loop().call_later(
                    session.expiry * self.scale, self._expire, session)
        if will and conn.will is not None:
            self._schedule_will(conn)
        self._history[conn.client_id] = {"clientId": conn.client_id, "connected": False,
                                         "cleanSession": session.clean, "disconnectedSince": _now_ms(),
                                         "disconnectReason": reason}
        self._lifecycle(conn, "disconnected", clientInitiatedDisconnect=client_initiated, disconnectReason=reason)

    def _expire(self, session: Session) -> None:
        if self._sessions.get(session.client_id) is session and session.owner is None:
            del self._sessions[session.client_id]

    def _schedule_will(self, conn: _Connection) -> None:
        will = conn.will
        delay = min(will.properties.get("will_delay_interval", 0), conn.session.expiry)
        message = Message(will.topic, will.payload, min(will.qos, 1), will.retain, _forwarded(will.properties),
                          self._expires_at(will.properties))
        grant = conn.grant

        def publish_will() -> None:
            self._wills.pop(conn.client_id, None)
            # The will is a PUBLISH by the client: it needs the client's iot:Publish
            # (and iot:RetainPublish) on the will topic, judged now (assumed: AWS
            # documents the permission, not when it is checked).
            if topics.name_problem(will.topic) or len(will.payload) > MAX_PAYLOAD:
                return
            if not grant.can("iot:Publish", will.topic) or (will.retain and not grant.can(
                    "iot:RetainPublish", will.topic)):
                return
            self._accept(message)

        if delay > 0:
            handle = asyncio.get_running_loop().call_later(delay * self.scale, publish_will)
            self._wills[conn.client_id] = (handle, publish_will)
        else:
            publish_will()

    def _lifecycle(self, conn: _Connection, event: str, **extra) -> None:
        """https://docs.aws.amazon.com/iot/latest/developerguide/life-cycle-events.html"""
        if "+" in conn.client_id or "#" in conn.client_id:
            return  # "Client IDs that contain # or + do not receive lifecycle events."
        body = {"clientId": conn.client_id, "timestamp": _now_ms(), "eventType": event,
                "sessionIdentifier": conn.id, "principalIdentifier": conn.grant.principal_id,
                "ipAddress": conn.presented.source_ip, "versionNumber": conn.version_number, **extra}
        self._route(Message(f"$aws/events/presence/{event}/{conn.client_id}", json.dumps(body).encode(), qos=1))

    # --- the data plane's view ------------------------------------------------------

    async def delete_connection(self, client_id: str, *, clean_session: bool = False,
                                prevent_will: bool = False) -> bool:
        """iot-data DeleteConnection. False: no such live connection."""
        conn = self._live.get(client_id)
        if conn is None:
            return False
        if clean_session:
            conn.session.expiry = 0
        self._end(conn, API_INITIATED_DISCONNECT, ADMINISTRATIVE_ACTION, will=not prevent_will,
                  why="DeleteConnection")
        return True

    def get_connection(self, client_id: str) -> dict | None:
        """iot-data GetConnection's body, or None when no such client is known.
        https://docs.aws.amazon.com/iot/latest/apireference/API_iotdata_GetConnection.html
        Timestamps are epoch milliseconds (assumed); sessionExpiry is the
        session expiry interval in seconds (assumed)."""
        conn = self._live.get(client_id)
        if conn is None:
            return self._history.get(client_id)
        return {"clientId": client_id, "connected": True, "cleanSession": conn.session.clean,
                "keepAliveDuration": conn.keep_alive, "connectedSince": conn.connected_at,
                "sessionExpiry": int(conn.session.expiry)}

    async def close(self) -> None:
        for conn in list(self._live.values()):
            self._end(conn, SERVER_INITIATED_DISCONNECT, SERVER_SHUTTING_DOWN)
        for handle, _ in self._wills.values():
            handle.cancel()
        for session in self._sessions.values():
            if session.expiry_timer is not None:
                session.expiry_timer.cancel()
        self._wills.clear()


def _forwarded(properties: dict) -> dict:
    return {name: properties[name] for name in FORWARDED if name in properties}


def _now_ms() -> int:
    return int(time.time() * 1000)
