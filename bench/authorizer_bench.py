"""The authorizer Lambda, measured without Django (as it runs on AWS).

- cold start: importing `lambda_bridge.handler` (settings read, client made)
  in a fresh interpreter, against `import boto3, cryptography` alone;
- warm decisions: `lambda_handler` p50/p99 for snapshots of 1, 10, the most
  that fit, 100 and 1,000 devices, with the table on a moto server (HTTP) and
  with the store swapped for an in-memory dict;
- the in-memory decision at 10 devices (issue 12, item 11): p50 of
  `lambda_handler` with the dict store, in fresh processes, median over
  rounds; with BENCH_AUTHORIZER_AGAINST=<git revision> the `lambda_bridge` of
  that revision runs in the same rounds, interleaved, for a before/after on
  the same (noisy) machine;
- capacity: the most devices one connection's policies can hold, per level
  mix and thing-name length;
- compact device tokens (issue 17): a device's warm decision with its signed
  JWT at the signed authorizer against its compact token at the unsigned
  one, and what each refusal a stranger can cause at the unsigned
  authorizer costs next to them (p50/p95, dict store and moto); the bytes
  each credential puts on the wire for the demo's lock.

Environment: BENCH_COLD_RUNS (7), BENCH_WARM_CALLS (300), BENCH_DECISION_ROUNDS
(5), BENCH_DECISION_CALLS (2000), BENCH_COMPACT_CALLS (2000, in memory),
BENCH_AUTHORIZER_AGAINST (unset).
"""
import base64
import contextlib
import hashlib
import io
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from urllib.parse import quote

import boto3
import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto.server import ThreadedMotoServer

from bench.common import ROOT, md_table, percentile, write_results
from lambda_bridge import compact, keys, policy, snapshot
from lambda_bridge.snapshot import Entry

COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
WARM_CALLS = int(os.environ.get("BENCH_WARM_CALLS", "300"))
DECISION_ROUNDS = int(os.environ.get("BENCH_DECISION_ROUNDS", "5"))
DECISION_CALLS = int(os.environ.get("BENCH_DECISION_CALLS", "2000"))
COMPACT_CALLS = int(os.environ.get("BENCH_COMPACT_CALLS", "2000"))
AGAINST = os.environ.get("BENCH_AUTHORIZER_AGAINST", "").strip()
TABLE = "devshare-bench-authorizer"
ISSUER, AUDIENCE, ACCOUNT, REGION = "https://devshare.bench", "devshare-iot", "123456789012", "us-east-1"


def lambda_env(endpoint: str) -> dict[str, str]:
    return {"AWS_REGION": REGION, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
            "DEVSHARE_TABLE": TABLE, "DEVSHARE_DYNAMODB_ENDPOINT_URL": endpoint, "DEVSHARE_TOKEN_ISSUER": ISSUER,
            "DEVSHARE_TOKEN_AUDIENCE": AUDIENCE, "DEVSHARE_AWS_ACCOUNT_ID": ACCOUNT}


def cold_imports(env: dict) -> tuple[str, dict]:
    def timed(statement: str) -> float:
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        runs = []
        for _ in range(COLD_RUNS):
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env},
                                 capture_output=True, text=True, check=True).stdout
            runs.append(float(out.strip().splitlines()[-1]) * 1000)
        return statistics.median(runs)

    handler = timed("import lambda_bridge.handler")
    libraries = timed("import boto3, cryptography.hazmat.primitives.asymmetric.rsa")
    data = {"handler_ms": round(handler, 1), "libraries_ms": round(libraries, 1),
            "ratio": round(handler / libraries, 2)}
    text = md_table(["import (fresh interpreter, median of %d)" % COLD_RUNS, "ms"], [
        ("lambda_bridge.handler (settings, boto3 client, cryptography)", data["handler_ms"]),
        ("boto3, cryptography alone", data["libraries_ms"]),
        ("ratio", f"{data['ratio']}×"),
    ])
    return text, data


class DictStore:
    def __init__(self, items: dict):
        self.items = items

    def get(self, key):
        return self.items.get(key)


