"""Celery entry points; the work is in snapshots/ and tokens/.

Task names are persisted (beat schedules, queued messages): they are
`authz.tasks.<function>` and must stay so wherever the work moves."""
import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .live import cut, sweep
from .live import outbox as live_outbox
from .models import PrincipalSync, SessionCut
from .snapshots import outbox
from .snapshots.push import backoff, push

log = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=5)
def push_snapshots(self, ids: list[int]) -> dict:
    result = push(ids)
    # Cuts waiting for these snapshots may run now (docs/live-access.md).
    live_outbox.queue_ready(snapshot_ids=result.written + result.stale)
    if result.retryable and self.request.retries < self.max_retries:
        # Only what failed for a reason that may pass (throttling, network).
        raise self.retry(args=(result.retryable,), countdown=backoff(self.request.retries + 1))
    return {"written": len(result.written), "stale": len(result.stale), "failed": len(result.failed)}


@shared_task(ignore_result=True)
def reconcile_snapshots() -> int:
    """Queue every row that lags for longer than a push normally takes.

    Queued rows are leased (`retry_after`) so that a slow queue is not filled
    with the same rows again at every beat; a push or a new change ends the lease."""
    now = timezone.now()
    settled = now - timedelta(seconds=settings.SNAPSHOT_RECONCILE_GRACE_SECONDS)
    due = PrincipalSync.objects.due(now).filter(changed_at__lte=settled).order_by("pk")
    ids = list(due.values_list("pk", flat=True)[:settings.SNAPSHOT_RECONCILE_LIMIT])
    _queue_leased(PrincipalSync, ids, now, _queue_pushes)
    return len(ids)


def _queue_pushes(ids: list[int]) -> int:
    return outbox.enqueue(ids) * settings.SNAPSHOT_PUSH_BATCH


def _queue_leased(model, ids: list[int], now, enqueue) -> int:
    """Queue outbox rows through `enqueue` (which answers how many of `ids`,
    from the front, it queued) under a lease, so that the next beat does not
    queue them again while they wait. Returns how many were queued."""
    # Leased before queueing, so that a task finishing first ends its lease.
    lease = now + timedelta(seconds=settings.SNAPSHOT_RECONCILE_LEASE_SECONDS)
    model.objects.filter(pk__in=ids).lease(until=lease)
    queued = enqueue(ids)
    if queued < len(ids):
        # The broker refused them: no lease, so the next beat queues them again
        # instead of leaving them for the whole lease after the broker is back.
        model.objects.filter(pk__in=ids[queued:]).end_lease(until=lease)
    return min(queued, len(ids))


@shared_task(ignore_result=True)
def check_snapshot_table() -> dict:
    """Anti-entropy (beat, every SNAPSHOT_ANTIENTROPY_SECONDS): the table, the
    key item and a slice of the items are what the database says they are;
    whatever was lost goes back through the reconciler and the push task."""
    from .snapshots import antientropy

    result = antientropy.run_once()
    if result.requeue:
        # What was lost was pushed long ago, so no reconciler grace applies:
        # queue it now (a recreated table: as many as the reconciler would).
        now = timezone.now()
        ids = result.findings.ids or list(PrincipalSync.objects.due(now).order_by("pk")
                                          .values_list("pk", flat=True)[:settings.SNAPSHOT_RECONCILE_LIMIT])
        _queue_leased(PrincipalSync, ids, now, _queue_pushes)
    return {"table": result.table, "key_item": result.key_item, "checked": result.findings.checked,
            "missing": len(result.findings.missing), "stale": len(result.findings.stale)}


@shared_task(ignore_result=True)
def sweep_expired_shares() -> int:
    """Shares that ended since the last sweep (beat, every few seconds): their
    grantees' snapshots are re-pushed and their live connections closed, so a
    share's end takes effect at the edge (docs/live-access.md#exact-ends)."""
    return sweep.sweep_ended_shares(now=timezone.now())


@shared_task(acks_late=True, ignore_result=True)
def cut_sessions(ids: list[int]) -> dict:
    """Close the live connections of principals whose access narrowed, for
    the cuts among `ids` whose snapshot is written. A failure waits for its
    backoff and the reconciler, not for this task's retry."""
    result = cut.run(ids)
    return {"done": len(result.done), "failed": len(result.failed), "waiting": len(result.waiting),
            "closed": sum(map(len, result.closed.values()))}


@shared_task(ignore_result=True)
def reconcile_session_cuts() -> int:
    """Queue every cut that lags, is past its backoff and whose snapshot is
    written: a lost task, a crashed worker or a data plane that was down."""
    if not live_outbox.enabled():
        return 0
    now = timezone.now()
    # Settled for longer than a push and a cut take, so that what the push
    # task has just queued is not queued twice (a second DeleteConnection
    # could knock off a reconnect already judged on the new snapshot).
    settled = now - timedelta(seconds=settings.SNAPSHOT_RECONCILE_GRACE_SECONDS)
    due = SessionCut.objects.due(now).ready().filter(changed_at__lte=settled).order_by("pk")
    ids = list(due.values_list("pk", flat=True)[:settings.SESSION_CUT_RECONCILE_LIMIT])
    return _queue_leased(SessionCut, ids, now, live_outbox.enqueue)


@shared_task(ignore_result=True)
def rotate_signing_keys() -> str:
    """Advance the signing-key rotation by whatever step is due (beat, hourly).
    A concurrent run or a failed publication is left to the next beat: the
    step that committed stays committed and the publication is retried."""
    from devices import audit

    from .tokens import rotation, signing_keys

    try:
        with audit.origin("beat"):
            result = rotation.rotate(actor=None)
    except signing_keys.RotationInProgress as exc:
        log.info("signing keys: %s", exc)
        return "busy"
    except signing_keys.SigningError as exc:
        log.error("signing keys: %s", exc)
        return f"error: {exc}"
    return result.message


@shared_task(ignore_result=True)
def prune_issued_credentials() -> int:
    """Forget issued credentials that expired more than
    ISSUED_CREDENTIALS_RETENTION_DAYS ago (beat, daily)."""
    from .tokens import credentials

    before = timezone.now() - timedelta(days=settings.ISSUED_CREDENTIALS_RETENTION_DAYS)
    deleted = credentials.prune_issued(before=before)
    log.info("issued credentials: pruned %d expired before %s", deleted, before.isoformat())
    return deleted
