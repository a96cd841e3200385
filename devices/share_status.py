"""A share's status: the one definition the API renders and filters on, the
console shows and the visibility rules build on (docs/domain.md).

A share is revoked once revoked, whatever its window; otherwise expired once
its expiry has passed, scheduled before its start, and live in between. The
grantee's account is not part of it: a deactivated person's share keeps its
status, and only ``models.live_share_q`` (what grants access) also asks
whether the grantee is active.
"""
import operator
from functools import reduce

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ShareStatus(models.TextChoices):
    LIVE = "live", "live"
    SCHEDULED = "scheduled", "scheduled"
    EXPIRED = "expired", "expired"
    REVOKED = "revoked", "revoked"


# What `?status=active` (the share list's default) lists: not revoked and not
# over, so a share that starts tomorrow is there but one that ended is not.
ACTIVE_STATUSES = (ShareStatus.LIVE, ShareStatus.SCHEDULED)


def share_status(share, *, now=None) -> ShareStatus:
    """The status of a Share (or anything with its revoked_at, starts_at and expires_at)."""
    now = now or timezone.now()
    if share.revoked_at is not None:
        return ShareStatus.REVOKED
    if share.expires_at is not None and share.expires_at <= now:
        return ShareStatus.EXPIRED
    if share.starts_at is not None and share.starts_at > now:
        return ShareStatus.SCHEDULED
    return ShareStatus.LIVE


def share_status_q(*statuses: str, prefix: str = "", now=None) -> Q:
    """Shares whose ``share_status`` is one of `statuses`, as a filter; `prefix`
    reaches the share through a relation (``"shares__"``)."""
    now = now or timezone.now()
    p = prefix
    not_revoked = Q(**{f"{p}revoked_at__isnull": True})
    ended = Q(**{f"{p}expires_at__isnull": False, f"{p}expires_at__lte": now})
    not_ended = Q(**{f"{p}expires_at__isnull": True}) | Q(**{f"{p}expires_at__gt": now})
    started = Q(**{f"{p}starts_at__isnull": True}) | Q(**{f"{p}starts_at__lte": now})
    unstarted = Q(**{f"{p}starts_at__isnull": False, f"{p}starts_at__gt": now})
    each = {
        ShareStatus.REVOKED: Q(**{f"{p}revoked_at__isnull": False}),
        ShareStatus.EXPIRED: not_revoked & ended,
        ShareStatus.SCHEDULED: not_revoked & not_ended & unstarted,
        ShareStatus.LIVE: not_revoked & started & not_ended,
    }
    return reduce(operator.or_, (each[ShareStatus(status)] for status in statuses))