def warm_decisions(endpoint: str) -> tuple[str, dict]:
    os.environ.update(lambda_env(endpoint))
    from lambda_bridge import handler

    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint,
                      aws_access_key_id="bench", aws_secret_access_key="bench")  # noqa: S106  (moto takes any)
    db.create_table(TableName=TABLE, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ring = keys.Keyring(version=1, slots={"A": keys.KeySlot("bench-a", pem, keys.ACTIVE)}, active="A")
    items = {keys.ITEM_KEY: keys.to_item(ring)}

    dynamo = handler.HANDLER.authorizer.store
    fits = max_devices([snapshot.VIEW], 14)
    cases = [("1", 1, None), ("10", 10, None), (f"{fits} (most that fit, view)", fits, None),
             ("100 (refused: scope_required)", 100, None), ("1,000, token scoped to 10", 1000, 10)]
    now = int(time.time())
    rows, data = [], []
    for user, (label, count, scoped) in enumerate(cases, start=1):
        things = [f"d-{user:04d}{i:08d}" for i in range(count)]
        snap = snapshot.Snapshot(kind="u", tenant=1, principal=str(user), version=1, generated_at=now,
                                 entries=tuple(Entry(t, snapshot.VIEW, expires=now + 86400) for t in things))
        items[snap.key] = snapshot.to_item(snap)
        cid = f"u1.{user}.app"  # a person's client id form (lambda_bridge/tokens.py)
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"user:{user}", "tid": 1, "cid": cid,
                  "iat": now, "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
        if scoped:
            claims["scope"] = {"things": things[:scoped]}
        token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "bench-a"})
        event = {"token": token, "signatureVerified": True, "protocolData": {"mqtt": {"clientId": cid}}}
        row = [label]
        for item in items.values():
            db.put_item(TableName=TABLE, Item=item)
        for name, store in (("moto", dynamo), ("dict", DictStore(items))):
            _serve(handler, store)
            timings, response = [], None
            with contextlib.redirect_stdout(io.StringIO()):  # the log line is printed and paid for, not shown
                for _ in range(WARM_CALLS + 10):
                    started = time.perf_counter()
                    response = handler.lambda_handler(event, None)
                    timings.append((time.perf_counter() - started) * 1000)
            timings = timings[10:]  # the first calls read the key item and warm caches
            if response["isAuthenticated"] != (count <= fits or bool(scoped)):
                raise SystemExit(f"authorizer bench: unexpected decision for {label!r}; "
                                 "it would be timing a refusal")
            p50, p99 = percentile(timings, 50), percentile(timings, 99)
            row += [f"{p50:.2f}", f"{p99:.2f}"]
            data.append({"case": label, "store": name, "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                         "allowed": response["isAuthenticated"],
                         "policy_chars": sum(map(len, response["policyDocuments"]))})
        row.insert(1, "allow" if data[-1]["allowed"] else "deny")
        row.insert(2, data[-1]["policy_chars"])
        rows.append(row)
    text = md_table(["devices in snapshot", "decision", "policy chars", "moto p50 ms", "moto p99 ms",
                     "dict p50 ms", "dict p99 ms"], rows)
    return text, {"warm": data}


def _serve(handler, store) -> None:
    """Make the module's Lambda decide with `store`. A `lambda_bridge` from
    before build(env) (BENCH_AUTHORIZER_AGAINST) kept its authorizer in globals."""
    from lambda_bridge.authorizer import Authorizer

    if hasattr(handler, "HANDLER"):
        handler.HANDLER.authorizer = Authorizer(handler.HANDLER.config, store)
    else:
        handler.AUTHORIZER = Authorizer(handler.CONFIG, store)


