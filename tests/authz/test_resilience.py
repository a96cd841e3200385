"""Real workers, a real broker that goes away, a worker that dies mid-push:
the snapshots in DynamoDB still end up right."""
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import kombu.pools
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from authz import tasks
from authz.models import PrincipalSync
from config.celery_app import app
from devices import services
from devices.models import Level
from lambda_bridge import snapshot
from tests.conftest import require

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=20.0, what="condition"):
    """A bounded wait for something another process does; not a timing check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


@contextmanager
def broker(url: str):
    """Send and consume through `url` for real, instead of running tasks inline."""
    saved = app.conf.broker_url, app.conf.task_always_eager
    _drop_connections()
    app.conf.broker_url, app.conf.task_always_eager = url, False
    try:
        yield
    finally:
        _drop_connections()
        app.conf.broker_url, app.conf.task_always_eager = saved


def _drop_connections():
    # What Celery does after a fork, plus kombu's process-wide producer pools:
    # otherwise publishing reuses connections to the previous broker.
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


@pytest.fixture
def shared_redis():
    """The machine's Redis, on a database of its own, emptied before and after.
    TEST_REDIS_DB picks another database for runs that share the machine."""
    db = os.environ.get("TEST_REDIS_DB", "3")
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        require(False, "Redis")
    client.flushdb()
    yield url
    client.flushdb()


class OwnRedis:
    """A redis-server of the test's own, on a free port, that can be stopped and restarted."""

    def __init__(self):
        require(shutil.which("redis-server") is not None, "redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _pings(client), what="redis-server start")

    def stop(self):
        self.process.terminate()
        self.process.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


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
    caplog.set_level(logging.WARNING, logger="authz.outbox")  # a test worker may have raised the root level
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

        own.start()
        with start_worker(app, perform_ping_check=False, shutdown_timeout=30):
            assert tasks.reconcile_snapshots() == 2
            wait_until(lambda: not PrincipalSync.objects.lagging().exists(), what="the reconciled pushes")
    own.stop()
    assert alice_levels(table, world) == {world.lock.thing_name: snapshot.MANAGE}
    bob = table.snapshot(snapshot.item_key(snapshot.USER, world.tenant.pk, str(world.bob.pk)))
    assert bob.levels_at(int(timezone.now().timestamp())) == {world.lamp.thing_name: snapshot.VIEW}


class BlackHole:
    """A TCP endpoint that accepts and never answers: a push into it hangs,
    so the worker can be killed while it is inside PutItem."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            self.accepted.set()

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_a_worker_killed_mid_push_is_reconciled(world, table, shared_redis, settings):
    require(connection.vendor == "postgresql", "PostgreSQL (a worker process must see the test database)")
    settings.SNAPSHOT_RECONCILE_GRACE_SECONDS = 0
    db = connection.settings_dict
    hole = BlackHole()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
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
