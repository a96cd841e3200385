"""IoT credentials: the platform tokens (docs/authorizer.md) apps and devices connect with.

Two kinds (docs/credentials.md): a signed credential, for the signed
authorizer, and, for devices only, a compact token (lambda_bridge/compact.py)
signed with the active key's Ed25519 half, for the unsigned authorizer
(docs/credentials.md#compact-device-tokens). Both are issued under the same
rules: the same lock, the same right checked then, the same cut-off floor.

A signed token is an RS256 JWT signed with the active key. `tokenSignature` is that
key's RSA-SHA256 signature of the token, which the AWS IoT gateway checks
before it invokes the authorizer Lambda (the authorizer has signing on).
Client ids follow the authorizer's rule (`lambda_bridge.tokens`): a device
connects as its thing name, a person's app as `u<tenant>.<user>.<random>`,
so no token can knock another principal's connection off.

Before a person's token is issued, the person's snapshot is compiled here
and run through the authorizer's own policy code. A token whose grants do not
fit one connection's policies would be refused at connect. Such a request is
refused here instead, with the advice to ask for a scoped token.
"""
from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from datetime import timezone as dt_timezone
from urllib.parse import quote

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from authz.live import cutoffs
from authz.models import IssuedCredential, PrincipalSync
from authz.snapshots.compiler import Principal, compile_snapshots
from devices import audit
from devices.audit_actions import Action
from devices.errors import DomainError, ErrorCode
from devices.models import Device, DeviceGroup, Tenant, User
from devices.selectors import owns_or_administers
from lambda_bridge import authorizer, b64url, compact, events, policy, snapshot, tokens, vocabulary

from . import signing_keys

# The authorizer refuses a token with under MIN_TTL (300 s) left
# (docs/decisions/0007-exact-ends.md), so a shorter lifetime would leave a
# client almost no time to connect.
MIN_LIFETIME_SECONDS = 600
MAX_LIFETIME_SECONDS = tokens.MAX_LIFETIME
APP_SUFFIX_BYTES = 9  # 12 URL-safe characters: fresh for every token
USERNAME = "devshare"  # the part of the MQTT username before `?`; the authorizer ignores it


class CredentialsUnavailable(Exception):
    """The platform cannot issue tokens now (no active key, no IoT endpoint)."""


class ScopeRequired(Exception):
    """The grants asked for do not fit one connection's policies."""

    def __init__(self, devices: int, scoped: bool):
        self.devices = devices
        what = "These" if scoped else "Your"
        advice = ("Ask for fewer devices." if scoped else
                  "Ask for scoped credentials instead: scope.devices (a list of device ids) or scope.group.")
        super().__init__(f"{what} {devices} devices do not fit one IoT connection's policies. {advice}")


@dataclass(frozen=True)
class Credentials:
    # Kept out of repr: a traceback or an error report must not carry a usable token.
    token: str = field(repr=False)
    token_signature: str = field(repr=False)  # "" for a compact token: nothing checks one
    client_id: str
    expires_at: datetime
    kid: str
    authorizer_name: str
    token_key_name: str
    endpoint: str
    credential: str = vocabulary.SIGNED_CREDENTIAL

    @property
    def compact(self) -> bool:
        return self.credential == vocabulary.COMPACT_CREDENTIAL

    @property
    def query_string(self) -> str:
        """The authorizer's parameters as URL query parameters. The signature
        is base64 (+ / =), so it is URL-encoded like the token."""
        query = (f"{vocabulary.AUTHORIZER_NAME_PARAMETER}={quote(self.authorizer_name, safe='')}"
                 f"&{quote(self.token_key_name, safe='')}={quote(self.token, safe='')}")
        if self.compact:
            return query
        return f"{query}&x-amz-customauthorizer-signature={self.token_signature_url_encoded}"

    @property
    def token_signature_url_encoded(self) -> str:
        """The signature ready for a URL or an MQTT username. The JS SDK's
        `newWebsocketMqttBuilderWithCustomAuth` copies `tokenSignature` into
        the WebSocket URL as it is, so its `+` arrives as a space and AWS IoT
        would not verify it; handed this field, such a client sends a valid URL
        (docs/credentials.md#which-field-each-client-uses)."""
        return quote(self.token_signature, safe="")

    @property
    def mqtt_username(self) -> str:
        """For MQTT over TLS on port 443 (ALPN `mqtt`): the authorizer's
        parameters ride in the username. A compact token rides in the
        password instead, leaving only the authorizer's name here, so the
        CONNECT carries the token once; and nothing before the `?`, so
        username and password stay within 200 bytes for a thing name of up
        to 17 characters (docs/credentials.md#compact-device-tokens)."""
        if self.compact:
            return compact.mqtt_username(self.authorizer_name)
        return f"{USERNAME}?{self.query_string}"

    @property
    def mqtt_password(self) -> str:
        """The MQTT password: the compact token (as ASCII bytes); "" for a signed credential."""
        return self.token if self.compact else ""

    @property
    def wss_url(self) -> str:
        """Browsers cannot set WebSocket headers, so the parameters ride in the
        query string. Not offered with a compact token ("" then): browsers run
        people's apps, which get signed credentials."""
        if self.compact:
            return ""
        return f"wss://{self.endpoint}/mqtt?{self.query_string}"

    @property
    def http_headers(self) -> dict[str, str]:
        """The authorizer's parameters as HTTP headers, for an HTTPS publish."""
        headers = {vocabulary.AUTHORIZER_NAME_PARAMETER: self.authorizer_name, self.token_key_name: self.token}
        if not self.compact:
            headers["x-amz-customauthorizer-signature"] = self.token_signature
        return headers

    def publish_url(self, topic: str) -> str:
        """HTTPS publish to `topic` at QoS 1, the authorizer's parameters
        left to `http_headers`, which keeps the token out of URLs (and their logs)."""
        return f"https://{self.endpoint}/topics/{quote(topic, safe='/')}?qos=1"

    def https_publish_url(self, topic: str) -> str:
        """HTTPS publish to `topic` with everything in the query string, for
        a client that cannot set headers."""
        return f"{self.publish_url(topic)}&{self.query_string}"