def decision_p50_us(calls: int) -> float:
    """p50 µs of one warm in-memory decision at 10 view devices, in this
    process, with whichever `lambda_bridge` is first on the path."""
    os.environ.update(lambda_env("http://127.0.0.1:9"))  # never called: the store is a dict
    from lambda_bridge import handler

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    now = int(time.time())
    snap = snapshot.Snapshot(kind="u", tenant=1, principal="2", version=1, generated_at=now,
                             entries=tuple(Entry(f"d-0002{i:08d}", snapshot.VIEW, expires=now + 86400)
                                           for i in range(10)))
    ring = keys.Keyring(version=1, slots={"A": keys.KeySlot("bench-a", pem, keys.ACTIVE)}, active="A")
    _serve(handler, DictStore({keys.ITEM_KEY: keys.to_item(ring), snap.key: snapshot.to_item(snap)}))
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user:2", "tid": 1, "cid": "u1.2.app", "iat": now,
              "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
    token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "bench-a"})
    event = {"token": token, "signatureVerified": True, "protocolData": {"mqtt": {"clientId": "u1.2.app"}}}
    timings = []
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(calls + 50):
            started = time.perf_counter()
            response = handler.lambda_handler(event, None)
            timings.append((time.perf_counter() - started) * 1e6)
    if not response["isAuthenticated"]:
        raise SystemExit("authorizer bench: the 10-device decision was a refusal")
    return percentile(timings[50:], 50)


