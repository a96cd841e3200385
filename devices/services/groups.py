"""Device groups (homes, sites) and their members."""

from django.db import transaction

from .. import audit
from ..access import changed as access_changed
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, Share, Tenant, User
from ..selectors import access_audience, owns_or_administers
from .invitations import _cancel_pending_invitations
from .rules import _clean_name, _require, _require_admin, _require_member, _same_tenant, _save_unique
from .shares import _revoke_many


@transaction.atomic
def create_group(*, actor: User, tenant: Tenant, name: str, owner: User | None = None) -> DeviceGroup:
    owner = owner or actor
    if owner.pk != actor.pk:
        _require_admin(actor, tenant.pk)
    _require_member(owner, tenant.pk, "The owner")
    group = DeviceGroup(tenant=tenant, owner=owner, name=_clean_name(name))
    _save_unique(group, ErrorCode.GROUP_NAME_TAKEN, "name", f"{owner.email} already has a group named {group.name}.")
    audit.record(actor=actor, action=Action.GROUP_CREATE, obj=group, changes={"owner": owner.email})
    return group


@transaction.atomic
def rename_group(*, actor: User, group: DeviceGroup, name: str) -> DeviceGroup:
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may rename it.")
    old, group.name = group.name, _clean_name(name)
    _save_unique(group, ErrorCode.GROUP_NAME_TAKEN, "name", f"There is already a group named {group.name}.",
                 update_fields=["name"])
    audit.record(actor=actor, action=Action.GROUP_RENAME, obj=group, changes={"name": [old, group.name]})
    return group


@transaction.atomic
def delete_group(*, actor: User, group: DeviceGroup) -> None:
    """Delete a group: its devices stay (ungrouped), its shares are revoked."""
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may delete it.")
    # Everyone holding one of its devices: their entries lose the group.
    access_changed(actor=actor, tenant_id=group.tenant_id, users=access_audience(devices=group.devices.all()),
                   narrowed=True)
    _revoke_many(actor=actor, shares=list(group.shares.filter(revoked_at__isnull=True)), reason="group.delete")
    _cancel_pending_invitations(actor=actor, invitations=group.invitations.all())
    audit.record(actor=actor, action=Action.GROUP_DELETE, obj=group,
                 changes={"devices": list(group.devices.values_list("thing_name", flat=True))})
    group.devices.update(group=None)
    group.delete()


@transaction.atomic
def add_device_to_group(*, actor: User, group: DeviceGroup, device: Device) -> Device:
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may change it.")
    _same_tenant(group, device)
    if device.owner_id != group.owner_id:
        raise DomainError(ErrorCode.GROUP_OWNER_MISMATCH, "Only the group owner's own devices can join the group.",
                          field="device")
    if device.group_id == group.pk:
        raise DomainError(ErrorCode.ALREADY_IN_GROUP, f"{device.name} is already in {group.name}.", field="device")
    if device.group_id is not None:
        remove_device_from_group(actor=actor, device=device)
    device.group = group
    device.save(update_fields=["group"])
    # Leaving its old group was reported above; joining only adds the group's sharees.
    access_changed(actor=actor, tenant_id=device.tenant_id, users=access_audience(devices=[device]), narrowed=False)
    audit.record(actor=actor, action=Action.GROUP_ADD_DEVICE, obj=group, device_id=device.pk,
                 changes={"device": device.thing_name})
    return device


@transaction.atomic
def remove_device_from_group(*, actor: User, device: Device) -> Device:
    group = device.group
    if group is None:
        raise DomainError(ErrorCode.NOT_IN_GROUP, f"{device.name} is not in a group.", field="device")
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may change it.")
    # Re-shares of this device made through a group share lose their basis.
    orphaned = Share.objects.filter(device=device, parent__group=group, revoked_at__isnull=True)
    _revoke_many(actor=actor, shares=list(orphaned), reason="group.remove_device")
    access_changed(actor=actor, tenant_id=device.tenant_id, users=access_audience(devices=[device]), narrowed=True)
    device.group = None
    device.save(update_fields=["group"])
    audit.record(actor=actor, action=Action.GROUP_REMOVE_DEVICE, obj=group, device_id=device.pk,
                 changes={"device": device.thing_name})
    return device
