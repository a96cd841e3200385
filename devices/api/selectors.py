"""The API's list queries: the ``visible_to`` rule, one tenant, and the
caller's own level computed in SQL so that a page costs the same few queries
whatever its length.

They live here rather than in ``devices.selectors`` because only the API
shapes its reads this way; the rule itself stays in the models.
"""
from django.db.models import Case, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When

from devices.models import (
    AuditEvent,
    Device,
    DeviceGroup,
    DeviceType,
    Invitation,
    Level,
    Share,
    Tenant,
    User,
    live_share_q,
)


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


def device_types_for(*, user: User, tenant: Tenant) -> QuerySet:
    return DeviceType.objects.visible_to(user).filter(tenant=tenant).order_by("name", "id")


def shares_for(*, user: User, tenant: Tenant) -> QuerySet:
    return (
        Share.objects.visible_to(user).filter(tenant=tenant)
        .select_related("grantee", "created_by", "device", "group")
        .order_by("-created_at", "-id")
    )


def invitations_for(*, user: User) -> QuerySet:
    return (
        Invitation.objects.visible_to(user)
        .select_related("tenant", "device", "group", "invited_by")
        .order_by("-created_at", "-id")
    )


def device_audit(*, device: Device) -> QuerySet:
    return AuditEvent.objects.filter(tenant_id=device.tenant_id, device_id=device.pk).order_by("-created_at", "-id")


def member_by_email(*, tenant: Tenant, email: str) -> User | None:
    """A member of `tenant` with this address (any case); None for anyone else,
    so a caller cannot tell a stranger from a missing account."""
    return User.objects.filter(email__iexact=(email or "").strip(), memberships__tenant=tenant).first()
