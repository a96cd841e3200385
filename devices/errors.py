"""Every refusal a service can give, one registry (after Saleor's error_codes).

A service that refuses bad input or a clash with the current state raises
``DomainError`` with a code from ``ErrorCode``; each code carries its kind.
The API answers an ``INVALID`` code with 400 and a ``CONFLICT`` code with 409
and puts the code in the body's ``code``, so neither a view nor a client has to
read the message or re-query the database to tell them apart. A missing right
is not here: it stays Django's ``PermissionDenied`` (403).

``DomainError`` is a Django ``ValidationError``, so the console's forms show
a service's refusal like any other validation message.
"""
from enum import Enum, StrEnum, unique

from django.core.exceptions import ValidationError


class Kind(StrEnum):
    INVALID = "invalid"  # the request itself is wrong
    CONFLICT = "conflict"  # the request is fine but clashes with what exists now


@unique
class ErrorCode(str, Enum):
    kind: Kind

    def __new__(cls, code: str, kind: Kind):
        member = str.__new__(cls, code)
        member._value_ = code
        member.kind = kind
        return member

    # Input that is wrong whatever the state.
    BLANK = "blank", Kind.INVALID
    TOO_LONG = "too_long", Kind.INVALID
    INVALID_LEVEL = "invalid_level", Kind.INVALID
    OWNERSHIP_NOT_GRANTABLE = "ownership_not_grantable", Kind.INVALID
    INVALID_ROLE = "invalid_role", Kind.INVALID
    ONE_TARGET = "one_target", Kind.INVALID
    CROSS_TENANT = "cross_tenant", Kind.INVALID
    NOT_A_MEMBER = "not_a_member", Kind.INVALID
    GROUP_OWNER_MISMATCH = "group_owner_mismatch", Kind.INVALID
    THING_NAME_RETIRED = "thing_name_retired", Kind.INVALID
    ALREADY_OWNER = "already_owner", Kind.INVALID
    NOT_IN_GROUP = "not_in_group", Kind.INVALID
    CANNOT_DEACTIVATE_SELF = "cannot_deactivate_self", Kind.INVALID
    REVOKE_OWN_ACCESS = "revoke_own_access", Kind.INVALID
    # The terms of a grant (devices/services/terms.py).
    GRANTEE_IS_OWNER = "grantee_is_owner", Kind.INVALID
    SHARE_WITH_SELF = "share_with_self", Kind.INVALID
    ADDRESS_HAS_ACCESS = "address_has_access", Kind.INVALID
    RESHARE_NEEDS_MANAGE = "reshare_needs_manage", Kind.INVALID
    NAIVE_TIME = "naive_time", Kind.INVALID
    EXPIRY_IN_PAST = "expiry_in_past", Kind.INVALID
    WINDOW_REVERSED = "window_reversed", Kind.INVALID
    ABOVE_PARENT_LEVEL = "above_parent_level", Kind.INVALID
    OUTLASTS_PARENT = "outlasts_parent", Kind.INVALID
    STARTS_BEFORE_PARENT = "starts_before_parent", Kind.INVALID
    # Weekly schedules (devices/schedules.py).
    SCHEDULE_INVALID = "schedule_invalid", Kind.INVALID
    TIME_ZONE_UNKNOWN = "time_zone_unknown", Kind.INVALID
    OUTSIDE_PARENT_SCHEDULE = "outside_parent_schedule", Kind.INVALID
    SCHEDULE_NEVER_IN_FORCE = "schedule_never_in_force", Kind.INVALID
    INVITER_CANNOT_SHARE = "inviter_cannot_share", Kind.INVALID
    # IoT credentials (authz).
    SCOPE_DEVICES_OR_GROUP = "scope_devices_or_group", Kind.INVALID
    SCOPE_SIZE = "scope_size", Kind.INVALID
    SCOPE_UNKNOWN = "scope_unknown", Kind.INVALID
    TOKEN_TOO_LARGE = "token_too_large", Kind.INVALID
    LIFETIME_OUT_OF_RANGE = "lifetime_out_of_range", Kind.INVALID
    # Compact device tokens (docs/credentials.md#compact-device-tokens).
    COMPACT_TOKEN_TOO_LARGE = "compact_token_too_large", Kind.INVALID
    COMPACT_FOR_DEVICES_ONLY = "compact_for_devices_only", Kind.INVALID
    # Live sessions (authz/live/): a client id that may not reach the device.
    NO_SUCH_SESSION = "no_such_session", Kind.INVALID

    # Valid, but the current state says no.
    ALREADY_MEMBER = "already_member", Kind.CONFLICT
    ACCOUNT_EXISTS = "account_exists", Kind.CONFLICT
    LAST_OWNER = "last_owner", Kind.CONFLICT
    STILL_OWNS = "still_owns", Kind.CONFLICT
    DEVICE_TYPE_IN_USE = "device_type_in_use", Kind.CONFLICT
    THING_NAME_TAKEN = "thing_name_taken", Kind.CONFLICT
    GROUP_NAME_TAKEN = "group_name_taken", Kind.CONFLICT
    ALREADY_IN_GROUP = "already_in_group", Kind.CONFLICT
    SHARE_EXISTS = "share_exists", Kind.CONFLICT
    SHARE_REVOKED = "share_revoked", Kind.CONFLICT
    INVITATION_PENDING = "invitation_pending", Kind.CONFLICT
    INVITATION_NOT_PENDING = "invitation_not_pending", Kind.CONFLICT
    INVITATION_LAPSED = "invitation_lapsed", Kind.CONFLICT
    # One device more than a token can carry for a person's whole reach (authz/api.py).
    SCOPE_REQUIRED = "scope_required", Kind.CONFLICT


class DomainError(ValidationError):
    """A service's refusal: `message` for people, `code` for programs.
    With `field` it is about one argument, as ``ValidationError({field: message})``."""

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None):
        detail = ValidationError(message, code=code.value)
        super().__init__({field: [detail]} if field else [detail])
        self.code = code
        self.field = field

    @property
    def kind(self) -> Kind:
        return self.code.kind
