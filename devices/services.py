"""Every write to the sharing domain.

Each function takes the acting user, checks that they may act, validates the
input before touching anything, and records an AuditEvent in the same
transaction. Bad input raises ``ValidationError`` and writes nothing; a
missing right raises ``PermissionDenied``.
"""
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import audit
from .access import changed as access_changed
from .models import (
    Device,
    DeviceGroup,
    DeviceType,
    Invitation,
    Level,
    Membership,
    RetiredThingName,
    Share,
    Tenant,
    User,
    validate_thing_name,
)
from .selectors import access_audience, effective_access, is_tenant_admin, owns_or_administers, reshare_grant

INVITATION_VALIDITY = timedelta(days=14)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


# --- helpers ----------------------------------------------------------------


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
        raise ValidationError(f"{what} is not an active member of this tenant.")


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


def _save_unique(obj, field: str, message: str, **save_kwargs) -> None:
    """Save; losing a race on a unique constraint reads as bad input."""
    try:
        with transaction.atomic():
            obj.save(**save_kwargs)
    except IntegrityError:
        raise ValidationError({field: message}) from None


def _clean_name(value: str, field: str = "name", max_length: int = 100) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError({field: "This field cannot be blank."})
    if len(value) > max_length:
        raise ValidationError({field: f"At most {max_length} characters."})
    return value


def _level(value) -> Level:
    if isinstance(value, str) and not value.isdigit():
        choices = {"view": Level.VIEW, "control": Level.CONTROL, "manage": Level.MANAGE}
        if value not in choices:
            raise ValidationError({"level": "Level must be one of view, control, manage."})
        return choices[value]
    try:
        level = Level(int(value))
    except (TypeError, ValueError):
        raise ValidationError({"level": "Level must be one of view, control, manage."}) from None
    if level == Level.OWNER:
        raise ValidationError({"level": "A share cannot grant ownership; transfer the device instead."})
    return level


def _same_tenant(*objects) -> None:
    tenants = {obj.tenant_id for obj in objects if obj is not None}
    if len(tenants) > 1:
        raise ValidationError("All objects must belong to the same tenant.")


# --- tenants and memberships -----------------------------------------------


@transaction.atomic
def create_tenant(*, actor: User, name: str, slug: str, owner: User | None = None) -> Tenant:
    _require(actor.is_superuser, "Only a superuser may create tenants.")
    tenant = Tenant(name=_clean_name(name, max_length=200), slug=slug)
    tenant.full_clean()
    tenant.save()
    audit.record(actor=actor, action="tenant.create", obj=tenant, tenant=tenant, changes={"slug": slug})
    if owner is not None:
        add_member(actor=actor, tenant=tenant, user=owner, role=Membership.Role.OWNER)
    return tenant


@transaction.atomic
def update_tenant(*, actor: User, tenant: Tenant, name: str) -> Tenant:
    _require_admin(actor, tenant.pk)
    old = tenant.name
    tenant.name = _clean_name(name, max_length=200)
    tenant.save(update_fields=["name"])
    audit.record(actor=actor, action="tenant.update", obj=tenant, tenant=tenant, changes={"name": [old, tenant.name]})
    return tenant


def _check_role_change(actor: User, tenant_id: int, *roles: str) -> None:
    """`roles` are the old and new roles; touching an owner needs an owner."""
    for role in roles:
        if role not in Membership.Role.values:
            raise ValidationError({"role": f"Role must be one of {', '.join(Membership.Role.values)}."})
    _require_admin(actor, tenant_id)
    if Membership.Role.OWNER in roles and not actor.is_superuser:
        _require(
            Membership.objects.filter(user=actor, tenant_id=tenant_id, role=Membership.Role.OWNER).exists(),
            "Only a tenant owner may make or unmake an owner.",
        )


@transaction.atomic
def add_member(*, actor: User, tenant: Tenant, user: User, role: str = Membership.Role.MEMBER) -> Membership:
    """Put an existing account into a tenant. Superusers only: anyone else
    joins by accepting an invitation, so nobody is enrolled without consent."""
    _require(actor.is_superuser, "Only a superuser may add an existing account; invite people instead.")
    _check_role_change(actor, tenant.pk, role)
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise ValidationError(f"{user.email} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    audit.record(actor=actor, action="membership.create", obj=membership, tenant=tenant,
                 changes={"user": user.email, "role": role})
    access_changed(tenant_id=tenant.pk, users=[user.pk])
    return membership


