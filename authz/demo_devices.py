"""The demo's devices, simulated (docs/local-iot.md#the-demos-devices): each
connects to the local AWS IoT Core with a device token of its own, sends
telemetry, reports its state to its classic shadow and honours commands.

Two halves. What a device does is a pure function of its kind, its state and
what arrived: `handle(...)` and `tick(...)` return the new state and the
messages to send, and the tests call them directly; so is which credential
it connects with (`credential_for`: the hall thermostat is a low-power
device with a compact one). `SimulatedDevice` is the live half: paho-mqtt
over TLS with ALPN `mqtt`, the credentials' `mqttUsername` as the username
(and, for a compact credential, `mqttPassword` as the password) and the
thing name as the client id, a fresh token before the old one expires, and
reconnects with backoff.

Topics are the platform's (docs/topics-and-policies.md): commands arrive on
`dev/{thing}/in/{command}` and as shadow deltas; telemetry leaves on
`dev/{thing}/out/telemetry`, the whole state (retained) on
`dev/{thing}/out/state`, refusals on `dev/{thing}/out/events`, and the
reported state on `$aws/things/{thing}/shadow/update`.
"""
from __future__ import annotations

import json
import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from lambda_bridge import vocabulary

log = logging.getLogger(__name__)

LIGHT, THERMOSTAT, LOCK = "lightbulb", "thermostat", "lock"  # the demo's device type slugs (seed_demo)
INITIAL = {
    LIGHT: {"power": "off", "brightness": 80},
    THERMOSTAT: {"mode": "heat", "target": 21.0, "temperature": 18.0},
    LOCK: {"locked": True},
}
# The demo's low-power devices: they connect with a compact credential through
# the unsigned authorizer (docs/credentials.md#compact-device-tokens); the others with a signed one.
COMPACT_THINGS = frozenset({"demo-hall-thermostat"})
MODES = ("heat", "cool", "off")
TARGET_RANGE = (5.0, 30.0)
STEP = 0.5  # degrees a thermostat moves towards its target per tick


@dataclass(frozen=True)
class Message:
    topic: str
    payload: dict
    retain: bool = False

    def encoded(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":"), sort_keys=True).encode()


# --- what a device does (pure) --------------------------------------------------------


def initial_state(kind: str) -> dict:
    return dict(INITIAL.get(kind, {}))


def credential_for(thing: str) -> str:
    """The kind of credential the device connects with."""
    return vocabulary.COMPACT_CREDENTIAL if thing in COMPACT_THINGS else vocabulary.SIGNED_CREDENTIAL


def subscriptions(thing: str) -> list[str]:
    return [f"dev/{thing}/in/#", f"$aws/things/{thing}/shadow/update/delta"]


def announce(thing: str, state: dict) -> list[Message]:
    """What a device sends when it (re)connects: its whole state."""
    return _state_messages(thing, state, state)


def handle(thing: str, kind: str, state: dict, topic: str, payload: bytes) -> tuple[dict, list[Message]]:
    """A message arrived: the new state and what to send. A command on
    `dev/{thing}/in/{command}` (payload: JSON, `{"value": …}` where one is
    needed) or a shadow delta (`{"state": {field: value}}`)."""
    if topic == f"$aws/things/{thing}/shadow/update/delta":
        wanted = _json(payload).get("state")
        changes = wanted if isinstance(wanted, dict) else {}
        return _apply(thing, kind, state, changes, source="shadow")
    prefix = f"dev/{thing}/in/"
    if not topic.startswith(prefix):
        return state, []
    command = topic.removeprefix(prefix)
    value = _json(payload).get("value")
    changes = _command_changes(kind, state, command, value)
    if changes is None:
        return state, [_refusal(thing, command, "unknown command or value")]
    return _apply(thing, kind, state, changes, source=command)


def tick(thing: str, kind: str, state: dict) -> tuple[dict, list[Message]]:
    """One telemetry interval: a thermostat's room moves towards its target;
    every device reports its telemetry."""
    new = dict(state)
    if kind == THERMOSTAT:
        gap = new["target"] - new["temperature"]
        # Heating only warms the room, cooling only cools it.
        if new["mode"] == "heat" and gap > 0 or new["mode"] == "cool" and gap < 0:
            new["temperature"] = round(new["temperature"] + max(-STEP, min(STEP, gap)), 1)
    telemetry = {LIGHT: lambda s: {"power": s["power"], "watts": round(9 * s["brightness"] / 100, 1)
                                   if s["power"] == "on" else 0.0},
                 THERMOSTAT: lambda s: {"temperature": s["temperature"], "target": s["target"]},
                 LOCK: lambda s: {"locked": s["locked"]}}.get(kind, lambda s: {})(new)
    messages = [Message(f"dev/{thing}/out/telemetry", telemetry)]
    if new != state:
        messages += _state_messages(thing, new, {k: v for k, v in new.items() if state.get(k) != v})
    return new, messages


