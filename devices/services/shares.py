"""Shares: granting, changing and revoking access, and the re-share cascade."""
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import audit, schedules
from ..access import changed as access_changed
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, Level, Membership, Share, User
from ..selectors import is_tenant_admin, owns_or_administers, reshare_grant
from .rules import UNSET, _level, _locked_memberships, _one_target, _require, _require_member, _save_unique
from .terms import GrantTerms


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
    _require(parent is not None,
             "Sharing needs ownership, tenant admin rights or a manage share that allows re-sharing.")
    return parent


def _grant(*, actor: User, sharer: User, grantee: User, device: Device | None, group: DeviceGroup | None,
           terms: GrantTerms, parent: Share | None, reason: str) -> Share:
    """Create a share from `sharer` after the checks every grant passes,
    whoever triggers it (a share request or an accepted invitation).
    An identical live grant is returned as it is."""
    target = device or group
    now = timezone.now()
    if grantee.pk == target.owner_id:
        raise DomainError(ErrorCode.GRANTEE_IS_OWNER, "The owner already has full access.", field="grantee")
    if grantee.pk == sharer.pk:
        raise DomainError(ErrorCode.SHARE_WITH_SELF, "You cannot share with yourself.", field="grantee")
    _require_member(grantee, target.tenant_id, "The grantee", lock=True)
    terms.check(parent=parent, now=now)

    # Not locked: it may sit above `parent` in the re-share tree, and locking
    # a child before its parent would invert the cascade's order. Concurrent
    # grants to this grantee already wait on the membership lock; an expired
    # one is locked by _revoke_many.
    existing = Share.objects.filter(device=device, group=group, grantee=grantee, revoked_at__isnull=True).first()
    if existing is not None:
        if GrantTerms.of(existing) == terms:
            return existing
        if existing.expires_at is None or existing.expires_at > now:
            raise DomainError(ErrorCode.SHARE_EXISTS, f"{grantee.email} already has a share here; update it instead.",
                              field="grantee")
        # An expired share keeps its row for history but must not block a new grant.
        _revoke_many(actor=actor, shares=[existing], reason="share.replace_expired")

    share = Share(
        tenant_id=target.tenant_id, device=device, group=group, grantee=grantee, **terms.as_fields(),
        parent=parent, created_by=sharer, created_at=now, updated_at=now,
    )
    _save_unique(share, ErrorCode.SHARE_EXISTS, "grantee", f"{grantee.email} already has a share here.")
    audit.record(actor=actor, action=Action.SHARE_CREATE, obj=share, device_id=share.device_id,
                 changes={**_share_fields(share), "reason": reason})
    access_changed(actor=actor, tenant_id=share.tenant_id, users=[grantee.pk], narrowed=False)
    return share


@transaction.atomic
def create_share(*, actor: User, grantee: User, level, device: Device | None = None,
                 group: DeviceGroup | None = None, starts_at: datetime | None = None,
                 expires_at: datetime | None = None, can_reshare: bool = False, schedule: dict | None = None) -> Share:
    """Grant `grantee` access to a device or a whole group, at any hour or,
    with `schedule` (its JSON form), only inside its weekly windows.

    Repeating an identical request returns the existing share.
    """
    target = _one_target(device, group)
    terms = GrantTerms(level=_level(level), starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare,
                       schedule=schedules.parse(schedule))
    # Memberships before shares (see _locked_memberships); _grant checks it.
    list(_locked_memberships(Membership.objects.filter(user=grantee, tenant_id=target.tenant_id)))
    parent = _sharing_parent(actor, device=device, group=group)
    return _grant(actor=actor, sharer=actor, grantee=grantee, device=device, group=group, terms=terms,
                  parent=parent, reason="share.create")


def _share_fields(share: Share) -> dict:
    return {
        "grantee": share.grantee.email,
        "target": f"{'device' if share.device_id else 'group'}:{share.device_id or share.group_id}",
        "level": Level(share.level).label,
        "starts_at": share.starts_at,
        "expires_at": share.expires_at,
        "can_reshare": share.can_reshare,
        "schedule": share.schedule,
        "parent": share.parent_id,
    }


