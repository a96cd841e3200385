"""The broker the resilience tests share with the processes they start.
The processes themselves are tests/support/processes.py."""
import os

import pytest
import redis

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

