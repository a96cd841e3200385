"""Compact device tokens as the tests here make and send them: Ed25519 keys
in both slots of the key item next to the RSA ones, tokens encoded with
lambda_bridge.compact (as Django issues them), and events in the shape the
unsigned authorizer gets (docs/authorizer.md#two-authorizers)."""
from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lambda_bridge import compact, keys
from tests.support.lambda_env import KEY_NAME

COMPACT_AUTHORIZER = "devshare-compact"
# Where a compact device may put its token, and where the log says it was found.
SOURCES = ("mqtt_password", "mqtt_username", "http_header", "query_string", "token")


@dataclass(frozen=True)
class CompactKey:
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def kid(self) -> bytes:
        return compact.kid_for(self.public_raw)

    def token(self, thing: str, *, tenant: int = 1, issued_at: int | None = None, lifetime: int = 3600,
              expires: int | None = None, kid: bytes | None = None) -> str:
        issued_at = int(time.time()) if issued_at is None else issued_at
        claims = compact.CompactClaims(thing=thing, tenant=tenant, issued_at=issued_at,
                                       expires=issued_at + lifetime if expires is None else expires)
        return compact.encode(claims, kid=self.kid if kid is None else kid, sign=self.private.sign)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def swap_claims(good: str, other: str) -> str:
    """`other`'s header and claims under `good`'s signature (the last 64 bytes)."""
    return b64url(unb64url(other)[:-compact.SIGNATURE_BYTES] + unb64url(good)[-compact.SIGNATURE_BYTES:])


def new_keys() -> dict[str, CompactKey]:
    """Slot A's, slot B's and one the item never holds."""
    return {name: CompactKey(Ed25519PrivateKey.generate()) for name in ("a", "b", "stranger")}


def keyring_item(lam, compact_keys: dict[str, CompactKey], *, a: str | None = keys.ACTIVE,
                 b: str | None = None, version: int = 1) -> dict:
    """The key item with both halves of each slot (lambda_bridge/keys.py)."""
    slots = {}
    for name, state in (("A", a), ("B", b)):
        if state:
            rsa_key, ed_key = lam.keys[name.lower()], compact_keys[name.lower()]
            slots[name] = keys.KeySlot(kid=rsa_key.kid, pem=rsa_key.public_pem, state=state,
                                       compact_kid=keys.b64(ed_key.kid), compact_public=keys.b64(ed_key.public_raw))
    active = next((name for name, slot in slots.items() if slot.state == keys.ACTIVE), None)
    return keys.to_item(keys.Keyring(version=version, slots=slots, active=active))


def event(where: str, token: str, *, client_id: str | None = None, signed: bool | None = False) -> dict:
    """What AWS IoT hands the Lambda for a device sending `token` `where`
    (the wire spelling docs/credentials.md gives devices). `signed=None`
    leaves signatureVerified out, as some events do."""
    mqtt = {"clientId": client_id} if client_id else {}
    if where == "token":
        found = {"token": token, "protocols": ["tls", "mqtt"], "protocolData": {"mqtt": mqtt}}
    elif where == "mqtt_password":
        found = {"protocols": ["tls", "mqtt"], "protocolData": {"mqtt": {
            **mqtt, "username": compact.mqtt_username(COMPACT_AUTHORIZER),
            "password": base64.b64encode(token.encode("ascii")).decode()}}}
    elif where == "mqtt_username":
        found = {"protocols": ["tls", "mqtt"], "protocolData": {"mqtt": {
            **mqtt, "username": f"devshare?x-amz-customauthorizer-name={COMPACT_AUTHORIZER}"
                                f"&{KEY_NAME}={quote(token, safe='')}"}}}
    elif where == "http_header":
        found = {"protocols": ["tls", "http"], "protocolData": {"http": {
            "headers": {"host": "example-ats.iot.eu-west-1.amazonaws.com",
                        "x-amz-customauthorizer-name": COMPACT_AUTHORIZER, KEY_NAME: token},
            "queryString": "?qos=1"}}}
    elif where == "query_string":
        found = {"protocols": ["tls", "http"], "protocolData": {"http": {
            "headers": {"host": "example-ats.iot.eu-west-1.amazonaws.com"},
            "queryString": f"?qos=1&x-amz-customauthorizer-name={COMPACT_AUTHORIZER}"
                           f"&{KEY_NAME}={quote(token, safe='')}"}}}
    else:
        raise ValueError(where)
    if signed is not None:
        found["signatureVerified"] = signed
    found["connectionMetadata"] = {"id": "c0mpac7-0000-4000-8000-000000000001"}
    return found
