"""Weekly schedules (issue 16): what they cost in the snapshot and in the decision.

- bytes: a format-4 item whose entries carry schedules against the format-3
  item of the same entries without them; one schedule shared by every entry
  (one share over a group) against a distinct schedule per entry, for a
  realistic 2-window schedule and a 14-window one (the most a schedule may
  have, devices/schedules.py);
- decisions: `lambda_handler` p50/p95 with the store swapped for a dict (as
  bench/authorizer_bench.py measures it), for a person with 10 devices
  without schedules against 10 scheduled ones, in force now, in interleaved
  rounds;
- `Schedule.next_change` alone, with its per-(zone, day) cache cold and
  warm; with BENCH_SCHEDULES_AGAINST=<git revision> also that revision's
  `lambda_bridge/schedule.py`, for a before/after on the same machine.

Environment: BENCH_SCHEDULE_CALLS (2000), BENCH_SCHEDULES_AGAINST (unset).
"""
import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.authorizer_bench import AUDIENCE, ISSUER, DictStore, _serve, lambda_env
from bench.common import ROOT, md_table, percentile, write_results
from lambda_bridge import keys, schedule, snapshot
from lambda_bridge.schedule import Schedule, Window
from lambda_bridge.snapshot import Entry

CALLS = int(os.environ.get("BENCH_SCHEDULE_CALLS", "2000"))
ROUNDS = 5
AGAINST = os.environ.get("BENCH_SCHEDULES_AGAINST", "").strip()
ZONE = "Europe/Brussels"
WEEKDAYS = frozenset(range(5))


def office_hours(shift: int = 0) -> Schedule:
    """Monday to Friday 09:00-12:00 and 13:00-17:00, `shift` minutes later."""
    return Schedule(ZONE, (Window(WEEKDAYS, 9 * 60 + shift, 12 * 60 + shift),
                           Window(WEEKDAYS, 13 * 60 + shift, 17 * 60 + shift)))


def every_day_twice(shift: int = 0) -> Schedule:
    """14 windows: each day a morning and an afternoon, a little different per day."""
    return Schedule(ZONE, tuple(Window(frozenset({day}), start + 5 * day + shift, end + 5 * day + shift)
                                for day in range(7) for start, end in ((7 * 60, 12 * 60), (13 * 60, 19 * 60))))


def entries(count: int, schedules) -> tuple[Entry, ...]:
    now = int(time.time())
    return tuple(Entry(f"d-{i:012d}", snapshot.CONTROL, expires=now + 30 * 86400, group=90000,
                       schedule=schedules(i)) for i in range(count))


def item_bytes(count: int, schedules, fmt: int) -> int:
    snap = snapshot.Snapshot(kind="u", tenant=12, principal="4711", version=1, generated_at=int(time.time()),
                             entries=entries(count, schedules))
    return snapshot.item_size(snapshot.to_item(snap, fmt=fmt))


def sizes() -> tuple[str, dict]:
    cases = {
        "format 3, no schedule": (lambda i: None, 3),
        "format 4, one 2-window schedule shared": (lambda i: office_hours(), 4),
        "format 4, a 2-window schedule each": (office_hours, 4),
        "format 4, one 14-window schedule shared": (lambda i: every_day_twice(), 4),
        "format 4, a 14-window schedule each": (every_day_twice, 4),
    }
    counts = (1, 10, 100)
    data = {name: {n: item_bytes(n, schedules, fmt) for n in counts} for name, (schedules, fmt) in cases.items()}
    base = data["format 3, no schedule"]
    rows = []
    for name in cases:
        extra = (data[name][100] - base[100]) / 100
        rows.append((name, *(f"{data[name][n]:,}" for n in counts), f"{extra:+.1f}"))
    head = ["entries (generated names, control, expiry, group)", "1", "10", "100",
            "bytes per entry over format 3 (at 100)"]
    return md_table(head, rows), {"item_bytes": data}


