"""Push outbox rows to DynamoDB: compile, write conditionally, record."""
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from authz.models import PrincipalSync
from authz.versioned_outbox import full_jitter

from . import store
from .compiler import Principal, compile_snapshots


@dataclass
class PushResult:
    written: list[int] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)     # DynamoDB already had this version or newer
    failed: dict[int, str] = field(default_factory=dict)
    retryable: list[int] = field(default_factory=list)


def push(ids: list[int]) -> PushResult:
    now = timezone.now()
    with _one_database_snapshot():
        # The version is read before the grants, so what is written under a
        # version is never older than the change that produced that version.
        rows = list(PrincipalSync.objects.filter(pk__in=ids).order_by("pk"))
        wanted = [Principal(r.tenant_id, r.kind, r.principal, r.desired_version) for r in rows]
        snaps = compile_snapshots(wanted, now=now)
    ordered = [snaps[(r.tenant_id, r.kind, r.principal)] for r in rows]
    result = PushResult()
    for row, outcome in zip(rows, store.put_snapshots(ordered), strict=True):
        if outcome.written:
            result.written.append(row.pk)
        elif outcome.stale:
            result.stale.append(row.pk)
        else:
            result.failed[row.pk] = outcome.error
            if outcome.retryable:
                result.retryable.append(row.pk)
    _record(rows, result, now)
    return result


@contextmanager
def _one_database_snapshot():
    """A read-only transaction that on PostgreSQL sees one consistent state,
    so a principal is never compiled from half of a concurrent change."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def _record(rows: list[PrincipalSync], result: PushResult, now) -> None:
    done = {pk for pk in result.written + result.stale}
    PrincipalSync.objects.mark_pushed({r.pk: r.desired_version for r in rows if r.pk in done}, now=now)
    attempts = {r.pk: r.attempts for r in rows}
    for pk, error in result.failed.items():
        PrincipalSync.objects.filter(pk=pk).record_failure(
            error=error, retry_after=now + timedelta(seconds=backoff(attempts[pk] + 1)))


def backoff(attempt: int) -> float:
    """The snapshot pushes' retry wait, from settings."""
    return full_jitter(attempt, base=settings.SNAPSHOT_RETRY_BASE_SECONDS, cap=settings.SNAPSHOT_RETRY_MAX_SECONDS)
