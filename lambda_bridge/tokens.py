"""Platform tokens: RS256 JWTs checked against the public keys of both slots.

Claims (docs/authorizer.md): `sub` is `user:<id>` or `device:<thing name>`, `tid` the
tenant, `cid` the one MQTT client id the token may connect as, `iss`, `aud`,
`iat`, `nbf`, `exp`, `jti`, and an optional `scope` that narrows a user token
to `{"things": [...]}` or `{"group": id}`.

Client ids are one namespace for the whole AWS account, and a second
connection with a client id drops the first. So they are tied to their
principal: a device's is its thing name; a person's is
`u<tenant>.<user id>.<suffix>`, whose dots no thing name can contain.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from lambda_bridge import b64url, compact, keys, snapshot, vocabulary
from lambda_bridge.config import MIN_TTL
from lambda_bridge.refusal import Refused
from lambda_bridge.vocabulary import Reason

ALGORITHM = "RS256"
MIN_KEY_BITS = 2048
MAX_SCOPE_THINGS = 200
# The thing-name alphabet is also what client ids may use (lambda_bridge/vocabulary.py).
NAME = re.compile(vocabulary.THING_NAME)
USER_ID = re.compile(r"[0-9]{1,19}")
APP_SUFFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_INTEGER = 2**63 - 1
# Longer-lived tokens would outlast the rotation plan, which retires a key
# once the longest token signed with it has expired.
MAX_LIFETIME = 31 * 86400
KINDS = {"user": snapshot.USER, "device": snapshot.DEVICE}

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "nbf", "iat", "jti")


@dataclass(frozen=True)
class Claims:
    kind: str
    principal: str
    tenant: int
    client_id: str
    expires: int
    scope_things: frozenset[str] | None = None
    scope_group: int | None = None
    # `iat`, judged against the snapshot's cut-off; None only for claims built
    # outside `verify` (the cut-off then refuses them).
    issued_at: int | None = None

    @property
    def label(self) -> str:
        """How logs name the principal: the token's own `sub`."""
        return f"{'user' if self.kind == snapshot.USER else 'device'}:{self.principal}"


class KeyCache:
    """The verifying keys of both slots, read from the key item at most once a
    `ttl`. A JWT kid it does not know triggers one early re-read per `recheck`
    seconds at most, so a freshly staged key works without a redeploy and a
    flood of bad kids cannot turn into a flood of reads. A compact kid it does
    not know does so only while the item holds no compact key at all (a
    first key, made active at once): the unsigned authorizer hears every
    stranger, and a compact key is otherwise staged a propagation delay
    (longer than `ttl`) before it signs anything
    (docs/authorizer.md#compact-device-tokens). A read that failed is not
    tried again for `recheck` seconds, so strangers cannot turn an outage or
    throttling into more reads."""

    def __init__(self, read_item: Callable[[str], dict | None], *, ttl: float, recheck: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self._read_item = read_item
        self._ttl = ttl
        self._recheck = min(recheck, ttl)
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] | None = None
        self._compact: dict[bytes, Ed25519PublicKey] = {}
        self._loaded_at = 0.0
        self._failed_at, self._failure = float("-inf"), ""
        self.reads = 0

    def get(self, kid: str) -> RSAPublicKey | None:
        now = self._clock()
        if self._stale(now) or (kid not in self._keys and now - self._loaded_at >= self._recheck):
            self._load(now)
        return self._keys.get(kid)

    def get_compact(self, kid: bytes) -> Ed25519PublicKey | None:
        now = self._clock()
        if self._stale(now) or (not self._compact and now - self._loaded_at >= self._recheck):
            self._load(now)
        return self._compact.get(kid)

    def _stale(self, now: float) -> bool:
        return self._keys is None or now - self._loaded_at >= self._ttl

    def _load(self, now: float) -> None:
        if now - self._failed_at < self._recheck:
            raise Refused(Reason.KEYS_UNAVAILABLE, f"{self._failure} (not read again yet)")
        self.reads += 1
        try:
            item = self._read_item(keys.ITEM_KEY)
            ring = keys.from_item(item) if item is not None else None
        except keys.KeyringError as exc:
            self._failed_at, self._failure = now, str(exc)
            raise Refused(Reason.KEYS_UNAVAILABLE, self._failure) from None
        except Exception as exc:  # noqa: BLE001  (the store's errors: network, throttling, permissions)
            self._failed_at, self._failure = now, exc.__class__.__name__
            raise Refused(Reason.KEYS_UNAVAILABLE, self._failure) from None
        loaded = {}
        for kid, pem in (ring.verifying() if ring else {}).items():
            try:
                key = load_pem_public_key(pem.encode())
            except Exception:  # noqa: BLE001, S112  (ValueError, UnsupportedAlgorithm, ...)
                continue  # an unreadable key verifies nothing; the other slot still may
            if isinstance(key, RSAPublicKey) and key.key_size >= MIN_KEY_BITS:
                loaded[kid] = key
        compact_keys = {}
        for kid, raw in (ring.compact_verifying() if ring else {}).items():
            try:
                compact_keys[kid] = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                continue
        self._keys, self._compact, self._loaded_at = loaded, compact_keys, now