def _command_changes(kind: str, state: dict, command: str, value) -> dict | None:
    """The fields a command sets, or None when this kind has no such command
    or the value is out of range."""
    if kind == LIGHT:
        if command in ("on", "off"):
            return {"power": command}
        if command == "toggle":
            return {"power": "off" if state["power"] == "on" else "on"}
        if command == "brightness" and _number(value) and 0 <= value <= 100:
            return {"brightness": int(value)}
    elif kind == LOCK:
        if command in ("lock", "unlock"):
            return {"locked": command == "lock"}
    elif kind == THERMOSTAT:
        if command == "target" and _number(value) and TARGET_RANGE[0] <= value <= TARGET_RANGE[1]:
            return {"target": float(value)}
        if command == "mode" and value in MODES:
            return {"mode": value}
    return None


def _apply(thing: str, kind: str, state: dict, changes: dict, *, source: str) -> tuple[dict, list[Message]]:
    accepted = {}
    for name, value in changes.items():
        # A delta is checked field by field as the command that sets it would be.
        command, argument = _as_command(kind, name, value)
        found = _command_changes(kind, state, command, argument) if command else None
        if found is None:
            return state, [_refusal(thing, source, f"cannot set {name} to {value!r}")]
        accepted.update(found)
    new = {**state, **accepted}
    changed = {k: v for k, v in new.items() if state.get(k) != v}
    if not changed:
        # Nothing changed, but a shadow delta still needs the reported state to
        # catch up, or it stays a delta.
        return state, _state_messages(thing, state, accepted) if source == "shadow" and accepted else []
    return new, _state_messages(thing, new, changed)


def _as_command(kind: str, name: str, value) -> tuple[str | None, object]:
    if kind == LIGHT and name == "power" and value in ("on", "off"):
        return value, None
    if kind == LOCK and name == "locked" and isinstance(value, bool):
        return ("lock" if value else "unlock"), None
    if (kind, name) in ((LIGHT, "brightness"), (THERMOSTAT, "target"), (THERMOSTAT, "mode")):
        return name, value
    return None, None


def _state_messages(thing: str, state: dict, reported: dict) -> list[Message]:
    return [Message(f"$aws/things/{thing}/shadow/update", {"state": {"reported": reported}}),
            Message(f"dev/{thing}/out/state", state, retain=True)]


def _refusal(thing: str, command: str, reason: str) -> Message:
    return Message(f"dev/{thing}/out/events", {"refused": command, "reason": reason})