def example_topic(thing: str) -> str:
    """A topic a device may publish to (docs/topics-and-policies.md), for
    the examples credentials come with."""
    return f"dev/{thing}/out/telemetry"


# --- issuing ---------------------------------------------------------------------------


def issue_user_credentials(*, actor: User, tenant: Tenant, scope_devices: list[Device] | None = None,
                           scope_group: DeviceGroup | None = None, lifetime: int | None = None,
                           now: datetime | None = None) -> Credentials:
    """A token for `actor`'s own app: their grants in `tenant`, optionally
    narrowed to some devices or to one group."""
    now = now or timezone.now()
    if scope_devices is not None and scope_group is not None:
        raise DomainError(ErrorCode.SCOPE_DEVICES_OR_GROUP, "Give devices or a group, not both.", field="scope")
    if scope_devices is not None and not 0 < len(scope_devices) <= tokens.MAX_SCOPE_THINGS:
        raise DomainError(ErrorCode.SCOPE_SIZE, f"Name 1 to {tokens.MAX_SCOPE_THINGS} devices.", field="scope")
    if any(d.tenant_id != tenant.pk for d in scope_devices or ()) or (
            scope_group is not None and scope_group.tenant_id != tenant.pk):
        raise DomainError(ErrorCode.CROSS_TENANT, "Every device and group must belong to this tenant.", field="scope")
    scope = None
    if scope_devices is not None:
        scope = {"things": sorted({d.thing_name for d in scope_devices})}
    elif scope_group is not None:
        scope = {"group": scope_group.pk}
    lifetime = _lifetime(lifetime, settings.USER_TOKEN_LIFETIME_SECONDS)
    client_id = f"u{tenant.pk}.{actor.pk}.{secrets.token_urlsafe(APP_SUFFIX_BYTES)}"
    return _issue(actor=actor, tenant=tenant, kind=snapshot.USER, principal=str(actor.pk), client_id=client_id,
                  scope=scope, lifetime=lifetime, now=now,
                  check=lambda: _check_fit(actor=actor, tenant=tenant, client_id=client_id, scope=scope, now=now))


def issue_device_credentials(*, actor: User | None, device: Device, lifetime: int | None = None,
                             now: datetime | None = None, by_operator: bool = False,
                             credential: str = vocabulary.SIGNED_CREDENTIAL) -> Credentials:
    """A token the device itself connects with, as its thing name. Its owner
    or a tenant admin issues it. `credential` picks the kind: a signed JWT or
    a compact token (docs/credentials.md#compact-device-tokens).

    `actor=None, by_operator=True` is an operator on the platform's own host
    (`manage.py authorize --device`): no user acts, so no user's rights apply,
    and whoever runs commands there holds the signing keys anyway. The token
    is recorded and audited like any other, with no actor. Only that command
    passes the flag; a None actor without it is refused, so a missing user
    elsewhere can never issue."""
    if actor is None and not by_operator:
        raise PermissionDenied("Device credentials need an acting user.")
    if credential not in vocabulary.CREDENTIAL_KINDS:
        # The API, the console and the command each offer only these: another
        # value is a caller's bug, not a user's input.
        raise ValueError(f"a credential is {' or '.join(vocabulary.CREDENTIAL_KINDS)}, not {credential!r}")

    def check():
        # The device as it is now, not as the caller loaded it: a transfer
        # that committed meanwhile has taken the old owner's right away.
        current = Device.objects.filter(pk=device.pk).first()
        if current is None:
            raise PermissionDenied("The device no longer exists.")
        if actor is not None and not owns_or_administers(actor, current):
            raise PermissionDenied("Only the device's owner or a tenant admin may issue its credentials.")

    lifetime = _lifetime(lifetime, settings.DEVICE_TOKEN_LIFETIME_SECONDS)
    return _issue(actor=actor, tenant=device.tenant, kind=snapshot.DEVICE, principal=device.thing_name,
                  client_id=device.thing_name, scope=None, lifetime=lifetime, now=now or timezone.now(),
                  device=device, check=check, credential=credential)


