"""Invitations: a share offered to an email address until it is accepted."""
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from .. import audit, schedules
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, Invitation, Membership, Share, User
from ..selectors import is_tenant_admin
from .rules import _level, _locked_memberships, _one_target, _require, _save_unique
from .shares import _grant, _sharing_parent
from .terms import GrantTerms

INVITATION_VALIDITY = timedelta(days=14)


@transaction.atomic
def create_invitation(*, actor: User, email: str, level, device: Device | None = None,
                      group: DeviceGroup | None = None, starts_at: datetime | None = None,
                      expires_at: datetime | None = None, can_reshare: bool = False, schedule: dict | None = None,
                      valid_for: timedelta = INVITATION_VALIDITY) -> Invitation:
    """Offer a share (with a weekly `schedule`, in its JSON form, if given)
    to an email address. Nothing is granted until the addressee accepts,
    and then only what the inviter may still give."""
    target = _one_target(device, group)
    terms = GrantTerms(level=_level(level), starts_at=starts_at, expires_at=expires_at, can_reshare=can_reshare,
                       schedule=schedules.parse(schedule))
    email = (email or "").strip().lower()
    now = timezone.now()
    invitation = Invitation(
        tenant_id=target.tenant_id, email=email, device=device, group=group, **terms.as_fields(),
        invited_by=actor, valid_until=now + valid_for,
    )
    invitation.full_clean(exclude=["tenant", "device", "group", "invited_by", "share"], validate_constraints=False)
    parent = _sharing_parent(actor, device=device, group=group)
    if email in (actor.email, target.owner.email):
        raise DomainError(ErrorCode.ADDRESS_HAS_ACCESS, "That address already has access.", field="email")
    terms.check(parent=parent, now=now)
    pending = Invitation.objects.select_for_update().filter(
        tenant_id=target.tenant_id, email=email, device=device, group=group, status=Invitation.Status.PENDING
    )
    for old in pending:
        if old.valid_until > now:
            raise DomainError(ErrorCode.INVITATION_PENDING, f"{email} already has a pending invitation here.",
                              field="email")
        _close_invitation(actor=actor, invitation=old, status=Invitation.Status.LAPSED)
    _save_unique(invitation, ErrorCode.INVITATION_PENDING, "email", f"{email} already has a pending invitation here.")
    audit.record(actor=actor, action=Action.INVITATION_CREATE, obj=invitation, device_id=invitation.device_id,
                 changes={"email": email, "level": terms.level.label, "target": str(target),
                          "schedule": invitation.schedule})
    return invitation


def _open_invitation_for(actor: User, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    _require(invitation.email.lower() == actor.email.lower(), "This invitation was sent to another address.")
    if invitation.status != Invitation.Status.PENDING:
        raise DomainError(ErrorCode.INVITATION_NOT_PENDING, f"This invitation is already {invitation.status}.")
    if invitation.valid_until <= timezone.now():
        raise DomainError(ErrorCode.INVITATION_LAPSED, "This invitation has lapsed; ask for a new one.")
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
        raise DomainError(ErrorCode.INVITER_CANNOT_SHARE,
                          "Whoever invited you can no longer share this; ask them again.") from None
    membership, joined = Membership.objects.get_or_create(
        tenant_id=invitation.tenant_id, user=actor, defaults={"role": Membership.Role.MEMBER}
    )
    if joined:
        audit.record(actor=actor, action=Action.MEMBERSHIP_CREATE, obj=membership,
                     changes={"user": actor.email, "role": membership.role, "via": "invitation"})
    share = _grant(
        actor=actor, sharer=invitation.invited_by, grantee=actor, device=invitation.device,
        group=invitation.group, terms=GrantTerms.of(invitation), parent=parent, reason=f"invitation:{invitation.pk}",
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
        raise DomainError(ErrorCode.INVITATION_NOT_PENDING, f"This invitation is already {invitation.status}.")
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
