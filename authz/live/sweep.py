"""The sweep of ended shares (beat, every few seconds): a share that ends by
its own `expires_at`, or whose weekly schedule ends a window, narrows access
with no write to report it, so the sweep reports it, once, as the platform
(docs/live-access.md#exact-ends)."""
import math
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from authz.models import ShareSweep
from devices import access, schedules
from devices.models import Share

MINUTE = 60


@transaction.atomic
def sweep_ended_shares(*, now: datetime) -> int:
    """Report the shares that ended, or ended a window, after the last sweep
    and by `now`; returns how many grantees that touched. The mark row
    serialises sweeps and moves forward only with the change it reports."""
    lookback = now - timedelta(seconds=settings.SNAPSHOT_SWEEP_LOOKBACK_SECONDS)
    mark, _ = ShareSweep.objects.select_for_update().get_or_create(pk=ShareSweep.SINGLETON,
                                                                   defaults={"swept_until": lookback})
    # A mark left far behind (the beat was down for a day) looks back no
    # further than the lookback, which is longer than any open connection
    # holds a grant (docs/live-access.md#exact-ends): an older end has
    # reached every connection through its refreshes already.
    since = max(mark.swept_until, lookback)
    if since >= now:
        return 0
    ended = Share.objects.filter(revoked_at__isnull=True, expires_at__gt=since, expires_at__lte=now)
    found = set(ended.values_list("tenant_id", "grantee_id")) | _window_ends(since=since, now=now)
    by_tenant: dict[int, set[int]] = {}
    for tenant_id, grantee_id in found:
        by_tenant.setdefault(tenant_id, set()).add(grantee_id)
    for tenant_id, users in sorted(by_tenant.items()):
        access.changed(actor=None, tenant_id=tenant_id, users=users, narrowed=True)
    mark.swept_until = now
    mark.save(update_fields=["swept_until"])
    return sum(map(len, by_tenant.values()))


def _window_ends(*, since: datetime, now: datetime) -> set[tuple[int, int]]:
    """(tenant, grantee) of every live scheduled share whose schedule went
    out of force at a second in (since, now] at which the share itself was
    in force: started before it, not expired before it."""
    # Whole seconds: a schedule changes only at whole minutes, and e > since
    # for a whole second e is e > floor(since).
    after, until = math.floor(since.timestamp()), math.floor(now.timestamp())
    if after // MINUTE == until // MINUTE:
        # No whole minute in the span, so no window ended in it: most beats,
        # every few seconds, cost no query.
        return set()
    scheduled = Share.objects.filter(revoked_at__isnull=True, schedule__isnull=False).filter(
        Q(starts_at__isnull=True) | Q(starts_at__lt=now), Q(expires_at__isnull=True) | Q(expires_at__gt=since))
    found: set[tuple[int, int]] = set()
    answers: dict[tuple, bool] = {}  # many shares share a schedule and the span
    for share_id, tenant_id, grantee_id, starts_at, expires_at, data in scheduled.values_list(
            "pk", "tenant_id", "grantee_id", "starts_at", "expires_at", "schedule"):
        if (tenant_id, grantee_id) in found:
            continue
        # The part of the span in which the share was in force.
        first = after if starts_at is None else max(after, math.floor(starts_at.timestamp()))
        last = until if expires_at is None else min(until, math.floor(expires_at.timestamp()))
        if first >= last:
            continue
        key = (repr(data), first, last)
        if key not in answers:
            # Checked when written; one whose zone has since left tzdata is never in force, so it ends nothing.
            schedule = schedules.read(data, holder=f"Share {share_id}")
            answers[key] = schedule.ended_between(first, last)
        if answers[key]:
            found.add((tenant_id, grantee_id))
    return found

