"""The versioned outbox: one row per thing the database wants written
somewhere else (a principal's snapshot, the published signing-key set).

A change bumps the row's `desired_version` in the writer's own transaction,
which is the durable part. Whoever writes the far side afterwards records the
version it wrote as `pushed_version`, and only ever forward. A row lags while
pushed < desired; a failed write counts `attempts`, keeps `last_error` and may
set `retry_after` (a backoff, or a lease while the row sits in a queue).

Versions are hybrid clocks, max(previous + 1, now in µs): they only grow, and
after a database restore new changes still outrank what the far side holds.
The far side's write is conditional on the version (docs/snapshots.md), so a
repeated or late write never puts an older state back.

A new outbox subclasses VersionedOutbox, adds the fields that name what a row
stands for, and writes through the queryset methods below.
"""
import random
import time

from django.db import models
from django.db.models import BigIntegerField, Case, F, Q, Value, When
from django.db.models.functions import Greatest

ERROR_LENGTH = 500


def hybrid_clock() -> int:
    """Now in µs, the floor of every new version."""
    return time.time_ns() // 1000


def next_version(*known: int) -> int:
    """A version above each of `known` and no lower than the clock."""
    return max([*(v + 1 for v in known), hybrid_clock()])


def full_jitter(attempt: int, *, base: float, cap: float) -> float:
    """Backoff with full jitter: a random wait up to base·2^attempt, capped,
    so that rows failing together do not retry together."""
    return random.uniform(0, min(cap, base * 2 ** attempt))  # noqa: S311  (spreading retries, not secrecy)


class VersionedOutboxQuerySet(models.QuerySet):
    def lagging(self):
        return self.filter(pushed_version__lt=F("desired_version"))

    def in_sync(self):
        """The rows `VersionedOutbox.in_sync` holds for, in SQL."""
        return self.filter(pushed_version__gte=F("desired_version"))

    def due(self, now):
        """Lagging, and past any backoff or lease."""
        return self.lagging().filter(Q(retry_after__isnull=True) | Q(retry_after__lte=now))

    def lease(self, *, until) -> int:
        """Claim these rows until `until`: `due` skips them meanwhile. A push
        or a new change ends the lease."""
        return self.update(retry_after=until)

    def end_lease(self, *, until) -> int:
        """Give back the rows still held by the lease `until` (nothing else
        ended it meanwhile)."""
        return self.filter(retry_after=until).update(retry_after=None)

    def mark_pushed(self, versions: dict[int, int], *, now) -> int:
        """Record that row pk's `versions[pk]` is on the far side. Greatest: a
        slower push of an older version never moves a row back."""
        if not versions:
            return 0
        pushed = Case(*[When(pk=pk, then=Value(v)) for pk, v in versions.items()], output_field=BigIntegerField())
        return self.filter(pk__in=versions).update(
            pushed_version=Greatest(F("pushed_version"), pushed), pushed_at=now, attempts=0, last_error="",
            retry_after=None,
        )

    def record_failure(self, *, error: str, retry_after=None) -> int:
        """One more failed attempt, why, and when the row may be tried again
        (None: whenever it is next asked for)."""
        return self.update(attempts=F("attempts") + 1, last_error=error[:ERROR_LENGTH], retry_after=retry_after)

    def repush(self, *, holding: int = 0) -> int:
        """The far side lost these rows' writes and holds `holding`: lower the
        pushed version to it, so the ordinary push path sends them again.
        Filter on the pushed version read first, so that a push recorded
        meanwhile (which wrote its item) is not undone."""
        return self.update(pushed_version=holding, retry_after=None)


class VersionedOutbox(models.Model):
    desired_version = models.BigIntegerField(default=0)
    pushed_version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(null=True, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=ERROR_LENGTH, blank=True)
    # When a failed push may be tried again (backoff), or until when a queued
    # row is leased to the queue.
    retry_after = models.DateTimeField(null=True, blank=True)

    objects = VersionedOutboxQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def in_sync(self) -> bool:
        return self.pushed_version >= self.desired_version

    def bump(self, *, now) -> None:
        """A change to what this row stands for, for a row its writer holds
        locked (outboxes of many rows bump in bulk, in one statement)."""
        self.desired_version = next_version(self.desired_version, self.pushed_version)
        self.changed_at = now
        self.retry_after = None
        self.save(update_fields=["desired_version", "changed_at", "retry_after"])
