"""What the broker keeps per MQTT client: the session (subscriptions and
QoS 1 messages owed), and the message as it travels (docs/local-iot.md#the-broker).

A session outlives its connection when the client asked for a persistent
one (MQTT 3.1.1 cleanSession=0; MQTT 5 a session expiry interval above 0):
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-persistent-sessions
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from local_iot import limits
from local_iot.mqtt import Publish, Subscription

# Properties a broker passes from publisher to subscriber (MQTT 5 3.3.2.3);
# topic alias and subscription identifier belong to one connection only.
FORWARDED = ("payload_format_indicator", "content_type", "response_topic", "correlation_data", "user_property")


@dataclass
class Message:
    """One published message on its way to subscribers."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict = field(default_factory=dict)  # FORWARDED ones only
    expires_at: float | None = None  # loop time; MQTT 5 message expiry

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def packet(self, qos: int, retain: bool, now: float, time_scale: float) -> Publish:
        properties = dict(self.properties)
        if self.expires_at is not None:
            # MQTT 5 3.3.2.3.3: the subscriber gets the time left (in AWS seconds), not the original.
            properties["message_expiry_interval"] = max(0, int((self.expires_at - now) / time_scale))
        return Publish(self.topic, self.payload, qos, retain, properties=properties)


@dataclass
class Session:
    client_id: str
    expiry: float = 0.0  # AWS seconds it outlives its connection; 0: it ends with it
    clean: bool = True  # as the client asked, for GetConnection's cleanSession
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    # QoS 1 messages owed, (Message, qos, retain): while the client is away, or
    # while its in-flight window is full. Bounded; the oldest go first (assumed).
    pending: deque = field(default_factory=lambda: deque(maxlen=limits.QUEUED_PER_SESSION))
    inflight: dict[int, Publish] = field(default_factory=dict)  # sent at QoS 1, not yet acknowledged
    owner: object | None = None  # the live connection, if any
    expiry_timer: asyncio.TimerHandle | None = None
    _last_id: int = 0

    def packet_id(self) -> int:
        """A packet id no message in flight uses. The in-flight window
        (limits.OUTBOUND_IN_FLIGHT) keeps far fewer than 65,535 in use."""
        while True:
            self._last_id = self._last_id % 65535 + 1
            if self._last_id not in self.inflight:
                return self._last_id

    def best_subscription(self, topic: str, matches, *, own_message: bool) -> Subscription | None:
        """MQTT 3.1.1 3.3.5 / MQTT 5 3.3.4: overlapping subscriptions deliver once, at the
        highest QoS. A No Local subscription does not count for the client's own
        message (MQTT 5 3.8.3.1), so another matching one may still deliver it."""
        best = None
        for sub in self.subscriptions.values():
            if own_message and sub.no_local:
                continue
            if matches(sub.filter, topic) and (best is None or sub.qos > best.qos):
                best = sub
        return best
