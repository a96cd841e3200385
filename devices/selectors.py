"""Reads that depend on who is asking: effective access and permission checks."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Case, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from . import schedules
from .models import ADMIN_ROLES, Device, DeviceGroup, Level, Membership, Share, Tenant, User, live_share_q
from .schedules import Schedule
from .share_status import ACTIVE_STATUSES, share_status_q


@dataclass(frozen=True)
class Access:
    """What one user may do with one device at one instant, and why."""

    level: Level
    share: Share | None  # the share that grants `level`; None for the owner
    expires_at: datetime | None = None
    schedule: Schedule | None = None  # the granting share's weekly hours; None: any hour
    # False only in `device_access_list`'s rows for someone outside their hours.
    in_force: bool = True

    @property
    def label(self) -> str:
        return self.level.label


def is_tenant_admin(*, user: User, tenant_id: int) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, tenant_id=tenant_id, role__in=ADMIN_ROLES).exists()


def owns_or_administers(user: User, target: Device | DeviceGroup) -> bool:
    """The owner of a device or group, or an admin of its tenant: who may do anything with it."""
    if not user.is_active:
        return False
    return target.owner_id == user.pk or is_tenant_admin(user=user, tenant_id=target.tenant_id)


def _shares_reaching(device: Device) -> Q:
    # Guard the group branch: `group_id=None` would match every device share.
    q = Q(device_id=device.pk)
    if device.group_id:
        q |= Q(group_id=device.group_id)
    return q


def _best(shares) -> Share | None:
    """Highest level wins; among equals the one that lasts longest, at any hour before one with a schedule."""
    far = datetime.max.replace(tzinfo=timezone.get_current_timezone())
    return max(shares, key=lambda s: (s.level, s.expires_at or far, s.schedule is None), default=None)


# How far past a start or an end `_Timeline.next_change` follows schedules'
# edges: a week, and a day for a window crossing midnight.
_LOOK_AHEAD = timedelta(days=schedules.HORIZON_DAYS)


class _Timeline:
    """Shares that have not ended at `now` (live, or yet to start): which are
    in force at an instant, and when the access they give next changes."""

    def __init__(self, shares: Iterable[Share], now: datetime):
        self.now = now
        self.grants = [(share, schedules.of(share)) for share in shares]

    def access(self) -> Access | None:
        """The access these shares give at `now`; None for none."""
        best = _best(self.in_force(self.now))
        if best is None:
            return None
        schedule = next(schedule for share, schedule in self.grants if share is best)
        return Access(level=Level(best.level), share=best, expires_at=best.expires_at, schedule=schedule)

    def in_force(self, at: datetime) -> list[Share]:
        """Started, not ended, and inside their schedule, if any (docs/sharing.md#weekly-schedules)."""
        second = int(at.timestamp())
        return [share for share, schedule in self.grants
                if (share.starts_at is None or share.starts_at <= at)
                and (share.expires_at is None or at < share.expires_at)
                and (schedule is None or schedule.active(second))]

    def level(self, at: datetime) -> Level | None:
        best = _best(self.in_force(at))
        return None if best is None else Level(best.level)

    def next_change(self) -> datetime | None:
        """The first instant after `now` at which the level differs from the
        level at `now` (gained, lost, raised or lowered); None when it never
        does. Starts and ends are found however far ahead. Schedules' edges
        are followed up to 8 days past `now` or past the last start or end
        met on the way: a week of them that changed nothing changes nothing
        until the next start or end, so the search jumps there and follows
        them again from it (docs/sharing.md#when-access-next-changes)."""
        level, horizon = self.level(self.now), self.now + _LOOK_AHEAD
        edges = [self._edge(share, schedule, self.now) for share, schedule in self.grants]
        while upcoming := [edge for edge in edges if edge is not None]:
            at = min(moment for moment, _ in upcoming)
            starts_or_ends = any(moment == at and span for moment, span in upcoming)
            if not starts_or_ends and at > horizon:
                at = min(filter(None, (self._start_or_end(share, horizon) for share, _ in self.grants)), default=None)
                if at is None:
                    return None
                starts_or_ends = True
            if self.level(at) != level:
                return at
            if starts_or_ends:
                horizon = max(horizon, at + _LOOK_AHEAD)
            edges = [self._edge(share, schedule, at) if edge is not None and edge[0] <= at else edge
                     for (share, schedule), edge in zip(self.grants, edges, strict=True)]
        return None

    @staticmethod
    def _start_or_end(share: Share, after: datetime) -> datetime | None:
        """The share's own next start or end after `after`, its schedule apart."""
        if share.starts_at is not None and share.starts_at > after:
            return share.starts_at
        if share.expires_at is not None and share.expires_at > after:
            return share.expires_at
        return None

    @staticmethod
    def _edge(share: Share, schedule: Schedule | None, after: datetime) -> tuple[datetime, bool] | None:
        """When the share may next start or stop being in force after
        `after`, and whether that is its own start or end (else a window's edge)."""
        if share.expires_at is not None and share.expires_at <= after:
            return None
        if share.starts_at is not None and share.starts_at > after:
            return share.starts_at, True
        change = schedule.next_change(int(after.timestamp())) if schedule is not None else None
        edge = None if change is None else datetime.fromtimestamp(change, UTC)
        if share.expires_at is not None and (edge is None or share.expires_at <= edge):
            return share.expires_at, True
        return None if edge is None else (edge, False)


def _timeline(user: User, device: Device, now: datetime | None) -> _Timeline:
    """One query: `user`'s shares reaching `device` that have not ended."""
    now = now or timezone.now()
    shares = Share.objects.filter(share_status_q(*ACTIVE_STATUSES, now=now), _shares_reaching(device), grantee=user)
    return _Timeline(shares, now)


def effective_access(*, user: User, device: Device, now: datetime | None = None) -> Access | None:
    """Highest level over ownership, direct and group shares in force at
    `now` (schedules included); None means no access."""
    if not user.is_active:
        return None
    if device.owner_id == user.pk:
        return Access(level=Level.OWNER, share=None)
    return _timeline(user, device, now).access()


def access_and_next_change(*, user: User, device: Device,
                           now: datetime | None = None) -> tuple[Access | None, datetime | None]:
    """Effective access at `now`, and when it next changes, with access or
    without (then: when it begins); None for the owner, or when nothing
    changes as far as `_Timeline.next_change` looks. One query for both."""
    if not user.is_active or device.owner_id == user.pk:
        return effective_access(user=user, device=device, now=now), None
    timeline = _timeline(user, device, now)
    return timeline.access(), timeline.next_change()


def held_level(*, user: User, device: Device, now: datetime | None = None) -> Level | None:
    """The highest level `user` holds on `device` through ownership or live
    shares, at any hour: the rights to manage it (rename it, see everyone's
    access and its audit log) follow a share's status, not its schedule
    (docs/sharing.md#weekly-schedules)."""
    if not user.is_active:
        return None
    if device.owner_id == user.pk:
        return Level.OWNER
    level = (Share.objects.live(now).filter(_shares_reaching(device), grantee=user)
             .order_by("-level").values_list("level", flat=True).first())
    return None if level is None else Level(level)


def device_access_list(*, device: Device, now: datetime | None = None) -> list[tuple[User, Access]]:
    """Everyone with a live grant on `device` at `now`, whatever the hour:
    the owner first, then those whose access is in force by level, then
    those outside their hours (`in_force` False, their highest live share)."""
    now = now or timezone.now()
    shares = list(
        Share.objects.live(now).filter(_shares_reaching(device)).select_related("grantee", "group", "device")
    )
    in_force = {share.pk for share in _Timeline(shares, now).in_force(now)}
    by_user: dict[int, list[Share]] = {}
    for share in shares:
        by_user.setdefault(share.grantee_id, []).append(share)
    rows = [(device.owner, Access(level=Level.OWNER, share=None))]
    for grantee_shares in by_user.values():
        best = _best([share for share in grantee_shares if share.pk in in_force]) or _best(grantee_shares)
        if best.grantee_id != device.owner_id:
            rows.append((best.grantee, Access(level=Level(best.level), share=best, expires_at=best.expires_at,
                                              schedule=schedules.of(best), in_force=best.pk in in_force)))
    rows[1:] = sorted(rows[1:], key=lambda row: (not row[1].in_force, -row[1].level, row[0].email))
    return rows


def reshare_grant(*, user: User, device: Device | None = None, group: DeviceGroup | None = None,
                  now: datetime | None = None) -> Share | None:
    """The live `manage` + `can_reshare` share that lets `user` share this target onwards."""
    live = Share.objects.live(now).filter(grantee=user, level=Level.MANAGE, can_reshare=True)
    if device is not None:
        live = live.filter(_shares_reaching(device))
    else:
        live = live.filter(group_id=group.pk)
    return _best(live)


def access_audience(*, devices: Iterable[Device], now: datetime | None = None) -> set[int]:
    """Ids of everyone whose access names one of `devices`: the owners and the
    grantees of shares on them or their groups that have not ended yet
    (including ones that start later)."""
    now = now or timezone.now()
    devices = list(devices)
    group_ids = {d.group_id for d in devices if d.group_id}
    grantees = (
        Share.objects.filter(revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .filter(Q(device__in=[d.pk for d in devices]) | Q(group__in=group_ids))
        .values_list("grantee_id", flat=True)
    )
    return {d.owner_id for d in devices} | set(grantees)


# --- lists under one tenant, with the caller's level ---------------------------------
# Both apps' APIs list and look up through these (the devices API, authz's
# credentials scope). The caller's own level is computed in SQL so that a page
# costs the same few queries whatever its length.


def _best_level(user: User, reaching: Q) -> Subquery:
    """The highest level over `user`'s live shares matching `reaching` (an OuterRef filter)."""
    shares = Share.objects.filter(live_share_q(), reaching, grantee=user).order_by("-level").values("level")[:1]
    return Subquery(shares, output_field=IntegerField())


def _with_level(queryset: QuerySet, user: User, reaching: Q) -> QuerySet:
    # NULL when the caller sees the object only as a tenant admin. The queryset
    # must stay plain (no DISTINCT, no aggregate): then PostgreSQL evaluates this
    # correlated subquery after ORDER BY … LIMIT, for the rows of one page only,
    # not for every row the caller can see.
    return queryset.annotate(
        access_level=Case(
            When(owner=user, then=Value(int(Level.OWNER))),
            default=_best_level(user, reaching),
            output_field=IntegerField(),
        )
    )


def tenants_for(user: User) -> QuerySet:
    return Tenant.objects.visible_to(user)


def devices_for(*, user: User, tenant: Tenant) -> QuerySet:
    # A NULL group_id compares as unknown in SQL, so ungrouped devices match no group share.
    reaching = Q(device_id=OuterRef("pk")) | Q(group_id=OuterRef("group_id"))
    devices = Device.objects.visible_to(user).filter(tenant=tenant).select_related("device_type", "group", "owner")
    return _with_level(devices, user, reaching).order_by("name", "id")


def groups_for(*, user: User, tenant: Tenant) -> QuerySet:
    groups = DeviceGroup.objects.visible_to(user).filter(tenant=tenant).select_related("owner")
    return _with_level(groups, user, Q(group_id=OuterRef("pk"))).order_by("name", "id")