def now_window_schedules(count: int, windows: int) -> list[Schedule]:
    """Schedules in force now whatever the hour the bench runs: a window from an
    hour ago to two hours on (crossing midnight if need be), plus others."""
    local = datetime.now(ZoneInfo(ZONE))
    minute = local.hour * 60 + local.minute
    start, end = (minute - 60) % 1440, (minute + 120) % 1440 or 1440
    today = local.weekday() if minute >= 60 else (local.weekday() - 1) % 7
    result = []
    for i in range(count):
        rest = [Window(frozenset({(today + 1 + k // 2) % 7}), 6 * 60 + i + 300 * (k % 2), 8 * 60 + i + 300 * (k % 2))
                for k in range(windows - 1)]
        result.append(Schedule(ZONE, (Window(frozenset({today}), start, end), *rest)))
    return result


class Case:
    """One principal's item in a dict store and a token for it, ready to decide again and again."""

    def __init__(self, snap_entries: tuple[Entry, ...], private, *, first_read: bool = False):
        pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        now = int(time.time())
        snap = snapshot.Snapshot(kind="u", tenant=1, principal="2", version=1, generated_at=now,
                                 entries=snap_entries)
        ring = keys.Keyring(version=1, slots={"A": keys.KeySlot("bench-a", pem, keys.ACTIVE)}, active="A")
        self.store = DictStore({keys.ITEM_KEY: keys.to_item(ring), snap.key: snapshot.to_item(snap)})
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user:2", "tid": 1, "cid": "u1.2.app", "iat": now,
                  "nbf": now, "exp": now + 3600, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, private, algorithm="RS256", headers={"kid": "bench-a"})
        self.event = {"token": token, "signatureVerified": True, "protocolData": {"mqtt": {"clientId": "u1.2.app"}}}
        self.devices, self.entries = len(snap_entries), snap_entries
        # As if each call were the first read of this item: its schedule table is decoded again.
        self.first_read = first_read
        self.timings: list[float] = []

    def run(self, handler, calls: int) -> None:
        _serve(handler, self.store)
        timings, response = [], None
        with contextlib.redirect_stdout(io.StringIO()):  # the log line is printed and paid for, not shown
            for _ in range(calls + 20):
                if self.first_read:
                    snapshot._unpack_schedules.cache_clear()
                started = time.perf_counter()
                response = handler.lambda_handler(self.event, None)
                timings.append((time.perf_counter() - started) * 1e6)
        if not response["isAuthenticated"]:
            raise SystemExit("schedules bench: a refusal; it would be timing the wrong thing")
        granted = sum(f"d-{i:012d}" in "".join(response["policyDocuments"]) for i in range(self.devices))
        if granted != self.devices:
            raise SystemExit(f"schedules bench: {granted} of {self.devices} devices granted")
        self.timings += timings[20:]  # the first calls read the key item and warm the caches


def decisions() -> tuple[str, dict]:
    os.environ.update(lambda_env("http://127.0.0.1:9"))  # never called: the store is a dict
    from lambda_bridge import handler

    now = int(time.time())
    plain = [Entry(f"d-{i:012d}", snapshot.VIEW, expires=now + 86400) for i in range(10)]
    shared2, shared14 = now_window_schedules(1, 2)[0], now_window_schedules(1, 14)[0]
    distinct2 = now_window_schedules(10, 2)
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cases = {
        "10 devices, no schedule": tuple(plain),
        "10 devices, one 2-window schedule shared": tuple(replace(e, schedule=shared2) for e in plain),
        "10 devices, one 14-window schedule shared": tuple(replace(e, schedule=shared14) for e in plain),
        "10 devices, 10 distinct 2-window schedules": tuple(replace(e, schedule=distinct2[i])
                                                            for i, e in enumerate(plain)),
    }
    first_read = "10 devices, 10 distinct 2-window schedules, item read for the first time"
    cases = {name: Case(snap_entries, private) for name, snap_entries in cases.items()}
    cases[first_read] = Case(cases["10 devices, 10 distinct 2-window schedules"].entries, private, first_read=True)
    # Interleaved rounds: the machine is shared, and a slow spell should hit every case alike.
    for _ in range(ROUNDS):
        for case in cases.values():
            case.run(handler, CALLS // ROUNDS)
    base = percentile(cases["10 devices, no schedule"].timings, 50)
    data, rows = {}, []
    for name, case in cases.items():
        p50, p95 = percentile(case.timings, 50), percentile(case.timings, 95)
        data[name] = {"p50_us": round(p50, 1), "p95_us": round(p95, 1)}
        rows.append((name, f"{p50:.0f}", f"{p95:.0f}", f"{p50 / base:.2f}×"))
    head = ["in-memory decision, every device granted", "p50 µs", "p95 µs", "p50 ÷ no schedule"]
    return md_table(head, rows), data


def next_change_us(module, cold: bool) -> tuple[float, float]:
    """p50 µs of `next_change` for the 2- and the 14-window schedule, from a
    Tuesday 10:00 in Brussels, with the per-day cache cleared first or not."""
    at = int(datetime(2027, 6, 15, 10, tzinfo=ZoneInfo(ZONE)).timestamp())
    result = []
    for make in (office_hours, every_day_twice):
        plain = make()
        clear = getattr(getattr(module, "_days", None), "cache_clear", lambda: None)
        timings = []
        for _ in range(max(200, CALLS // 10)):
            # A fresh object each time, as each decision reads one: the object remembers its last answer.
            built = module.Schedule(plain.zone, tuple(module.Window(w.days, w.start, w.end) for w in plain.windows))
            if cold:
                clear()
            started = time.perf_counter()
            built.next_change(at)
            timings.append((time.perf_counter() - started) * 1e6)
        result.append(percentile(timings, 50))
    return result[0], result[1]


def next_changes() -> tuple[str, dict]:
    modules = {"this checkout": schedule}
    with tempfile.TemporaryDirectory() as folder:
        if AGAINST:
            source = subprocess.run(["git", "show", f"{AGAINST}:lambda_bridge/schedule.py"], cwd=ROOT,
                                    capture_output=True, check=True).stdout
            path = Path(folder) / "schedule_against.py"
            path.write_bytes(source)
            spec = importlib.util.spec_from_file_location("schedule_against", path)
            against = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = against  # dataclasses look their module up
            spec.loader.exec_module(against)
            modules[AGAINST] = against
        data, rows = {}, []
        for name, module in modules.items():
            for cold in (False, True):
                two, fourteen = next_change_us(module, cold)
                label = f"{name}, {'cold' if cold else 'warm'} day cache" if hasattr(module, "_days") else name
                if label in data:
                    continue
                data[label] = {"2_windows_us": round(two, 1), "14_windows_us": round(fourteen, 1)}
                rows.append((label, f"{two:.0f}", f"{fourteen:.0f}"))
    return md_table(["Schedule.next_change", "2 windows, p50 µs", "14 windows, p50 µs"], rows), data


def main() -> int:
    size_text, size_data = sizes()
    decision_text, decision_data = decisions()
    change_text, change_data = next_changes()
    text = (f"### Item bytes (DynamoDB's size rule)\n\n{size_text}\n"
            f"### Decisions ({ROUNDS} interleaved rounds, {CALLS} calls each in all, store swapped for a dict)"
            f"\n\n{decision_text}\n"
            f"### Next window edge\n\n{change_text}")
    print(text)
    write_results("schedules", text, {"sizes": size_data, "decisions": decision_data, "next_change": change_data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
