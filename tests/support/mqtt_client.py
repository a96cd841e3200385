"""Real MQTT clients for tests (docs/testing.md#live-mqtt): paho-mqtt
(3.1.1 and 5, over TCP, TLS, WebSockets) driven on a thread of its own,
the AWS IoT Device SDK v2 for Python, and raw bytes for what paho will not
send. Each keeps what it observed (CONNACK, SUBACK and PUBACK codes,
messages, the disconnect) and every call waits for the broker's answer with
a timeout: what the client observed is the verdict.

paho's own loop_start() reconnects after a disconnect; this one never
does, so a test sees exactly the connection the broker closed."""
from __future__ import annotations

import queue
import socket
import ssl
import struct
import threading
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

WAIT = 10  # seconds to wait for something that should happen


class Client:
    """paho-mqtt 2. `username` and `password` go in the CONNECT (a password
    alone is sent with the username "user": MQTT 3.1.1 wants one);
    `transport="websockets"` opens `ws_path`; `tls_context` wraps the socket."""

    def __init__(self, port: int, client_id: str, password: bytes | None = b"", *, username: str | None = None,
                 version: int = 5, host: str = "127.0.0.1", transport: str = "tcp",
                 tls_context: ssl.SSLContext | None = None, ws_path: str = "/mqtt", ws_headers: dict | None = None,
                 clean: bool = True, keepalive: int = 60, session_expiry: int | None = None,
                 will: tuple | None = None, will_properties: dict | None = None, manual_ack: bool = False):
        self.host, self.port, self.version, self.clean, self.keepalive = host, port, version, clean, keepalive
        self.session_expiry = session_expiry
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                clean_session=None if version == 5 else clean, manual_ack=manual_ack,
                                transport=transport)
        if username is not None or password is not None:
            self.paho.username_pw_set("user" if username is None else username, password)
        if tls_context is not None:
            self.paho.tls_set_context(tls_context)
        if transport == "websockets":
            self.paho.ws_set_options(path=ws_path, headers=ws_headers)
        if will is not None:  # (topic, payload, qos, retain)
            props = None
            if will_properties:
                props = Properties(PacketTypes.WILLMESSAGE)
                for name, value in will_properties.items():
                    setattr(props, name, value)
            self.paho.will_set(*will, properties=props)
        self.messages: queue.Queue = queue.Queue()
        self.connack = None  # (reason code, session present, properties)
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self._acks: dict[int, tuple] = {}
        self._acked = threading.Condition()
        self._stop = threading.Event()
        self._looping = threading.Event()
        # Only the loop thread writes to the socket: paho otherwise writes from
        # the caller's thread too, and its WebSocket framing is not thread-safe.
        self.paho.on_socket_register_write = lambda _client, _userdata, _sock: None
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = lambda _c, _u, message: self.messages.put(message)
        self.paho.on_subscribe = lambda _c, _u, mid, codes, _p: self._ack(mid, list(codes))
        self.paho.on_publish = lambda _c, _u, mid, code, _p: self._ack(mid, code)
        self.paho.on_unsubscribe = lambda _c, _u, mid, codes, _p: self._ack(mid, list(codes))

    # --- callbacks (paho's thread) ------------------------------------------------------

    def _on_connect(self, _client, _userdata, flags, reason_code, properties):
        self.connack = (reason_code, flags.session_present, properties)
        self.connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()
        self._stop.set()

    def _ack(self, mid, value):
        with self._acked:
            self._acks[mid] = value
            self._acked.notify_all()

    # --- what a test does ---------------------------------------------------------------

    def connect(self) -> bool:
        """Connect and wait for the CONNACK (or the connection's end):
        whether the broker accepted. A refused connection is not retried."""
        properties = None
        if self.version == 5 and self.session_expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry
        kwargs = {"clean_start": self.clean, "properties": properties} if self.version == 5 else {}
        try:
            self.paho.connect(self.host, self.port, self.keepalive, **kwargs)
        except OSError:  # refused before MQTT: the TLS handshake or the WebSocket upgrade
            self.disconnected.set()
            return False
        self._looping.set()
        threading.Thread(target=self._loop, daemon=True).start()
        self.wait(lambda: self.connected.is_set() or self.disconnected.is_set(), "a CONNACK")
        return self.accepted

    def _loop(self):
        while not self._stop.is_set():
            if self.paho.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not self.disconnected.is_set():
                self.disconnected.set()
                return

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack[0].is_failure

    def subscribe(self, topic_filter: str, qos: int = 1, *, retain_as_published: bool = False) -> list:
        """The SUBACK's reason codes (paho's ReasonCode, equal to its
        number): the QoS granted, or 128 and up for a refusal; [] when the
        broker closed the connection instead. retain_as_published (MQTT 5)
        keeps the retain flag on live deliveries."""
        if retain_as_published:
            _, mid = self.paho.subscribe(topic_filter, options=SubscribeOptions(qos, retainAsPublished=True))
        else:
            _, mid = self.paho.subscribe(topic_filter, qos)
        return self._wait_ack(mid) or []

    def unsubscribe(self, topic_filter: str) -> list:
        """The UNSUBACK's reason codes (MQTT 5; paho reports success for 3.1.1)."""
        _, mid = self.paho.unsubscribe(topic_filter)
        return self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes = b"", qos: int = 1, retain: bool = False, properties=None):
        """For QoS 1, the PUBACK's reason code (0 accepted, 135 not authorized
        in MQTT 5), or None when the broker closed the connection instead (MQTT
        3.1.1's answer to a denial). For QoS 0, None."""
        info = self.paho.publish(topic, payload, qos, retain, properties)
        return self._wait_ack(info.mid) if qos else None

    def _wait_ack(self, mid):
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks or self.disconnected.is_set(), WAIT):
                raise AssertionError(f"no acknowledgement for message id {mid}")
            return self._acks.pop(mid, None)

    def expect(self, topic: str | None = None):
        """The next message received, which must be on this topic."""
        try:
            message = self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no message arrived (waiting for {topic})") from None
        if topic is not None:
            assert message.topic == topic, (message.topic, message.payload)
        return message

    def received(self, count: int = 1, timeout: float = WAIT) -> list[tuple[str, bytes]]:
        """(topic, payload) of the next `count` messages, or of as many as came within the timeout."""
        return [(message.topic, message.payload) for message in _take(self.messages, count, timeout)]

    def nothing_received(self, wait: float = 0.5) -> bool:
        """No message within `wait`: used only after a message published
        later has arrived, so that order, not the wait, proves the absence."""
        return self.received(1, timeout=wait) == []

    def wait(self, condition, what: str) -> None:
        done = threading.Event()
        for _ in range(WAIT * 50):
            if condition():
                return
            done.wait(0.02)
        raise AssertionError(f"waited {WAIT} s for {what}")

    def wait_disconnected(self):
        if not self.disconnected.wait(WAIT):
            raise AssertionError("still connected")
        return self.disconnect_reason

    def disconnect(self) -> None:
        """A clean MQTT DISCONNECT."""
        self.paho.disconnect()
        self.wait_disconnected()

    def kill(self) -> None:
        """End the TCP connection without a DISCONNECT, with a reset, as a crash would."""
        self._stop.set()
        sock = self.paho.socket()
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def close(self) -> None:
        """A clean DISCONNECT when still connected, then the socket closed."""
        if self._looping.is_set() and not self._stop.is_set() and not self.disconnected.is_set():
            self.paho.disconnect()
            self.disconnected.wait(WAIT)
        self._stop.set()
        sock = self.paho.socket()
        if sock is not None:
            sock.close()


