"""IoT credentials issued per second, with real parts.

- signing alone: one RS256 JWT plus the token signature AWS IoT checks
  (two RSA private-key operations), for 2,048- and 4,096-bit keys, and one
  compact token (lambda_bridge/compact.py: CBOR and one Ed25519 signature);
- the service, end to end in one process: the fit check (the person's
  snapshot compiled and run through the authorizer's policy code), the
  IssuedCredential row and the audit event, on PostgreSQL; for a person
  with 1, 10 and 40 devices, a scoped token out of 1,000, and a device's
  signed and compact credentials side by side.

It creates a throw-away PostgreSQL database and a moto server (the
rotation publishes the key item there) and removes both at the end.
Environment: BENCH_DATABASE_URL (server; default from DATABASE_URL),
BENCH_CREDENTIALS_SECONDS (3 per scenario).
"""
import functools
import itertools
import logging
import os
import statistics
import time

from moto.server import ThreadedMotoServer

from bench.common import admin_sql, database_url, md_table, percentile, write_results

DB_NAME = f"devshare_bench_credentials_{os.getpid()}"
SECONDS = float(os.environ.get("BENCH_CREDENTIALS_SECONDS", "3"))


def measure(issue) -> dict:
    """Calls `issue` back to back for SECONDS; per-call latencies in ms."""
    issue()  # warm: caches, the decrypted key, prepared connections
    runs = []
    deadline = time.perf_counter() + SECONDS
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        issue()
        runs.append((time.perf_counter() - start) * 1000)
    return {"per_second": round(len(runs) / (sum(runs) / 1000)), "p50": round(statistics.median(runs), 2),
            "p99": round(percentile(runs, 99), 2), "calls": len(runs)}


def signing_rows() -> list[tuple]:
    import base64

    import jwt
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    def sign(claims, key):
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k" * 43})
        base64.b64encode(key.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256()))

    rows = []
    for bits in (2048, 4096):
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        claims = {"iss": "https://devshare.example", "aud": "devshare-iot", "sub": "user:4711", "tid": 12,
                  "cid": "u12.4711.Zm9vYmFyYmF6cXV4", "iat": 0, "nbf": 0, "exp": 3600, "jti": "0" * 32}
        m = measure(functools.partial(sign, claims, key))
        rows.append((f"sign only, RSA {bits}", m["per_second"], m["p50"], m["p99"]))
    rows.append(compact_signing_row())
    return rows


def compact_signing_row() -> tuple:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from lambda_bridge import compact

    key = Ed25519PrivateKey.generate()
    claims = compact.CompactClaims(thing="d-6nje83mmmekm1", tenant=12, issued_at=1_790_000_000,
                                   expires=1_790_086_400)
    m = measure(lambda: compact.encode(claims, kid=b"abc", sign=key.sign))
    return ("sign only, compact (Ed25519)", m["per_second"], m["p50"], m["p99"])


def service_rows() -> list[tuple]:
    from authz.tokens import credentials, rotation
    from devices.models import Device, DeviceType, Membership, Tenant, User

    rotation.rotate(actor=None)
    tenant = Tenant.objects.create(name="Bench", slug="bench")
    kind = DeviceType.objects.create(tenant=tenant, name="Bulb", slug="bulb")

    def owner_of(count: int) -> tuple[User, list[Device]]:
        user = User.objects.create(email=f"owner{count}@bench.test")
        Membership.objects.create(tenant=tenant, user=user)
        devices = Device.objects.bulk_create([Device(tenant=tenant, owner=user, device_type=kind, name=f"Bulb {i}")
                                              for i in range(count)])
        return user, devices

    rows = []
    for count in (1, 10, 25):  # 26 owned devices are the most one connection holds
        user, _ = owner_of(count)
        m = measure(functools.partial(credentials.issue_user_credentials, actor=user, tenant=tenant))
        rows.append((f"app token, {count} owned device(s)", m["per_second"], m["p50"], m["p99"]))
    user, devices = owner_of(1000)
    scope = devices[:10]
    m = measure(lambda: credentials.issue_user_credentials(actor=user, tenant=tenant, scope_devices=scope))
    rows.append(("app token scoped to 10 of 1,000 devices", m["per_second"], m["p50"], m["p99"]))
    try:
        credentials.issue_user_credentials(actor=user, tenant=tenant)
        raise SystemExit("1,000 devices fitted one connection: the fit check is not running")
    except credentials.ScopeRequired:
        pass
    # A compact token has no random part: the same second and lifetime give
    # the same token, found instead of recorded. Each call asks another
    # lifetime so both kinds record a row every time.
    for kind in ("signed", "compact"):
        lifetimes = itertools.cycle(range(credentials.MIN_LIFETIME_SECONDS, 86_400))
        m = measure(lambda kind=kind, lifetimes=lifetimes: credentials.issue_device_credentials(
            actor=user, device=devices[0], credential=kind, lifetime=next(lifetimes)))
        rows.append((f"device token, {kind}", m["per_second"], m["p50"], m["p99"]))
    return rows


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the moto server's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url(DB_NAME), "DYNAMODB_ENDPOINT_URL": f"http://{host}:{port}",
        "DYNAMODB_TABLE": "devshare-bench", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    })
    admin_sql(f'CREATE DATABASE "{DB_NAME}"')
    try:
        import django
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("ensure_dynamodb_table", verbosity=0)
        rows = signing_rows() + service_rows()
    finally:
        from django.db import connections
        connections.close_all()
        admin_sql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        moto.stop()

    setup = (f"one thread, back to back for {SECONDS:g} s per row; PostgreSQL; "
             f"{os.cpu_count()} CPUs shared with the database")
    text = (f"IoT credentials issued ({setup})\n\n"
            f"{md_table(['what', 'per second', 'p50 ms', 'p99 ms'], rows)}")
    print(text)
    write_results("credentials_bench", text, {"setup": setup, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
