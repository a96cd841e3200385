"""Push outbox rows to DynamoDB: compile, write conditionally, record."""
import random
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from authz.models import PrincipalSync

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
    for row, outcome in zip(rows, store.put_snapshots(ordered)):
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
    versions = {r.pk: r.desired_version for r in rows if r.pk in done}
    if versions:
        pushed = Case(*[When(pk=pk, then=Value(v)) for pk, v in versions.items()], output_field=BigIntegerField())
        # Greatest: a slower push of an older version never moves it back.
        PrincipalSync.objects.filter(pk__in=versions).update(
            pushed_version=Greatest(F("pushed_version"), pushed), pushed_at=now, attempts=0, last_error="",
            retry_after=None,
        )
    attempts = {r.pk: r.attempts for r in rows}
    for pk, error in result.failed.items():
        PrincipalSync.objects.filter(pk=pk).update(
            attempts=F("attempts") + 1, last_error=error,
            retry_after=now + timedelta(seconds=backoff(attempts[pk] + 1)),
        )


def backoff(attempt: int) -> float:
    """Full jitter: a random wait up to base·2^attempt, capped."""
    ceiling = min(settings.SNAPSHOT_RETRY_MAX_SECONDS, settings.SNAPSHOT_RETRY_BASE_SECONDS * 2 ** attempt)
    return random.uniform(0, ceiling)
