"""Real MQTT clients as the live tests drive them: paho-mqtt over each of
local_iot's listeners, and the AWS IoT Device SDK v2 for Python's MQTT 5
custom-authorizer builder (docs/testing.md#live-mqtt). Each call waits for
what the broker answered, with a timeout, and returns it as plain values:
what the client observed is the verdict."""
from __future__ import annotations

import queue
import ssl
import threading
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

TIMEOUT = 10.0
VERSIONS = {4: paho.MQTTv311, 5: paho.MQTTv5}


class PahoClient:
    """paho-mqtt 2 connected to a running local_iot over `via` ("tcp", "tls",
    "ws" or "wss"), with the credentials the API issued: `mqttUsername` as
    the username over TCP and TLS, `wssUrl`'s query string over WebSockets."""

    def __init__(self, iot, creds: dict, *, via: str, version: int, client_id: str | None = None):
        transport = "websockets" if via in ("ws", "wss") else "tcp"
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or creds["clientId"],
                                  protocol=VERSIONS[version], transport=transport)
        self.port = {"tcp": iot.mqtt_port, "tls": iot.tls_port, "ws": iot.http_port, "wss": iot.tls_port}[via]
        if via in ("tls", "wss"):
            context = ssl.create_default_context(cafile=iot.ca_file)
            if via == "tls":
                context.set_alpn_protocols(["mqtt"])  # AWS's port 443 (docs/local-iot.md#listeners)
            self.client.tls_set_context(context)
        if transport == "websockets":
            self.client.ws_set_options(path="/mqtt?" + urlsplit(creds["wssUrl"]).query)
        else:
            self.client.username_pw_set(creds["mqttUsername"])
        self.connack: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, queue.Queue] = {}
        self.messages: queue.Queue = queue.Queue()
        self.disconnected = threading.Event()
        self.disconnect_reason = None
        self.client.on_connect = lambda c, u, flags, rc, props: self.connack.put(rc)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.subacks.put([code.value for code in codes])
        self.client.on_publish = lambda c, u, mid, rc, props: self.pubacks.setdefault(mid, queue.Queue()).put(rc)
        self.client.on_message = lambda c, u, message: self.messages.put((message.topic, message.payload))
        self.client.on_disconnect = self._on_disconnect

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_reason = reason_code
        self.disconnected.set()

    def connect(self) -> bool:
        """Whether the broker accepted the CONNECT. A refused or dropped
        connection is not retried."""
        self.client.reconnect_delay_set(60, 60)
        try:
            self.client.connect("localhost", self.port, keepalive=30)
        except OSError:
            return False
        self.client.loop_start()
        try:
            accepted = not self.connack.get(timeout=TIMEOUT).is_failure
        except queue.Empty:
            accepted = False
        if not accepted:
            self.close()
        return accepted

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        """The SUBACK's codes: the QoS granted, or 128 and up for a refusal;
        [] when the broker closed the connection instead."""
        self.client.subscribe(topic_filter, qos)
        try:
            return self.subacks.get(timeout=TIMEOUT)
        except queue.Empty:
            return []

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int | None:
        """The PUBACK's reason code (0 accepted, 135 not authorized in MQTT 5),
        or None when no PUBACK came (MQTT 3.1.1 answers a denial by closing)."""
        info = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            return 0 if info.rc == paho.MQTT_ERR_SUCCESS else None
        try:
            return self.pubacks.setdefault(info.mid, queue.Queue()).get(timeout=TIMEOUT).value
        except queue.Empty:
            return None

    def received(self, count: int = 1, timeout: float = TIMEOUT) -> list[tuple[str, bytes]]:
        """The first `count` messages, or as many as came within the timeout."""
        found = []
        try:
            while len(found) < count:
                found.append(self.messages.get(timeout=timeout))
        except queue.Empty:
            pass
        return found

    def nothing_received(self, wait: float = 0.5) -> bool:
        """No message within `wait`: used only after a message published
        later on the same connection has arrived, so order proves absence."""
        return self.received(1, timeout=wait) == []

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class SdkClient:
    """The AWS IoT Device SDK v2 for Python: its MQTT 5 client from
    `mqtt5_client_builder.direct_with_custom_authorizer`, the builder AWS
    documents for custom authentication, over TLS with ALPN `mqtt`."""

    def __init__(self, iot, creds: dict, *, client_id: str | None = None):
        from awscrt import mqtt5
        from awsiot import mqtt5_client_builder

        self.mqtt5 = mqtt5
        self.connected, self.failed, self.stopped = threading.Event(), threading.Event(), threading.Event()
        self.messages: queue.Queue = queue.Queue()
        host = creds["endpoint"].rsplit(":", 1)[0]
        self.client = mqtt5_client_builder.direct_with_custom_authorizer(
            endpoint=host, port=iot.tls_port, ca_filepath=iot.ca_file, client_id=client_id or creds["clientId"],
            auth_username="devshare", auth_authorizer_name=creds["authorizerName"],
            auth_authorizer_signature=creds["tokenSignature"], auth_token_key_name=creds["tokenKeyName"],
            auth_token_value=creds["token"],
            on_lifecycle_connection_success=lambda data: self.connected.set(),
            on_lifecycle_connection_failure=lambda data: self.failed.set(),
            on_lifecycle_stopped=lambda data: self.stopped.set(),
            on_publish_received=lambda data: self.messages.put((data.publish_packet.topic,
                                                                bytes(data.publish_packet.payload))))

    def connect(self) -> bool:
        self.client.start()
        for _ in range(int(TIMEOUT * 10)):
            if self.connected.wait(0.1) or self.failed.is_set():
                break
        if not self.connected.is_set():
            self.close()
        return self.connected.is_set()

    def subscribe(self, topic_filter: str, qos: int = 1) -> list[int]:
        packet = self.mqtt5.SubscribePacket(subscriptions=[
            self.mqtt5.Subscription(topic_filter=topic_filter, qos=self.mqtt5.QoS(qos))])
        suback = self.client.subscribe(packet).result(TIMEOUT)
        return [int(code) for code in suback.reason_codes]

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        packet = self.mqtt5.PublishPacket(topic=topic, payload=payload, qos=self.mqtt5.QoS(qos))
        result = self.client.publish(packet).result(TIMEOUT)
        return int(result.puback.reason_code) if result.puback else 0

    def received(self, count: int = 1, timeout: float = TIMEOUT) -> list[tuple[str, bytes]]:
        found = []
        try:
            while len(found) < count:
                found.append(self.messages.get(timeout=timeout))
        except queue.Empty:
            pass
        return found

    def close(self) -> None:
        self.client.stop()
        self.stopped.wait(TIMEOUT)
