"""Real workers, a real broker that goes away, a worker that dies mid-push:
the snapshots in DynamoDB still end up right."""
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.utils import timezone

from authz import tasks
from authz.models import PrincipalSync
from config.celery_app import app
from devices import services
from devices.models import Level
from lambda_bridge import snapshot
from tests.support.live_access import BlackHole, broker
from tests.support.paths import ROOT
from tests.support.processes import CeleryProcess, OwnRedis, test_database_url, unit_celery_args, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def alice_levels(table, world):
    snap = table.snapshot(snapshot.item_key(snapshot.USER, world.tenant.pk, str(world.alice.pk)))
    return None if snap is None else snap.levels_at(int(timezone.now().timestamp()))


def grant(world, level=Level.CONTROL, device=None):
    return services.create_share(actor=world.owner, grantee=world.alice, device=device or world.lock, level=level)


def test_a_share_reaches_dynamodb_through_a_real_worker_and_redis(world, table, shared_redis):
    with broker(shared_redis), start_worker(app, perform_ping_check=False, shutdown_timeout=30):
        grant(world)
        wait_until(lambda: alice_levels(table, world) == {world.lock.thing_name: snapshot.CONTROL},
                   what="the pushed snapshot")
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    assert row.pushed_version == row.desired_version


def test_changes_made_while_the_broker_is_down_are_pushed_by_the_reconciler(world, table, settings, caplog):
    settings.SNAPSHOT_RECONCILE_GRACE_SECONDS = 0
    caplog.set_level(logging.WARNING, logger="authz.snapshots.outbox")  # a test worker may have raised the root level
    own = OwnRedis()
    own.start()
    with broker(own.url):
        own.stop()
        share = grant(world, Level.VIEW)
        services.update_share(actor=world.owner, share=share, level=Level.MANAGE)
        services.create_share(actor=world.owner, grantee=world.bob, device=world.lamp, level=Level.VIEW)
        assert "not queued" in caplog.text
        lagging = set(PrincipalSync.objects.lagging().values_list("principal", flat=True))
        assert lagging == {str(world.alice.pk), str(world.bob.pk)}
        assert table.items() == {}

        # A reconcile while the broker is still down leases nothing it could not queue,
        # so the first beat after the broker returns queues the rows again.
        assert tasks.reconcile_snapshots() == 2
        assert list(PrincipalSync.objects.lagging().values_list("retry_after", flat=True)) == [None, None]

        own.start()
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
            assert tasks.reconcile_snapshots() == 2
            wait_until(lambda: not PrincipalSync.objects.lagging().exists(), what="the reconciled pushes")
    own.stop()
    assert alice_levels(table, world) == {world.lock.thing_name: snapshot.MANAGE}
    bob = table.snapshot(snapshot.item_key(snapshot.USER, world.tenant.pk, str(world.bob.pk)))
    assert bob.levels_at(int(timezone.now().timestamp())) == {world.lamp.thing_name: snapshot.VIEW}


def test_a_worker_killed_mid_push_is_reconciled(world, table, shared_redis, settings):
    settings.SNAPSHOT_RECONCILE_GRACE_SECONDS = 0
    hole = BlackHole()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": shared_redis,
        "DYNAMODB_ENDPOINT_URL": hole.url,
        "DYNAMODB_TABLE": django_settings.DYNAMODB_TABLE,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "--pool", "solo",
         "--concurrency", "1", "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with broker(shared_redis):
            grant(world)
        assert hole.accepted.wait(60), "the worker never started its push"
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
        hole.close()
    row = PrincipalSync.objects.get(principal=str(world.alice.pk))
    assert row.pushed_version < row.desired_version and alice_levels(table, world) is None

    assert tasks.reconcile_snapshots() == 1   # inline here: tasks run eagerly outside `broker()`
    row.refresh_from_db()
    assert row.pushed_version == row.desired_version
    assert alice_levels(table, world) == {world.lock.thing_name: snapshot.CONTROL}


# --- a Redis outage under API writes (broker and throttle cache on one redis-server) ----------


