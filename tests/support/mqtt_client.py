"""A real paho-mqtt client for tests, driven on its own thread, that keeps
what it observed (CONNACK, SUBACK and PUBACK codes, messages, the
disconnect) for the test to wait on (docs/local-iot.md#the-broker).

paho's own loop_start() reconnects after a disconnect; this one never
does, so a test sees exactly the connection the broker closed."""
from __future__ import annotations

import queue
import socket
import struct
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

WAIT = 10  # seconds to wait for something that should happen


class Client:
    def __init__(self, port: int, client_id: str, password: bytes | None = b"", *, version: int = 5,
                 clean: bool = True, keepalive: int = 60, session_expiry: int | None = None,
                 will: tuple | None = None, will_properties: dict | None = None, manual_ack: bool = False):
        self.port, self.version, self.clean, self.keepalive = port, version, clean, keepalive
        self.session_expiry = session_expiry
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol,
                                clean_session=None if version == 5 else clean, manual_ack=manual_ack)
        if password is not None:
            self.paho.username_pw_set("user", password)
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

    def connect(self) -> Client:
        """Connect and wait for the CONNACK (or the connection's end)."""
        properties = None
        if self.version == 5 and self.session_expiry is not None:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.session_expiry
        kwargs = {"clean_start": self.clean, "properties": properties} if self.version == 5 else {}
        self.paho.connect("127.0.0.1", self.port, self.keepalive, **kwargs)
        threading.Thread(target=self._loop, daemon=True).start()
        self.wait(lambda: self.connected.is_set() or self.disconnected.is_set(), "a CONNACK")
        return self

    def _loop(self):
        while not self._stop.is_set():
            if self.paho.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS and not self.disconnected.is_set():
                self.disconnected.set()
                return

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack[0].is_failure

    def subscribe(self, topic_filter: str, qos: int = 1) -> list:
        """The SUBACK's reason codes."""
        _, mid = self.paho.subscribe(topic_filter, qos)
        return self._wait_ack(mid)

    def unsubscribe(self, topic_filter: str) -> list:
        """The UNSUBACK's reason codes (MQTT 5; paho reports success for 3.1.1)."""
        _, mid = self.paho.unsubscribe(topic_filter)
        return self._wait_ack(mid)

    def publish(self, topic: str, payload: bytes = b"", qos: int = 0, retain: bool = False, properties=None):
        """For QoS 1, the PUBACK's reason code (waits for it); else None."""
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
        self._stop.set()
        if not self.disconnected.is_set():
            try:
                self.paho.disconnect()
            finally:
                sock = self.paho.socket()
                if sock is not None:
                    sock.close()


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