def _lifetime(asked: int | None, configured: int) -> int:
    if asked is None:
        return configured
    if not MIN_LIFETIME_SECONDS <= asked <= configured:
        raise DomainError(ErrorCode.LIFETIME_OUT_OF_RANGE, f"Between {MIN_LIFETIME_SECONDS} and {configured} seconds.",
                          field="lifetime")
    return asked


def _check_fit(*, actor: User, tenant: Tenant, client_id: str, scope: dict | None, now: datetime) -> None:
    """Refuse here what the authorizer would refuse at connect: a person
    outside the tenant, or grants beyond one connection's policy budget."""
    key = (tenant.pk, snapshot.USER, str(actor.pk))
    snap = compile_snapshots([Principal(*key, version=0)], now=now)[key]
    if snap.gone:
        raise PermissionDenied("Only active members of the tenant get IoT credentials.")
    seconds = int(now.timestamp())
    claims = tokens.Claims(kind=snapshot.USER, principal=str(actor.pk), tenant=tenant.pk, client_id=client_id,
                           expires=seconds + MIN_LIFETIME_SECONDS,
                           scope_things=frozenset(scope["things"]) if scope and "things" in scope else None,
                           scope_group=scope.get("group") if scope else None)
    levels = authorizer.usable_levels(snap, claims, seconds)
    documents = policy.user_documents(levels=levels, client_id=client_id, region=settings.IOT_REGION,
                                      account=settings.AWS_ACCOUNT_ID)
    if documents is None:
        raise ScopeRequired(len(levels), scoped=scope is not None)


@sensitive_variables("token", "signature", "key")
def _issue(*, actor: User | None, tenant: Tenant, kind: str, principal: str, client_id: str, scope: dict | None,
           lifetime: int, now: datetime, check: Callable[[], None], device: Device | None = None,
           credential: str = vocabulary.SIGNED_CREDENTIAL) -> Credentials:
    if not settings.IOT_ENDPOINT:
        raise CredentialsUnavailable("IOT_ENDPOINT is not set: there is nowhere to connect to.")
    active_key, sign_and_record = ((signing_keys.active_compact_key, _sign_compact_and_record)
                                   if credential == vocabulary.COMPACT_CREDENTIAL
                                   else (signing_keys.active_signing_key, _sign_and_record))
    try:
        key = active_key()
    except signing_keys.SigningError as exc:
        raise CredentialsUnavailable(str(exc)) from None
    with transaction.atomic():
        _wait_for_narrowings(tenant_id=tenant.pk, kind=kind, principal=principal)
        check()
        # Never before the principal's cut-off: a token issued in the very
        # second of a revocation would otherwise be refused.
        floor = cutoffs.issue_floor(tenant_id=tenant.pk, kind=kind, principal=principal)
        return sign_and_record(actor=actor, tenant=tenant, kind=kind, principal=principal, client_id=client_id,
                               scope=scope, now=now, issued_at=max(int(now.timestamp()), floor or 0),
                               expires=int(now.timestamp()) + lifetime, key=key, device=device)


def _wait_for_narrowings(*, tenant_id: int, kind: str, principal: str) -> None:
    """A narrowing of this principal in flight (a transfer, a removal, a
    sign-out) holds its snapshot row, or the unique slot of a row it is
    creating, until it commits. Waiting for it, then checking the right,
    then reading the cut-off makes issuance come wholly before or wholly
    after it (docs/live-access.md#token-cut-offs). A row made here is empty
    (versions 0): nothing to push, nothing for anti-entropy to check."""
    row, _ = PrincipalSync.objects.get_or_create(tenant_id=tenant_id, kind=kind, principal=principal)
    list(PrincipalSync.objects.select_for_update(no_key=True).filter(pk=row.pk).values_list("pk", flat=True))


