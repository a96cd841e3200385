"""Anti-entropy: notice that DynamoDB lost what was pushed and put it back.

The outbox only knows what it *sent*: a table recreated empty, a restored
backup or a deleted item leaves every row looking in sync. So the beat
(`tasks.check_snapshot_table`) and `manage.py verify_snapshots` compare the
table with the database:

- the table itself: created again (with TTL) when it is gone, and every row
  marked for a new push;
- the signing-key item: published again when it is missing or older than
  the published version;
- the items: a bounded slice of outbox rows per beat (a cursor walks them all
  in turn) is compared with the versions the table holds, one BatchGetItem
  per 100, and a missing or stale item is marked for a new push.

Marking means lowering `pushed_version` to what the table really holds, so the
ordinary push path (reconciler → push task → conditional write) re-sends it,
tombstones included: nothing here writes a snapshot itself.
"""
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from authz.models import PrincipalSync, SigningKeyring
from lambda_bridge import keys

from . import store
from .compiler import Principal, compile_snapshots

log = logging.getLogger(__name__)

CURSOR_KEY = "authz:antientropy:cursor"

# Incidents already reported by this process: one ERROR line when one starts,
# one INFO line when it is over, nothing in between.
# A worker runs tasks on several threads: two overlapping passes must not
# both open the same incident, hence the lock around check-and-set.
_open: set[str] = set()
_open_lock = threading.Lock()


def _incident(name: str, message: str, *args) -> None:
    with _open_lock:
        opening = name not in _open
        _open.add(name)
    (log.error if opening else log.info)(message, *args)


def _resolved(name: str, message: str) -> None:
    with _open_lock:
        closing = name in _open
        _open.discard(name)
    if closing:
        log.info(message)


# --- the table -----------------------------------------------------------------------


OK, MISSING, CREATED, UNREACHABLE = "ok", "missing", "created", "unreachable"


def check_table(*, repair: bool) -> str:
    """OK, MISSING, CREATED (with `repair`) or UNREACHABLE. Creating the table
    marks every outbox row for a new push, since every item went with it."""
    name = settings.DYNAMODB_TABLE
    try:
        exists = store.table_exists()
    except (BotoCoreError, ClientError) as exc:
        _incident("unreachable", "DynamoDB: cannot check table %s (%s); the next beat tries again",
                  name, exc.__class__.__name__)
        return UNREACHABLE
    _resolved("unreachable", f"DynamoDB: table {name} answers again")
    if exists:
        return OK
    if not repair:
        return MISSING
    marked = PrincipalSync.objects.filter(pushed_version__gt=0).repush()
    _incident("table", "DynamoDB: table %s is missing; creating it and re-pushing %d snapshot(s) "
              "and the signing keys", name, marked)
    try:
        store.ensure_table()
    except (BotoCoreError, ClientError, TimeoutError) as exc:
        # The rows stay marked: once the table is there, the reconciler pushes them.
        log.warning("DynamoDB: creating table %s failed (%s); the next beat tries again", name, exc)
        return UNREACHABLE
    return CREATED


# --- the signing-key item -------------------------------------------------------------


def key_item_behind() -> bool:
    """Whether the key item is missing or older than what was published."""
    ring = SigningKeyring.objects.filter(pk=SigningKeyring.SINGLETON).first()
    if ring is None or not ring.pushed_version:
        return False  # nothing published yet: the rotation's first run does it
    item = store.get_item(keys.ITEM_KEY)
    stored = int(item["v"]["N"]) if item and "v" in item else 0
    return stored < ring.pushed_version


def check_key_item(*, repair: bool, report: bool = True) -> bool:
    """True when the key item is right (again, with `repair`)."""
    from authz.tokens import publication, signing_keys

    if not key_item_behind():
        _resolved("key-item", "signing keys: the key item is back")
        return True
    if report:
        _incident("key-item", "signing keys: the key item in %s is missing or older than the published "
                  "version; publishing it again", settings.DYNAMODB_TABLE)
    if not repair:
        return False
    try:
        publication.publish(actor=None, verify=True)
    except signing_keys.SigningError as exc:  # a rotation holds the lock, or the write failed: next beat
        log.warning("signing keys: republishing deferred: %s", exc)
        return False
    return True


# --- the items ----------------------------------------------------------------------


@dataclass
class Findings:
    checked: int = 0
    missing: list[int] = field(default_factory=list)  # outbox row ids
    stale: list[int] = field(default_factory=list)
    expired: int = 0  # tombstones DynamoDB's TTL removed, as intended

    @property
    def ids(self) -> list[int]:
        return self.missing + self.stale

    def add(self, other: "Findings") -> None:
        self.checked += other.checked
        self.missing += other.missing
        self.stale += other.stale
        self.expired += other.expired


