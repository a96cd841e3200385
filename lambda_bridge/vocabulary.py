"""Words the authorizer and Django must spell the same way: access levels,
the name patterns, and the reasons a connection is refused.

Stdlib only: the Lambda ships this module as it is, and Django imports it, so
each of these is defined here once (docs/domain.md, docs/authorizer.md).
"""
from __future__ import annotations

# --- access levels ------------------------------------------------------------
#
# Ordered from least to most. The number is the level's code in a snapshot
# entry (lambda_bridge/snapshot.py packs it into 3 bits); Django stores ten
# times the code (devices.models.Level), a spacing chosen before this module.
VIEW, CONTROL, MANAGE, OWNER = "view", "control", "manage", "owner"
LEVEL_CODES: dict[str, int] = {VIEW: 1, CONTROL: 2, MANAGE: 3, OWNER: 4}
LEVELS: tuple[str, ...] = tuple(LEVEL_CODES)
# Ownership comes with the device; a share or invitation grants one of these.
SHARE_LEVELS: tuple[str, ...] = (VIEW, CONTROL, MANAGE)

# --- names --------------------------------------------------------------------
#
# Regular expressions without anchors; callers use fullmatch (or add ^…$ where
# the engine only searches, as Django's RegexValidator and PostgreSQL do).
#
# A thing name (docs/domain.md): no `*`, `?` or `$`, so a name can never act as
# a wildcard inside a policy, and no `.`, so no thing name can look like a
# person's client id.
THING_NAME = r"[a-zA-Z0-9:_-]{1,128}"
# MQTT client ids: a device's is its thing name, a person's
# `u<tenant>.<user id>.<suffix>` (lambda_bridge/tokens.py).
CLIENT_ID = r"[a-zA-Z0-9:._-]{1,128}"
# The header or query-string parameter that carries the token
# (DEVSHARE_TOKEN_KEY_NAME / IOT_TOKEN_KEY_NAME), as AWS IoT accepts it.
TOKEN_KEY_NAME = r"[a-zA-Z0-9_-]{1,128}"  # noqa: S105 - a pattern, not a secret

# The parameter AWS IoT reads a custom authorizer's name from: a header, a
# URL query parameter, or the MQTT username's query string.
AUTHORIZER_NAME_PARAMETER = "x-amz-customauthorizer-name"

# --- credential kinds ---------------------------------------------------------
#
# What a device may be issued (docs/credentials.md): a platform JWT with its
# RSA signature, for the signed authorizer, or a compact token
# (lambda_bridge/compact.py), for the unsigned one. People's apps get JWTs.
SIGNED_CREDENTIAL, COMPACT_CREDENTIAL = "signed", "compact"
CREDENTIAL_KINDS: tuple[str, ...] = (SIGNED_CREDENTIAL, COMPACT_CREDENTIAL)

# --- refusal reasons ------------------------------------------------------------


class Reason:
    """What a decision's log line says in `reason` (docs/authorizer.md). Alarms
    and tests key on these, so they never change spelling."""

    OK = "ok"  # the connection was allowed
    # finding the token
    NO_TOKEN = "no_token"  # noqa: S105 - a reason, not a secret
    BAD_EVENT = "bad_event"
    BAD_PASSWORD = "bad_password"  # noqa: S105 - a reason, not a secret
    TOKEN_TOO_LARGE = "token_too_large"  # noqa: S105 - a reason, not a secret
    MALFORMED_TOKEN = "malformed_token"  # noqa: S105 - a reason, not a secret
    # verifying it
    UNSUPPORTED_ALG = "unsupported_alg"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    EXPIRES_TOO_SOON = "expires_too_soon"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    INVALID_CLAIMS = "invalid_claims"
    CLIENT_ID_MISMATCH = "client_id_mismatch"
    # a compact token at the signed authorizer, or a JWT at the unsigned one
    WRONG_AUTHORIZER = "wrong_authorizer"
    # the snapshot
    NO_SNAPSHOT = "no_snapshot"
    PRINCIPAL_GONE = "principal_gone"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a reason, not a secret; issued before the cut-off
    BAD_SNAPSHOT = "bad_snapshot"
    SCOPE_REQUIRED = "scope_required"
    # the setup: nothing the client did; an operator has to act
    KEYS_UNAVAILABLE = "keys_unavailable"
    SNAPSHOT_UNAVAILABLE = "snapshot_unavailable"
    MISCONFIGURED = "misconfigured"
    INTERNAL_ERROR = "internal_error"


REFUSAL_REASONS: frozenset[str] = frozenset(
    value for name, value in vars(Reason).items() if name.isupper() and value != Reason.OK
)
# Refusals that say the authorizer could not decide at all: `manage.py
# authorize` reports them as a setup problem, not as a verdict on the token.
SETUP_REASONS: frozenset[str] = frozenset({Reason.KEYS_UNAVAILABLE, Reason.SNAPSHOT_UNAVAILABLE, Reason.MISCONFIGURED})
