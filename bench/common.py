"""What every benchmark shares: a throw-away PostgreSQL database, the snapshot
pipeline with real parts, percentiles, and where results go."""
import json
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from moto.server import ThreadedMotoServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def server_url() -> str:
    """The PostgreSQL server to create bench databases on (BENCH_DATABASE_URL, else DATABASE_URL)."""
    base = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("DATABASE_URL")
            or "postgres://postgres@127.0.0.1:5432/postgres")
    return urlunsplit(urlsplit(base)._replace(path="/postgres"))


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(server_url())._replace(path=f"/{name}"))


def admin_sql(statement: str) -> None:
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(statement)


def percentile(values, p: float):
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def md_table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(stem: str, text: str, data: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=2))


BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/8")
WORKER_THREADS = os.environ.get("BENCH_WORKER_THREADS", "8")
PIPELINE_SETUP = (f"PostgreSQL, Redis broker, 1 Celery worker process ({WORKER_THREADS} threads), moto DynamoDB "
                  f"server over HTTP; {os.cpu_count()} CPUs shared by all of them")


@contextmanager
def pipeline(name: str):
    """The snapshot pipeline with real parts, for one benchmark: a throw-away
    PostgreSQL database (migrated), Django set up on it, a moto DynamoDB server
    with the table, and the Redis broker emptied. Yields a function that starts
    the Celery worker (BENCH_WORKER_THREADS threads) when the benchmark wants
    it; everything is removed at the end."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the moto server's access log
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    db_name = f"devshare_bench_{name}_{os.getpid()}"
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings.local", "DEBUG": "false", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url(db_name),
        "CELERY_BROKER_URL": BROKER_URL, "DYNAMODB_ENDPOINT_URL": f"http://{host}:{port}",
        "DYNAMODB_TABLE": "devshare-bench", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    })
    admin_sql(f'CREATE DATABASE "{db_name}"')
    redis.Redis.from_url(BROKER_URL).flushdb()
    workers = []

    def start_worker(output=subprocess.DEVNULL) -> None:
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config.celery_app", "worker", "--pool", "threads",
             "--concurrency", WORKER_THREADS, "--without-mingle", "--without-gossip", "--loglevel", "WARNING"],
            cwd=ROOT, env=dict(os.environ), stdout=output, stderr=subprocess.STDOUT,
        ))

    try:
        import django
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("ensure_dynamodb_table", verbosity=0)
        yield start_worker
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
        from django.db import connections
        connections.close_all()
        admin_sql(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        redis.Redis.from_url(BROKER_URL).flushdb()
        moto.stop()


def wait_in_sync(tenant, timeout: float) -> None:
    """Until every principal of `tenant` has its desired version pushed."""
    from authz.models import PrincipalSync

    deadline = time.monotonic() + timeout
    while PrincipalSync.objects.filter(tenant=tenant).lagging().exists():
        if time.monotonic() > deadline:
            raise TimeoutError("snapshots did not catch up")
        time.sleep(0.02)
