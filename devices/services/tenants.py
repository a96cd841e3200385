"""Tenants, memberships and user accounts."""

from django.db import transaction

from .. import audit
from ..access import changed as access_changed
from ..audit_actions import Action
from ..errors import DomainError, ErrorCode
from ..models import Device, DeviceGroup, Invitation, Membership, Share, Tenant, User
from ..selectors import is_tenant_admin
from .invitations import _cancel_pending_invitations
from .rules import _clean_name, _locked_memberships, _require, _require_admin
from .shares import _revoke_many


@transaction.atomic
def create_tenant(*, actor: User, name: str, slug: str, owner: User | None = None) -> Tenant:
    _require(actor.is_superuser, "Only a superuser may create tenants.")
    tenant = Tenant(name=_clean_name(name, max_length=200), slug=slug)
    tenant.full_clean()
    tenant.save()
    audit.record(actor=actor, action=Action.TENANT_CREATE, obj=tenant, tenant=tenant, changes={"slug": slug})
    if owner is not None:
        add_member(actor=actor, tenant=tenant, user=owner, role=Membership.Role.OWNER)
    return tenant


@transaction.atomic
def update_tenant(*, actor: User, tenant: Tenant, name: str) -> Tenant:
    _require_admin(actor, tenant.pk)
    old = tenant.name
    tenant.name = _clean_name(name, max_length=200)
    tenant.save(update_fields=["name"])
    audit.record(actor=actor, action=Action.TENANT_UPDATE, obj=tenant, tenant=tenant,
                 changes={"name": [old, tenant.name]})
    return tenant


def _check_role_change(actor: User, tenant_id: int, *roles: str) -> None:
    """`roles` are the old and new roles; touching an owner needs an owner."""
    for role in roles:
        if role not in Membership.Role.values:
            raise DomainError(ErrorCode.INVALID_ROLE, f"Role must be one of {', '.join(Membership.Role.values)}.",
                              field="role")
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
        raise DomainError(ErrorCode.ALREADY_MEMBER, f"{user.email} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    audit.record(actor=actor, action=Action.MEMBERSHIP_CREATE, obj=membership, tenant=tenant,
                 changes={"user": user.email, "role": role})
    access_changed(actor=actor, tenant_id=tenant.pk, users=[user.pk], narrowed=False)
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
        raise DomainError(ErrorCode.LAST_OWNER, "A tenant must keep at least one owner.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(actor=actor, action=Action.MEMBERSHIP_UPDATE, obj=membership, changes={"role": [old, role]})
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
        raise DomainError(ErrorCode.LAST_OWNER, "A tenant must keep at least one owner.")
    user = membership.user
    if Device.objects.filter(tenant_id=membership.tenant_id, owner=user).exists():
        raise DomainError(ErrorCode.STILL_OWNS, f"{user.email} still owns devices here; transfer or delete them first.")
    if DeviceGroup.objects.filter(tenant_id=membership.tenant_id, owner=user).exists():
        raise DomainError(ErrorCode.STILL_OWNS, f"{user.email} still owns groups here; delete them first.")
    received = Share.objects.filter(tenant_id=membership.tenant_id, grantee=user, revoked_at__isnull=True)
    _revoke_many(actor=actor, shares=list(received), reason="membership.remove")
    _cancel_pending_invitations(
        actor=actor, invitations=Invitation.objects.filter(tenant_id=membership.tenant_id, email=user.email)
    )
    audit.record(actor=actor, action=Action.MEMBERSHIP_DELETE, obj=membership, changes={"user": user.email})
    membership.delete()
    # Tokens they hold stay dead even if they are let back in later, and
    # device tokens they issued (as an admin) die with their authority.
    access_changed(actor=actor, tenant_id=membership.tenant_id, users=[user.pk], narrowed=True, tokens_revoked=True,
                   issued_tokens_revoked=True)


@transaction.atomic
def create_user(*, actor: User, email: str, password: str | None, full_name: str = "",
                is_staff: bool = False) -> User:
    _require(actor.is_superuser, "Only a superuser may create accounts here.")
    email = (email or "").strip().lower()
    if User.objects.filter(email=email).exists():
        raise DomainError(ErrorCode.ACCOUNT_EXISTS, f"{email} already has an account.", field="email")
    user = User(email=email, full_name=full_name, is_staff=is_staff)
    user.full_clean(exclude=["password"])
    user.set_password(password) if password else user.set_unusable_password()
    user.save()
    audit.record(actor=actor, action=Action.USER_CREATE, obj=user, tenant=None,
                 changes={"email": email, "is_staff": is_staff})
    return user


@transaction.atomic
def update_user(*, actor: User, user: User, full_name: str, is_staff: bool) -> User:
    _require(actor.is_superuser, "Only a superuser may change accounts here.")
    before = {"full_name": user.full_name, "is_staff": user.is_staff}
    user.full_name, user.is_staff = (full_name or "").strip()[:150], bool(is_staff)
    user.save(update_fields=["full_name", "is_staff"])
    audit.record(actor=actor, action=Action.USER_UPDATE, obj=user, tenant=None,
                 changes={"before": before, "after": {"full_name": user.full_name, "is_staff": user.is_staff}})
    return user


@transaction.atomic
def set_user_active(*, actor: User, user: User, is_active: bool) -> User:
    """Deactivating an account cuts all its access at once (shares stop counting)."""
    _require(actor.is_superuser, "Only a superuser may (de)activate accounts.")
    if user.pk == actor.pk:
        raise DomainError(ErrorCode.CANNOT_DEACTIVATE_SELF, "You cannot deactivate yourself.")
    user.is_active = is_active
    user.save(update_fields=["is_active"])
    if not is_active:
        # Their own shares stop counting while inactive and return on
        # reactivation; what they re-shared to others is cut for good.
        made = Share.objects.filter(parent__grantee=user, revoked_at__isnull=True)
        _revoke_many(actor=actor, shares=list(made), reason="user.deactivate")
    for tenant_id in user.memberships.values_list("tenant_id", flat=True):
        access_changed(actor=actor, tenant_id=tenant_id, users=[user.pk], narrowed=not is_active,
                       tokens_revoked=not is_active, issued_tokens_revoked=not is_active)
    audit.record(actor=actor, action=Action.USER_ACTIVATE if is_active else "user.deactivate", obj=user, tenant=None)
    return user