class ShareWriter:
    """API writes on shares, cycling create → update → revoke over every
    (grantee, device) pair, so each write changes someone's snapshot."""

    def __init__(self, world, client):
        from tests.support.api import tenant_url

        self.world, self.client, self.url = world, client, tenant_url
        self.pairs = [(u, d) for u in (world.alice, world.bob, world.carol) for d in (world.lamp, world.lock)]
        self.live: dict[int, int] = {}   # pair index → live share id
        self.step = 0
        self.statuses: list[int] = []

    def write(self) -> int:
        index = self.step % len(self.pairs)
        grantee, device = self.pairs[index]
        phase = (self.step // len(self.pairs)) % 3
        self.step += 1
        if phase == 0:
            response = self.client.post(self.url("device-shares", self.world, device=device.pk),
                                        {"grantee": grantee.email, "level": "view"}, format="json")
            if response.status_code == 201:
                self.live[index] = response.json()["id"]
        elif phase == 1:
            response = self.client.patch(self.url("share-detail", self.world, pk=self.live[index]),
                                         {"level": "control"}, format="json")
        else:
            response = self.client.post(self.url("share-revoke", self.world, pk=self.live.pop(index)))
        self.statuses.append(response.status_code)
        return response.status_code


def differences_from_the_compiler(table) -> list[tuple]:
    """(key, what the table holds, what the compiler makes of the database now)
    for every principal whose item differs: a lagging row, a missing or wrong item."""
    from authz.snapshots.compiler import Principal, compile_snapshots

    rows = list(PrincipalSync.objects.all())
    wanted = compile_snapshots([Principal(r.tenant_id, r.kind, r.principal, r.desired_version) for r in rows],
                               now=timezone.now())
    stored = table.snapshots()
    found = []
    for row in rows:
        want, got = wanted[(row.tenant_id, row.kind, row.principal)], stored.get(row.key)
        # Items store entries in their own order; the compiler's follows the database.
        want = (want.version, want.gone, set(want.entries))
        got = None if got is None else (got.version, got.gone, set(got.entries))
        if got != want or not row.in_sync:
            found.append((row.key, got, want, row.pushed_version))
    return found


OUTAGE_SECONDS = 20
WRITES = 200


def test_a_redis_outage_under_200_api_writes_costs_no_5xx_and_no_worker(world, table, settings, tmp_path, caplog):
    from rest_framework.test import APIClient

    test_database_url()  # worker and beat must see the test database: PostgreSQL only
    own = OwnRedis()
    own.start()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": own.url.rsplit("/", 1)[0] + "/1"}}
    # Throttling stays on (every write reads and writes its counter), high enough not to refuse.
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "shares": "100000/minute"}}
    caplog.set_level(logging.WARNING, logger="config.api.throttling")
    fast = {"SNAPSHOT_RECONCILE_SECONDS": "1", "SNAPSHOT_RECONCILE_GRACE_SECONDS": "2"}
    worker = CeleryProcess(unit_celery_args("devshare-worker.service"), log=tmp_path / "worker.log",
                           broker=own.url, env=fast)
    beat = CeleryProcess(["beat", "--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"],
                         log=tmp_path / "beat.log", broker=own.url, env=fast)
    client = APIClient()
    client.force_authenticate(world.owner)
    writer = ShareWriter(world, client)
    try:
        with broker(own.url):
            worker.start(), beat.start()
            pids = worker.pid, beat.pid
            wait_until(lambda: "ready." in worker.output(), timeout=60, what="the worker's start")
            for _ in range(WRITES // 4):
                writer.write()

            own.stop()
            down_at = time.monotonic()
            during = 0
            while time.monotonic() - down_at < OUTAGE_SECONDS and during < WRITES // 2:
                writer.write()
                during += 1
                time.sleep(0.1)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            own.start()

            while len(writer.statuses) < WRITES:
                writer.write()
            try:
                wait_until(lambda: not differences_from_the_compiler(table), timeout=60, interval=0.5,
                           what="every item equal to the compiler's output after Redis returned")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {differences_from_the_compiler(table)}") from None
            assert worker.alive and beat.alive, (worker.output()[-3000:], beat.output()[-3000:])
            assert (worker.pid, beat.pid) == pids
    finally:
        worker.stop(), beat.stop(), own.stop()
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert len(writer.statuses) == WRITES and during >= 20
    assert [s for s in writer.statuses if s >= 500] == []
    assert set(writer.statuses) <= {200, 201}, sorted(set(writer.statuses))
    assert caplog.text.count("throttle cache unreachable") == 1
    assert "Unrecoverable error" not in worker.output()


def test_throttled_writes_pass_with_one_warning_while_the_throttle_cache_is_down(world, table, settings, caplog):
    from rest_framework.test import APIClient

    from tests.support.api import tenant_url

    own = OwnRedis()
    own.start()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": own.url}}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "shares": "1/minute"}}
    caplog.set_level(logging.WARNING, logger="config.api.throttling")
    client = APIClient()
    client.force_authenticate(world.owner)

    def share(grantee):
        return client.post(tenant_url("device-shares", world, device=world.lock.pk),
                           {"grantee": grantee.email, "level": "view"}, format="json").status_code

    try:
        own.stop()
        assert [share(u) for u in (world.alice, world.bob, world.carol)] == [201, 201, 201]
        assert caplog.text.count("throttle cache unreachable") == 1
        own.start()  # empty: the throttle counts from here, 1 a minute
        assert [share(world.admin), client.post(tenant_url("share-revoke", world, pk=1)).status_code] == [201, 429]
        assert "throttling resumed" in caplog.text
    finally:
        own.stop()
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert set(PrincipalSync.objects.values_list("principal", flat=True)) >= {
        str(u.pk) for u in (world.alice, world.bob, world.carol)}


def test_acking_through_a_connection_dropped_after_a_loss_does_not_raise(caplog):
    """What killed workers: after a connection error the consumer collects the
    connection (detaching its transport), and a task finishing later acks
    through the old channel, whose pool a close already dropped. Rebuilding
    the pool from the detached transport must be a connection error (logged),
    never an AttributeError Celery finds unrecoverable."""
    import kombu

    from config.celery_app import RedisTransport

    own = OwnRedis()
    own.start()
    try:
        conn = kombu.Connection(own.url)
        assert isinstance(conn.transport, RedisTransport)
        errors = conn.connection_errors + conn.channel_errors
        queue = conn.SimpleQueue("late-ack", channel=conn.default_channel)  # as the consumer's
        queue.put({"task": "push"})
        message = queue.get(timeout=5)
        own.stop()                             # Redis goes away while the task runs
        conn.collect()                         # the consumer's clean-up after the connection error
        message.channel._disconnect_pools()    # where an interrupted close leaves the channel
        message.ack_log_error(logging.getLogger("tests.late_ack"), errors)  # the task finishes
    finally:
        own.stop()
    assert "Couldn't ack" in caplog.text and "closed after a connection loss" in caplog.text
