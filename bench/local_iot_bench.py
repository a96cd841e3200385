"""MQTT through local_iot beside a reference broker, with the same client in
the same run (docs/benchmarks.md#local_iot-beside-mosquitto).

The client is paho-mqtt 2.2.0 speaking MQTT 3.1.1 over plain TCP on
loopback; the reference is a Mosquitto started here (anonymous, no
persistence, no cap on queued QoS 1 messages, on a free port: never the
system's 1883). local_iot runs as `python -m local_iot` with the Lambda's
environment, a moto DynamoDB server (a process of its own) holding the key
item and two snapshots, and real RS256 tokens signed as the credentials API
signs them: every connect goes through the custom-authorizer contract and
every publish and delivery through the policy check.

- connect: TCP connect → CONNACK, a new client each time (the person's
  client id and token);
- publish → receive, QoS 0 and 1: one message in flight, the device
  publishing on `dev/{thing}/out/bench`, the person subscribed;
- messages/s, QoS 0 and 1: the device publishes BENCH_MQTT_MESSAGES as fast
  as paho sends them, the person receives; delivered ÷ time from the first
  publish to the last delivery (messages lost are counted, not hidden).

When `python -m local_iot --help` fails (local_iot not there yet), the
local_iot column is skipped, saying so, and Mosquitto's is still measured.

Environment: BENCH_MQTT_CONNECTS (200), BENCH_MQTT_ROUNDTRIPS (500),
BENCH_MQTT_MESSAGES (5000).
"""
import base64
import getpass
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit

import boto3
import jwt
import paho.mqtt.client as paho
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import ROOT, md_table, percentile, write_results
from lambda_bridge import keys, snapshot
from lambda_bridge.snapshot import Entry

CONNECTS = int(os.environ.get("BENCH_MQTT_CONNECTS", "200"))
ROUNDTRIPS = int(os.environ.get("BENCH_MQTT_ROUNDTRIPS", "500"))
MESSAGES = int(os.environ.get("BENCH_MQTT_MESSAGES", "5000"))
MOSQUITTO = "/usr/sbin/mosquitto"
WAIT = 30.0  # seconds any single step may take before the benchmark gives up

TABLE, REGION, ACCOUNT = "devshare-bench-local-iot", "us-east-1", "123456789012"
ISSUER, AUDIENCE = "https://devshare.bench", "devshare-iot"
AUTHORIZER, KEY_NAME, KID = "devshare", "devshare-token", "bench-a"
TENANT, USER, THING = 1, "2", "d-bench-lamp"
PERSON_CID, DEVICE_CID = f"u{TENANT}.{USER}.app", THING  # lambda_bridge/tokens.py's client id forms
TOPIC = f"dev/{THING}/out/bench"  # the device publishes; view and up receive (docs/topics-and-policies.md)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"local_iot bench: {what} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"local_iot bench: {what} is not listening on {port}")


def stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# --- the brokers -------------------------------------------------------------------------


@contextmanager
def mosquitto(tmp: Path):
    """A reference Mosquitto on a free loopback port; yields (host, port, no credentials)."""
    port = free_port()
    conf, log = tmp / "mosquitto.conf", tmp / "mosquitto.log"
    # Started as root, mosquitto would switch to the `mosquitto` user, which cannot read tmp.
    # max_queued_messages 0: no cap on a subscriber's QoS 1 queue. Mosquitto's default (1,000) drops
    # what a slower Python subscriber has not taken yet, and a rate of dropped messages compares nothing.
    conf.write_text(f"user {getpass.getuser()}\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
                    f"log_dest stderr\nlog_type error\nlistener {port} 127.0.0.1\n")
    with open(log, "wb") as out:
        process = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_listening(port, process, "mosquitto", log)
        yield "127.0.0.1", port, {}
    finally:
        stop(process)


