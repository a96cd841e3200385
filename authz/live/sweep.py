"""The sweep of ended shares (beat, every few seconds): a share that ends by
its own `expires_at` narrows access with no write to report it, so the sweep
reports it, once, as the platform (docs/live-access.md#exact-ends)."""
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from authz.models import ShareSweep
from devices import access
from devices.models import Share


@transaction.atomic
def sweep_ended_shares(*, now: datetime) -> int:
    """Report the shares that ended after the last sweep and by `now`;
    returns how many grantees that touched. The mark row serialises sweeps
    and moves forward only with the change it reports."""
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
    by_tenant: dict[int, set[int]] = {}
    for tenant_id, grantee_id in ended.values_list("tenant_id", "grantee_id"):
        by_tenant.setdefault(tenant_id, set()).add(grantee_id)
    for tenant_id, users in sorted(by_tenant.items()):
        access.changed(actor=None, tenant_id=tenant_id, users=users, narrowed=True)
    mark.swept_until = now
    mark.save(update_fields=["swept_until"])
    return sum(map(len, by_tenant.values()))
