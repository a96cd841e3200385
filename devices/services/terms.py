"""What a grant gives: its level, its window and whether it may be re-shared.

A share and an invitation to one carry the same terms (``GrantTermsModel``)
and pass the same checks, here.
"""
from dataclasses import dataclass, fields
from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from ..models import GrantTermsModel, Level, Share


@dataclass(frozen=True)
class GrantTerms:
    level: Level
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    can_reshare: bool = False

    @classmethod
    def of(cls, grant: GrantTermsModel) -> "GrantTerms":
        return cls(level=Level(grant.level), starts_at=grant.starts_at, expires_at=grant.expires_at,
                   can_reshare=grant.can_reshare)

    def as_fields(self) -> dict:
        """The model fields these terms fill (``Share(**terms.as_fields())``)."""
        return {field.name: getattr(self, field.name) for field in fields(self)}

    def check(self, *, parent: Share | None, now: datetime, window_changed: bool = True) -> None:
        """What every grant, a share or an invitation to one, must satisfy.
        An edit that leaves the window alone does not re-judge it (it may have started or lapsed)."""
        if self.can_reshare and self.level != Level.MANAGE:
            raise ValidationError({"can_reshare": "Only a manage share may allow re-sharing."})
        if window_changed:
            self.check_window(now=now)
        if parent is not None:
            self.check_within(parent)

    def check_window(self, *, now: datetime) -> None:
        starts_at, expires_at = self.starts_at, self.expires_at
        for field, value in (("starts_at", starts_at), ("expires_at", expires_at)):
            if value is not None and timezone.is_naive(value):
                raise ValidationError({field: "Times must carry a time zone."})
        if expires_at is not None and expires_at <= now:
            raise ValidationError({"expires_at": "The expiry must be in the future."})
        if starts_at is not None and expires_at is not None and expires_at <= starts_at:
            raise ValidationError({"expires_at": "The expiry must come after the start."})

    def check_within(self, parent: Share) -> None:
        """A re-share gives at most what the grant it is made from gives."""
        if self.level > parent.level:
            raise ValidationError({"level": f"You can share at most at your own level ({Level(parent.level).label})."})
        if parent.expires_at is not None and (self.expires_at is None or self.expires_at > parent.expires_at):
            raise ValidationError(
                {"expires_at": "A re-share cannot outlast your own share; set an expiry no later than it."})
        if parent.starts_at is not None and (self.starts_at is None or self.starts_at < parent.starts_at):
            raise ValidationError({"starts_at": "A re-share cannot start before your own share does."})
