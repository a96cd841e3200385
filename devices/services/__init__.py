"""Every write to the sharing domain, one module per sub-domain.

Each function takes the acting user, checks that they may act, validates the
input before touching anything, and records an AuditEvent in the same
transaction. Bad input or a clash with the current state raises
``devices.errors.DomainError`` (a ``ValidationError`` with a registry code)
and writes nothing; a missing right raises ``PermissionDenied``. Callers use
this package (``services.create_share(...)``), not its modules.
"""
from .catalogue import create_device_type, delete_device_type, update_device_type
from .devices import delete_device, register_device, rename_device, transfer_device
from .groups import add_device_to_group, create_group, delete_group, remove_device_from_group, rename_group
from .invitations import (
    INVITATION_VALIDITY,
    accept_invitation,
    cancel_invitation,
    create_invitation,
    decline_invitation,
)
from .rules import UNSET
from .shares import create_share, revoke_share, revoke_shares, update_share
from .tenants import (
    add_member,
    change_member_role,
    create_tenant,
    create_user,
    remove_member,
    set_user_active,
    update_tenant,
    update_user,
)

__all__ = [
    "INVITATION_VALIDITY",
    "UNSET",
    "accept_invitation",
    "add_device_to_group",
    "add_member",
    "cancel_invitation",
    "change_member_role",
    "create_device_type",
    "create_group",
    "create_invitation",
    "create_share",
    "create_tenant",
    "create_user",
    "decline_invitation",
    "delete_device",
    "delete_device_type",
    "delete_group",
    "register_device",
    "remove_device_from_group",
    "remove_member",
    "rename_device",
    "rename_group",
    "revoke_share",
    "revoke_shares",
    "set_user_active",
    "transfer_device",
    "update_device_type",
    "update_share",
    "update_tenant",
    "update_user",
]
