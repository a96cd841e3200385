"""Reads that depend on who is asking: effective access and permission checks."""
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils import timezone

from . import schedules
from .models import ADMIN_ROLES, Device, DeviceGroup, Level, Membership, Share, Tenant, User, live_share_q


@dataclass(frozen=True)
class Access:
    """What one user may do with one device right now, and why."""

    level: Level
    share: Share | None  # the share that grants `level`; None for the owner
    expires_at: datetime | None = None

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
    """Highest level wins; among equals the one that lasts longest."""
    far = datetime.max.replace(tzinfo=timezone.get_current_timezone())
    return max(shares, key=lambda s: (s.level, s.expires_at or far), default=None)


def _in_force(shares, now: datetime | None) -> list[Share]:
    """The live shares among `shares` whose schedule, if any, is in force at `now`."""
    at = int((now or timezone.now()).timestamp())
    return [s for s in shares if (schedule := schedules.of(s)) is None or schedule.active(at)]


def effective_access(*, user: User, device: Device, now: datetime | None = None) -> Access | None:
    """Highest level over ownership, direct and group shares; None means no access."""
    if not user.is_active:
        return None
    if device.owner_id == user.pk:
        return Access(level=Level.OWNER, share=None)
    shares = _in_force(Share.objects.live(now).filter(_shares_reaching(device), grantee=user), now)
    best = _best(shares)
    if best is None:
        return None
    return Access(level=Level(best.level), share=best, expires_at=best.expires_at)


def device_access_list(*, device: Device, now: datetime | None = None) -> list[tuple[User, Access]]:
    """Every user with access to `device`, owner first, then by level."""
    shares = (
        Share.objects.live(now).filter(_shares_reaching(device)).select_related("grantee", "group", "device")
    )
    by_user: dict[int, list[Share]] = {}
    for share in _in_force(shares, now):
        by_user.setdefault(share.grantee_id, []).append(share)
    rows = [(device.owner, Access(level=Level.OWNER, share=None))]
    for grantee_shares in by_user.values():
        best = _best(grantee_shares)
        if best.grantee_id != device.owner_id:
            rows.append((best.grantee, Access(level=Level(best.level), share=best, expires_at=best.expires_at)))
    rows[1:] = sorted(rows[1:], key=lambda row: (-row[1].level, row[0].email))
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