def _json(payload: bytes) -> dict:
    try:
        value = json.loads(payload or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


RENEW_BEFORE = 900.0  # a long token is renewed 15 minutes before it expires
RENEW_AT_LEAST = 360.0  # the authorizer refuses a token with under 300 s left (docs/authorizer.md)


def renew_at(issued: float, expires: float) -> float:
    """When to fetch a fresh token: halfway through a short one, 15 minutes
    before the end of a long one, and never so late that the old one has
    under 300 s left, when the authorizer would refuse a new connection with it."""
    return expires - max(RENEW_AT_LEAST, min(RENEW_BEFORE, (expires - issued) / 2))


MIN_CONNECTED = 60.0  # seconds a device stays on one token at least


def backoff(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt` (0, 1, …): 1, 2, 4 … 60."""
    return float(min(60, 2 ** min(attempt, 6)))


# --- a live device ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ca_file: str

    @classmethod
    def parse(cls, endpoint: str, ca_file: str) -> Endpoint:
        """IOT_ENDPOINT as the credentials API hands it out: host[:port]."""
        host, sep, port = endpoint.rpartition(":")
        return cls(host, int(port), ca_file) if sep and port.isdigit() else cls(endpoint, 443, ca_file)


@dataclass(frozen=True)
class Issued:
    """The part of the credentials a device connects with: a compact
    credential's token rides in the password, a signed one's in the username."""

    client_id: str
    mqtt_username: str = field(repr=False)
    issued_at: float
    expires_at: float
    mqtt_password: str = field(default="", repr=False)  # kept out of logs and tracebacks, as the token is
    credential: str = vocabulary.SIGNED_CREDENTIAL

    @classmethod
    def of(cls, creds, now: datetime) -> Issued:
        return cls(creds.client_id, creds.mqtt_username, now.timestamp(), creds.expires_at.timestamp(),
                   mqtt_password=creds.mqtt_password, credential=creds.credential)


class SimulatedDevice:
    """One demo device on its own paho client and thread."""

    def __init__(self, *, thing: str, kind: str, issue: Callable[[], Issued], endpoint: Endpoint,
                 interval: float = 5.0, clock: Callable[[], float] | None = None):
        import time

        self.thing, self.kind, self.issue, self.endpoint, self.interval = thing, kind, issue, endpoint, interval
        self.clock = clock or time.time
        self.state = initial_state(kind)
        self._lock = threading.Lock()  # paho's thread handles messages, ours ticks
        self._stop = threading.Event()
        self._lost = threading.Event()
        # Set by a stop or a lost connection: the telemetry wait ends at once,
        # so a dropped device reconnects now, not at its next tick.
        self._wake = threading.Event()
        self._client = None
        self.thread = threading.Thread(target=self._run, name=f"device {thing}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.thread.join(10)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            renewing = False
            try:
                issued = self.issue()
                self._connect(issued)
                attempt = 0
                # A token too short to renew in time still holds the line for a
                # minute: renewing at once would be a reconnect storm.
                renew = max(renew_at(issued.issued_at, issued.expires_at), self.clock() + MIN_CONNECTED)
                renewing = self._serve(renew)
            except Exception as exc:  # noqa: BLE001 (any failure: wait, then try again with a fresh token)
                log.warning("%s: %s", self.thing, exc)
            finally:
                self._disconnect()
            if renewing or self._stop.is_set():
                continue  # a fresh token now, or the end
            delay = backoff(attempt) * random.uniform(0.8, 1.2)  # noqa: S311 (jitter, not a secret)
            log.info("%s: reconnecting in %.1f s", self.thing, delay)
            attempt += 1
            self._stop.wait(delay)

    def _connect(self, issued: Issued) -> None:
        import paho.mqtt.client as mqtt

        connected = threading.Event()
        self._lost.clear()
        self._wake.clear()
        # Reconnects are ours (_run), each with a fresh token: paho's own would
        # present the token it had, the one the broker may have just refused.
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=issued.client_id, protocol=mqtt.MQTTv5,
                             reconnect_on_failure=False)
        client.username_pw_set(issued.mqtt_username, issued.mqtt_password or None)
        context = ssl.create_default_context(cafile=self.endpoint.ca_file)
        context.set_alpn_protocols(["mqtt"])  # MQTT on the TLS port, as on AWS's 443
        client.tls_set_context(context)

        def on_connect(client, userdata, flags, reason, properties):
            if reason.is_failure:
                log.warning("%s: connect refused: %s", self.thing, reason)
                self._lost.set()
                self._wake.set()
                return
            client.subscribe([(topic, 1) for topic in subscriptions(self.thing)])
            with self._lock:
                self._send(client, announce(self.thing, self.state))
            connected.set()

        def on_message(client, userdata, message):
            with self._lock:
                self.state, outgoing = handle(self.thing, self.kind, self.state, message.topic, message.payload)
                self._send(client, outgoing)

        def on_disconnect(client, userdata, flags, reason, properties):
            log.info("%s: disconnected: %s", self.thing, reason)
            self._lost.set()
            self._wake.set()

        client.on_connect, client.on_message, client.on_disconnect = on_connect, on_message, on_disconnect
        self._client = client
        client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        client.loop_start()
        if not connected.wait(15) or self._lost.is_set():
            raise ConnectionError("not connected")
        log.info("%s: connected as %s with a %s credential", self.thing, issued.client_id, issued.credential)

    def _serve(self, renew: float) -> bool:
        """Telemetry every interval until the token is due for renewal (True),
        the connection drops or the device is stopped (False)."""
        while not self._stop.is_set() and not self._lost.is_set():
            if self.clock() >= renew:
                log.info("%s: renewing its token", self.thing)
                return True
            with self._lock:
                self.state, outgoing = tick(self.thing, self.kind, self.state)
                self._send(self._client, outgoing)
            self._wake.wait(self.interval)
        return False

    def _send(self, client, messages: list[Message]) -> None:
        for message in messages:
            client.publish(message.topic, message.encoded(), qos=1, retain=message.retain)

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
