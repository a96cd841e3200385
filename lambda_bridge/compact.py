"""Compact device tokens: a CWT (RFC 8392) in an untagged COSE_Sign1
(RFC 9052) with EdDSA over Ed25519, sent as base64url text
(docs/authorizer.md#compact-device-tokens, docs/decisions/0009-compact-device-tokens.md).

A device too frugal for an RS256 JWT and its RSA signature sends this to the
unsigned authorizer instead: about 100 bytes plus the thing name before
base64url, 152 characters for a 15-character thing name. Both sides use this
module: Django encodes, the authorizer decodes and verifies. The layout is
fixed, in CBOR's deterministic encoding, so a token has one spelling only:

    COSE_Sign1 = [protected, unprotected, payload, signature]
      protected    bstr .cbor {1 (alg): -8 (EdDSA), 4 (kid): bstr}
      unprotected  {}
      payload      bstr .cbor {2 (sub): thing name, 4 (exp): uint,
                               6 (iat): uint, "tid": tenant id}
      signature    bstr, 64 bytes: Ed25519 over the Sig_structure
                   ["Signature1", protected, h'', payload]

Anything else (another alg, an extra claim or header, a tag, a long form of
a number, bytes left over) is malformed, refused before a key is looked up.
Stdlib and cryptography only: the Lambda ships it.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lambda_bridge import b64url, keys, vocabulary
from lambda_bridge.refusal import Refused
from lambda_bridge.vocabulary import Reason

# The whole credential a device sends, in characters (issue 17's ceiling).
MAX_CHARS = 200
ALG_EDDSA = -8
MAX_KID = keys.MAX_COMPACT_KID  # bytes; Django issues 3
SIGNATURE_BYTES = 64
# CWT claim keys (RFC 8392 §4) and the one private claim, by name as CWT allows.
SUB, EXP, IAT, TENANT = 2, 4, 6, "tid"
# COSE header parameters (RFC 9052 §3.1).
ALG, KID = 1, 4
_SIGNATURE1 = "Signature1"
NAME = re.compile(vocabulary.THING_NAME)
MAX_INTEGER = 2**63 - 1

# CBOR major types (RFC 8949 §3.1), and the bytes of argument that follow an
# initial byte's additional information 24..27.
_UINT, _NINT, _BYTES, _TEXT, _ARRAY, _MAP = 0, 1, 2, 3, 4, 5
_ARGUMENT_BYTES = {24: 1, 25: 2, 26: 4, 27: 8}


@dataclass(frozen=True)
class CompactClaims:
    thing: str
    tenant: int
    issued_at: int
    expires: int


@dataclass(frozen=True)
class Parsed:
    """A token taken apart, before its signature is checked."""

    kid: bytes
    claims: CompactClaims
    signed: bytes  # the Sig_structure the signature covers
    signature: bytes


# --- encoding ----------------------------------------------------------------------


def encode(claims: CompactClaims, *, kid: bytes, sign: Callable[[bytes], bytes]) -> str:
    """The token's text. `sign` is the Ed25519 private key's sign method."""
    if not 0 < len(kid) <= MAX_KID:
        raise ValueError(f"a compact kid is 1-{MAX_KID} bytes")
    if not NAME.fullmatch(claims.thing):
        raise ValueError("not a thing name")
    protected = _map([(_int(ALG), _int(ALG_EDDSA)), (_int(KID), _bytes(kid))])
    payload = _map([(_int(SUB), _text(claims.thing)), (_int(EXP), _int(claims.expires)),
                    (_int(IAT), _int(claims.issued_at)), (_text(TENANT), _int(claims.tenant))])
    signature = sign(_sig_structure(protected, payload))
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("an Ed25519 signature is 64 bytes")
    raw = _head(_ARRAY, 4) + _bytes(protected) + _map([]) + _bytes(payload) + _bytes(signature)
    return b64url.encode(raw)


def mqtt_username(authorizer_name: str) -> str:
    """What a device with a compact token puts in its MQTT username: only the
    authorizer's name, since the token rides in the password, and nothing
    before the `?`, which the authorizer would ignore anyway
    (docs/credentials.md#compact-device-tokens)."""
    return f"?{vocabulary.AUTHORIZER_NAME_PARAMETER}={quote(authorizer_name, safe='')}"


def kid_for(public_raw: bytes) -> bytes:
    """A key's compact kid: the first 3 bytes of SHA-256 of its raw public key.
    Short on purpose; the two live slots never share one (authz.tokens.signing_keys)."""
    return hashlib.sha256(public_raw).digest()[:3]


def _head(major: int, value: int) -> bytes:
    # The shortest form (RFC 8949 §4.2.1), which the decoder insists on.
    if value < 24:
        return bytes([major << 5 | value])
    for extra, size in _ARGUMENT_BYTES.items():
        if value < 1 << (8 * size):
            return bytes([major << 5 | extra]) + value.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def _int(value: int) -> bytes:
    return _head(_UINT, value) if value >= 0 else _head(_NINT, -1 - value)


def _bytes(value: bytes) -> bytes:
    return _head(_BYTES, len(value)) + value


def _text(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _head(_TEXT, len(raw)) + raw


def _map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return _head(_MAP, len(pairs)) + b"".join(k + v for k, v in pairs)


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return _head(_ARRAY, 4) + _text(_SIGNATURE1) + _bytes(protected) + _bytes(b"") + _bytes(payload)


# --- decoding ----------------------------------------------------------------------


def looks_compact(token: str) -> bool:
    """Whether a token is spelled like a compact one rather than a JWT: a JWT
    always has two dots, base64url never has one."""
    return "." not in token


def parse(token: str) -> Parsed:
    """The token taken apart, strictly; Refused(MALFORMED_TOKEN) for anything
    that is not exactly the layout above. No key is touched here."""
    if not isinstance(token, str):
        raise _malformed("not text")
    if len(token) > MAX_CHARS:
        raise Refused(Reason.TOKEN_TOO_LARGE, f"{len(token)} characters; a compact token has at most {MAX_CHARS}")
    raw = _base64url(token)
    reader = _Reader(raw)
    if reader.head(_ARRAY) != 4:
        raise _malformed("not a four-part COSE_Sign1")
    protected = reader.bytes_()
    if reader.head(_MAP) != 0:
        raise _malformed("the unprotected header is not empty")
    payload = reader.bytes_()
    signature = reader.bytes_()
    reader.end()
    if len(signature) != SIGNATURE_BYTES:
        raise _malformed("the signature is not 64 bytes")
    kid = _protected(protected)
    claims = _payload(payload)
    return Parsed(kid=kid, claims=claims, signed=_sig_structure(protected, payload), signature=signature)


def verify(token: str, key_for: Callable[[bytes], Ed25519PublicKey | None]) -> CompactClaims:
    """The claims of a token whose signature checks out under the key its kid
    names. Order matters for strangers: the layout is checked before
    `key_for` is asked, and the signature before any claim is trusted."""
    parsed = parse(token)
    key = key_for(parsed.kid)
    if key is None:
        raise Refused(Reason.UNKNOWN_KID, f"compact kid {parsed.kid.hex()}")
    try:
        key.verify(parsed.signature, parsed.signed)
    except InvalidSignature:
        raise Refused(Reason.BAD_SIGNATURE, "signature does not verify") from None
    return parsed.claims


def _protected(raw: bytes) -> bytes:
    reader = _Reader(raw)
    if reader.head(_MAP) != 2 or reader.int_() != ALG:
        raise _malformed("the protected header is not {alg, kid}")
    if reader.int_() != ALG_EDDSA:
        raise Refused(Reason.UNSUPPORTED_ALG, "a compact token is signed with EdDSA")
    if reader.int_() != KID:
        raise _malformed("the protected header is not {alg, kid}")
    kid = reader.bytes_()
    reader.end()
    if not 0 < len(kid) <= MAX_KID:
        raise _malformed(f"the kid is not 1-{MAX_KID} bytes")
    return kid


def _payload(raw: bytes) -> CompactClaims:
    reader = _Reader(raw)
    if reader.head(_MAP) != 4 or reader.int_() != SUB:
        raise _malformed("the claims are not {sub, exp, iat, tid}")
    thing = reader.text()
    if reader.int_() != EXP:
        raise _malformed("the claims are not {sub, exp, iat, tid}")
    expires = reader.uint()
    if reader.int_() != IAT:
        raise _malformed("the claims are not {sub, exp, iat, tid}")
    issued_at = reader.uint()
    if reader.text() != TENANT:
        raise _malformed("the claims are not {sub, exp, iat, tid}")
    tenant = reader.uint()
    reader.end()
    if not NAME.fullmatch(thing):
        raise Refused(Reason.INVALID_CLAIMS, "sub is not a thing name")
    return CompactClaims(thing=thing, tenant=tenant, issued_at=issued_at, expires=expires)


def _base64url(text: str) -> bytes:
    try:
        return b64url.decode(text)
    except ValueError:
        raise _malformed("not canonical base64url") from None


def _malformed(detail: str) -> Refused:
    return Refused(Reason.MALFORMED_TOKEN, detail)


class _Reader:
    """Reads the few CBOR items the layout has, each in its shortest form."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise _malformed("truncated")
        chunk, self.pos = self.data[self.pos:end], end
        return chunk

    def _item(self) -> tuple[int, int]:
        initial = self._take(1)[0]
        major, extra = initial >> 5, initial & 0x1F
        if extra < 24:
            return major, extra
        size = _ARGUMENT_BYTES.get(extra)
        if size is None:  # indefinite lengths, simple values, floats, reserved
            raise _malformed("not a definite-length item")
        value = int.from_bytes(self._take(size), "big")
        if value < (24 if size == 1 else 1 << (4 * size)):
            raise _malformed("a number not in its shortest form")
        return major, value

    def head(self, major: int) -> int:
        found, value = self._item()
        if found != major:
            raise _malformed("unexpected item")
        return value

    def int_(self) -> int:
        major, value = self._item()
        if major == _UINT:
            return value
        if major == _NINT:
            return -1 - value
        raise _malformed("expected an integer")

    def uint(self) -> int:
        value = self.head(_UINT)
        if value > MAX_INTEGER:
            raise Refused(Reason.INVALID_CLAIMS, "a number out of range")
        return value

    def bytes_(self) -> bytes:
        return self._take(self.head(_BYTES))

    def text(self) -> str:
        raw = self._take(self.head(_TEXT))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("text is not UTF-8") from None

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _malformed("bytes after the last item")

