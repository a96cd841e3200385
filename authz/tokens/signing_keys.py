"""Token-signing keys: RSA keys and their Ed25519 compact halves made,
encrypted at rest, decrypted for signing, and the keyring row lock that serialises every change to them
(docs/signing-keys.md). Rotation (rotation.py) and publication
(publication.py) both work under that lock.

The lock is `SELECT … FOR UPDATE NOWAIT` on the one keyring row: a second
runner gets `RotationInProgress` at once instead of queueing behind a slow AWS
call.
"""
from __future__ import annotations

import functools
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from django.conf import settings
from django.db import OperationalError, transaction

from authz.models import SigningKey, SigningKeyring
from lambda_bridge import b64url, compact, keys

MIN_BITS = 2048


class SigningError(Exception):
    """A one-line reason, fit for an operator; nothing was changed."""



class RotationInProgress(SigningError):
    pass



def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638: SHA-256 of the required JWK members in lexicographic order,
    without whitespace, base64url without padding."""
    numbers = public_key.public_numbers()
    members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url.encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _b64url_uint(value: int) -> str:
    return b64url.encode(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))




def _fernet() -> MultiFernet:
    configured = settings.SIGNING_KEY_ENCRYPTION_KEYS
    if not configured:
        raise SigningError("SIGNING_KEY_ENCRYPTION_KEYS is not set: private keys cannot be encrypted at rest")
    try:
        return MultiFernet([Fernet(k) for k in configured])
    except ValueError:
        raise SigningError("SIGNING_KEY_ENCRYPTION_KEYS holds a value that is not a Fernet key") from None


def new_key(*, slot: str, state: str, now: datetime) -> SigningKey:
    bits = settings.SIGNING_KEY_BITS
    if bits < MIN_BITS:
        # AWS IoT's signature check and the authorizer both demand 2048 bits or more.
        raise SigningError(f"SIGNING_KEY_BITS is {bits}; signing keys need at least {MIN_BITS} bits")
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    compact_private, compact_kid = _new_compact_key()
    fernet = _fernet()
    return SigningKey.objects.create(
        slot=slot, kid=jwk_thumbprint(private.public_key()), bits=bits, public_pem=public_pem,
        private_key_encrypted=fernet.encrypt(pem).decode("ascii"), state=state, created_at=now,
        staged_at=now, activated_at=now if state == keys.ACTIVE else None,
        compact_kid=compact_kid, compact_public=keys.b64(_raw_public(compact_private)),
        compact_private_encrypted=fernet.encrypt(_raw_private(compact_private)).decode("ascii"),
    )


def _new_compact_key() -> tuple[ed25519.Ed25519PrivateKey, str]:
    """An Ed25519 key whose 3-byte compact kid no live key holds: the
    authorizer finds a compact key by kid alone (docs/signing-keys.md#the-compact-half)."""
    taken = set(SigningKey.objects.exclude(state=keys.RETIRED).values_list("compact_kid", flat=True))
    while True:
        private = ed25519.Ed25519PrivateKey.generate()
        kid = keys.b64(compact.kid_for(_raw_public(private)))
        if kid not in taken:
            return private, kid


def _raw_public(private: ed25519.Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(private: ed25519.Ed25519PrivateKey) -> bytes:
    return private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())


@dataclass(frozen=True)
class ActiveSigningKey:
    kid: str
    slot: str
    private_key: rsa.RSAPrivateKey = field(repr=False)


def _active(*fields: str) -> SigningKey:
    key = SigningKey.objects.filter(state=keys.ACTIVE).only("kid", "slot", *fields).first()
    if key is None:
        raise SigningError("no active signing key: run `manage.py signing_keys rotate` to bootstrap one")
    return key


def active_signing_key() -> ActiveSigningKey:
    """The key new tokens are signed with (RS256, header `kid`)."""
    key = _active("private_key_encrypted")
    return ActiveSigningKey(kid=key.kid, slot=key.slot, private_key=_decrypt(key.kid, key.private_key_encrypted))


@dataclass(frozen=True)
class ActiveCompactKey:
    kid: str  # base64url, as the key item and IssuedCredential spell it
    private_key: ed25519.Ed25519PrivateKey = field(repr=False)


def active_compact_key() -> ActiveCompactKey:
    """The compact half of the key new tokens are signed with (EdDSA)."""
    key = _active("compact_kid", "compact_private_encrypted")
    if not key.compact_kid or not key.compact_private_encrypted:
        raise SigningError(f"the active signing key {key.kid} (slot {key.slot}) has no compact half: it was made "
                           f"before compact tokens existed. Run `manage.py signing_keys stage`, then `promote` "
                           f"once due, to issue compact credentials (docs/signing-keys.md#the-compact-half)")
    return ActiveCompactKey(kid=key.compact_kid, private_key=_decrypt_compact(key.kid, key.compact_private_encrypted))


def _open(kid: str, token: str) -> bytes:
    try:
        return _fernet().decrypt(token.encode("ascii"))
    except InvalidToken:
        raise SigningError(f"cannot decrypt the private key of {kid}: none of SIGNING_KEY_ENCRYPTION_KEYS "
                           f"is the key it was encrypted with") from None


@functools.lru_cache(maxsize=4)
def _decrypt(kid: str, token: str) -> rsa.RSAPrivateKey:
    # Cached: loading a PEM runs RSA's key checks, too slow to repeat per token.
    return serialization.load_pem_private_key(_open(kid, token), password=None)


@functools.lru_cache(maxsize=4)
def _decrypt_compact(kid: str, token: str) -> ed25519.Ed25519PrivateKey:
    # Cached like the RSA half: Fernet's HMAC and AES on every issuance are avoidable.
    return ed25519.Ed25519PrivateKey.from_private_bytes(_open(kid, token))


@dataclass(frozen=True)
class Ring:
    """The live (not retired) keys: at most one per slot and state."""

    live: tuple[SigningKey, ...]

    @classmethod
    def load(cls) -> Ring:
        return cls(tuple(SigningKey.objects.exclude(state=keys.RETIRED).order_by("slot")))

    def in_state(self, state: str) -> SigningKey | None:
        return next((k for k in self.live if k.state == state), None)



@contextmanager
def locked(*, wait: bool = False):
    with transaction.atomic():
        try:
            row = SigningKeyring.objects.select_for_update(nowait=not wait).filter(pk=SigningKeyring.SINGLETON).first()
            if row is None:
                SigningKeyring.objects.bulk_create([SigningKeyring()], ignore_conflicts=True)
                row = SigningKeyring.objects.select_for_update(nowait=not wait).get(pk=SigningKeyring.SINGLETON)
        except OperationalError:
            raise RotationInProgress("rotation in progress: another runner holds the signing-key lock; "
                                     "try again shortly") from None
        yield row

