"""Checks every service shares: rights, membership, names, levels, one target, one tenant."""

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, Level, Membership, User
from ..selectors import is_tenant_admin


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PermissionDenied(message)


def _require_admin(actor: User, tenant_id: int) -> None:
    _require(is_tenant_admin(user=actor, tenant_id=tenant_id), "Only a tenant admin may do this.")


def _require_member(user: User, tenant_id: int, what: str, *, lock: bool = False) -> None:
    """`lock` holds the membership row so a concurrent removal waits for this write."""
    memberships = Membership.objects.filter(user=user, tenant_id=tenant_id).order_by()
    if lock:
        memberships = _locked_memberships(memberships)
    if not user.is_active or memberships.first() is None:
        raise DomainError(ErrorCode.NOT_A_MEMBER, f"{what} is not an active member of this tenant.")


def _locked_memberships(memberships):
    """Lock exactly the membership rows, in a mode that only their removal waits for.

    Not the rows Meta.ordering or select_related join in (the tenant, the
    user): every write in the tenant would queue behind that tenant lock, and
    the deferred foreign-key checks at commit (KEY SHARE on tenant, user,
    device and parent share) would deadlock against it. NO KEY UPDATE
    conflicts with a DELETE (remove_member) but not with those checks.
    Lock order, everywhere, so two writers never wait on each other in a
    circle: memberships before shares, and a parent share before its
    re-shares (in id order within one level of a cascade).
    """
    return memberships.order_by("pk").select_for_update(of=("self",), no_key=True)


def _save_unique(obj, code: ErrorCode, field: str, message: str, **save_kwargs) -> None:
    """Save; losing a race on a unique constraint is refused as `code` (the clash the caller checked for)."""
    try:
        with transaction.atomic():
            obj.save(**save_kwargs)
    except IntegrityError:
        raise DomainError(code, message, field=field) from None


def _clean_name(value: str, field: str = "name", max_length: int = 100) -> str:
    value = (value or "").strip()
    if not value:
        raise DomainError(ErrorCode.BLANK, "This field cannot be blank.", field=field)
    if len(value) > max_length:
        raise DomainError(ErrorCode.TOO_LONG, f"At most {max_length} characters.", field=field)
    return value


# By name, in order; ownership is never granted, it is transferred.
_GRANTABLE = {level.label: level for level in Level if level != Level.OWNER}
_LEVEL_CHOICE = f"Level must be one of {', '.join(_GRANTABLE)}."


def _level(value) -> Level:
    if isinstance(value, str) and not value.isdigit():
        if value not in _GRANTABLE:
            raise DomainError(ErrorCode.INVALID_LEVEL, _LEVEL_CHOICE, field="level")
        return _GRANTABLE[value]
    try:
        level = Level(int(value))
    except (TypeError, ValueError):
        raise DomainError(ErrorCode.INVALID_LEVEL, _LEVEL_CHOICE, field="level") from None
    if level == Level.OWNER:
        raise DomainError(ErrorCode.OWNERSHIP_NOT_GRANTABLE,
                          "A share cannot grant ownership; transfer the device instead.", field="level")
    return level


def _same_tenant(*objects) -> None:
    tenants = {obj.tenant_id for obj in objects if obj is not None}
    if len(tenants) > 1:
        raise DomainError(ErrorCode.CROSS_TENANT, "All objects must belong to the same tenant.")


def _one_target(device: Device | None, group: DeviceGroup | None) -> Device | DeviceGroup:
    if (device is None) == (group is None):
        raise DomainError(ErrorCode.ONE_TARGET, "Choose exactly one device or one group.")
    return device or group
