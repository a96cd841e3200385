"""The terms of a grant (level, window, re-share) and the checks every grant passes."""
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from ..models import (
    Level,
    Share,
)


def _clean_window(starts_at: datetime | None, expires_at: datetime | None, *, now: datetime) -> None:
    for field, value in (("starts_at", starts_at), ("expires_at", expires_at)):
        if value is not None and timezone.is_naive(value):
            raise ValidationError({field: "Times must carry a time zone."})
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if starts_at is not None and expires_at is not None and expires_at <= starts_at:
        raise ValidationError({"expires_at": "The expiry must come after the start."})


def _check_within_parent(parent: Share, level: Level, starts_at, expires_at) -> None:
    if level > parent.level:
        raise ValidationError({"level": f"You can share at most at your own level ({Level(parent.level).label})."})
    if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        raise ValidationError(
            {"expires_at": "A re-share cannot outlast your own share; set an expiry no later than it."})
    if parent.starts_at is not None and (starts_at is None or starts_at < parent.starts_at):
        raise ValidationError({"starts_at": "A re-share cannot start before your own share does."})


def _check_terms(*, level: Level, starts_at, expires_at, can_reshare: bool, parent: Share | None,
                 now: datetime, window_changed: bool = True) -> None:
    """What every grant, a share or an invitation to one, must satisfy.
    An edit that leaves the window alone does not re-judge it (it may have started or lapsed)."""
    if can_reshare and level != Level.MANAGE:
        raise ValidationError({"can_reshare": "Only a manage share may allow re-sharing."})
    if window_changed:
        _clean_window(starts_at, expires_at, now=now)
    if parent is not None:
        _check_within_parent(parent, level, starts_at, expires_at)
