"""Large revocations: one write that takes access from many people at once.

For each case a device (or group) is shared with BENCH_REVOKE_GRANTEES users
(10,000), whose outbox rows already exist, as they would in a live tenant.
Then one service call revokes them all:

- delete the device;
- transfer the device (its shares are revoked);
- delete a group shared with them all;

and we measure the service call (the request's share of the work) and the
fan-out: until every affected item in DynamoDB holds its new version, through
Redis, a real Celery worker process (BENCH_WORKER_THREADS threads) and a moto
server over HTTP. The worker's log is searched for urllib3's "Connection pool
is full" warning, which means pushes queued for a connection.

Environment: BENCH_DATABASE_URL (server; default from DATABASE_URL),
BENCH_BROKER_URL (redis://…/8), BENCH_REVOKE_GRANTEES (10000),
BENCH_WORKER_THREADS (8).
"""
import os
import sys
import tempfile
import time

from bench.common import PIPELINE_SETUP, md_table, pipeline, wait_in_sync, write_results

GRANTEES = int(os.environ.get("BENCH_REVOKE_GRANTEES", "10000"))


class Seed:
    """One tenant, its owner and GRANTEES members with outbox rows in sync."""

    def __init__(self):
        from devices.models import DeviceType, Membership, Tenant, User

        self.tenant = Tenant.objects.create(name="Revoke", slug="revoke")
        self.kind = DeviceType.objects.create(tenant=self.tenant, name="Bulb", slug="bulb")
        self.owner = User.objects.create(email="owner@revoke.test")
        self.heir = User.objects.create(email="heir@revoke.test")
        self.users = User.objects.bulk_create([User(email=f"u{i}@revoke.test") for i in range(GRANTEES)])
        Membership.objects.bulk_create([Membership(tenant=self.tenant, user=u)
                                        for u in [self.owner, self.heir, *self.users]])

    def device(self, name: str, group=None):
        from devices.models import Device

        return Device.objects.create(tenant=self.tenant, owner=self.owner, device_type=self.kind, name=name,
                                     group=group)

    def share_with_everyone(self, **target):
        """Shares and outbox rows as a live tenant has them: present and pushed."""
        from django.db import connection, transaction
        from django.db.models import F
        from django.utils import timezone

        from authz.models import PrincipalSync
        from authz.snapshots import outbox
        from devices.models import Level, Share

        now = timezone.now()
        Share.objects.bulk_create([Share(tenant=self.tenant, grantee=u, level=Level.VIEW, created_by=self.owner,
                                         created_at=now, updated_at=now, **target) for u in self.users])
        with transaction.atomic():
            outbox.record(tenant_id=self.tenant.pk, users={u.pk for u in self.users}, queue=False)
        PrincipalSync.objects.update(pushed_version=F("desired_version"))
        # A live database has statistics; freshly bulk-loaded tables do not, and
        # the foreign-key checks' plans would then scan a whole tenant per row.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def measure(seed: Seed, name: str, prepare, act, worker_log) -> tuple:
    target = prepare()
    seen = worker_log.tell()
    start = time.perf_counter()
    act(target)
    called = time.perf_counter()
    wait_in_sync(seed.tenant, timeout=900)
    done = time.perf_counter()
    worker_log.seek(seen)
    pool_full = worker_log.read().count("Connection pool is full")
    worker_log.seek(0, os.SEEK_END)
    fanout = done - start
    return (name, GRANTEES, f"{(called - start) * 1000:.0f}", f"{fanout * 1000:.0f}",
            f"{GRANTEES / fanout:.0f}", pool_full)


def cases(seed: Seed, worker_log) -> list[tuple]:
    from devices import services
    from devices.models import DeviceGroup

    def shared_device(name):
        def prepare():
            device = seed.device(name)
            seed.share_with_everyone(device=device)
            return device
        return prepare

    def shared_group():
        group = DeviceGroup.objects.create(tenant=seed.tenant, owner=seed.owner, name="Everyone")
        seed.device("In the group", group=group)
        seed.share_with_everyone(group=group)
        return group

    return [
        measure(seed, "delete a device", shared_device("Deleted"),
                lambda d: services.delete_device(actor=seed.owner, device=d), worker_log),
        measure(seed, "transfer a device", shared_device("Transferred"),
                lambda d: services.transfer_device(actor=seed.owner, device=d, new_owner=seed.heir), worker_log),
        measure(seed, "delete a shared group", shared_group,
                lambda g: services.delete_group(actor=seed.owner, group=g), worker_log),
    ]


def main() -> int:
    worker_log = tempfile.TemporaryFile("w+")
    with pipeline("revocation") as start_worker:
        seed = Seed()
        start_worker(worker_log)
        rows = cases(seed, worker_log)

    table = md_table(["case", "grantees", "service call ms", "all items updated ms", "items/s",
                      "'pool is full' warnings"], rows)
    text = f"Large revocations ({PIPELINE_SETUP})\n\n{table}"
    print(text)
    write_results("revocation_bench", text, {"setup": PIPELINE_SETUP, "revocations": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