def over(iot, via: str, *, client_id: str, version: int, username: str | None = None, ws_query: str = "",
         password: bytes | None = None, **options) -> Client:
    """An unconnected Client of a running local_iot (tests/support/local_iot.py)
    over `via`: "tcp", "tls" (ALPN mqtt, as AWS's port 443), "ws" or "wss".
    Over TCP and TLS the authorizer's parameters ride in `username` (and a
    compact token in `password`), over WebSockets in the URL's query string
    `ws_query` (docs/local-iot.md#listeners)."""
    port = {"tcp": iot.mqtt_port, "tls": iot.tls_port, "ws": iot.http_port, "wss": iot.tls_port}[via]
    context = None
    if via in ("tls", "wss"):
        context = ssl.create_default_context(cafile=iot.ca_file)
        if via == "tls":
            context.set_alpn_protocols(["mqtt"])
    websocket = via in ("ws", "wss")
    return Client(port, client_id, None if websocket else password, username=None if websocket else username,
                  version=version, host="localhost", transport="websockets" if websocket else "tcp",
                  tls_context=context, ws_path=f"/mqtt?{ws_query}", **options)


def with_credentials(iot, creds: dict, *, via: str, version: int, client_id: str | None = None) -> Client:
    """A Client with what the credentials API issued (docs/credentials.md#which-field-each-client-uses):
    `mqttUsername` over TCP and TLS, `wssUrl`'s query string over WebSockets;
    a compact credential's `mqttPassword` too (it has no `wssUrl`:
    docs/credentials.md#compact-device-tokens)."""
    password = creds["mqttPassword"].encode("ascii") if creds.get("mqttPassword") else None
    return over(iot, via, client_id=client_id or creds["clientId"], version=version, keepalive=30,
                username=creds["mqttUsername"], password=password, ws_query=urlsplit(creds.get("wssUrl", "")).query)