def verify(token: str, key_cache: KeyCache, *, issuer: str, audience: str, leeway: int, now: int) -> Claims:
    """The token's claims, once its one signature checks out against a key of
    ours. Parsed once, strictly (`parse`); PyJWT's rules are kept, reason for
    reason, and the signature is checked by `cryptography` directly."""
    header, payload, signing_input, signature = parse(token)
    if header.get("alg") != ALGORITHM:
        # Checked before any key is touched: `none` and the HMAC family (with
        # the public key as the "secret") never reach a verifier.
        raise Refused(Reason.UNSUPPORTED_ALG, f"alg {str(header.get('alg'))[:20]!r}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= keys.MAX_KID:
        raise Refused(Reason.UNKNOWN_KID, "no usable kid in the header")
    key = key_cache.get(kid)
    if key is None:
        raise Refused(Reason.UNKNOWN_KID, f"kid {kid[:64]!r}")
    if header.get("b64", True) is False:
        # RFC 7797's unencoded payload, which the platform never issues.
        raise Refused(Reason.MALFORMED_TOKEN if "crit" in header else Reason.INVALID_CLAIMS, "b64 is false")
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise Refused(Reason.BAD_SIGNATURE, "signature does not verify") from None
    # Only signed bytes are read as JSON.
    claims = _json_object(payload, "payload")
    _registered(claims, issuer=issuer, audience=audience)
    return _claims(claims, leeway=leeway, now=now)


def parse(token: str) -> tuple[dict, bytes, bytes, bytes]:
    """(header, payload, signing input, signature) of a compact JWS. Every
    part must be canonical base64url, so a token has one spelling only."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Refused(Reason.MALFORMED_TOKEN, "not three dot-separated parts")
    header = _json_object(_segment(parts[0]), "header")
    if header.get("b64", True) is False and parts[1]:
        raise Refused(Reason.MALFORMED_TOKEN, "payload must be empty when b64 is false")
    payload = _segment(parts[1])
    signature = _segment(parts[2])
    if "kid" in header and not isinstance(header["kid"], str):
        raise Refused(Reason.MALFORMED_TOKEN, "kid is not a string")
    if "crit" in header and not _understood(header["crit"], header):
        raise Refused(Reason.MALFORMED_TOKEN, "critical header extension not understood")
    return header, payload, f"{parts[0]}.{parts[1]}".encode(), signature


def _segment(text: str) -> bytes:
    try:
        return b64url.decode(text)
    except ValueError:
        raise Refused(Reason.MALFORMED_TOKEN, "a part is not canonical base64url") from None


def _json_object(raw: bytes, part: str) -> dict:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        raise Refused(Reason.MALFORMED_TOKEN, f"{part} is not JSON") from None
    if not isinstance(value, dict):
        raise Refused(Reason.MALFORMED_TOKEN, f"{part} is not a JSON object")
    return value


def _understood(crit, header: dict) -> bool:
    # RFC 7515 §4.1.11: refuse what we do not understand. Only `b64` is known
    # (and b64=false is refused later, as PyJWT does).
    return isinstance(crit, list) and bool(crit) and all(name == "b64" for name in crit) and "b64" in header


def _registered(claims: dict, *, issuer: str, audience: str) -> None:
    """The registered claims, as PyJWT checked them (times are `_claims`')."""
    missing = next((name for name in REQUIRED_CLAIMS if claims.get(name) is None), None)
    if missing:
        raise Refused(Reason.INVALID_CLAIMS, f"no {missing}")
    if not isinstance(claims["iss"], str) or claims["iss"] != issuer:
        raise Refused(Reason.WRONG_ISSUER)
    if not claims["aud"]:
        raise Refused(Reason.INVALID_CLAIMS, "empty aud")
    # A list audience naming us among others is a token meant for someone else.
    if not isinstance(claims["aud"], str) or claims["aud"] != audience:
        raise Refused(Reason.WRONG_AUDIENCE)
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise Refused(Reason.INVALID_CLAIMS, "sub and jti are strings")


def verify_compact(token: str, key_cache: KeyCache, *, leeway: int, now: int) -> Claims:
    """A compact device token's claims (lambda_bridge/compact.py), under the
    same time rules as a JWT's. A compact token is always a device's, and
    the device connects as its thing name."""
    found = compact.verify(token, key_cache.get_compact)
    _check_times(exp=found.expires, nbf=found.issued_at, iat=found.issued_at, leeway=leeway, now=now)
    return Claims(kind=snapshot.DEVICE, principal=found.thing, tenant=found.tenant, client_id=found.thing,
                  expires=found.expires, issued_at=found.issued_at)


def _check_times(*, exp: int, nbf: int, iat: int, leeway: int, now: int) -> None:
    # No leeway on expiry. Under MIN_TTL left, a connection made now could not
    # be made to end at expiry: AWS keeps one at least MIN_TTL seconds
    # (docs/decisions/0007-exact-ends.md).
    if now >= exp:
        raise Refused(Reason.EXPIRED)
    if exp - now < MIN_TTL:
        raise Refused(Reason.EXPIRES_TOO_SOON, f"{exp - now} s left; ask for a fresh token")
    if nbf > now + leeway or iat > now + leeway:
        raise Refused(Reason.NOT_YET_VALID)
    if exp - min(iat, nbf) > MAX_LIFETIME:
        raise Refused(Reason.INVALID_CLAIMS, "lifetime longer than 31 days")


def _claims(claims: dict, *, leeway: int, now: int) -> Claims:
    exp, nbf, iat = (_integer(claims.get(name), name) for name in ("exp", "nbf", "iat"))
    _check_times(exp=exp, nbf=nbf, iat=iat, leeway=leeway, now=now)
    kind_name, _, principal = str(claims["sub"]).partition(":")
    kind = KINDS.get(kind_name)
    if kind == snapshot.USER and not USER_ID.fullmatch(principal):
        raise Refused(Reason.INVALID_CLAIMS, "user sub is not user:<id>")
    if kind == snapshot.DEVICE and not NAME.fullmatch(principal):
        raise Refused(Reason.INVALID_CLAIMS, "device sub is not device:<thing name>")
    if kind is None:
        raise Refused(Reason.INVALID_CLAIMS, "sub is neither user:… nor device:…")
    tenant = _integer(claims.get("tid"), "tid")
    client_id = claims.get("cid")
    if kind == snapshot.DEVICE and client_id != principal:
        raise Refused(Reason.INVALID_CLAIMS, "a device connects as its thing name")
    if kind == snapshot.USER and not _own_app_id(client_id, tenant, principal):
        raise Refused(Reason.INVALID_CLAIMS, "a person's cid is u<tenant>.<user id>.<letters, digits, _ or ->")
    things, group = _scope(claims.get("scope"), kind)
    return Claims(kind=kind, principal=principal, tenant=tenant, client_id=client_id, expires=exp,
                  scope_things=things, scope_group=group, issued_at=iat)


def _own_app_id(client_id, tenant: int, user: str) -> bool:
    prefix = f"u{tenant}.{user}."
    return (isinstance(client_id, str) and client_id.startswith(prefix)
            and APP_SUFFIX.fullmatch(client_id[len(prefix):]) is not None)


def _integer(value, name: str) -> int:
    # bool is an int in Python; a `true` expiry is not a time.
    if type(value) is not int or not 0 <= value <= MAX_INTEGER:
        raise Refused(Reason.INVALID_CLAIMS, f"{name} is not a whole number")
    return value


def _scope(scope, kind: str) -> tuple[frozenset[str] | None, int | None]:
    if scope is None:
        return None, None
    if kind != snapshot.USER or not isinstance(scope, dict) or len(scope) != 1:
        raise Refused(Reason.INVALID_CLAIMS, "scope is one of {things: [...]} or {group: id}, on user tokens")
    if "group" in scope:
        return None, _integer(scope["group"], "scope.group")
    things = scope.get("things")
    if (not isinstance(things, list) or not 0 < len(things) <= MAX_SCOPE_THINGS
            or not all(isinstance(t, str) and NAME.fullmatch(t) for t in things)):
        raise Refused(Reason.INVALID_CLAIMS, f"scope.things is a list of 1-{MAX_SCOPE_THINGS} thing names")
    return frozenset(things), None
