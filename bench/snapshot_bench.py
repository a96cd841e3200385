"""The snapshot pipeline, measured with real parts.

- snapshot size for 1/10/100/1,000 devices (codec only);
- compile time per principal for 1/100/1,000 devices (PostgreSQL);
- grant → DynamoDB: a share made through the service until its item is in
  the table, through Redis, a real Celery worker process and a moto server;
- fan-out: one device shared with 1,000 users is deleted; time until all
  1,000 items are rewritten.

It creates a throw-away PostgreSQL database and a moto server, starts a
worker, and removes them all at the end. Environment: BENCH_DATABASE_URL
(server; default from DATABASE_URL), BENCH_BROKER_URL (redis://…/8),
BENCH_GRANTS (50), BENCH_FANOUT (1000), BENCH_WORKER_THREADS (8).
"""
import os
import statistics
import sys
import time

from bench.common import PIPELINE_SETUP, md_table, percentile, pipeline, wait_in_sync, write_results

GRANTS = int(os.environ.get("BENCH_GRANTS", "50"))
FANOUT = int(os.environ.get("BENCH_FANOUT", "1000"))


def size_table():
    from lambda_bridge import snapshot
    from lambda_bridge.snapshot import Entry, Snapshot

    now = int(time.time())
    rows = []
    for n in (1, 10, 100, 1000):
        snap = Snapshot(kind="u", tenant=12, principal="4711", version=time.time_ns() // 1000, generated_at=now,
                        entries=tuple(Entry(f"d-{i:012d}", snapshot.CONTROL, expires=now + 7 * 86400, group=900 + i % 7)
                                      for i in range(n)))
        v2, v1 = snapshot.to_item(snap, fmt=2), snapshot.to_item(snap, fmt=1)
        rows.append((n, snapshot.item_size(v2), round(snapshot.entries_size(snap) / n, 1), snapshot.item_size(v1),
                     round(snapshot.entries_size(snap, fmt=1) / n, 1)))
    return md_table(["devices", "item bytes (format 2)", "bytes/entry", "item bytes (format 1, JSON)",
                     "bytes/entry"], rows)


def seed_owner(tenant, device_type, owner, count):
    from devices.models import Device

    Device.objects.bulk_create([Device(tenant=tenant, owner=owner, device_type=device_type, name=f"Bulb {i}")
                                for i in range(count)])


def compile_table():
    from django.utils import timezone

    from authz.snapshots.compiler import Principal, compile_snapshots
    from devices.models import DeviceType, Membership, Tenant, User

    tenant = Tenant.objects.create(name="Compile", slug="compile")
    kind = DeviceType.objects.create(tenant=tenant, name="Bulb", slug="bulb")
    rows = []
    for n in (1, 100, 1000):
        owner = User.objects.create(email=f"owner{n}@compile.test")
        Membership.objects.create(tenant=tenant, user=owner)
        seed_owner(tenant, kind, owner, n)
        wanted = [Principal(tenant.pk, "u", str(owner.pk), 1)]
        compile_snapshots(wanted, now=timezone.now())  # warm
        runs = []
        for _ in range(20):
            start = time.perf_counter()
            snaps = compile_snapshots(wanted, now=timezone.now())
            runs.append((time.perf_counter() - start) * 1000)
        assert len(next(iter(snaps.values())).entries) == n
        rows.append((n, f"{statistics.median(runs):.2f}", f"{percentile(runs, 95):.2f}"))
    return md_table(["devices", "compile p50 ms", "p95 ms"], rows)


def item_version(key):
    from authz.snapshots import store

    item = store.get_item(key)
    return None if item is None else int(item["v"]["N"])


def latency_and_fanout():
    from django.db import transaction

    from authz.models import PrincipalSync
    from authz.snapshots import store
    from devices import services
    from devices.models import Device, DeviceType, Level, Membership, Share, Tenant, User
    from lambda_bridge import snapshot

    tenant = Tenant.objects.create(name="Push", slug="push")
    kind = DeviceType.objects.create(tenant=tenant, name="Bulb", slug="bulb")
    owner = User.objects.create(email="owner@push.test")
    users = User.objects.bulk_create([User(email=f"u{i}@push.test") for i in range(max(GRANTS, FANOUT))])
    Membership.objects.bulk_create([Membership(tenant=tenant, user=u) for u in [owner, *users]])
    seed_owner(tenant, kind, owner, GRANTS + 1)
    devices = list(Device.objects.filter(tenant=tenant).order_by("pk"))

    # grant → item in DynamoDB, one at a time
    latencies = []
    for i in range(GRANTS):
        user = users[i]
        key = snapshot.item_key(snapshot.USER, tenant.pk, str(user.pk))
        start = time.perf_counter()
        services.create_share(actor=owner, grantee=user, device=devices[i], level=Level.VIEW)
        wanted = PrincipalSync.objects.get(tenant=tenant, kind="u", principal=str(user.pk)).desired_version
        while (item_version(key) or 0) < wanted:
            time.sleep(0.002)
        latencies.append((time.perf_counter() - start) * 1000)

    # one device shared with FANOUT users, then deleted
    target = devices[-1]
    now = target.created_at
    Share.objects.bulk_create([Share(tenant=tenant, device=target, grantee=u, level=Level.VIEW, created_by=owner,
                                     created_at=now, updated_at=now) for u in users[:FANOUT]])
    with transaction.atomic():
        from authz.snapshots import outbox
        outbox.record(tenant_id=tenant.pk, users={u.pk for u in users[:FANOUT]})
    wait_in_sync(tenant, timeout=300)
    start = time.perf_counter()
    services.delete_device(actor=owner, device=target)
    committed = time.perf_counter()
    wait_in_sync(tenant, timeout=300)
    fanout_s = time.perf_counter() - start
    keys = [snapshot.item_key(snapshot.USER, tenant.pk, str(u.pk)) for u in users[:FANOUT]]
    stale = [k for k in keys if target.thing_name in snapshot.from_item(store.get_item(k)).levels_at(int(time.time()))]
    assert not stale, f"{len(stale)} items still grant the deleted device"
    grant_rows = [(GRANTS, f"{statistics.median(latencies):.1f}", f"{percentile(latencies, 95):.1f}",
                   f"{max(latencies):.1f}")]
    fanout_rows = [(FANOUT, f"{(committed - start) * 1000:.0f}", f"{fanout_s * 1000:.0f}",
                    f"{FANOUT / fanout_s:.0f}")]
    return (md_table(["grants", "p50 ms", "p95 ms", "max ms"], grant_rows),
            md_table(["principals", "service call ms", "all items updated ms", "items/s"], fanout_rows))


def main() -> int:
    with pipeline("snapshot") as start_worker:
        sizes = size_table()
        compiles = compile_table()
        start_worker()
        grants, fanout = latency_and_fanout()

    text = (f"Snapshot pipeline ({PIPELINE_SETUP})\n\nSnapshot size\n\n{sizes}\n"
            f"Compile one user principal\n\n{compiles}\n"
            f"Grant → item in DynamoDB (service call to conditional write visible)\n\n{grants}\n"
            f"Fan-out: delete a device shared with {FANOUT} users\n\n{fanout}")
    print(text)
    write_results("snapshot_bench", text,
                  {"setup": PIPELINE_SETUP, "sizes": sizes, "compile": compiles, "grant": grants, "fanout": fanout})
    return 0


if __name__ == "__main__":
    sys.exit(main())
