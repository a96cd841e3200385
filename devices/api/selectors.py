"""The devices API's own list queries: the ``visible_to`` rule within one
tenant, ordered and joined the way its pages render them.

They live here rather than in ``devices.selectors`` because only this API
shapes its reads this way; the rule itself stays in the models. The tenant,
device and group reads that authz's API uses too are in ``devices.selectors``.
"""
from django.db.models import QuerySet

from devices.models import AuditEvent, Device, DeviceType, Invitation, Share, Tenant, User


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