def verify_rows(rows: list[PrincipalSync], *, mark: bool) -> Findings:
    """Compare these rows' pushed versions with the table; with `mark`, lower
    each wrong row's pushed version to what the table holds. Raises
    store.TableMissing when there is no table to compare with."""
    rows = [r for r in rows if r.pushed_version > 0]
    # Rows are read before items: an item only ever grows, so an item older
    # than a version recorded before it was read is really behind.
    stored = store.stored_versions([r.key for r in rows])
    findings = Findings(checked=len(rows))
    lost = {}
    for row in rows:
        there = stored.get(row.key)
        if there is None:
            lost[row.pk] = row
        elif there < row.pushed_version:
            findings.stale.append(row.pk)
            if mark:
                _lower(row, there)
    expired = _expired_tombstones(list(lost.values()))
    findings.expired = len(expired)
    for pk, row in lost.items():
        if pk not in expired:
            findings.missing.append(pk)
            if mark:
                _lower(row, 0)
    return findings


def _lower(row: PrincipalSync, there: int) -> None:
    # Only if no push recorded a newer version meanwhile: that push wrote its item.
    PrincipalSync.objects.filter(pk=row.pk, pushed_version=row.pushed_version).repush(holding=there)


def _expired_tombstones(rows: list[PrincipalSync]) -> set[int]:
    """Rows whose item DynamoDB's TTL may have removed on purpose: pushed
    longer ago than a tombstone lives, and still a tombstone today."""
    cutoff = timezone.now() - timedelta(days=settings.SNAPSHOT_TOMBSTONE_DAYS)
    old = [r for r in rows if r.pushed_at is not None and r.pushed_at <= cutoff]
    if not old:
        return set()
    snaps = compile_snapshots([Principal(r.tenant_id, r.kind, r.principal, r.pushed_version) for r in old],
                              now=timezone.now())
    return {r.pk for r in old if snaps[(r.tenant_id, r.kind, r.principal)].gone}


def verify_next_slice(*, limit: int) -> Findings:
    """The beat's bounded share of the walk: the next `limit` rows after the
    cursor, then the cursor moves on (back to the start after the last row)."""
    cursor = _cursor()
    rows = list(PrincipalSync.objects.filter(pk__gt=cursor, pushed_version__gt=0).order_by("pk")[:limit])
    findings = verify_rows(rows, mark=True)
    _save_cursor(rows[-1].pk if len(rows) == limit else 0)
    if findings.ids:
        _incident("items", "DynamoDB: %d of %d checked snapshot item(s) missing, %d stale; re-pushing them",
                  len(findings.missing), findings.checked, len(findings.stale))
    elif findings.checked:
        _resolved("items", "DynamoDB: the checked snapshot items match the pushed versions again")
    return findings


def _cursor() -> int:
    # The cache only spreads the walk over beats; losing it restarts the walk.
    try:
        return int(cache.get(CURSOR_KEY) or 0)
    except Exception:  # noqa: BLE001  (any cache backend's outage)
        return 0


def _save_cursor(value: int) -> None:
    try:
        cache.set(CURSOR_KEY, value, timeout=None)
    except Exception:  # noqa: BLE001, S110  (as above: the next beat walks from the start)
        pass


# --- one beat -------------------------------------------------------------------------


@dataclass
class BeatResult:
    table: str = OK
    key_item: bool = True
    findings: Findings = field(default_factory=Findings)
    requeue: bool = False  # rows were marked: the reconciler should run now


def run_once() -> BeatResult:
    """Table, key item, then one slice of items; every repair goes through
    the usual paths (ensure_table, publication.publish, the push task)."""
    result = BeatResult(table=check_table(repair=True))
    if result.table == UNREACHABLE:
        return result
    recovering = "table" in _open  # created now or at an earlier beat
    try:
        result.key_item = check_key_item(repair=True, report=not recovering)
        result.findings = verify_next_slice(limit=settings.SNAPSHOT_VERIFY_BATCH)
    except store.TableMissing:
        return result  # deleted again in between: the next beat recreates it
    except (BotoCoreError, ClientError) as exc:
        log.warning("DynamoDB: anti-entropy pass cut short (%s); the next beat tries again",
                    exc.__class__.__name__)
        return result
    result.requeue = result.table == CREATED or bool(result.findings.ids)
    if recovering and result.key_item and not PrincipalSync.objects.lagging().exists():
        _resolved("table", f"DynamoDB: table {settings.DYNAMODB_TABLE} and its items are back")
    return result
