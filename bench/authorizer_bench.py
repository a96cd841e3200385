"""The authorizer Lambda, measured without Django (as it runs on AWS).

- cold start: importing `lambda_bridge.handler` (settings read, client made)
  in a fresh interpreter, against `import boto3, jwt` alone;
- warm decisions: `lambda_handler` p50/p99 for snapshots of 1, 10, the most
  that fit, 100 and 1,000 devices, with the table on a moto server (HTTP) and
  with the store swapped for an in-memory dict;
- capacity: the most devices one connection's policies can hold, per level
  mix and thing-name length.

Environment: BENCH_COLD_RUNS (7), BENCH_WARM_CALLS (300).
"""
import contextlib
import io
import logging
import os
import statistics
import subprocess
import sys
import time
import uuid

import boto3
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from moto.server import ThreadedMotoServer

from bench.common import ROOT, md_table, percentile, write_results
from lambda_bridge import keys, policy, snapshot
from lambda_bridge.snapshot import Entry

COLD_RUNS = int(os.environ.get("BENCH_COLD_RUNS", "7"))
WARM_CALLS = int(os.environ.get("BENCH_WARM_CALLS", "300"))
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
    libraries = timed("import boto3, jwt")
    data = {"handler_ms": round(handler, 1), "boto3_jwt_ms": round(libraries, 1),
            "ratio": round(handler / libraries, 2)}
    text = md_table(["import (fresh interpreter, median of %d)" % COLD_RUNS, "ms"], [
        ("lambda_bridge.handler (settings, boto3 client, cryptography)", data["handler_ms"]),
        ("boto3, jwt alone", data["boto3_jwt_ms"]),
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
    from lambda_bridge.authorizer import Authorizer

    db = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint,
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    db.create_table(TableName=TABLE, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ring = keys.Keyring(version=1, slots={"A": keys.KeySlot("bench-a", pem, keys.ACTIVE)}, active="A")
    items = {keys.ITEM_KEY: keys.to_item(ring)}

    dynamo = handler.AUTHORIZER.store
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
            handler.AUTHORIZER = Authorizer(handler.CONFIG, store)
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


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        cold_text, cold = cold_imports(lambda_env(endpoint))
        warm_text, warm = warm_decisions(endpoint)
    finally:
        server.stop()
    capacity_text, capacity_data = capacity()
    text = (f"### Cold start\n\n{cold_text}\n### Warm decisions ({WARM_CALLS} calls each; moto = table on a "
            f"local moto server over HTTP, dict = store swapped for a dict)\n\n{warm_text}\n"
            f"### Devices per connection (10 documents × 2,048 characters)\n\n{capacity_text}")
    print(text)
    write_results("authorizer", text, {"cold": cold, **warm, "capacity": capacity_data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