def _take(messages: queue.Queue, count: int, timeout: float) -> list:
    """The next `count` items, or as many as came within the timeout."""
    found = []
    try:
        while len(found) < count:
            found.append(messages.get(timeout=timeout))
    except queue.Empty:
        pass
    return found


class RawClient:
    """Bytes over a socket, for what paho hides or will not send: a 3.1.1
    CONNACK's return code, a malformed packet. Replies are read with the
    codec's client-side decoder."""

    def __init__(self, port: int, version: int):
        from local_iot.mqtt.codec import ClientDecoder

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.decoder = ClientDecoder(version=version)
        self._ready: list = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self):
        """The next packet from the broker, or None once it has closed the connection."""
        while not self._ready:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._ready.extend(self.decoder.feed(data))
        return self._ready.pop(0)

    def close(self) -> None:
        self.sock.close()


def _sdk_custom_auth(creds: dict) -> dict:
    if creds.get("credential") == "compact":
        return {"auth_username": "", "auth_authorizer_name": creds["authorizerName"],
                "auth_password": creds["mqttPassword"]}
    return {"auth_username": "devshare", "auth_authorizer_name": creds["authorizerName"],
            "auth_authorizer_signature": creds["tokenSignature"], "auth_token_key_name": creds["tokenKeyName"],
            "auth_token_value": creds["token"]}


class SdkClient:
    """The AWS IoT Device SDK v2 for Python: its MQTT 5 client from
    `mqtt5_client_builder.direct_with_custom_authorizer`, the builder AWS
    documents for custom authentication, over TLS with ALPN `mqtt`. A
    compact credential goes as the builder's password with no signature,
    which is what the SDK offers for an authorizer with signing off
    (docs/credentials.md#compact-device-tokens)."""

    def __init__(self, iot, creds: dict, *, client_id: str | None = None):
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self.mqtt5 = mqtt5
        self.connected, self.failed, self.stopped = threading.Event(), threading.Event(), threading.Event()
        self.messages: queue.Queue = queue.Queue()
        host = creds["endpoint"].rsplit(":", 1)[0]
        self.client = mqtt5_client_builder.direct_with_custom_authorizer(
            endpoint=host, port=iot.tls_port, ca_filepath=iot.ca_file, client_id=client_id or creds["clientId"],
            **_sdk_custom_auth(creds),
            on_lifecycle_connection_success=lambda data: self.connected.set(),
            on_lifecycle_connection_failure=lambda data: self.failed.set(),
            on_lifecycle_stopped=lambda data: self.stopped.set(),
            on_publish_received=lambda data: self.messages.put((data.publish_packet.topic,
                                                                bytes(data.publish_packet.payload))))

    def connect(self) -> bool:
        self.client.start()
        for _ in range(int(WAIT * 10)):
            if self.connected.wait(0.1) or self.failed.is_set():
                break
        if not self.connected.is_set():
            self.close()
        return self.connected.is_set()

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        packet = self.mqtt5.SubscribePacket(subscriptions=[
            self.mqtt5.Subscription(topic_filter=topic_filter, qos=self.mqtt5.QoS(qos))])
        suback = self.client.subscribe(packet).result(WAIT)
        return [int(code) for code in suback.reason_codes]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        packet = self.mqtt5.PublishPacket(topic=topic, payload=payload, qos=self.mqtt5.QoS(qos))
        result = self.client.publish(packet).result(WAIT)
        return int(result.puback.reason_code) if result.puback else 0

    def received(self, count: int = 1, timeout: float = WAIT) -> list[tuple[str, bytes]]:
        return _take(self.messages, count, timeout)

    def close(self) -> None:
        self.client.stop()
        self.stopped.wait(WAIT)
