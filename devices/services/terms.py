"""What a grant gives: its level, its window, its weekly schedule and whether
it may be re-shared.

A share and an invitation to one carry the same terms (``GrantTermsModel``)
and pass the same checks, here.
"""
from dataclasses import dataclass, fields
from datetime import datetime

from django.utils import timezone

from .. import schedules
from ..errors import DomainError, ErrorCode
from ..models import GrantTermsModel, Level, Share


@dataclass(frozen=True)
class GrantTerms:
    level: Level
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    can_reshare: bool = False
    schedule: schedules.Schedule | None = None

    @classmethod
    def of(cls, grant: GrantTermsModel) -> "GrantTerms":
        return cls(level=Level(grant.level), starts_at=grant.starts_at, expires_at=grant.expires_at,
                   can_reshare=grant.can_reshare, schedule=schedules.of(grant))

    def as_fields(self) -> dict:
        """The model fields these terms fill (``Share(**terms.as_fields())``)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {**values, "schedule": schedules.to_json(self.schedule)}

    def covers(self, other: "GrantTerms") -> bool:
        """Whether these terms give at least everything `other` gives (the
        compiler's ``_covers`` applies the same rule to snapshot entries)."""
        starts_no_later = self.starts_at is None or (
            other.starts_at is not None and self.starts_at <= other.starts_at)
        ends_no_sooner = self.expires_at is None or (
            other.expires_at is not None and self.expires_at >= other.expires_at)
        return (self.level >= other.level and (self.can_reshare or not other.can_reshare)
                and starts_no_later and ends_no_sooner and schedules.within(other.schedule, self.schedule))

    def check(self, *, parent: Share | None, now: datetime, window_changed: bool = True,
              schedule_changed: bool = True) -> None:
        """What every grant, a share or an invitation to one, must satisfy.
        An edit that leaves the window alone does not re-judge it (it may have started or lapsed)."""
        if self.can_reshare and self.level != Level.MANAGE:
            raise DomainError(ErrorCode.RESHARE_NEEDS_MANAGE, "Only a manage share may allow re-sharing.",
                              field="can_reshare")
        if window_changed:
            self.check_window(now=now)
        if window_changed or schedule_changed:
            self.check_reachable(now=now)
        if parent is not None:
            self.check_within(parent)

    def check_window(self, *, now: datetime) -> None:
        starts_at, expires_at = self.starts_at, self.expires_at
        for field, value in (("starts_at", starts_at), ("expires_at", expires_at)):
            if value is not None and timezone.is_naive(value):
                raise DomainError(ErrorCode.NAIVE_TIME, "Times must carry a time zone.", field=field)
        if expires_at is not None and expires_at <= now:
            raise DomainError(ErrorCode.EXPIRY_IN_PAST, "The expiry must be in the future.", field="expires_at")
        if starts_at is not None and expires_at is not None and expires_at <= starts_at:
            raise DomainError(ErrorCode.WINDOW_REVERSED, "The expiry must come after the start.", field="expires_at")

    def check_reachable(self, *, now: datetime) -> None:
        """A schedule must be in force at some moment of the window still
        ahead, or the grant would never give anything (docs/sharing.md#weekly-schedules)."""
        if not schedules.reached_between(self.schedule, max(now, self.starts_at or now), self.expires_at):
            raise DomainError(ErrorCode.SCHEDULE_NEVER_IN_FORCE,
                              "The schedule has no hour between the start and the expiry; "
                              "widen its windows or the dates.", field="schedule")

    def check_within(self, parent: Share) -> None:
        """A re-share gives at most what the grant it is made from gives."""
        if self.level > parent.level:
            raise DomainError(ErrorCode.ABOVE_PARENT_LEVEL,
                              f"You can share at most at your own level ({Level(parent.level).label}).", field="level")
        if parent.expires_at is not None and (self.expires_at is None or self.expires_at > parent.expires_at):
            raise DomainError(ErrorCode.OUTLASTS_PARENT,
                              "A re-share cannot outlast your own share; set an expiry no later than it.",
                              field="expires_at")
        if parent.starts_at is not None and (self.starts_at is None or self.starts_at < parent.starts_at):
            raise DomainError(ErrorCode.STARTS_BEFORE_PARENT, "A re-share cannot start before your own share does.",
                              field="starts_at")
        if not schedules.within(self.schedule, schedules.of(parent)):
            raise DomainError(ErrorCode.OUTSIDE_PARENT_SCHEDULE,
                              "A re-share stays within the hours of your own share "
                              f"({schedules.summary(parent.schedule)}): give it a schedule in that time zone "
                              "whose windows lie inside them.", field="schedule")
