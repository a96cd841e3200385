"""The broker the resilience tests share with the processes they start, the
live platform the end-to-end tests share (tests/support/live_access.py), and
both tenants pushed for the tests that run the authorizer on them.
The processes themselves are tests/support/processes.py."""
import os

import pytest
import redis

from authz.snapshots import outbox
from authz.tokens import rotation
from devices.models import Tenant
from tests.support.live_access import live_platform, written
from tests.support.processes import test_database_url
from tests.support.services import require


@pytest.fixture
def shared_redis():
    """The machine's Redis, on a database of its own, emptied before and after.
    TEST_REDIS_DB picks another database for runs that share the machine; each
    pytest-xdist worker takes the next one (gw0: TEST_REDIS_DB, gw1: +1, ...),
    so a worker's Celery processes never take another worker's tasks."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    db = int(os.environ.get("TEST_REDIS_DB", "3")) + int(worker.removeprefix("gw"))
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        require(False, "Redis")
    client.flushdb()
    yield url
    client.flushdb()



@pytest.fixture
def live_e2e(world, table, shared_redis, dynamodb_endpoint, settings, client_for, tmp_path):
    """local_iot on the test's table, a real Celery worker on Redis pushing
    snapshots and cutting sessions through local_iot's iot-data, and every
    principal's snapshot written (needs `django_db(transaction=True)`)."""
    from authz.snapshots import outbox
    from devices.models import Tenant

    test_database_url()  # the worker must see the test database: PostgreSQL only
    with live_platform(world=world, table=table, redis_url=shared_redis, dynamodb_endpoint=dynamodb_endpoint,
                       settings=settings, client_for=client_for, tmp_path=tmp_path) as platform:
        platform.start_worker()
        outbox.record_everyone(tenants=Tenant.objects.all())  # the devices' own snapshots
        written()
        yield platform


@pytest.fixture
def pushed(world, other, table, django_capture_on_commit_callbacks):
    """Both tenants pushed to the table and slot A published; `run(action)`
    runs a change with its pushes."""
    rotation.rotate(actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        outbox.record_everyone(tenants=Tenant.objects.all())

    def run(action):
        with django_capture_on_commit_callbacks(execute=True):
            return action()

    return run
