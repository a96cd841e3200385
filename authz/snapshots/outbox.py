"""The snapshot outbox (a versioned outbox, authz/versioned_outbox.py): access
changes bump a principal's desired version in the writer's transaction; after
commit a push is queued.

The bump is the durable part. Queueing may fail (broker down, worker lost):
the reconciler finds every row whose pushed version lags and queues it again.
"""
import json
import logging

from django.db import connection, transaction
from django.utils import timezone

from authz.versioned_outbox import hybrid_clock
from devices.audit_actions import Action
from lambda_bridge import snapshot

log = logging.getLogger(__name__)


def record(*, tenant_id: int, users=(), devices=(), queue: bool = True) -> list[int]:
    """Bump each principal's desired version; returns the outbox row ids.
    `queue=False` leaves the push to the caller (the sync command pushes inline)."""
    wanted = sorted({(snapshot.USER, str(u)) for u in users} | {(snapshot.DEVICE, d) for d in devices})
    if not wanted:
        return []
    ids = _bump(tenant_id, wanted)
    if queue:
        push_after_commit(ids)
    return ids


# One statement, however many principals: missing rows are created, existing
# ones bumped in place to max(previous + 1, now in µs), never re-inserted.
# The principals travel as one JSON parameter (no limit on parameters, no
# client-side parsing of thousands of placeholders). Rows are written, and so
# locked, in (kind, principal) order in every writer, so two transactions
# bumping overlapping sets cannot deadlock. The new desired version is
# versioned_outbox.next_version(desired) in SQL: pushed never exceeds desired,
# so desired + 1 is above both.
_BUMP = {
    "postgresql": """
        INSERT INTO authz_principalsync
            (tenant_id, kind, principal, desired_version, pushed_version, changed_at, attempts, last_error)
        SELECT %s, w.pair->>0, w.pair->>1, %s, 0, %s, 0, ''
        FROM jsonb_array_elements(%s::jsonb) AS w(pair) ORDER BY 2, 3
        ON CONFLICT (tenant_id, kind, principal) DO UPDATE SET
            desired_version = GREATEST(authz_principalsync.desired_version + 1, excluded.desired_version),
            changed_at = excluded.changed_at, retry_after = NULL
        RETURNING id""",
    "sqlite": """
        INSERT INTO authz_principalsync
            (tenant_id, kind, principal, desired_version, pushed_version, changed_at, attempts, last_error)
        SELECT %s, json_extract(value, '$[0]'), json_extract(value, '$[1]'), %s, 0, %s, 0, ''
        FROM json_each(%s) WHERE true ORDER BY 2, 3
        ON CONFLICT (tenant_id, kind, principal) DO UPDATE SET
            desired_version = MAX(authz_principalsync.desired_version + 1, excluded.desired_version),
            changed_at = excluded.changed_at, retry_after = NULL
        RETURNING id""",
}


def _bump(tenant_id: int, wanted: list[tuple[str, str]]) -> list[int]:
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(_BUMP[connection.vendor], [tenant_id, hybrid_clock(), now, json.dumps(wanted)])
        return [row[0] for row in cursor.fetchall()]


def push_after_commit(ids) -> None:
    """Queue one push per principal once the transaction commits, however
    many times the transaction touched it."""
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        enqueue(sorted(ids))
        return
    # Join the pending callback if there is one. Django drops a callback when
    # the savepoint it was registered in rolls back, and the ids with it:
    # exactly the changes that rolled back.
    for _savepoints, callback, _robust in conn.run_on_commit:
        if isinstance(callback, _PushAfterCommit) and not callback.sent:
            callback.ids.update(ids)
            return
    transaction.on_commit(_PushAfterCommit(ids))


class _PushAfterCommit:
    def __init__(self, ids):
        self.ids = set(ids)
        self.sent = False  # tests run callbacks without committing; never join a spent one

    def __call__(self):
        self.sent = True
        enqueue(sorted(self.ids))


def enqueue(ids: list[int]) -> int:
    """Queue pushes in batches; returns how many batches were queued. A broker
    that is down costs a log line, not the caller's request: the rows still
    lag, and the reconciler queues them again."""
    from django.conf import settings

    from authz.tasks import push_snapshots

    size = settings.SNAPSHOT_PUSH_BATCH
    queued = 0
    for start in range(0, len(ids), size):
        batch = ids[start:start + size]
        try:
            push_snapshots.apply_async((batch,), retry=True, retry_policy=QUICK_PUBLISH)
        except Exception as exc:  # noqa: BLE001  (kombu raises its own family per transport)
            log.warning("snapshot push of %d principal(s) not queued (%s); the reconciler will retry",
                        len(ids) - start, exc.__class__.__name__)
            break
        queued += 1
    return queued


# Give up publishing fast: the caller is usually a web request.
QUICK_PUBLISH = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


@transaction.atomic
def resync(*, actor, rows) -> list[int]:
    """Bump and queue the given outbox rows again (the operator's "resync")."""
    from devices import audit

    ids = []
    by_tenant: dict = {}
    for row in rows:
        by_tenant.setdefault(row.tenant, []).append(row)
    for tenant, tenant_rows in by_tenant.items():
        ids += record(tenant_id=tenant.pk, users={r.principal for r in tenant_rows if r.kind == snapshot.USER},
                      devices={r.principal for r in tenant_rows if r.kind == snapshot.DEVICE})
        audit.record(actor=actor, action=Action.SNAPSHOT_RESYNC, obj=tenant, tenant=tenant,
                     changes={"principals": sorted(r.key for r in tenant_rows)})
    return ids


def record_everyone(*, tenants, queue: bool = True) -> list[int]:
    """Bump every member and every device of `tenants` (a full resync)."""
    from devices.models import Device, Membership

    ids = []
    for tenant in tenants:
        members = Membership.objects.filter(tenant=tenant).values_list("user_id", flat=True)
        things = Device.objects.filter(tenant=tenant).values_list("thing_name", flat=True)
        ids += record(tenant_id=tenant.pk, users=set(members), devices=set(things), queue=queue)
    return ids
