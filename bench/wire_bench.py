"""Bytes on the wire per connect, for both kinds of device credential
(docs/local-iot.md#two-authorizers, docs/local-iot.md#bytes-on-the-wire).

Measured, not computed: real clients talk to `python -m local_iot` (with a
moto DynamoDB server of its own holding the key item and the device's
snapshot) through a counting TCP relay on loopback, which forwards every
byte both ways and counts what the client sent. Every connect and publish
counted is accepted by the real authorizer, so each count is of a working
credential.

- signed: a device JWT as Django issues it (RS256, 2048-bit key, the JWK
  thumbprint as kid, iss/aud/sub/tid/cid/iat/nbf/exp/jti, a 14-character
  thing name) and its base64 RSA-SHA256 signature, URL-encoded in the MQTT
  username (the credentials API's `mqttUsername`) or in HTTPS headers;
- compact: a compact token (lambda_bridge/compact.py) of the same thing as
  the MQTT password, the username naming the unsigned authorizer only; over
  HTTPS in a header or the query string.

Figures: the MQTT CONNECT packet paho-mqtt 2 sends (3.1.1 and 5, plain TCP,
so the relay sees the packet itself); everything the client sends until the
CONNACK over TLS with ALPN `mqtt` (the handshake included; AWS's port 443);
the HTTPS publish request head (http.client, plain HTTP so the head is
readable; over TLS the same head is encrypted); and the connect time
(TCP connect → CONNACK) p50 and p95 over TLS straight to local_iot.

Environment: BENCH_WIRE_CONNECTS (100 per kind).
"""
import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jwt
import paho.mqtt.client as paho
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from bench import local_iot_bench
from bench.common import md_table, percentile, write_results
from bench.local_iot_bench import local_iot_on_moto, new_table
from lambda_bridge import compact, keys, snapshot
from lambda_bridge.snapshot import Entry

CONNECTS = int(os.environ.get("BENCH_WIRE_CONNECTS", "100"))
WAIT = 30.0

TABLE, REGION, ACCOUNT = "devshare-bench-wire", "us-east-1", "123456789012"
# Django's defaults (config/settings/base.py): what a device token carries.
ISSUER, AUDIENCE, LIFETIME = "https://devshare.local", "devshare-iot", 86_400
SIGNED, COMPACT, KEY_NAME = "devshare", "devshare-compact", "devshare-token"
USERNAME = "devshare"  # the username's part before `?` (authz/tokens/credentials.py)
TENANT, THING = 1, "d-k7mq2xw9rt4p"  # a thing name as Django makes them: "d-" and 12 characters
TOPIC = f"dev/{THING}/out/telemetry"
PAYLOAD = b'{"t":21.5}'


@dataclass(frozen=True)
class Credential:
    kind: str  # "signed" | "compact"
    username: str
    password: bytes | None
    http_headers: dict[str, str]  # the authorizer's parameters as HTTPS headers
    http_query: str  # ... or as a query string ("" when not offered)


# --- the credentials ---------------------------------------------------------------------


