"""Registering, renaming, transferring and deleting devices."""

from django.db import connection, transaction

from .. import audit
from ..access import changed as access_changed
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, DeviceType, Level, RetiredThingName, Share, Tenant, User, validate_thing_name
from ..selectors import access_audience, held_level, owns_or_administers
from .invitations import _cancel_pending_invitations
from .rules import _clean_name, _require, _require_admin, _require_member, _same_tenant, _save_unique
from .shares import _revoke_many


@transaction.atomic
def register_device(*, actor: User, tenant: Tenant, name: str, device_type: DeviceType,
                    owner: User | None = None, thing_name: str | None = None,
                    group: DeviceGroup | None = None) -> Device:
    owner = owner or actor
    if owner.pk != actor.pk:
        _require_admin(actor, tenant.pk)
    _require_member(owner, tenant.pk, "The owner")
    _same_tenant(Device(tenant=tenant), device_type, group)
    if group is not None and group.owner_id != owner.pk:
        raise DomainError(ErrorCode.GROUP_OWNER_MISMATCH, "A device can only join a group of its own owner.",
                          field="group")
    device = Device(tenant=tenant, owner=owner, name=_clean_name(name), device_type=device_type, group=group)
    if thing_name:
        validate_thing_name(thing_name)
        device.thing_name = thing_name
    if RetiredThingName.objects.filter(thing_name=device.thing_name).exists():
        raise DomainError(ErrorCode.THING_NAME_RETIRED, f"Thing name {device.thing_name} belonged to a deleted device "
                          "and cannot be used again.", field="thing_name")
    _save_unique(device, ErrorCode.THING_NAME_TAKEN, "thing_name",
                 f"Thing name {device.thing_name} is already registered.")
    audit.record(actor=actor, action=Action.DEVICE_REGISTER, obj=device, device_id=device.pk,
                 changes={"thing_name": device.thing_name, "owner": owner.email, "type": device_type.slug})
    access_changed(actor=actor, tenant_id=tenant.pk, users=access_audience(devices=[device]),
                   devices=[device.thing_name], narrowed=False)
    return device


@transaction.atomic
def rename_device(*, actor: User, device: Device, name: str) -> Device:
    level = held_level(user=actor, device=device)
    _require(
        (level is not None and level >= Level.MANAGE) or owns_or_administers(actor, device),
        "Renaming needs the manage level, ownership or tenant admin rights.",
    )
    old, device.name = device.name, _clean_name(name)
    device.save(update_fields=["name"])
    audit.record(actor=actor, action=Action.DEVICE_RENAME, obj=device, device_id=device.pk,
                 changes={"name": [old, device.name]})
    return device


@transaction.atomic
def transfer_device(*, actor: User, device: Device, new_owner: User, keep_shares: bool = False) -> Device:
    """Hand a device to another member.

    It leaves the old owner's group. Its shares are revoked unless
    `keep_shares`; even then the new owner's own share and shares that came
    through the old group go, since they no longer mean anything.
    """
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may transfer a device.")
    if new_owner.pk == device.owner_id:
        raise DomainError(ErrorCode.ALREADY_OWNER, "The device already belongs to this user.", field="new_owner")
    _require_member(new_owner, device.tenant_id, "The new owner")
    old_owner = device.owner
    audience = access_audience(devices=[device])
    live = Share.objects.filter(device=device, revoked_at__isnull=True)
    if keep_shares:
        live = live.filter(grantee=new_owner) | live.filter(parent__group__isnull=False)
    _revoke_many(actor=actor, shares=list(live), reason="device.transfer")
    if not keep_shares:
        _cancel_pending_invitations(actor=actor, invitations=device.invitations.all())
    device.owner, device.group = new_owner, None
    device.save(update_fields=["owner", "group"])
    audit.record(actor=actor, action=Action.DEVICE_TRANSFER, obj=device, device_id=device.pk,
                 changes={"owner": [old_owner.email, new_owner.email], "keep_shares": keep_shares})
    access_changed(actor=actor, tenant_id=device.tenant_id, users=audience | access_audience(devices=[device]),
                   narrowed=True)
    # The device now answers to someone else: tokens its old owner issued stop working.
    access_changed(actor=actor, tenant_id=device.tenant_id, devices=[device.thing_name], narrowed=True,
                   tokens_revoked=True)
    return device


@transaction.atomic
def delete_device(*, actor: User, device: Device) -> None:
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may delete a device.")
    grantees = sorted(set(Share.objects.live().filter(device=device).values_list("grantee__email", flat=True)))
    audit.record(actor=actor, action=Action.DEVICE_DELETE, obj=device, device_id=device.pk,
                 changes={"thing_name": device.thing_name, "had_shares_with": grantees})
    access_changed(actor=actor, tenant_id=device.tenant_id, users=access_audience(devices=[device]),
                   devices=[device.thing_name], narrowed=True)
    RetiredThingName.objects.get_or_create(thing_name=device.thing_name)
    _delete_shares_of(device)
    device.delete()


def _delete_shares_of(device: Device) -> None:
    """All the device's shares in one statement, instead of Django's cascade,
    which loads every share and its re-shares into Python first (seconds at
    10,000 grantees). Nothing outside goes with them: a re-share of a device
    share is a share of the same device, and an invitation that made one of
    them is an invitation to this device, which the device's own delete takes.
    The database's foreign keys check exactly that at commit."""
    # The only interpolated part is the model's own table name, quoted; the id is a parameter.
    table = connection.ops.quote_name(Share._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {table} WHERE device_id = %s", [device.pk])  # noqa: S608
