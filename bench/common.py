"""What every benchmark shares: a throw-away PostgreSQL database, percentiles,
and where results go."""
import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

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
