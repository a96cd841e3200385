"""Every action an AuditEvent can record, in one registry (Saleor-style choices).

`audit.record` refuses an action not listed here, and
tests/devices/test_audit_actions.py checks the list against every call site,
so the audit log's vocabulary is written down once and never drifts. Actions
of `authz` are listed too: the event model lives here, and authz depends on
devices, not the other way round.
"""
from django.db import models


class Action(models.TextChoices):
    # tenants, memberships, people
    TENANT_CREATE = "tenant.create", "tenant.create"
    TENANT_UPDATE = "tenant.update", "tenant.update"
    MEMBERSHIP_CREATE = "membership.create", "membership.create"
    MEMBERSHIP_UPDATE = "membership.update", "membership.update"
    MEMBERSHIP_DELETE = "membership.delete", "membership.delete"
    # "revoke everything this person holds here", one emergency action
    MEMBERSHIP_REVOKE_ACCESS = "membership.revoke_access", "membership.revoke_access"
    USER_CREATE = "user.create", "user.create"
    USER_UPDATE = "user.update", "user.update"
    USER_ACTIVATE = "user.activate", "user.activate"
    USER_DEACTIVATE = "user.deactivate", "user.deactivate"
    USER_PASSWORD_CHANGE = "user.password_change", "user.password_change"
    # signing in (devices/signin.py)
    AUTH_SIGN_IN = "auth.sign_in", "auth.sign_in"
    AUTH_SIGN_IN_FAILED = "auth.sign_in_failed", "auth.sign_in_failed"
    AUTH_TOKEN_REFRESH = "auth.token_refresh", "auth.token_refresh"
    AUTH_SIGN_OUT = "auth.sign_out", "auth.sign_out"
    # catalogue, devices, groups
    DEVICE_TYPE_CREATE = "device_type.create", "device_type.create"
    DEVICE_TYPE_UPDATE = "device_type.update", "device_type.update"
    DEVICE_TYPE_DELETE = "device_type.delete", "device_type.delete"
    DEVICE_REGISTER = "device.register", "device.register"
    DEVICE_RENAME = "device.rename", "device.rename"
    DEVICE_TRANSFER = "device.transfer", "device.transfer"
    DEVICE_DELETE = "device.delete", "device.delete"
    GROUP_CREATE = "group.create", "group.create"
    GROUP_RENAME = "group.rename", "group.rename"
    GROUP_DELETE = "group.delete", "group.delete"
    GROUP_ADD_DEVICE = "group.add_device", "group.add_device"
    GROUP_REMOVE_DEVICE = "group.remove_device", "group.remove_device"
    # shares and invitations; an invitation's closing action names its new status
    SHARE_CREATE = "share.create", "share.create"
    SHARE_UPDATE = "share.update", "share.update"
    SHARE_REVOKE = "share.revoke", "share.revoke"
    INVITATION_CREATE = "invitation.create", "invitation.create"
    INVITATION_ACCEPTED = "invitation.accepted", "invitation.accepted"
    INVITATION_DECLINED = "invitation.declined", "invitation.declined"
    INVITATION_CANCELLED = "invitation.cancelled", "invitation.cancelled"
    INVITATION_LAPSED = "invitation.lapsed", "invitation.lapsed"
    # authz: credentials, signing keys (one per rotation step), snapshots
    IOT_CREDENTIALS_ISSUE = "iot_credentials.issue", "iot_credentials.issue"
    # "sign out all my apps", "revoke this device's credentials": a token cut-off
    IOT_CREDENTIALS_REVOKE = "iot_credentials.revoke", "iot_credentials.revoke"
    # live connections (authz/live/): a receipt's cuts ran; one session ended by hand
    SESSIONS_CLOSE = "sessions.close", "sessions.close"
    SESSION_END = "session.end", "session.end"
    SIGNING_KEY_BOOTSTRAP = "signing_key.bootstrap", "signing_key.bootstrap"
    SIGNING_KEY_STAGE = "signing_key.stage", "signing_key.stage"
    SIGNING_KEY_PROMOTE = "signing_key.promote", "signing_key.promote"
    SIGNING_KEY_RETIRE = "signing_key.retire", "signing_key.retire"
    SIGNING_KEY_PUBLISH = "signing_key.publish", "signing_key.publish"
    SNAPSHOT_RESYNC = "snapshot.resync", "snapshot.resync"


KNOWN = frozenset(Action.values)