@transaction.atomic
def update_share(*, actor: User, share: Share, level=UNSET, starts_at=UNSET, expires_at=UNSET,
                 can_reshare=UNSET, schedule=UNSET) -> Share:
    """Change level, window, schedule (its JSON form, or None for any hour)
    or re-share right. Re-shares made from this share are revoked when it
    stops allowing them, and clamped to its new window and schedule."""
    new_schedule = UNSET if schedule is UNSET else schedules.parse(schedule)
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
    elif share.parent_id is not None:
        # Whoever edits it, a re-share stays linked to its parent and must stay
        # inside it, or the owner could widen it past what the parent gives
        # (docs/sharing.md#who-may-share). Locked whatever its state: a parent
        # that has ended or narrowed still bounds what is left of its child.
        parent = Share.objects.select_for_update(of=("self",), no_key=True).get(pk=share.parent_id)
    share = Share.objects.select_for_update(of=("self",), no_key=True).get(pk=share.pk)
    _require_unrevoked(share)
    changes = {name: value for name, value in (("starts_at", starts_at), ("expires_at", expires_at))
               if value is not UNSET}
    window_changed = bool(changes)
    if level is not UNSET:
        changes["level"] = _level(level)
    if can_reshare is not UNSET:
        changes["can_reshare"] = bool(can_reshare)
    if new_schedule is not UNSET:
        changes["schedule"] = new_schedule
    old_terms = GrantTerms.of(share)
    terms = replace(old_terms, **changes)

    now = timezone.now()
    terms.check(parent=parent, now=now, window_changed=window_changed,
                schedule_changed=terms.schedule != old_terms.schedule)

    before = _share_fields(share)
    for field, value in terms.as_fields().items():
        setattr(share, field, value)
    share.updated_at = now
    share.save(update_fields=["level", "starts_at", "expires_at", "can_reshare", "schedule", "updated_at"])
    audit.record(actor=actor, action=Action.SHARE_UPDATE, obj=share, device_id=share.device_id,
                 changes={"before": before, "after": _share_fields(share)})
    access_changed(actor=actor, tenant_id=share.tenant_id, users=[share.grantee_id],
                   narrowed=not terms.covers(old_terms))

    children = list(share.reshares.filter(revoked_at__isnull=True).select_related("grantee"))
    if not (share.level == Level.MANAGE and share.can_reshare):
        _revoke_many(actor=actor, shares=children, reason="share.parent_narrowed")
    else:
        for child in children:
            _clamp_to_parent(actor=actor, child=child, parent=share, now=now)
    return share


def _require_unrevoked(share: Share) -> None:
    if share.revoked_at is not None:
        raise DomainError(ErrorCode.SHARE_REVOKED, "This share has been revoked; create a new one.")


def _clamp_to_parent(*, actor: User, child: Share, parent: Share, now: datetime) -> None:
    """Narrow a re-share to what its parent now gives: its window, and its
    hours (docs/sharing.md#weekly-schedules); revoke it when nothing is left."""
    starts = child.starts_at
    if parent.starts_at is not None and (starts is None or starts < parent.starts_at):
        starts = parent.starts_at
    expires = child.expires_at
    if parent.expires_at is not None and (expires is None or expires > parent.expires_at):
        expires = parent.expires_at
    hours_left, schedule = _hours_within(child=schedules.of(child), parent=schedules.of(parent))
    if (starts, expires, schedule) == (child.starts_at, child.expires_at, schedules.of(child)):
        return
    ended = expires is not None and (expires <= now or (starts is not None and expires <= starts))
    if ended or not hours_left or not schedules.reached_between(schedule, max(now, starts or now), expires):
        _revoke_many(actor=actor, shares=[child], reason="share.parent_narrowed")
        return
    before = _share_fields(child)
    child.starts_at, child.expires_at, child.updated_at = starts, expires, now
    child.schedule = schedules.to_json(schedule)
    child.save(update_fields=["starts_at", "expires_at", "schedule", "updated_at"])
    audit.record(actor=actor, action=Action.SHARE_UPDATE, obj=child, device_id=child.device_id,
                 changes={"reason": "share.parent_narrowed", "before": before, "after": _share_fields(child)})
    access_changed(actor=actor, tenant_id=child.tenant_id, users=[child.grantee_id], narrowed=True)
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
        raise DomainError(ErrorCode.SHARE_REVOKED, "This share is already revoked.")


def _hours_within(*, child: schedules.Schedule | None,
                  parent: schedules.Schedule | None) -> tuple[bool, schedules.Schedule | None]:
    """Whether any of the child's hours are left inside the parent's, and
    which: its own when they lie inside, else the hours both have. Nothing
    is left when they have none in common, read two zones' clocks, or need
    more windows than a schedule may hold."""
    if schedules.within(child, parent):
        return True, child
    common = parent if child is None else schedules.intersection(child, parent)
    if common is None or len(common.windows) > schedules.MAX_WINDOWS:
        return False, None
    return True, common


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
            events.append(audit.build(actor=actor, action=Action.SHARE_REVOKE, obj=share, device_id=share.device_id,
                                      changes={"reason": reason, "cascade_from": cause[share.pk],
                                               **_share_fields(share)}))
        audit.record_many(events)
        for tenant_id in {s.tenant_id for s in batch}:
            grantees = {s.grantee_id for s in batch if s.tenant_id == tenant_id}
            access_changed(actor=actor, tenant_id=tenant_id, users=grantees, narrowed=True)
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