def _last_owner(membership: Membership) -> bool:
    return (
        membership.role == Membership.Role.OWNER
        and not Membership.objects.filter(tenant_id=membership.tenant_id, role=Membership.Role.OWNER)
        .exclude(pk=membership.pk)
        .exists()
    )


@transaction.atomic
def change_member_role(*, actor: User, membership: Membership, role: str) -> Membership:
    membership = _locked_memberships(Membership.objects).get(pk=membership.pk)
    _check_role_change(actor, membership.tenant_id, membership.role, role)
    if role != Membership.Role.OWNER and _last_owner(membership):
        raise ValidationError("A tenant must keep at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(actor=actor, action="membership.update", obj=membership, changes={"role": [old, role]})
    return membership


@transaction.atomic
def remove_member(*, actor: User, membership: Membership) -> None:
    """Remove a user from a tenant: the shares they received there (and what
    was re-shared from them) are revoked, pending invitations to them cancelled."""
    membership = _locked_memberships(Membership.objects.select_related("user")).get(pk=membership.pk)
    _require(
        membership.user_id == actor.pk or is_tenant_admin(user=actor, tenant_id=membership.tenant_id),
        "Only a tenant admin may remove another member.",
    )
    if membership.role == Membership.Role.OWNER and membership.user_id != actor.pk:
        _check_role_change(actor, membership.tenant_id, membership.role)
    if _last_owner(membership):
        raise ValidationError("A tenant must keep at least one owner.")
    user = membership.user
    if Device.objects.filter(tenant_id=membership.tenant_id, owner=user).exists():
        raise ValidationError(f"{user.email} still owns devices here; transfer or delete them first.")
    if DeviceGroup.objects.filter(tenant_id=membership.tenant_id, owner=user).exists():
        raise ValidationError(f"{user.email} still owns groups here; delete them first.")
    received = Share.objects.filter(tenant_id=membership.tenant_id, grantee=user, revoked_at__isnull=True)
    _revoke_many(actor=actor, shares=list(received), reason="membership.remove")
    _cancel_pending_invitations(
        actor=actor, invitations=Invitation.objects.filter(tenant_id=membership.tenant_id, email=user.email)
    )
    audit.record(actor=actor, action="membership.delete", obj=membership, changes={"user": user.email})
    membership.delete()
    access_changed(tenant_id=membership.tenant_id, users=[user.pk])


# --- device types ----------------------------------------------------------


@transaction.atomic
def create_device_type(*, actor: User, tenant: Tenant, name: str, slug: str,
                       capabilities: Iterable[str] = ()) -> DeviceType:
    _require_admin(actor, tenant.pk)
    device_type = DeviceType(tenant=tenant, name=_clean_name(name), slug=slug, capabilities=list(capabilities))
    device_type.full_clean()
    device_type.save()
    audit.record(actor=actor, action="device_type.create", obj=device_type,
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
    audit.record(actor=actor, action="device_type.update", obj=device_type,
                 changes={"before": before, "after": {"name": device_type.name, "capabilities": device_type.capabilities}})
    return device_type


@transaction.atomic
def delete_device_type(*, actor: User, device_type: DeviceType) -> None:
    _require_admin(actor, device_type.tenant_id)
    if device_type.devices.exists():
        raise ValidationError(f"Device type {device_type.name} is still used by devices.")
    audit.record(actor=actor, action="device_type.delete", obj=device_type)
    device_type.delete()


# --- devices ---------------------------------------------------------------


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
        raise ValidationError({"group": "A device can only join a group of its own owner."})
    device = Device(tenant=tenant, owner=owner, name=_clean_name(name), device_type=device_type, group=group)
    if thing_name:
        validate_thing_name(thing_name)
        device.thing_name = thing_name
    if RetiredThingName.objects.filter(thing_name=device.thing_name).exists():
        raise ValidationError({"thing_name": f"Thing name {device.thing_name} belonged to a deleted device "
                                             "and cannot be used again."})
    _save_unique(device, "thing_name", f"Thing name {device.thing_name} is already registered.")
    audit.record(actor=actor, action="device.register", obj=device, device_id=device.pk,
                 changes={"thing_name": device.thing_name, "owner": owner.email, "type": device_type.slug})
    access_changed(tenant_id=tenant.pk, users=access_audience(devices=[device]), devices=[device.thing_name])
    return device


@transaction.atomic
def rename_device(*, actor: User, device: Device, name: str) -> Device:
    access = effective_access(user=actor, device=device)
    _require(
        (access is not None and access.level >= Level.MANAGE) or owns_or_administers(actor, device),
        "Renaming needs the manage level, ownership or tenant admin rights.",
    )
    old, device.name = device.name, _clean_name(name)
    device.save(update_fields=["name"])
    audit.record(actor=actor, action="device.rename", obj=device, device_id=device.pk,
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
        raise ValidationError({"new_owner": "The device already belongs to this user."})
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
    audit.record(actor=actor, action="device.transfer", obj=device, device_id=device.pk,
                 changes={"owner": [old_owner.email, new_owner.email], "keep_shares": keep_shares})
    access_changed(tenant_id=device.tenant_id, users=audience | access_audience(devices=[device]))
    return device


@transaction.atomic
def delete_device(*, actor: User, device: Device) -> None:
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may delete a device.")
    grantees = sorted(set(Share.objects.live().filter(device=device).values_list("grantee__email", flat=True)))
    audit.record(actor=actor, action="device.delete", obj=device, device_id=device.pk,
                 changes={"thing_name": device.thing_name, "had_shares_with": grantees})
    access_changed(tenant_id=device.tenant_id, users=access_audience(devices=[device]),
                   devices=[device.thing_name])
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
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(Share._meta.db_table)} WHERE device_id = %s",
                       [device.pk])


# --- groups ----------------------------------------------------------------


@transaction.atomic
def create_group(*, actor: User, tenant: Tenant, name: str, owner: User | None = None) -> DeviceGroup:
    owner = owner or actor
    if owner.pk != actor.pk:
        _require_admin(actor, tenant.pk)
    _require_member(owner, tenant.pk, "The owner")
    group = DeviceGroup(tenant=tenant, owner=owner, name=_clean_name(name))
    _save_unique(group, "name", f"{owner.email} already has a group named {group.name}.")
    audit.record(actor=actor, action="group.create", obj=group, changes={"owner": owner.email})
    return group


@transaction.atomic
def rename_group(*, actor: User, group: DeviceGroup, name: str) -> DeviceGroup:
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may rename it.")
    old, group.name = group.name, _clean_name(name)
    _save_unique(group, "name", f"There is already a group named {group.name}.", update_fields=["name"])
    audit.record(actor=actor, action="group.rename", obj=group, changes={"name": [old, group.name]})
    return group


@transaction.atomic
def delete_group(*, actor: User, group: DeviceGroup) -> None:
    """Delete a group: its devices stay (ungrouped), its shares are revoked."""
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may delete it.")
    # Everyone holding one of its devices: their entries lose the group.
    access_changed(tenant_id=group.tenant_id, users=access_audience(devices=group.devices.all()))
    _revoke_many(actor=actor, shares=list(group.shares.filter(revoked_at__isnull=True)), reason="group.delete")
    _cancel_pending_invitations(actor=actor, invitations=group.invitations.all())
    audit.record(actor=actor, action="group.delete", obj=group,
                 changes={"devices": list(group.devices.values_list("thing_name", flat=True))})
    group.devices.update(group=None)
    group.delete()


@transaction.atomic
def add_device_to_group(*, actor: User, group: DeviceGroup, device: Device) -> Device:
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may change it.")
    _same_tenant(group, device)
    if device.owner_id != group.owner_id:
        raise ValidationError({"device": "Only the group owner's own devices can join the group."})
    if device.group_id == group.pk:
        raise ValidationError({"device": f"{device.name} is already in {group.name}."})
    if device.group_id is not None:
        remove_device_from_group(actor=actor, device=device)
    device.group = group
    device.save(update_fields=["group"])
    access_changed(tenant_id=device.tenant_id, users=access_audience(devices=[device]))
    audit.record(actor=actor, action="group.add_device", obj=group, device_id=device.pk,
                 changes={"device": device.thing_name})
    return device


@transaction.atomic
def remove_device_from_group(*, actor: User, device: Device) -> Device:
    group = device.group
    if group is None:
        raise ValidationError({"device": f"{device.name} is not in a group."})
    _require(owns_or_administers(actor, group), "Only the group owner or a tenant admin may change it.")
    # Re-shares of this device made through a group share lose their basis.
    orphaned = Share.objects.filter(device=device, parent__group=group, revoked_at__isnull=True)
    _revoke_many(actor=actor, shares=list(orphaned), reason="group.remove_device")
    access_changed(tenant_id=device.tenant_id, users=access_audience(devices=[device]))
    device.group = None
    device.save(update_fields=["group"])
    audit.record(actor=actor, action="group.remove_device", obj=group, device_id=device.pk,
                 changes={"device": device.thing_name})
    return device


# --- shares ----------------------------------------------------------------


def _one_target(device: Device | None, group: DeviceGroup | None) -> Device | DeviceGroup:
    if (device is None) == (group is None):
        raise ValidationError("Choose exactly one device or one group.")
    return device or group


def _clean_window(starts_at: datetime | None, expires_at: datetime | None, *, now: datetime) -> None:
    for field, value in (("starts_at", starts_at), ("expires_at", expires_at)):
        if value is not None and timezone.is_naive(value):
            raise ValidationError({field: "Times must carry a time zone."})
    if expires_at is not None and expires_at <= now:
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if starts_at is not None and expires_at is not None and expires_at <= starts_at:
        raise ValidationError({"expires_at": "The expiry must come after the start."})


def _check_within_parent(parent: Share, level: Level, starts_at, expires_at) -> None:
    if level > parent.level:
        raise ValidationError({"level": f"You can share at most at your own level ({Level(parent.level).label})."})
    if parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        raise ValidationError({"expires_at": "A re-share cannot outlast your own share; set an expiry no later than it."})
    if parent.starts_at is not None and (starts_at is None or starts_at < parent.starts_at):
        raise ValidationError({"starts_at": "A re-share cannot start before your own share does."})


def _check_terms(*, level: Level, starts_at, expires_at, can_reshare: bool, parent: Share | None,
                 now: datetime, window_changed: bool = True) -> None:
    """What every grant, a share or an invitation to one, must satisfy.
    An edit that leaves the window alone does not re-judge it (it may have started or lapsed)."""
    if can_reshare and level != Level.MANAGE:
        raise ValidationError({"can_reshare": "Only a manage share may allow re-sharing."})
    if window_changed:
        _clean_window(starts_at, expires_at, now=now)
    if parent is not None:
        _check_within_parent(parent, level, starts_at, expires_at)


def _locked_reshare_grant(share_id: int | None) -> Share | None:
    """The share, locked, if it is still a live manage + can_reshare grant.

    The lock orders this against a concurrent revoke: whichever comes second
    sees the other's result, so no re-share can be built on a revoked parent.
    """
    if share_id is None:
        return None
    return (
        Share.objects.select_for_update(of=("self",), no_key=True)
        .live()
        .filter(pk=share_id, level=Level.MANAGE, can_reshare=True)
        .first()
    )


def _sharing_parent(sharer: User, *, device: Device | None, group: DeviceGroup | None) -> Share | None:
    """Check that `sharer` may share the target now. Returns None for the owner
    or a tenant admin, the grant a re-sharer shares from, and raises otherwise."""
    if owns_or_administers(sharer, device or group):
        return None
    grant = reshare_grant(user=sharer, device=device, group=group)
    parent = _locked_reshare_grant(grant.pk if grant else None)
    _require(parent is not None, "Sharing needs ownership, tenant admin rights or a manage share that allows re-sharing.")
    return parent


def _grant(*, actor: User, sharer: User, grantee: User, level: Level, device: Device | None,
           group: DeviceGroup | None, starts_at, expires_at, can_reshare: bool, parent: Share | None,
           reason: str) -> Share:
    """Create a share from `sharer` after the checks every grant passes,
    whoever triggers it (a share request or an accepted invitation).
    An identical live grant is returned as it is."""
    target = device or group
    now = timezone.now()
    if grantee.pk == target.owner_id:
        raise ValidationError({"grantee": "The owner already has full access."})
    if grantee.pk == sharer.pk:
        raise ValidationError({"grantee": "You cannot share with yourself."})
    _require_member(grantee, target.tenant_id, "The grantee", lock=True)
    _check_terms(level=level, starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare,
                 parent=parent, now=now)

    # Not locked: it may sit above `parent` in the re-share tree, and locking
    # a child before its parent would invert the cascade's order. Concurrent
    # grants to this grantee already wait on the membership lock; an expired
    # one is locked by _revoke_many.
    existing = Share.objects.filter(device=device, group=group, grantee=grantee, revoked_at__isnull=True).first()
    if existing is not None:
        if (existing.level, existing.starts_at, existing.expires_at, existing.can_reshare) == (
            level, starts_at, expires_at, can_reshare,
        ):
            return existing
        if existing.expires_at is None or existing.expires_at > now:
            raise ValidationError({"grantee": f"{grantee.email} already has a share here; update it instead."})
        # An expired share keeps its row for history but must not block a new grant.
        _revoke_many(actor=actor, shares=[existing], reason="share.replace_expired")

    share = Share(
        tenant_id=target.tenant_id, device=device, group=group, grantee=grantee, level=level,
        starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare, parent=parent,
        created_by=sharer, created_at=now, updated_at=now,
    )
    _save_unique(share, "grantee", f"{grantee.email} already has a share here.")
    audit.record(actor=actor, action="share.create", obj=share, device_id=share.device_id,
                 changes={**_share_fields(share), "reason": reason})
    access_changed(tenant_id=share.tenant_id, users=[grantee.pk])
    return share


@transaction.atomic
def create_share(*, actor: User, grantee: User, level, device: Device | None = None,
                 group: DeviceGroup | None = None, starts_at: datetime | None = None,
                 expires_at: datetime | None = None, can_reshare: bool = False) -> Share:
    """Grant `grantee` access to a device or a whole group.

    Repeating an identical request returns the existing share.
    """
    target = _one_target(device, group)
    level = _level(level)
    # Memberships before shares (see _locked_memberships); _grant checks it.
    list(_locked_memberships(Membership.objects.filter(user=grantee, tenant_id=target.tenant_id)))
    parent = _sharing_parent(actor, device=device, group=group)
    return _grant(actor=actor, sharer=actor, grantee=grantee, level=level, device=device, group=group,
                  starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare, parent=parent,
                  reason="share.create")


def _share_fields(share: Share) -> dict:
    return {
        "grantee": share.grantee.email,
        "target": f"{'device' if share.device_id else 'group'}:{share.device_id or share.group_id}",
        "level": Level(share.level).label,
        "starts_at": share.starts_at,
        "expires_at": share.expires_at,
        "can_reshare": share.can_reshare,
        "parent": share.parent_id,
    }


@transaction.atomic
def update_share(*, actor: User, share: Share, level=UNSET, starts_at=UNSET, expires_at=UNSET,
                 can_reshare=UNSET) -> Share:
    """Change level, window or re-share right. Re-shares made from this share
    are revoked when it stops allowing them, and clamped to its new window."""
    share = Share.objects.get(pk=share.pk)
    _require_unrevoked(share)
    parent = None
    if not owns_or_administers(actor, share.target):
        # A re-sharer edits what they shared, within the very grant they shared it from.
        _require(share.created_by_id == actor.pk and share.parent_id is not None,
                 "Only the owner, a tenant admin or whoever re-shared this may change it.")
        # The parent is locked before the share: the cascade's order (see _locked_memberships).
        parent = _locked_reshare_grant(share.parent_id)
        _require(parent is not None and parent.grantee_id == actor.pk,
                 "You no longer hold the share that allowed this re-share.")
    share = Share.objects.select_for_update(of=("self",), no_key=True).get(pk=share.pk)
    _require_unrevoked(share)
    new_level = share.level if level is UNSET else _level(level)
    new_starts = share.starts_at if starts_at is UNSET else starts_at
    new_expires = share.expires_at if expires_at is UNSET else expires_at
    new_reshare = share.can_reshare if can_reshare is UNSET else bool(can_reshare)

    now = timezone.now()
    _check_terms(level=Level(new_level), starts_at=new_starts, expires_at=new_expires, can_reshare=new_reshare,
                 parent=parent, now=now, window_changed=starts_at is not UNSET or expires_at is not UNSET)

    before = _share_fields(share)
    share.level, share.starts_at, share.expires_at, share.can_reshare = new_level, new_starts, new_expires, new_reshare
    share.updated_at = now
    share.save(update_fields=["level", "starts_at", "expires_at", "can_reshare", "updated_at"])
    audit.record(actor=actor, action="share.update", obj=share, device_id=share.device_id,
                 changes={"before": before, "after": _share_fields(share)})
    access_changed(tenant_id=share.tenant_id, users=[share.grantee_id])

    children = list(share.reshares.filter(revoked_at__isnull=True).select_related("grantee"))
    if not (share.level == Level.MANAGE and share.can_reshare):
        _revoke_many(actor=actor, shares=children, reason="share.parent_narrowed")
    else:
        for child in children:
            _clamp_to_parent(actor=actor, child=child, parent=share, now=now)
    return share


def _require_unrevoked(share: Share) -> None:
    if share.revoked_at is not None:
        raise ValidationError("This share has been revoked; create a new one.")


def _clamp_to_parent(*, actor: User, child: Share, parent: Share, now: datetime) -> None:
    starts = child.starts_at
    if parent.starts_at is not None and (starts is None or starts < parent.starts_at):
        starts = parent.starts_at
    expires = child.expires_at
    if parent.expires_at is not None and (expires is None or expires > parent.expires_at):
        expires = parent.expires_at
    if (starts, expires) == (child.starts_at, child.expires_at):
        return
    if expires is not None and (expires <= now or (starts is not None and expires <= starts)):
        _revoke_many(actor=actor, shares=[child], reason="share.parent_narrowed")
        return
    before = _share_fields(child)
    child.starts_at, child.expires_at, child.updated_at = starts, expires, now
    child.save(update_fields=["starts_at", "expires_at", "updated_at"])
    audit.record(actor=actor, action="share.update", obj=child, device_id=child.device_id,
                 changes={"reason": "share.parent_narrowed", "before": before, "after": _share_fields(child)})
    access_changed(tenant_id=child.tenant_id, users=[child.grantee_id])
    for grandchild in child.reshares.filter(revoked_at__isnull=True).select_related("grantee"):
        _clamp_to_parent(actor=actor, child=grandchild, parent=child, now=now)


@transaction.atomic
def revoke_share(*, actor: User, share: Share) -> list[Share]:
    """Revoke a share and everything re-shared from it; returns all revoked."""
    share = Share.objects.select_for_update(of=("self",), no_key=True).get(pk=share.pk)
    _check_revocable(actor, share)
    return _revoke_many(actor=actor, shares=[share], reason="share.revoke")


def _check_revocable(actor: User, share: Share) -> None:
    _require(
        actor.pk in (share.target.owner_id, share.grantee_id, share.created_by_id)
        or is_tenant_admin(user=actor, tenant_id=share.tenant_id),
        "Only the owner, a tenant admin, whoever made the share or its grantee may revoke it.",
    )
    if share.revoked_at is not None:
        raise ValidationError("This share is already revoked.")


def _revoke_many(*, actor: User, shares: list[Share], reason: str) -> list[Share]:
    """Revoke `shares` and, breadth first, every live re-share below them.

    Rows are locked before they are read, so a concurrent re-share either
    lands first (and is found here) or waits and then finds its parent revoked.
    """
    now = timezone.now()
    revoked: list[Share] = []
    cause: dict[int, int | None] = {s.pk: None for s in shares}
    ids = list(cause)
    while ids:
        batch = list(
            Share.objects.select_for_update(of=("self",), no_key=True)
            .filter(pk__in=ids, revoked_at__isnull=True)
            .select_related("grantee", "device", "group", "tenant")  # what the audit event renders
            .order_by("pk")
        )
        batch_ids = [s.pk for s in batch]
        Share.objects.filter(pk__in=batch_ids).update(revoked_at=now, revoked_by=actor, updated_at=now)
        events = []
        for share in batch:
            share.revoked_at, share.revoked_by = now, actor
            events.append(audit.build(actor=actor, action="share.revoke", obj=share, device_id=share.device_id,
                                      changes={"reason": reason, "cascade_from": cause[share.pk],
                                               **_share_fields(share)}))
        audit.record_many(events)
        for tenant_id in {s.tenant_id for s in batch}:
            access_changed(tenant_id=tenant_id, users={s.grantee_id for s in batch if s.tenant_id == tenant_id})
        revoked.extend(batch)
        children = dict(
            Share.objects.filter(parent_id__in=batch_ids, revoked_at__isnull=True).values_list("pk", "parent_id")
        )
        cause.update(children)
        ids = list(children)
    return revoked


@transaction.atomic
def revoke_shares(*, actor: User, shares: Iterable[Share]) -> list[Share]:
    """Revoke several shares at once (the admin's bulk action); all or nothing."""
    locked = Share.objects.select_for_update(of=("self",), no_key=True).filter(pk__in=[s.pk for s in shares],
                                                                    revoked_at__isnull=True)
    locked = list(locked.select_related("device__owner", "group__owner").order_by("pk"))
    for share in locked:
        _check_revocable(actor, share)
    return _revoke_many(actor=actor, shares=locked, reason="share.revoke")


# --- invitations -----------------------------------------------------------


@transaction.atomic
def create_invitation(*, actor: User, email: str, level, device: Device | None = None,
                      group: DeviceGroup | None = None, starts_at: datetime | None = None,
                      expires_at: datetime | None = None, can_reshare: bool = False,
                      valid_for: timedelta = INVITATION_VALIDITY) -> Invitation:
    """Offer a share to an email address. Nothing is granted until the
    addressee accepts, and then only what the inviter may still give."""
    target = _one_target(device, group)
    level = _level(level)
    email = (email or "").strip().lower()
    now = timezone.now()
    invitation = Invitation(
        tenant_id=target.tenant_id, email=email, device=device, group=group, level=level,
        starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare, invited_by=actor,
        valid_until=now + valid_for,
    )
    invitation.full_clean(exclude=["tenant", "device", "group", "invited_by", "share"], validate_constraints=False)
    parent = _sharing_parent(actor, device=device, group=group)
    if email in (actor.email, target.owner.email):
        raise ValidationError({"email": "That address already has access."})
    _check_terms(level=level, starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare,
                 parent=parent, now=now)
    pending = Invitation.objects.select_for_update().filter(
        tenant_id=target.tenant_id, email=email, device=device, group=group, status=Invitation.Status.PENDING
    )
    for old in pending:
        if old.valid_until > now:
            raise ValidationError({"email": f"{email} already has a pending invitation here."})
        _close_invitation(actor=actor, invitation=old, status=Invitation.Status.LAPSED)
    _save_unique(invitation, "email", f"{email} already has a pending invitation here.")
    audit.record(actor=actor, action="invitation.create", obj=invitation, device_id=invitation.device_id,
                 changes={"email": email, "level": level.label, "target": str(target)})
    return invitation


def _open_invitation_for(actor: User, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    _require(invitation.email.lower() == actor.email.lower(), "This invitation was sent to another address.")
    if invitation.status != Invitation.Status.PENDING:
        raise ValidationError(f"This invitation is already {invitation.status}.")
    if invitation.valid_until <= timezone.now():
        raise ValidationError("This invitation has lapsed; ask for a new one.")
    return invitation


@transaction.atomic
def accept_invitation(*, actor: User, invitation: Invitation) -> Share:
    """The invitee accepts: they join the tenant if needed and receive the
    share, checked against what the inviter may grant *now*."""
    invitation = _open_invitation_for(actor, invitation)
    # Memberships before shares (see _locked_memberships).
    list(_locked_memberships(Membership.objects.filter(user=actor, tenant_id=invitation.tenant_id)))
    try:
        parent = _sharing_parent(invitation.invited_by, device=invitation.device, group=invitation.group)
    except PermissionDenied:
        raise ValidationError("Whoever invited you can no longer share this; ask them again.") from None
    membership, joined = Membership.objects.get_or_create(
        tenant_id=invitation.tenant_id, user=actor, defaults={"role": Membership.Role.MEMBER}
    )
    if joined:
        audit.record(actor=actor, action="membership.create", obj=membership,
                     changes={"user": actor.email, "role": membership.role, "via": "invitation"})
    share = _grant(
        actor=actor, sharer=invitation.invited_by, grantee=actor, level=Level(invitation.level),
        device=invitation.device, group=invitation.group, starts_at=invitation.starts_at,
        expires_at=invitation.expires_at, can_reshare=invitation.can_reshare, parent=parent,
        reason=f"invitation:{invitation.pk}",
    )
    invitation.share = share
    _close_invitation(actor=actor, invitation=invitation, status=Invitation.Status.ACCEPTED)
    return share


@transaction.atomic
def decline_invitation(*, actor: User, invitation: Invitation) -> Invitation:
    invitation = _open_invitation_for(actor, invitation)
    _close_invitation(actor=actor, invitation=invitation, status=Invitation.Status.DECLINED)
    return invitation


@transaction.atomic
def cancel_invitation(*, actor: User, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    _require(
        actor.pk in (invitation.invited_by_id, invitation.target.owner_id)
        or is_tenant_admin(user=actor, tenant_id=invitation.tenant_id),
        "Only whoever sent the invitation, the owner or a tenant admin may cancel it.",
    )
    if invitation.status != Invitation.Status.PENDING:
        raise ValidationError(f"This invitation is already {invitation.status}.")
    _close_invitation(actor=actor, invitation=invitation, status=Invitation.Status.CANCELLED)
    return invitation


def _cancel_pending_invitations(*, actor: User, invitations) -> None:
    for invitation in invitations.select_for_update().filter(status=Invitation.Status.PENDING):
        _close_invitation(actor=actor, invitation=invitation, status=Invitation.Status.CANCELLED)


def _close_invitation(*, actor: User, invitation: Invitation, status: str) -> None:
    invitation.status, invitation.responded_at = status, timezone.now()
    invitation.save(update_fields=["status", "responded_at", "share"])
    audit.record(actor=actor, action=f"invitation.{Invitation.Status(status).label}", obj=invitation,
                 device_id=invitation.device_id, changes={"share": invitation.share_id})


# --- users -----------------------------------------------------------------


@transaction.atomic
def create_user(*, actor: User, email: str, password: str | None, full_name: str = "",
                is_staff: bool = False) -> User:
    _require(actor.is_superuser, "Only a superuser may create accounts here.")
    email = (email or "").strip().lower()
    if User.objects.filter(email=email).exists():
        raise ValidationError({"email": f"{email} already has an account."})
    user = User(email=email, full_name=full_name, is_staff=is_staff)
    user.full_clean(exclude=["password"])
    user.set_password(password) if password else user.set_unusable_password()
    user.save()
    audit.record(actor=actor, action="user.create", obj=user, tenant=None, changes={"email": email, "is_staff": is_staff})
    return user


@transaction.atomic
def update_user(*, actor: User, user: User, full_name: str, is_staff: bool) -> User:
    _require(actor.is_superuser, "Only a superuser may change accounts here.")
    before = {"full_name": user.full_name, "is_staff": user.is_staff}
    user.full_name, user.is_staff = (full_name or "").strip()[:150], bool(is_staff)
    user.save(update_fields=["full_name", "is_staff"])
    audit.record(actor=actor, action="user.update", obj=user, tenant=None,
                 changes={"before": before, "after": {"full_name": user.full_name, "is_staff": user.is_staff}})
    return user


@transaction.atomic
def set_user_active(*, actor: User, user: User, is_active: bool) -> User:
    """Deactivating an account cuts all its access at once (shares stop counting)."""
    _require(actor.is_superuser, "Only a superuser may (de)activate accounts.")
    if user.pk == actor.pk:
        raise ValidationError("You cannot deactivate yourself.")
    user.is_active = is_active
    user.save(update_fields=["is_active"])
    if not is_active:
        # Their own shares stop counting while inactive and return on
        # reactivation; what they re-shared to others is cut for good.
        made = Share.objects.filter(parent__grantee=user, revoked_at__isnull=True)
        _revoke_many(actor=actor, shares=list(made), reason="user.deactivate")
    for tenant_id in user.memberships.values_list("tenant_id", flat=True):
        access_changed(tenant_id=tenant_id, users=[user.pk])
    audit.record(actor=actor, action="user.activate" if is_active else "user.deactivate", obj=user, tenant=None)
    return user
