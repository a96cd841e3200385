"""Device types: the tenant's product catalogue."""
from collections.abc import Iterable

from django.db import transaction

from .. import audit
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import DeviceType, Tenant, User
from .rules import _clean_name, _require_admin


@transaction.atomic
def create_device_type(*, actor: User, tenant: Tenant, name: str, slug: str,
                       capabilities: Iterable[str] = ()) -> DeviceType:
    _require_admin(actor, tenant.pk)
    device_type = DeviceType(tenant=tenant, name=_clean_name(name), slug=slug, capabilities=list(capabilities))
    device_type.full_clean()
    device_type.save()
    audit.record(actor=actor, action=Action.DEVICE_TYPE_CREATE, obj=device_type,
                 changes={"slug": slug, "capabilities": device_type.capabilities})
    return device_type


@transaction.atomic
def update_device_type(*, actor: User, device_type: DeviceType, name: str,
                       capabilities: Iterable[str]) -> DeviceType:
    _require_admin(actor, device_type.tenant_id)
    before = {"name": device_type.name, "capabilities": device_type.capabilities}
    device_type.name = _clean_name(name)
    device_type.capabilities = list(capabilities)
    device_type.full_clean(validate_unique=False)
    device_type.save(update_fields=["name", "capabilities"])
    audit.record(actor=actor, action=Action.DEVICE_TYPE_UPDATE, obj=device_type,
                 changes={"before": before,
                          "after": {"name": device_type.name, "capabilities": device_type.capabilities}})
    return device_type


@transaction.atomic
def delete_device_type(*, actor: User, device_type: DeviceType) -> None:
    _require_admin(actor, device_type.tenant_id)
    if device_type.devices.exists():
        raise DomainError(ErrorCode.DEVICE_TYPE_IN_USE, f"Device type {device_type.name} is still used by devices.")
    audit.record(actor=actor, action=Action.DEVICE_TYPE_DELETE, obj=device_type)
    device_type.delete()
