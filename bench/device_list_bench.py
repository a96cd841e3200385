"""Latency of the API's lists for a user who sees many devices in a large database.

Seeds PostgreSQL with BENCH_DEVICES devices (100,000) across ten tenants, with
groups and shares among many people, and in the biggest tenant:

- ``heavy``: 10,000 visible devices, through direct shares, group shares and
  both at once (a device reached by two paths counts once);
- ``light``: 100 visible devices the same ways.

Then times warm GETs through the Django test client (one process, the app's
own settings and connection), BENCH_REPEATS times each, and reports p50/p95.
Rows are bulk-inserted: seeding takes about a minute on 2 busy CPUs.

Environment: BENCH_DATABASE_URL (server; default from DATABASE_URL),
BENCH_DEVICES (100000), BENCH_REPEATS (20), BENCH_DEVICES_DB (a database to
keep and reuse between runs; by default a throw-away one is created and dropped).
"""
import os
import statistics
import sys
import time

from bench.common import admin_sql, database_url, md_table, percentile, write_results

DEVICES = int(os.environ.get("BENCH_DEVICES", "100000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "20"))
KEEP_DB = os.environ.get("BENCH_DEVICES_DB", "")
DB_NAME = KEEP_DB or f"devshare_bench_devices_{os.getpid()}"
TENANTS = 10
GROUP_SIZE = 50
HEAVY, LIGHT = 10_000, 100


def setup_django() -> None:
    os.environ["DATABASE_URL"] = database_url(DB_NAME)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["DEBUG"] = "false"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["API_MAX_PAGE_SIZE"] = "1000"
    import django

    django.setup()


def seed() -> None:
    """The data set described in the module docstring; deterministic."""
    from devices.models import Device, DeviceGroup, DeviceType, Level, Membership, Share, Tenant, User

    levels = [Level.VIEW, Level.CONTROL, Level.MANAGE]
    # The user's own tenant holds 40%; the rest is other tenants' growth.
    sizes = [DEVICES * 4 // 10] + [(DEVICES - DEVICES * 4 // 10) // (TENANTS - 1)] * (TENANTS - 1)
    users = User.objects.bulk_create(
        [User(email="heavy@bench.test"), User(email="light@bench.test")]
        + [User(email=f"u{t}-{i}@bench.test") for t in range(TENANTS) for i in range(40)]
    )
    heavy, light, people = users[0], users[1], users[2:]
    for t, per_tenant in enumerate(sizes):
        tenant = Tenant.objects.create(name=f"Tenant {t}", slug=f"t{t}")
        members = people[t * 40:(t + 1) * 40]
        owners, grantees = members[:10], members[10:]
        Membership.objects.bulk_create(
            [Membership(tenant=tenant, user=u) for u in members]
            + ([Membership(tenant=tenant, user=heavy), Membership(tenant=tenant, user=light)] if t == 0 else [])
        )
        kind = DeviceType.objects.create(tenant=tenant, name="Sensor", slug="sensor")
        groups = DeviceGroup.objects.bulk_create(
            [DeviceGroup(tenant=tenant, owner=owners[g % 10], name=f"Home {g}")
             for g in range(per_tenant // (2 * GROUP_SIZE))]
        )
        # Half the devices sit in groups of GROUP_SIZE, each group with its owner's devices.
        grouped = len(groups) * GROUP_SIZE
        devices = Device.objects.bulk_create(
            [Device(tenant=tenant, owner=groups[i // GROUP_SIZE].owner if i < grouped else owners[i % 10],
                    group=groups[i // GROUP_SIZE] if i < grouped else None, device_type=kind,
                    name=f"Device {(i * 7919) % per_tenant:06d}", thing_name=f"b{t}-{i}")
             for i in range(per_tenant)],
            batch_size=5000,
        )
        shares = [
            Share(tenant=tenant, device=d, grantee=grantees[(i + k) % 30], level=levels[(i + k) % 3],
                  created_by=d.owner)
            for i, d in enumerate(devices) for k in range(2)
        ]
        shares += [Share(tenant=tenant, group=g, grantee=grantees[(i * 7) % 30], level=levels[i % 3],
                         created_by=g.owner)
                   for i, g in enumerate(groups)]
        if t == 0:
            shares += _visible_shares(heavy, HEAVY, groups, devices, levels)
            shares += _visible_shares(light, LIGHT, groups[-2:], devices[-per_tenant // 4:], levels)
        Share.objects.bulk_create(shares, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def _visible_shares(user, total, groups, devices, levels):
    """Half of `total` through group shares, half through direct shares on
    ungrouped devices, plus direct shares on a tenth of the group-shared devices
    (two paths, different levels) and a few revoked shares that grant nothing."""
    from django.utils import timezone

    from devices.models import Share

    half = total // 2
    shared_groups = groups[:half // GROUP_SIZE]
    ungrouped = [d for d in devices if d.group_id is None][:half]
    in_groups = [d for d in devices if d.group_id in {g.pk for g in shared_groups}]
    revoked_on = [d for d in devices if d.group_id is None][half:half + total // 20]
    return (
        [Share(tenant=g.tenant, group=g, grantee=user, level=levels[i % 3], created_by=g.owner)
         for i, g in enumerate(shared_groups)]
        + [Share(tenant=d.tenant, device=d, grantee=user, level=levels[i % 3], created_by=d.owner)
           for i, d in enumerate(ungrouped)]
        + [Share(tenant=d.tenant, device=d, grantee=user, level=levels[(i + 1) % 3], created_by=d.owner)
           for i, d in enumerate(in_groups[::10])]
        + [Share(tenant=d.tenant, device=d, grantee=user, level=levels[0], created_by=d.owner,
                 revoked_at=timezone.now()) for d in revoked_on]
    )


def database_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(database_url("postgres")) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def time_get(client, path: str) -> dict:
    from django.db import connection

    for _ in range(2):  # warm: connection, caches, plans
        response = client.get(path)
        assert response.status_code == 200, response.content[:300]
    queries = []
    with connection.execute_wrapper(lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)):
        client.get(path)
    latencies = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        response = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    body = response.json()
    return {"count": body["count"], "rows": len(body["results"]), "queries": len(queries),
            "p50_ms": round(statistics.median(latencies), 1), "p95_ms": round(percentile(latencies, 95), 1)}


def main() -> int:
    if not KEEP_DB or not database_exists(DB_NAME):
        admin_sql(f'CREATE DATABASE "{DB_NAME}"')
    setup_django()
    from django.core.management import call_command
    from django.db import connection
    from rest_framework.test import APIClient

    from devices.models import Device, User

    try:
        call_command("migrate", "--no-input", verbosity=0)
        started = time.perf_counter()
        if not Device.objects.exists():
            seed()
        seeded_s = time.perf_counter() - started
        total = Device.objects.count()
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            jit = cursor.fetchone()[0]
        base = "/api/v1/tenants/t0"
        scenarios = [
            ("10,000 devices: devices page 1 of 50", "heavy", f"{base}/devices/"),
            ("10,000 devices: devices page 100 of 50", "heavy", f"{base}/devices/?page=100"),
            ("100 devices: devices page 1 of 50", "light", f"{base}/devices/"),
            ("10,000 devices: groups page 1 of 50", "heavy", f"{base}/groups/"),
            ("10,000 devices: received shares page 1 of 50", "heavy", f"{base}/shares/"),
        ]
        rows = []
        for name, who, path in scenarios:
            client = APIClient(SERVER_NAME="127.0.0.1")
            client.force_authenticate(User.objects.get(email=f"{who}@bench.test"))
            rows.append({"scenario": name, **time_get(client, path)})
    finally:
        connection.close()
        if not KEEP_DB:
            admin_sql(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')

    setup = (f"{total:,} devices in {TENANTS} tenants; Django test client, warm, "
             f"{REPEATS} requests each; PostgreSQL jit={jit}; {os.cpu_count()} CPUs shared with the database; "
             f"seeded in {seeded_s:.0f} s")
    head = ["scenario", "count", "rows", "queries", "p50 ms", "p95 ms"]
    text = f"Device lists at scale ({setup})\n\n" + md_table(
        head, [[r["scenario"], r["count"], r["rows"], r["queries"], r["p50_ms"], r["p95_ms"]] for r in rows])
    print(text)
    write_results("device_list_bench", text, {"setup": setup, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
