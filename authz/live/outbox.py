"""The disconnect outbox (a versioned outbox, authz/versioned_outbox.py):
a narrowing bumps each affected principal's session cut in the writer's
transaction, pinned to the snapshot version that narrowing produced. The cut
runs once that snapshot is written (docs/live-access.md#the-disconnect-outbox).
"""
import json
import logging

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef
from django.utils import timezone

from authz.models import PrincipalSync, SessionCut
from authz.versioned_outbox import hybrid_clock

log = logging.getLogger(__name__)

# One statement for every principal of a narrowing, in (kind, principal)
# order like the snapshot outbox's bump, so overlapping writers cannot
# deadlock. The snapshot rows were bumped (and locked) by this transaction
# just before: their desired version is the one the cut must wait for.
_BUMP = {
    "postgresql": """
        INSERT INTO authz_sessioncut (tenant_id, kind, principal, desired_version, pushed_version,
                                      snapshot_version, changed_at, attempts, last_error)
        SELECT s.tenant_id, s.kind, s.principal, %s, 0, s.desired_version, %s, 0, ''
        FROM authz_principalsync s
        WHERE s.id IN (SELECT (jsonb_array_elements_text(%s::jsonb))::bigint) ORDER BY s.kind, s.principal
        ON CONFLICT (tenant_id, kind, principal) DO UPDATE SET
            desired_version = GREATEST(authz_sessioncut.desired_version + 1, excluded.desired_version),
            snapshot_version = GREATEST(authz_sessioncut.snapshot_version, excluded.snapshot_version),
            changed_at = excluded.changed_at, retry_after = NULL
        RETURNING id, desired_version""",
    "sqlite": """
        INSERT INTO authz_sessioncut (tenant_id, kind, principal, desired_version, pushed_version,
                                      snapshot_version, changed_at, attempts, last_error)
        SELECT s.tenant_id, s.kind, s.principal, %s, 0, s.desired_version, %s, 0, ''
        FROM authz_principalsync s
        WHERE s.id IN (SELECT value FROM json_each(%s)) ORDER BY s.kind, s.principal
        ON CONFLICT (tenant_id, kind, principal) DO UPDATE SET
            desired_version = MAX(authz_sessioncut.desired_version + 1, excluded.desired_version),
            snapshot_version = MAX(authz_sessioncut.snapshot_version, excluded.snapshot_version),
            changed_at = excluded.changed_at, retry_after = NULL
        RETURNING id, desired_version""",
}


def record(*, snapshot_ids: list[int]) -> dict[int, int]:
    """Bump the session cut of each principal whose snapshot row is in
    `snapshot_ids` (just bumped by this transaction); returns cut id → the
    version this narrowing gave it."""
    if not snapshot_ids:
        return {}
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_BUMP[connection.vendor], [hybrid_clock(), now, json.dumps(sorted(snapshot_ids))])
        return dict(cursor.fetchall())


def enabled() -> bool:
    """Whether there is a data plane to close connections on. Without one
    (tests that bring none, a deployment not yet configured) cuts wait."""
    return bool(settings.IOT_DATA_ENDPOINT_URL)


def queue_ready(*, snapshot_ids: list[int]) -> int:
    """After a push: queue the cuts that were waiting for these snapshot rows."""
    if not snapshot_ids or not enabled():
        return 0
    # One query on the push task's path: the cuts of exactly these principals.
    written = PrincipalSync.objects.filter(pk__in=snapshot_ids, tenant_id=OuterRef("tenant_id"),
                                           kind=OuterRef("kind"), principal=OuterRef("principal"))
    return enqueue(list(SessionCut.objects.lagging().ready().filter(Exists(written)).values_list("pk", flat=True)))


def enqueue(ids: list[int]) -> int:
    """Queue cuts; a broker that is down costs a log line, the reconciler retries."""
    from authz.snapshots.outbox import QUICK_PUBLISH
    from authz.tasks import cut_sessions

    if not ids:
        return 0
    try:
        cut_sessions.apply_async((sorted(ids),), retry=True, retry_policy=QUICK_PUBLISH)
    except Exception as exc:  # noqa: BLE001  (kombu raises its own family per transport)
        log.warning("%d session cut(s) not queued (%s); the reconciler will retry", len(ids), exc.__class__.__name__)
        return 0
    return len(ids)