def decision_rounds() -> tuple[str, dict]:
    """This checkout (and BENCH_AUTHORIZER_AGAINST's, interleaved), each round in fresh processes."""
    def one(pythonpath: str) -> float:
        code = ("import lambda_bridge; print(lambda_bridge.__file__); "
                f"from bench.authorizer_bench import decision_p50_us; print(decision_p50_us({DECISION_CALLS}))")
        first = pythonpath.split(os.pathsep)[0]
        # `-c` puts the working directory first on the path: it must be the one whose lambda_bridge runs.
        out = subprocess.run([sys.executable, "-c", code], cwd=first, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONPATH": pythonpath}).stdout.split()
        if not out[0].startswith(first):
            raise SystemExit(f"authorizer bench: timed {out[0]}, not the lambda_bridge under {first}")
        return float(out[-1])

    with tempfile.TemporaryDirectory() as other:
        paths = {"this checkout": str(ROOT)}
        if AGAINST:
            archive = subprocess.run(["git", "archive", AGAINST, "lambda_bridge"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                tar.extractall(other, filter="data")
            paths[AGAINST] = f"{other}{os.pathsep}{ROOT}"
        runs = {name: [] for name in paths}
        for _ in range(DECISION_ROUNDS):
            for name, path in paths.items():
                runs[name].append(one(path))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    rows = [(name, f"{medians[name]:.1f}", " ".join(f"{v:.0f}" for v in runs[name]),
             f"{medians['this checkout'] / medians[name]:.2f}") for name in paths]
    text = md_table(["lambda_bridge", "p50 µs (median of rounds)", "rounds", "this checkout ÷ it"], rows)
    return text, {"rounds": runs, "median_p50_us": medians}


def max_devices(levels: list[int], name_length: int) -> int:
    """Largest n whose policies fit, devices cycling through `levels`."""
    def fits(n: int) -> bool:
        grants = {f"d-{i:0{name_length - 2}d}": levels[i % len(levels)] for i in range(n)}
        return policy.user_documents(levels=grants, client_id="app-" + "0" * 32, region=REGION,
                                     account=ACCOUNT) is not None
    low, high = 0, 1
    while fits(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def capacity() -> tuple[str, dict]:
    mixes = {"all view": [snapshot.VIEW], "all control": [snapshot.CONTROL],
             "half view, half control": [snapshot.VIEW, snapshot.CONTROL]}
    lengths = (14, 36, 64)
    data = {mix: {length: max_devices(levels, length) for length in lengths} for mix, levels in mixes.items()}
    rows = [(mix, *(data[mix][length] for length in lengths)) for mix in mixes]
    head = ["level mix", "14-char names (generated)", "36-char names (UUID)", "64-char names"]
    return md_table(head, rows), data


# --- compact device tokens (issue 17) -----------------------------------------------

DEMO_THING = "demo-front-lock"
SIGNED_NAME, COMPACT_NAME, KEY_NAME = "devshare", "devshare-compact", "devshare-token"


class DeviceKeys:
    """A slot's two halves as Django makes them (authz/tokens/signing_keys.py):
    RSA 2048 with a 43-character kid (an RFC 7638 thumbprint's length), and
    Ed25519 with a 3-byte compact kid; plus a stranger's Ed25519 key."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(b"bench").digest()).rstrip(b"=").decode()
        self.ed, self.stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

    @staticmethod
    def raw(private) -> bytes:
        return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def item(self) -> dict:
        pem = self.rsa.public_key().public_bytes(serialization.Encoding.PEM,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        slot = keys.KeySlot(self.kid, pem, keys.ACTIVE, compact_kid=keys.b64(compact.kid_for(self.raw(self.ed))),
                            compact_public=keys.b64(self.raw(self.ed)))
        return keys.to_item(keys.Keyring(version=1, slots={"A": slot}, active="A"))

    def jwt(self, thing: str, now: int) -> tuple[str, str]:
        """A device token with the claims Django signs (authz/tokens/credentials.py), and its
        signature; ISSUER is as long as Django's default, https://devshare.local."""
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": f"device:{thing}", "tid": 1,
                  "cid": thing, "iat": now, "nbf": now, "exp": now + 30 * 86400, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self.rsa, algorithm="RS256", headers={"kid": self.kid})
        signature = self.rsa.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())
        return token, base64.b64encode(signature).decode()

    def compact(self, thing: str, now: int, *, signer=None, lifetime: int = 30 * 86400) -> str:
        claims = compact.CompactClaims(thing=thing, tenant=1, issued_at=now, expires=now + lifetime)
        return compact.encode(claims, kid=compact.kid_for(self.raw(self.ed if signer is None else signer)),
                              sign=(signer or self.ed).sign)


def _signed_event(token: str) -> dict:
    return {"token": token, "signatureVerified": True, "protocolData": {"mqtt": {"clientId": DEMO_THING}}}


def _unsigned_event(token: str) -> dict:
    """An MQTT CONNECT at the unsigned authorizer: the token is the password."""
    return {"signatureVerified": False, "protocolData": {"mqtt": {
        "clientId": DEMO_THING, "username": compact.mqtt_username(COMPACT_NAME),
        "password": base64.b64encode(token.encode()).decode()}}}


def credential_sizes(device: DeviceKeys, now: int) -> tuple[str, dict]:
    """Characters of each credential, and the bytes of an MQTT CONNECT's
    client id, username and password carrying it (docs/credentials.md)."""
    token, signature = device.jwt(DEMO_THING, now)
    small = device.compact(DEMO_THING, now)
    signed_username = (f"devshare?x-amz-customauthorizer-name={SIGNED_NAME}&{KEY_NAME}={quote(token, safe='')}"
                       f"&x-amz-customauthorizer-signature={quote(signature, safe='')}")
    compact_username = compact.mqtt_username(COMPACT_NAME)
    data = {
        "signed": {"token": len(token), "signature": len(signature), "credential": len(token) + len(signature),
                   "mqtt_connect_fields": len(DEMO_THING) + len(signed_username)},
        "compact": {"token": len(small), "signature": 0, "credential": len(small),
                    "mqtt_connect_fields": len(DEMO_THING) + len(compact_username) + len(small)},
    }
    rows = [(kind, d["token"], d["signature"] or "inside the token", d["credential"], d["mqtt_connect_fields"])
            for kind, d in data.items()]
    text = md_table([f"device credential ({DEMO_THING}, tenant 1)", "token chars", "signature chars",
                     "credential chars", "MQTT client id + username + password bytes"], rows)
    return text, data


def compact_decisions(endpoint: str) -> tuple[str, dict]:
    os.environ.update(lambda_env(endpoint))
    from lambda_bridge import handler

    device, now = DeviceKeys(), int(time.time())
    snap = snapshot.Snapshot(kind="d", tenant=1, principal=DEMO_THING, version=1, generated_at=now,
                             entries=(Entry(DEMO_THING, snapshot.OWNER),))
    items = {keys.ITEM_KEY: device.item(), snap.key: snapshot.to_item(snap)}
    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint,
                      aws_access_key_id="bench", aws_secret_access_key="bench")  # noqa: S106  (moto takes any)
    for item in items.values():
        db.put_item(TableName=TABLE, Item=item)
    token, _ = device.jwt(DEMO_THING, now)
    good = device.compact(DEMO_THING, now)
    cases = [
        ("device JWT, signed authorizer", _signed_event(token), "ok"),
        ("compact token, unsigned authorizer", _unsigned_event(good), "ok"),
        ("malformed (last character cut)", _unsigned_event(good[:-1]), "malformed_token"),
        ("token_too_large (60-character thing)", _unsigned_event(device.compact("t" * 60, now)), "token_too_large"),
        ("wrong_authorizer (a JWT)", _unsigned_event(token), "wrong_authorizer"),
        ("unknown_kid (a stranger's key)", _unsigned_event(device.compact(DEMO_THING, now, signer=device.stranger)),
         "unknown_kid"),
        ("bad_signature (claims changed)", _unsigned_event(_swapped(good, device.compact(DEMO_THING, now,
                                                                                        lifetime=86400))),
         "bad_signature"),
    ]
    # A store of its own: the module's Lambda may be serving a dict by now.
    dynamo = handler.build(lambda_env(endpoint)).authorizer.store
    stores = (("dict", DictStore(items), COMPACT_CALLS), ("moto", dynamo, WARM_CALLS))
    timings = {(label, name): [] for label, _, _ in cases for name, _, _ in stores}
    for name, store, calls in stores:
        _serve(handler, store)
        for label, event, reason in cases:
            found = handler.HANDLER.authorizer.decide(event).reason  # the first reads the key item
            if found != reason:
                raise SystemExit(f"authorizer bench: {label!r} was {found}, not {reason}")
        # Interleaved, call by call, so that a busy moment of the shared
        # machine weighs on every case alike.
        with contextlib.redirect_stdout(io.StringIO()):
            for _ in range(calls):
                for label, event, _ in cases:
                    started = time.perf_counter()
                    handler.lambda_handler(event, None)
                    timings[label, name].append((time.perf_counter() - started) * 1e6)
    rows, data = [], []
    for label, _, reason in cases:
        row = [label]
        for name, _, _ in stores:
            p50, p95 = percentile(timings[label, name], 50), percentile(timings[label, name], 95)
            row += [f"{p50:.0f}", f"{p95:.0f}"]
            data.append({"case": label, "reason": reason, "store": name, "p50_us": round(p50, 1),
                         "p95_us": round(p95, 1)})
        rows.append(row)
    text = md_table(["decision (demo-front-lock)", "dict p50 µs", "dict p95 µs", "moto p50 µs", "moto p95 µs"],
                    rows)
    sizes_text, sizes = credential_sizes(device, now)
    return text + "\n" + sizes_text, {"compact_decisions": data, "credential_sizes": sizes}


def _swapped(good: str, other: str) -> str:
    """`other`'s claims under `good`'s signature (the last 64 bytes)."""
    def raw(text):
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    forged = raw(other)[:-compact.SIGNATURE_BYTES] + raw(good)[-compact.SIGNATURE_BYTES:]
    return base64.urlsafe_b64encode(forged).rstrip(b"=").decode()


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        cold_text, cold = cold_imports(lambda_env(endpoint))
        warm_text, warm = warm_decisions(endpoint)
        compact_text, compact_data = compact_decisions(endpoint)
    finally:
        server.stop()
    decision_text, decision = decision_rounds()
    capacity_text, capacity_data = capacity()
    text = (f"### Cold start\n\n{cold_text}\n### Warm decisions ({WARM_CALLS} calls each; moto = table on a "
            f"local moto server over HTTP, dict = store swapped for a dict)\n\n{warm_text}\n"
            f"### In-memory decision at 10 devices ({DECISION_ROUNDS} rounds × {DECISION_CALLS} calls, "
            f"each round in fresh processes)\n\n{decision_text}\n"
            f"### Devices per connection (10 documents × 2,048 characters)\n\n{capacity_text}\n"
            f"### Compact device tokens: decisions and refusals (warm; dict {COMPACT_CALLS} calls, "
            f"moto {WARM_CALLS} calls)\n\n{compact_text}")
    print(text)
    write_results("authorizer", text, {"cold": cold, **warm, "decision_10": decision, "capacity": capacity_data,
                                       **compact_data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