def jwk_thumbprint(public: rsa.RSAPublicKey) -> str:
    """RFC 7638, as Django names its signing keys."""
    numbers = public.public_numbers()

    def b64(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    canonical = json.dumps({"e": b64(numbers.e), "kty": "RSA", "n": b64(numbers.n)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def signed_credential(private: rsa.RSAPrivateKey, kid: str) -> Credential:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"device:{THING}", "tid": TENANT, "cid": THING,
              "iat": now, "nbf": now, "exp": now + LIFETIME, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})
    signature = base64.b64encode(private.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    query = (f"x-amz-customauthorizer-name={SIGNED}&{KEY_NAME}={quote(token, safe='')}"
             f"&x-amz-customauthorizer-signature={quote(signature, safe='')}")
    headers = {"x-amz-customauthorizer-name": SIGNED, KEY_NAME: token, "x-amz-customauthorizer-signature": signature}
    return Credential("signed", f"{USERNAME}?{query}", None, headers, "")


def compact_credential(private: Ed25519PrivateKey) -> Credential:
    now = int(time.time())
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    token = compact.encode(compact.CompactClaims(thing=THING, tenant=TENANT, issued_at=now, expires=now + LIFETIME),
                           kid=compact.kid_for(raw), sign=private.sign)
    return Credential("compact", compact.mqtt_username(COMPACT), token.encode(),
                      {"x-amz-customauthorizer-name": COMPACT, KEY_NAME: token},
                      f"x-amz-customauthorizer-name={COMPACT}&{KEY_NAME}={token}")


def token_of(credential: Credential) -> str:
    return credential.http_headers[KEY_NAME]


# --- local_iot with its table ----------------------------------------------------------------


def put_items(endpoint: str, rsa_private: rsa.RSAPrivateKey, kid: str, ed_private: Ed25519PrivateKey) -> None:
    db = new_table(endpoint, TABLE)
    pem = rsa_private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    raw = ed_private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    slot = keys.KeySlot(kid, pem, keys.ACTIVE, compact_kid=keys.b64(compact.kid_for(raw)),
                        compact_public=keys.b64(raw))
    device = snapshot.Snapshot(kind=snapshot.DEVICE, tenant=TENANT, principal=THING, version=1,
                               generated_at=int(time.time()), entries=(Entry(THING, snapshot.OWNER),))
    for item in (keys.to_item(keys.Keyring(version=1, slots={"A": slot}, active="A")), snapshot.to_item(device)):
        db.put_item(TableName=TABLE, Item=item)


def lambda_env(endpoint: str) -> dict[str, str]:
    return local_iot_bench.lambda_env(endpoint, table=TABLE, issuer=ISSUER)


@contextmanager
def running_local_iot(tmp: Path):
    """Yields (ready line, the two credentials)."""
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_private = Ed25519PrivateKey.generate()
    kid = jwk_thumbprint(rsa_private.public_key())
    with local_iot_on_moto(tmp, seed=lambda endpoint: put_items(endpoint, rsa_private, kid, ed_private),
                           env=lambda_env, args=("--host", "127.0.0.1", "--authorizer-name", SIGNED,
                                                 "--compact-authorizer-name", COMPACT)) as ready:
        yield ready, {"signed": signed_credential(rsa_private, kid), "compact": compact_credential(ed_private)}


# --- the counting relay ----------------------------------------------------------------------


class Relay:
    """127.0.0.1:port → upstream, every byte forwarded both ways; `sent[i]` is
    what the i-th client sent so far, `first[i]` its first bytes (up to 64 KiB)."""

    def __init__(self, upstream_port: int):
        self.upstream = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent: list[int] = []
        self.first: list[bytearray] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                index = len(self.sent)
                self.sent.append(0)
                self.first.append(bytearray())
            threading.Thread(target=self._pump, args=(client, upstream, index), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, index: int | None) -> None:
        try:
            while chunk := source.recv(65536):
                if index is not None:
                    # Counted before it is forwarded: when the answer comes back, all of it was counted.
                    with self._lock:
                        self.sent[index] += len(chunk)
                        if len(self.first[index]) < 65536:
                            self.first[index] += chunk
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for one in (source, target):
                try:
                    one.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def last(self) -> tuple[int, bytes]:
        with self._lock:
            return self.sent[-1], bytes(self.first[-1])

    def close(self) -> None:
        self.listener.close()


# --- MQTT ----------------------------------------------------------------------------------


def tls_context(ca_file: str, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(alpn)
    return context


def mqtt_connect(port: int, credential: Credential, *, version: int, context: ssl.SSLContext | None,
                 on_connack=None) -> tuple[float, object]:
    """One paho connect → CONNACK (refused: SystemExit); milliseconds. `on_connack`
    runs in paho's callback, before the client sends anything else."""
    protocol = paho.MQTTv5 if version == 5 else paho.MQTTv311
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=THING, protocol=protocol)
    client.username_pw_set(credential.username, credential.password)
    if context is not None:
        client.tls_set_context(context)
    done, outcome = threading.Event(), {}

    def connected(_client, _userdata, _flags, reason_code, _properties):
        outcome["code"] = reason_code
        if on_connack is not None:
            outcome["seen"] = on_connack()
        done.set()

    client.on_connect = connected
    started = time.perf_counter()
    client.connect("localhost", port, keepalive=60)
    client.loop_start()
    try:
        if not done.wait(WAIT) or outcome["code"].is_failure:
            raise SystemExit(f"wire bench: {credential.kind} connect refused: {outcome.get('code', 'no CONNACK')}")
        elapsed = (time.perf_counter() - started) * 1000
    finally:
        client.disconnect()
        client.loop_stop()
    return elapsed, outcome.get("seen")


def mqtt_packet_length(data: bytes) -> int:
    """The length of the first MQTT control packet in `data` (fixed header included)."""
    length, shift, position = 0, 0, 1
    while True:
        byte = data[position]
        length |= (byte & 0x7F) << shift
        position += 1
        if not byte & 0x80:
            return position + length
        shift += 7


def measure_mqtt(ready: dict, credential: Credential) -> dict:
    out = {}
    for version in (4, 5):
        relay = Relay(ready["ports"]["mqtt"])
        try:
            _, (sent, first) = mqtt_connect(relay.port, credential, version=version, context=None,
                                            on_connack=relay.last)
        finally:
            relay.close()
        assert first[0] >> 4 == 1, "the first packet is a CONNECT"
        out[f"connect_packet_v{version}"] = mqtt_packet_length(first)
        assert sent == out[f"connect_packet_v{version}"], (sent, out)  # nothing else before the CONNACK
    relay = Relay(ready["ports"]["tls"])
    try:
        _, (sent, _) = mqtt_connect(relay.port, credential, version=4, context=tls_context(ready["ca_file"], ["mqtt"]),
                                    on_connack=relay.last)
    finally:
        relay.close()
    out["tls_sent_until_connack"] = sent
    times = [mqtt_connect(ready["ports"]["tls"], credential, version=4,
                          context=tls_context(ready["ca_file"], ["mqtt"]))[0] for _ in range(CONNECTS + 5)][5:]
    out["connect_ms"] = {"p50": round(percentile(times, 50), 2), "p95": round(percentile(times, 95), 2)}
    return out


# --- HTTPS publish ---------------------------------------------------------------------------


def publish_head(ready: dict, credential: Credential, *, place: str) -> int:
    """The request head's bytes as local_iot received them (plain HTTP through the relay)."""
    relay = Relay(ready["ports"]["http"])
    try:
        connection = http.client.HTTPConnection("localhost", relay.port, timeout=WAIT)
        path = f"/topics/{quote(TOPIC, safe='')}?qos=1"
        headers = {"content-type": "application/json"}
        if place == "header":
            headers.update(credential.http_headers)
        else:
            path += "&" + credential.http_query
        connection.request("POST", path, body=PAYLOAD, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        if response.status != 200:
            raise SystemExit(f"wire bench: HTTPS publish with a {credential.kind} credential: {response.status}")
        _, first = relay.last()
    finally:
        relay.close()
    head_end = first.index(b"\r\n\r\n") + 4
    return head_end


# --- the table -----------------------------------------------------------------------------


def measure() -> dict:
    with tempfile.TemporaryDirectory(prefix="wire-bench-") as tmp, running_local_iot(Path(tmp)) as (ready, creds):
        results = {}
        for kind, credential in creds.items():
            token = token_of(credential)
            results[kind] = {
                "token_chars": len(token),
                "username_bytes": len(credential.username.encode()),
                "password_bytes": len(credential.password or b""),
                **measure_mqtt(ready, credential),
                "https_head_header": publish_head(ready, credential, place="header"),
            }
            if credential.http_query:
                results[kind]["https_head_query"] = publish_head(ready, credential, place="query")
            if kind == "signed":
                results[kind]["signature_chars"] = len(credential.http_headers["x-amz-customauthorizer-signature"])
    return results


def table(results: dict) -> str:
    signed, small = results["signed"], results["compact"]

    def row(label, name, unit=""):
        a, b = signed.get(name), small.get(name)
        ratio = f"{b / a:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a else ""
        return (label, "n/a" if a is None else f"{a}{unit}", "n/a" if b is None else f"{b}{unit}", ratio)

    rows = [
        row("token (characters)", "token_chars"),
        ("RSA signature sent beside it (characters)", signed["signature_chars"], "none", ""),
        row("MQTT username (bytes)", "username_bytes"),
        row("MQTT password (bytes)", "password_bytes"),
        row("MQTT 3.1.1 CONNECT packet (bytes)", "connect_packet_v4"),
        row("MQTT 5 CONNECT packet (bytes)", "connect_packet_v5"),
        row("TLS (ALPN mqtt): client bytes until CONNACK", "tls_sent_until_connack"),
        row("HTTPS publish head, parameters in headers (bytes)", "https_head_header"),
        row("HTTPS publish head, parameters in the query (bytes)", "https_head_query"),
    ]
    for p in ("p50", "p95"):
        a, b = signed["connect_ms"][p], small["connect_ms"][p]
        rows.append((f"connect over TLS → CONNACK {p} (ms)", a, b, f"{b / a:.2f}"))
    return md_table(["per connect", "signed (JWT + signature)", "compact", "compact ÷ signed"], rows)


def main() -> int:
    results = measure()
    text = (f"### Bytes on the wire per connect: signed vs compact device credential "
            f"(thing name of {len(THING)} characters; {CONNECTS} timed connects per kind, paho-mqtt 2, "
            f"local_iot on loopback)\n\n{table(results)}")
    print(text)
    write_results("wire", text, {**results, "thing": THING, "connects": CONNECTS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
