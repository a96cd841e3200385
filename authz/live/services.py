"""Writes of live access (docs/live-access.md): sign every app out, revoke a
device's credentials, revoke everything one person holds in a tenant, end one
live session. Each checks the actor's right and audits in its transaction;
the first three are narrowings, so their session cuts and receipt follow
from `devices.access` (docs/api.md#live-access).
"""
from django.db import transaction

from authz.tokens import iot
from devices import audit
from devices.access import changed as access_changed
from devices.audit_actions import Action
from devices.errors import DomainError, ErrorCode
from devices.models import Device, Membership, Share, Tenant, User
from devices.selectors import is_tenant_admin, owns_or_administers
from devices.services.rules import _locked_memberships, _require, _require_member
from devices.services.shares import _revoke_many
from devices.services.tenants import _check_role_change

from .selectors import session_candidates


@transaction.atomic
def sign_out_apps(*, actor: User, tenant: Tenant, user: User | None = None) -> None:
    """"Sign out all my apps": every token `user` (the actor, unless a tenant
    admin names someone else, from the console) holds in `tenant` stops
    working and their live connections close."""
    user = user or actor
    if user.pk != actor.pk:
        _require(is_tenant_admin(user=actor, tenant_id=tenant.pk), "Only a tenant admin may sign someone else out.")
    _require_member(user, tenant.pk, "You" if user.pk == actor.pk else "They")
    access_changed(actor=actor, tenant_id=tenant.pk, users=[user.pk], narrowed=True, tokens_revoked=True)
    audit.record(actor=actor, action=Action.IOT_CREDENTIALS_REVOKE, obj=user, tenant=tenant,
                 changes={"principal": "user", "user": user.email})


@transaction.atomic
def revoke_device_credentials(*, actor: User, device: Device) -> None:
    """Every token issued for `device` stops working and its live connection
    closes; it needs new credentials to connect again."""
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may revoke a device's credentials.")
    access_changed(actor=actor, tenant_id=device.tenant_id, devices=[device.thing_name], narrowed=True,
                   tokens_revoked=True)
    audit.record(actor=actor, action=Action.IOT_CREDENTIALS_REVOKE, obj=device, device_id=device.pk,
                 changes={"principal": "device", "thing_name": device.thing_name})


@transaction.atomic
def revoke_member_access(*, actor: User, membership: Membership) -> list[Share]:
    """The emergency brake: every live share `membership`'s person received in
    its tenant is revoked (re-shares made from them go too) and every token
    they hold there stops working. They stay a member and keep what they own
    (docs/console.md#revoke-everything-this-person-holds-here)."""
    membership = _locked_memberships(Membership.objects.select_related("user", "tenant")).get(pk=membership.pk)
    _require(is_tenant_admin(user=actor, tenant_id=membership.tenant_id), "Only a tenant admin may do this.")
    if membership.user_id == actor.pk:
        raise DomainError(ErrorCode.REVOKE_OWN_ACCESS,
                          "You cannot revoke your own access; sign your apps out instead.")
    if membership.role == Membership.Role.OWNER:
        _check_role_change(actor, membership.tenant_id, membership.role)
    user = membership.user
    received = Share.objects.filter(tenant_id=membership.tenant_id, grantee=user, revoked_at__isnull=True)
    revoked = _revoke_many(actor=actor, shares=list(received), reason="membership.revoke_access")
    # The emergency brake for a compromised admin too: device tokens they
    # issued for others' devices are in their hands (docs/live-access.md#token-cut-offs).
    access_changed(actor=actor, tenant_id=membership.tenant_id, users=[user.pk], narrowed=True, tokens_revoked=True,
                   issued_tokens_revoked=True)
    cascaded = sum(1 for share in revoked if share.grantee_id != user.pk)
    audit.record(actor=actor, action=Action.MEMBERSHIP_REVOKE_ACCESS, obj=membership, tenant=membership.tenant,
                 changes={"user": user.email, "shares_revoked": len(revoked) - cascaded,
                          "reshares_revoked": cascaded, "tokens_revoked": True})
    return revoked


@transaction.atomic
def end_session(*, actor: User, device: Device, client_id: str, gateway: iot.IotGateway | None = None) -> bool:
    """Close one live connection to `device` now; True when one was open.
    A kick, not a revoke: the person may connect again with what they hold
    (docs/api.md#live-sessions). Raises iot.IotError, nothing audited, when
    AWS IoT cannot be asked."""
    _require(owns_or_administers(actor, device), "Only the owner or a tenant admin may end a device's sessions.")
    # Only a client id that may reach this device: never anyone else's in the
    # account. All of them, not the listing's newest: a session must not hide
    # behind newer tokens.
    candidate = next((c for c in session_candidates(device=device, limit=None) if c.client_id == client_id), None)
    if candidate is None:
        raise DomainError(ErrorCode.NO_SUCH_SESSION, "No such session on this device.", field="client_id")
    # A person's connection carries all their devices in the tenant, and a
    # share needs no consent: an owner removes a guest by revoking the share,
    # only a tenant admin knocks a person's app off (docs/api.md#live-sessions).
    _require(candidate.kind == "device" or is_tenant_admin(user=actor, tenant_id=device.tenant_id),
             "Only a tenant admin may end a person's session; revoke the share to remove them.")
    closed = (gateway or iot.gateway()).delete_connection(client_id)
    audit.record(actor=actor, action=Action.SESSION_END, obj=device, device_id=device.pk,
                 changes={"client_id": client_id, "kind": candidate.kind,
                          "user": candidate.user.email if candidate.user else None, "closed": closed})
    return closed