def local_iot_missing() -> str | None:
    """Why local_iot cannot be benchmarked here, or None."""
    result = subprocess.run([sys.executable, "-m", "local_iot", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return f"`python -m local_iot --help` failed: {last[0]}"
    return None


def lambda_env(endpoint: str, *, table: str = TABLE, issuer: str = ISSUER) -> dict[str, str]:
    return {"AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "DEVSHARE_TABLE": table, "DEVSHARE_DYNAMODB_ENDPOINT_URL": endpoint, "DEVSHARE_TOKEN_ISSUER": issuer,
            "DEVSHARE_TOKEN_AUDIENCE": AUDIENCE, "DEVSHARE_TOKEN_KEY_NAME": KEY_NAME,
            "DEVSHARE_AWS_ACCOUNT_ID": ACCOUNT}


def new_table(endpoint: str, table: str = TABLE):
    """A DynamoDB client on the moto server, with the authorizer's table made."""
    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint,
                      aws_access_key_id="bench", aws_secret_access_key="bench")  # noqa: S106  (moto takes any)
    db.create_table(TableName=table, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    return db


def put_authorizer_items(endpoint: str, private: rsa.RSAPrivateKey) -> None:
    """The key item, the person's snapshot (view on the thing) and the device's."""
    db = new_table(endpoint)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ring = keys.Keyring(version=1, slots={"A": keys.KeySlot(KID, pem, keys.ACTIVE)}, active="A")
    now = int(time.time())
    person = snapshot.Snapshot(kind=snapshot.USER, tenant=TENANT, principal=USER, version=1, generated_at=now,
                               entries=(Entry(THING, snapshot.VIEW),))
    device = snapshot.Snapshot(kind=snapshot.DEVICE, tenant=TENANT, principal=THING, version=1, generated_at=now,
                               entries=(Entry(THING, snapshot.OWNER),))
    for item in (keys.to_item(ring), snapshot.to_item(person), snapshot.to_item(device)):
        db.put_item(TableName=TABLE, Item=item)


def username(private: rsa.RSAPrivateKey, sub: str, cid: str) -> str:
    """The credentials API's `mqttUsername`: a real token and its signature
    (base64 of RSA-SHA256, as the gateway verifies it), URL-encoded."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "tid": TENANT, "cid": cid,
              "iat": now, "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": KID})
    signature = base64.b64encode(private.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return (f"devshare?x-amz-customauthorizer-name={quote(AUTHORIZER, safe='')}"
            f"&{KEY_NAME}={quote(token, safe='')}&x-amz-customauthorizer-signature={quote(signature, safe='')}")


def ready_mqtt_port(ready: dict) -> int:
    """The plain MQTT port in the `local_iot ready {json}` line: an `mqtt://` URL
    on loopback, or a number under a key naming mqtt (not mqtts)."""
    found = []

    def walk(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, list):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and value.startswith("mqtt://"):
            url = urlsplit(value)
            if url.hostname in ("127.0.0.1", "localhost"):
                found.append(url.port)
        elif isinstance(value, int) and re.fullmatch(r"mqtt(_port)?", key or ""):
            found.append(value)

    walk("", ready)
    if not found:
        raise SystemExit(f"local_iot bench: no plain MQTT port in the ready line: {json.dumps(ready)}")
    return found[0]


@contextmanager
def local_iot_on_moto(tmp: Path, *, seed: Callable[[str], None], env: Callable[[str], dict[str, str]],
                      args: tuple[str, ...] = ()):
    """A moto DynamoDB of its own, filled by `seed(endpoint)`, and local_iot
    on any free ports with the Lambda settings `env(endpoint)`; yields the
    ready line."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto_port = free_port()
    moto_log, iot_log = tmp / "moto.log", tmp / "local_iot.log"
    with open(moto_log, "wb") as out:
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                                stdout=out, stderr=subprocess.STDOUT)
    server = None
    try:
        endpoint = f"http://127.0.0.1:{moto_port}"
        wait_listening(moto_port, moto, "moto server", moto_log)
        seed(endpoint)
        with open(iot_log, "wb") as out:  # to a file: its decision log must never block on a full pipe
            server = subprocess.Popen(
                [sys.executable, "-m", "local_iot", "--mqtt-port", "0", "--tls-port", "0", "--http-port", "0",
                 "--cert-dir", str(tmp / "certs"), *args],
                cwd=ROOT, env={**os.environ, **env(endpoint)}, stdout=out, stderr=subprocess.STDOUT)
        yield wait_ready(server, iot_log)
    finally:
        stop(server)
        stop(moto)


@contextmanager
def local_iot(tmp: Path):
    """local_iot with a moto DynamoDB of its own; yields (host, port, credentials by client id)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with local_iot_on_moto(tmp, seed=lambda endpoint: put_authorizer_items(endpoint, private), env=lambda_env) as ready:
        credentials = {PERSON_CID: username(private, f"user:{USER}", PERSON_CID),
                       DEVICE_CID: username(private, f"device:{THING}", DEVICE_CID)}
        yield "127.0.0.1", ready_mqtt_port(ready), credentials


def wait_ready(server: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("local_iot ready "):
                return json.loads(line.removeprefix("local_iot ready "))
        if server.poll() is not None:
            break
        time.sleep(0.05)
    raise SystemExit(f"local_iot bench: no `local_iot ready` line: {log.read_text(errors='replace')[-2000:]}")


# --- the client --------------------------------------------------------------------------


class Client:
    """One paho-mqtt 3.1.1 client with its network loop in a thread."""

    def __init__(self, host: str, port: int, client_id: str, credentials: dict):
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311)
        if client_id in credentials:
            self.client.username_pw_set(credentials[client_id])
        self.connected, self.subscribed = threading.Event(), threading.Event()
        self.refused = None
        self.received = 0
        self.last_received_at = 0.0
        self.on_message = None
        self.client.on_connect = self._connected
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = self._message
        self.host, self.port = host, port

    def _connected(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.refused = str(reason_code)
        self.connected.set()

    def _message(self, client, userdata, message):
        self.received += 1
        self.last_received_at = time.perf_counter()
        if self.on_message is not None:
            self.on_message()

    def connect(self) -> float:
        """Milliseconds from the TCP connect to the CONNACK."""
        started = time.perf_counter()
        self.client.connect(self.host, self.port, keepalive=60)
        self.client.loop_start()
        if not self.connected.wait(WAIT) or self.refused:
            raise SystemExit(f"local_iot bench: connect to {self.port} failed: {self.refused or 'no CONNACK'}")
        return (time.perf_counter() - started) * 1000

    def subscribe(self, topic: str, qos: int) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos)
        if not self.subscribed.wait(WAIT):
            raise SystemExit("local_iot bench: no SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure(broker) -> dict:
    host, port, credentials = broker
    connects = []
    for _ in range(CONNECTS):
        client = Client(host, port, PERSON_CID, credentials)
        connects.append(client.connect())
        client.close()

    subscriber, publisher = Client(host, port, PERSON_CID, credentials), Client(host, port, DEVICE_CID, credentials)
    subscriber.connect(), publisher.connect()
    result = {"connect_ms": connects}
    try:
        for qos in (0, 1):
            subscriber.subscribe(TOPIC, qos)
            arrived = threading.Event()
            subscriber.on_message = arrived.set
            trips = []
            for i in range(ROUNDTRIPS + 10):
                arrived.clear()
                started = time.perf_counter()
                publisher.client.publish(TOPIC, f"{i}".encode(), qos=qos)
                if not arrived.wait(WAIT):
                    raise SystemExit(f"local_iot bench: message {i} at QoS {qos} never arrived")
                trips.append((time.perf_counter() - started) * 1000)
            result[f"roundtrip_qos{qos}_ms"] = trips[10:]  # the first deliveries warm caches

            subscriber.on_message, before = None, subscriber.received
            payload = b"x" * 64
            started = time.perf_counter()
            for _ in range(MESSAGES):
                publisher.client.publish(TOPIC, payload, qos=qos)
            deadline = time.monotonic() + WAIT
            while subscriber.received - before < MESSAGES and time.monotonic() < deadline:
                time.sleep(0.01)  # a bounded wait for deliveries; the rate uses the last delivery's own time
            delivered = subscriber.received - before
            elapsed = max(subscriber.last_received_at - started, 1e-9)
            result[f"rate_qos{qos}"] = {"delivered": delivered, "lost": MESSAGES - delivered,
                                        "per_second": round(delivered / elapsed)}
            time.sleep(0.5)  # let late QoS 1 acknowledgements drain before the next part
    finally:
        subscriber.close(), publisher.close()
    return result


# --- the table ---------------------------------------------------------------------------


def summary(raw: dict) -> dict:
    out = {}
    for name in ("connect_ms", "roundtrip_qos0_ms", "roundtrip_qos1_ms"):
        out[name] = {"p50": round(percentile(raw[name], 50), 3), "p95": round(percentile(raw[name], 95), 3)}
    for name in ("rate_qos0", "rate_qos1"):
        out[name] = raw[name]
    return out


def table(results: dict, skipped: str | None) -> str:
    ref, iot = results["mosquitto"], results.get("local_iot")
    rows = []

    def row(label, ref_value, iot_value, unit=""):
        if iot is None:
            rows.append((label, f"{ref_value}{unit}", "skipped", ""))
        else:
            rows.append((label, f"{ref_value}{unit}", f"{iot_value}{unit}", f"{iot_value / ref_value:.2f}×"))

    for name, label in (("connect_ms", "connect → CONNACK"), ("roundtrip_qos0_ms", "publish → receive, QoS 0"),
                        ("roundtrip_qos1_ms", "publish → receive, QoS 1")):
        for p in ("p50", "p95"):
            row(f"{label} {p} ms", ref[name][p], iot[name][p] if iot else None)
    for qos in (0, 1):
        name = f"rate_qos{qos}"
        row(f"messages/s, QoS {qos}", ref[name]["per_second"], iot[name]["per_second"] if iot else None)
        lost = (ref[name]["lost"], iot[name]["lost"] if iot else None)
        if any(lost):
            rows.append((f"lost of {MESSAGES}, QoS {qos}", lost[0], "skipped" if iot is None else lost[1], ""))
    text = md_table(["paho-mqtt 2.2.0, MQTT 3.1.1, TCP on loopback", "Mosquitto", "local_iot",
                     "local_iot ÷ Mosquitto"], rows)
    if skipped:
        text += f"\nlocal_iot skipped: {skipped}\n"
    return text


def main() -> int:
    if not os.path.exists(MOSQUITTO):
        print(f"local_iot bench: skipped, no Mosquitto at {MOSQUITTO} (the reference broker)")
        return 0
    results = {}
    with tempfile.TemporaryDirectory(prefix="local-iot-bench-") as tmp:
        with mosquitto(Path(tmp)) as broker:
            results["mosquitto"] = summary(measure(broker))
        skipped = local_iot_missing()
        if skipped is None:
            with local_iot(Path(tmp)) as broker:
                results["local_iot"] = summary(measure(broker))
    text = (f"### MQTT: local_iot beside Mosquitto ({CONNECTS} connects, {ROUNDTRIPS} round trips, "
            f"{MESSAGES} messages per rate; one publisher, one subscriber)\n\n{table(results, skipped)}")
    print(text)
    write_results("local_iot", text, {**results, "local_iot_skipped": skipped,
                                      "connects": CONNECTS, "roundtrips": ROUNDTRIPS, "messages": MESSAGES})
    return 0


if __name__ == "__main__":
    sys.exit(main())
