"""Requests per second of the REST API against a real server process.

Creates a throw-away PostgreSQL database, migrates and seeds it (bulk rows for
the lists, services for nothing that is measured), starts gunicorn on
127.0.0.1 and drives it with stdlib threads and http.client. Bounded in
requests and time; everything it started is stopped, the database dropped.

Environment: BENCH_DATABASE_URL (server to create the database on; default
from DATABASE_URL or postgres://postgres@127.0.0.1:5432), BENCH_PORT (8137),
BENCH_SECONDS (5 per scenario), BENCH_CONCURRENCY (8), BENCH_WORKERS (2).
"""
import http.client
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import redis

from bench.common import ROOT, admin_sql, database_url, percentile, write_results

PORT = int(os.environ.get("BENCH_PORT", "8137"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
MAX_REQUESTS = int(os.environ.get("BENCH_MAX_REQUESTS", "20000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
DB_NAME = f"devshare_bench_api_{os.getpid()}"
PASSWORD = "bench-password-1"  # noqa: S105  (the throwaway users of a throwaway bench database)
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")


def environment() -> dict:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DEBUG": "false",
        "DATABASE_URL": database_url(DB_NAME),
        "API_THROTTLE_AUTH": "1000000/minute",
        "API_THROTTLE_SHARES": "1000000/minute",
        "API_MAX_PAGE_SIZE": "1000",
        "LOG_LEVEL": "WARNING",
        # Shares queue snapshot pushes; keep them off the Redis database `make run` uses.
        "CELERY_BROKER_URL": BROKER_URL,
    }


SEED = '''
import django, json, sys
django.setup()
from django.contrib.auth.hashers import make_password
from devices.models import Device, DeviceType, Membership, Tenant, User

hashed = make_password(sys.argv[1])
tenant = Tenant.objects.create(name="Bench", slug="bench")
kind = DeviceType.objects.create(tenant=tenant, name="Bulb", slug="bulb", capabilities=["telemetry"])
users = User.objects.bulk_create(
    [User(email=f"owner{n}@bench.test", password=hashed) for n in (100, 1000)]
    + [User(email=f"grantee{i}@bench.test", password=hashed) for i in range(int(sys.argv[2]))]
)
Membership.objects.bulk_create([Membership(tenant=tenant, user=u) for u in users])
for owner, count in ((users[0], 100), (users[1], 1000)):
    Device.objects.bulk_create(
        [Device(tenant=tenant, owner=owner, device_type=kind, name=f"Device {i:04d}", thing_name=f"b-{count}-{i}")
         for i in range(count)]
    )
print(json.dumps({"device": Device.objects.filter(owner=users[0]).order_by("id").values_list("id", flat=True).first()}))
'''


def request(conn, method, path, token=None, body=None):
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def login(email: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    status, body = request(conn, "POST", "/api/v1/auth/token/", body={"email": email, "password": PASSWORD})
    assert status == 200, body
    return json.loads(body)["access"]


def wait_for_server(process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("bench: gunicorn exited early")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
            request(conn, "GET", "/api/v1/me/")
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("bench: gunicorn did not answer within 60 s")


def drive(name, make_request, expect):
    """Run `make_request(conn)` from CONCURRENCY threads until SECONDS or MAX_REQUESTS."""
    latencies, errors, lock = [], [], threading.Lock()
    issued = itertools.count()
    stop_at = time.monotonic() + SECONDS

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        while time.monotonic() < stop_at and next(issued) < MAX_REQUESTS:
            started = time.perf_counter()
            try:
                status, body = make_request(conn)
            except (OSError, http.client.HTTPException) as error:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
                status, body = None, str(error).encode()
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if status not in expect:
                    errors.append((status, body[:200]))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = sorted(x * 1000 for x in latencies)
    return {
        "scenario": name,
        "requests": len(ms),
        "errors": len(errors),
        "req_per_s": round(len(ms) / wall, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p95_ms": round(percentile(ms, 95), 1) if ms else None,
        "first_error": repr(errors[0]) if errors else "",
    }


def table(rows) -> str:
    head = "| scenario | requests | errors | req/s | p50 ms | p95 ms |\n|---|---:|---:|---:|---:|---:|\n"
    return head + "".join(
        f"| {r['scenario']} | {r['requests']} | {r['errors']} | {r['req_per_s']} | {r['p50_ms']} | {r['p95_ms']} |\n"
        for r in rows
    )


def main() -> int:
    env = environment()
    grantees = MAX_REQUESTS + 10
    admin_sql(f'CREATE DATABASE "{DB_NAME}"')
    server = None
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True)
        seeded = json.loads(subprocess.run([sys.executable, "-c", SEED, PASSWORD, str(grantees)], cwd=ROOT, env=env,
                                           check=True, capture_output=True, text=True).stdout)
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{PORT}", "--workers", WORKERS,
             "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"],
            cwd=ROOT, env=env,
        )
        wait_for_server(server)
        token100, token1000 = login("owner100@bench.test"), login("owner1000@bench.test")
        devices = "/api/v1/tenants/bench/devices/"
        grantee = itertools.count()

        def share(conn):
            body = {"grantee": f"grantee{next(grantee)}@bench.test", "level": "view"}
            return request(conn, "POST", f"{devices}{seeded['device']}/shares/", token100, body)

        rows = [
            drive("list 100 devices (one page of 100)",
                  lambda c: request(c, "GET", f"{devices}?page_size=100", token100), {200}),
            drive("list 1,000 devices (one page of 1,000)",
                  lambda c: request(c, "GET", f"{devices}?page_size=1000", token1000), {200}),
            drive("list 1,000 devices (first page of 50)", lambda c: request(c, "GET", devices, token1000), {200}),
            drive("create a share (new grantee each time)", share, {201}),
        ]
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        admin_sql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        redis.Redis.from_url(BROKER_URL).flushdb()

    setup = (f"gunicorn gthread, {WORKERS} workers x 4 threads; {CONCURRENCY} client threads; "
             f"{SECONDS:g} s per scenario; PostgreSQL; {os.cpu_count()} CPUs shared by server, client and database")
    text = f"API throughput ({setup})\n\n{table(rows)}"
    print(text)
    for row in rows:
        if row["first_error"]:
            print(f"{row['scenario']}: first error {row['first_error']}")
    write_results("api_bench", text, {"setup": setup, "rows": rows})
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
