"""Processes of a test's own: a redis-server and a moto server it can stop
and start again, Celery worker and beat as production runs them, and a
bounded wait for what another process does."""
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis
from django.conf import settings as django_settings
from django.db import connection

from tests.support.paths import ROOT
from tests.support.ports import free_port, listening
from tests.support.services import require


def wait_until(condition, timeout=20.0, what="condition", interval=0.05):
    """A bounded wait for something another process does; not a timing check."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout:.0f} s")


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
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


class OwnMoto:
    """A moto server process of the test's own on a fixed port: stopping it
    and starting another on the same port is DynamoDB coming back empty."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: listening(self.port), timeout=30, what="moto server start")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def test_database_url() -> str:
    """The test database, for processes of their own (PostgreSQL only: an
    in-memory SQLite database cannot be shared)."""
    require(connection.vendor == "postgresql", "PostgreSQL (a worker process must see the test database)")
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def unit_celery_args(unit: str) -> list[str]:
    """The Celery arguments of a platform/systemd unit's ExecStart: the test
    runs the worker exactly as production does."""
    line = next(x for x in (ROOT / "platform" / "systemd" / unit).read_text().splitlines()
                if x.startswith("ExecStart="))
    argv = shlex.split(line.removeprefix("ExecStart="))
    return argv[argv.index("config.celery_app") + 1:]


class CeleryProcess:
    """`celery -A config.celery_app <args>` as a process of its own, with the
    test database and tasks sent through the broker; output in `log`."""

    def __init__(self, args: list[str], *, log: Path, broker: str, env: dict[str, str] | None = None):
        self.args = args
        self.log = log
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.support.celery_settings",
            "DATABASE_URL": test_database_url(),
            "CELERY_BROKER_URL": broker,
            "DYNAMODB_ENDPOINT_URL": django_settings.DYNAMODB_ENDPOINT_URL,
            "DYNAMODB_TABLE": django_settings.DYNAMODB_TABLE,
            **(env or {}),
        }
        self.process = None

    def start(self) -> "CeleryProcess":
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config.celery_app", *self.args],
                                            cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self):
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
