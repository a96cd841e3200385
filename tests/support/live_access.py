"""Live revocation end to end (docs/live-access.md, docs/testing.md#live-revocation):
the platform's writes in the test process, a real Celery worker process on
Redis pushing snapshots to the test's moto table and cutting sessions
through local_iot's iot-data, and local_iot running the real authorizer on
that table, with paho clients whose observations are the verdict.

The worker's data plane is a parameter: local_iot's own, a closed port
(`closed_port_url`) or a black hole (`BlackHole`), so a test can cause the
fault it is about."""
from __future__ import annotations

import os
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import kombu.pools

from tests.support.local_iot import RunningLocalIot
from tests.support.mqtt_client import Client, with_credentials
from tests.support.ports import free_port
from tests.support.processes import CeleryProcess, unit_celery_args, wait_until

# The worker's settings: the test settings with a data endpoint (tests/support/live_celery_settings.py).
WORKER_SETTINGS = "tests.support.live_celery_settings"
ADMINISTRATIVE_ACTION = 0x98  # MQTT 5's DISCONNECT reason for a connection ended by the server's operator


def written():
    """Until every snapshot the database wants is in DynamoDB."""
    from authz.models import PrincipalSync

    wait_until(lambda: not PrincipalSync.objects.lagging().exists(), what="the snapshot pushes")


def receipt_done(api, receipt: dict) -> dict:
    """The receipt a write answered with, read again at its url until it is done."""
    def read() -> dict:
        response = api.get(receipt["url"])
        assert response.status_code == 200, response.content
        return response.json()

    wait_until(lambda: read()["state"] == "done", what="the receipt")
    return read()


@contextmanager
def broker(url: str):
    """Send tasks through `url` for real, instead of running them inline."""
    from config.celery_app import app

    saved = app.conf.broker_url, app.conf.task_always_eager
    _drop_connections(app)
    app.conf.broker_url, app.conf.task_always_eager = url, False
    try:
        yield
    finally:
        _drop_connections(app)
        app.conf.broker_url, app.conf.task_always_eager = saved


def _drop_connections(app):
    # Otherwise publishing reuses connections to the previous broker.
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


def closed_port_url() -> str:
    """An HTTP endpoint nothing listens on: a data plane that is down."""
    return f"http://127.0.0.1:{free_port()}"


class BlackHole:
    """A TCP endpoint that accepts and never answers: a call into it hangs,
    so a worker can be killed while it is inside DeleteConnection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = threading.Event()
        self.held: list[socket.socket] = []
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


class Telemetry:
    """A device publishing on its telemetry topic every `interval` seconds
    until stopped, numbering its messages."""

    def __init__(self, device: Client, thing: str, interval: float = 0.05):
        self.device, self.topic, self.interval = device, f"dev/{thing}/out/telemetry", interval
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Telemetry:
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval) and not self.device.disconnected.is_set():
            self.sent += 1
            self.device.paho.publish(self.topic, str(self.sent).encode(), qos=0)

    def stop(self):
        self._stop.set()
        self._thread.join(5)


class LivePlatform:
    """local_iot in front of the test's table, and worker processes that cut
    sessions through a data plane of the test's choosing."""

    def __init__(self, *, iot: RunningLocalIot, redis_url: str, logs: Path, client_for, world):
        self.iot, self.redis_url, self.logs, self.client_for, self.world = iot, redis_url, logs, client_for, world
        self.workers: list[CeleryProcess] = []
        self.clients: list[Client] = []

    @property
    def data_plane_url(self) -> str:
        return f"http://127.0.0.1:{self.iot.http_port}"

    def start_worker(self, data_plane_url: str | None = None) -> CeleryProcess:
        """A worker as production runs it, cutting through `data_plane_url`
        (default: local_iot's); returns once it consumes."""
        log = self.logs / f"worker-{len(self.workers)}.log"
        worker = CeleryProcess(unit_celery_args("devshare-worker.service"), log=log, broker=self.redis_url, env={
            "DJANGO_SETTINGS_MODULE": WORKER_SETTINGS,
            "IOT_DATA_ENDPOINT_URL": data_plane_url or self.data_plane_url,
        })
        self.workers.append(worker.start())
        wait_until(lambda: "ready." in worker.output(), timeout=60, what="the worker's start")
        return worker

    @contextmanager
    def paused(self):
        """The workers stopped (SIGSTOP) inside the block: tasks queued there
        wait in Redis, so a test sees what a write answers before any push or
        cut has run. They continue (SIGCONT) on the way out. Pause idle
        workers only: a paused one keeps whatever row locks it holds."""
        for worker in self.workers:
            os.kill(worker.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for worker in self.workers:
                os.kill(worker.pid, signal.SIGCONT)

    def creds(self, user, *, device=None, credential: str | None = None) -> dict:
        """Credentials from the API, as an app (or a device's owner) gets them;
        `credential="compact"` asks for a device's compact token."""
        from tests.support.api import issued_credentials

        return issued_credentials(self.client_for(user), self.world, device=device, credential=credential)

    def client(self, creds: dict, *, version: int = 5) -> Client:
        """An unconnected paho client over TLS with these credentials."""
        client = with_credentials(self.iot, creds, via="tls", version=version)
        self.clients.append(client)
        return client

    def connected(self, creds: dict, *subscriptions: str) -> Client:
        client = self.client(creds)
        assert client.connect(), client.connack
        for topic_filter in subscriptions:
            assert client.subscribe(topic_filter) == [1], topic_filter
        return client

    def reaches(self, creds: dict, topic_filter: str) -> bool:
        """Whether a fresh connection with `creds` is accepted and may
        subscribe to `topic_filter`: refused at CONNACK or at SUBACK is no."""
        client = self.client(creds)
        try:
            return client.connect() and client.subscribe(topic_filter) == [1]
        finally:
            client.close()

    def stop(self):
        for client in self.clients:
            client.close()
        for worker in self.workers:
            worker.stop()


@contextmanager
def live_platform(*, world, table, redis_url: str, dynamodb_endpoint: str, settings, client_for, tmp_path,
                  **iot_options):
    """Keys and local_iot up, tasks through `redis_url`, no worker yet;
    `iot_options` go to local_iot (a `handler` of the test's own, say)."""
    from authz.tokens import rotation
    from authz.tokens.iot import gateway as iot_gateway
    from tests.support.lambda_env import lambda_env

    rotation.rotate(actor=None)
    with RunningLocalIot(lambda_env(table.name, dynamodb_endpoint), cert_dir=tmp_path / "certs",
                         **iot_options) as iot:
        settings.IOT_ENDPOINT = f"localhost:{iot.tls_port}"
        # The test process runs the reconciler and the sweep itself: they need the endpoint too.
        settings.IOT_DATA_ENDPOINT_URL = f"http://127.0.0.1:{iot.http_port}"
        # So do the live-sessions endpoints, through the process's one gateway, made once from the
        # settings; local_iot's data plane takes the workers' access key id (live_celery_settings.py).
        settings.AWS_ACCESS_KEY_ID = "local"
        iot_gateway.cache_clear()
        platform = LivePlatform(iot=iot, redis_url=redis_url, logs=tmp_path, client_for=client_for, world=world)
        try:
            with broker(redis_url):
                yield platform
        finally:
            platform.stop()
            iot_gateway.cache_clear()