@sensitive_variables("token", "signature", "key")
def _sign_and_record(*, actor: User | None, tenant: Tenant, kind: str, principal: str, client_id: str,
                     scope: dict | None, now: datetime, issued_at: int, expires: int, key,
                     device: Device | None) -> Credentials:
    jti = uuid.uuid4().hex
    claims = {"iss": settings.IOT_TOKEN_ISSUER, "aud": settings.IOT_TOKEN_AUDIENCE,
              "sub": f"{'user' if kind == snapshot.USER else 'device'}:{principal}", "tid": tenant.pk,
              "cid": client_id, "iat": issued_at, "nbf": issued_at, "exp": expires, "jti": jti}
    if scope is not None:
        claims["scope"] = scope
    token = jwt.encode(claims, key.private_key, algorithm=tokens.ALGORITHM, headers={"kid": key.kid})
    if len(token) > events.MAX_TOKEN:
        raise DomainError(ErrorCode.TOKEN_TOO_LARGE, f"Too many devices for one token ({len(token)} of "
                          f"{events.MAX_TOKEN} characters); name fewer.", field="scope")
    signature = key.private_key.sign(token.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    expires_at = _record(actor=actor, tenant=tenant, kind=kind, principal=principal, client_id=client_id,
                         jti=jti, kid=key.kid, scope=scope, now=now, expires=expires, device=device,
                         credential=vocabulary.SIGNED_CREDENTIAL)
    return Credentials(
        token=token, token_signature=base64.b64encode(signature).decode("ascii"), client_id=client_id,
        expires_at=expires_at, kid=key.kid, authorizer_name=settings.IOT_CLIENT_AUTHORIZER_NAME,
        token_key_name=settings.IOT_TOKEN_KEY_NAME, endpoint=settings.IOT_ENDPOINT,
    )


@sensitive_variables("token", "key")
def _sign_compact_and_record(*, actor: User | None, tenant: Tenant, kind: str, principal: str, client_id: str,
                             scope: dict | None, now: datetime, issued_at: int, expires: int, key,
                             device: Device | None) -> Credentials:
    claims = compact.CompactClaims(thing=principal, tenant=tenant.pk, issued_at=issued_at, expires=expires)
    token = compact.encode(claims, kid=b64url.decode(key.kid), sign=key.private_key.sign)
    if len(token) > compact.MAX_CHARS:
        raise DomainError(ErrorCode.COMPACT_TOKEN_TOO_LARGE,
                          f"This device's thing name is too long for a compact credential ({len(token)} of "
                          f"{compact.MAX_CHARS} characters); use a signed one.", field="credential")
    expires_at = _record(actor=actor, tenant=tenant, kind=kind, principal=principal, client_id=client_id,
                         jti=uuid.uuid4().hex, kid=key.kid, scope=scope, now=now, expires=expires,
                         device=device, credential=vocabulary.COMPACT_CREDENTIAL)
    return Credentials(
        token=token, token_signature="", client_id=client_id, expires_at=expires_at, kid=key.kid,
        authorizer_name=settings.IOT_COMPACT_AUTHORIZER_NAME, token_key_name=settings.IOT_TOKEN_KEY_NAME,
        endpoint=settings.IOT_ENDPOINT, credential=vocabulary.COMPACT_CREDENTIAL,
    )


def _record(*, actor: User | None, tenant: Tenant, kind: str, principal: str, client_id: str, jti: str, kid: str,
            scope: dict | None, now: datetime, expires: int, device: Device | None, credential: str) -> datetime:
    """The IssuedCredential row and its audit event; never the token."""
    expires_at = datetime.fromtimestamp(expires, tz=dt_timezone.utc)
    # One row per issuance, even when a compact token comes out the same
    # twice (Ed25519 signatures are deterministic: same device, second and
    # lifetime): each row names its issuer, whose removal must find the
    # device (authz/live/cutoffs.py). A compact token has no jti of its own,
    # so its row's is random like a JWT's.
    record = IssuedCredential.objects.create(
        tenant=tenant, kind=kind, principal=principal, client_id=client_id, credential=credential, jti=jti,
        kid=kid, scope=scope, issued_by=actor, issued_at=now, expires_at=expires_at)
    audit.record(actor=actor, action=Action.IOT_CREDENTIALS_ISSUE, obj=record, tenant=tenant,
                 device_id=device.pk if device else None,
                 changes={"client_id": client_id, "credential": credential, "kid": kid, "expires_at": expires_at,
                          "scope": scope})
    return expires_at


def prune_issued(*, before: datetime) -> int:
    """Forget credentials that expired before `before`: nothing can connect with them."""
    deleted, _ = IssuedCredential.objects.filter(expires_at__lt=before).delete()
    return deleted
