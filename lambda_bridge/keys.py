"""The signing-key item: the public halves of the authorizer's two key slots,
as Django publishes them and the authorizer reads them. Stdlib only.

It lives in the snapshot table under its own key, which cannot collide with a
snapshot's (`u#…`, `d#…`):

    pk     S  "keys#signing"
    f      N  1                      format of this item
    v      N  version                only grows; writers put it conditionally
    active S  "A" | "B" | absent     the slot that signs new tokens
    A, B   M  {kid: S, pem: S, state: S,   a slot; absent when empty
                ckid: S, cpub: S}      its compact half, when it has one

A slot holds one key pair per credential kind and both move through the
states together: `kid`/`pem`, the RSA key of platform JWTs and of the signed
authorizer's signature check; `ckid`/`cpub`, base64url of the Ed25519 key of
compact device tokens (lambda_bridge/compact.py), which only this item
publishes. Keys made before compact tokens existed have no compact half.

A slot's state is staged, active, retiring or retired. Tokens verify against
the first three: a staged key is already in the gateway's list, so accepting it
costs nothing and spares a race with the promote step; a retired key never
verifies anything again.
"""
from __future__ import annotations

from dataclasses import dataclass

from lambda_bridge import b64url

ITEM_KEY = "keys#signing"
FORMAT = 1
SLOTS = ("A", "B")

STAGED, ACTIVE, RETIRING, RETIRED = "staged", "active", "retiring", "retired"
STATES = (STAGED, ACTIVE, RETIRING, RETIRED)
VERIFYING_STATES = (STAGED, ACTIVE, RETIRING)

MAX_KID = 128
MAX_PEM = 4096  # a 4096-bit RSA public key is about 800 characters
MAX_COMPACT_KID = 8  # bytes, in the item and in a compact token (lambda_bridge/compact.py)
COMPACT_PUBLIC_BYTES = 32  # a raw Ed25519 public key


class KeyringError(ValueError):
    """A key item this reader cannot trust; no token verifies against it."""


@dataclass(frozen=True, slots=True)
class KeySlot:
    kid: str
    pem: str
    state: str
    compact_kid: str = ""  # base64url, empty when the slot has no compact half
    compact_public: str = ""  # base64url of the raw public key


@dataclass(frozen=True, slots=True)
class Keyring:
    version: int
    slots: dict[str, KeySlot]
    active: str | None = None

    def verifying(self) -> dict[str, str]:
        """kid → public PEM for every key a token may be signed with."""
        return {s.kid: s.pem for s in self.slots.values() if s.state in VERIFYING_STATES}

    def compact_verifying(self) -> dict[bytes, bytes]:
        """Compact kid → raw Ed25519 public key, for the same states."""
        return {_unb64(s.compact_kid): _unb64(s.compact_public) for s in self.slots.values()
                if s.state in VERIFYING_STATES and s.compact_kid}


def to_item(keyring: Keyring) -> dict:
    _check(keyring)
    item = {"pk": {"S": ITEM_KEY}, "f": {"N": str(FORMAT)}, "v": {"N": str(keyring.version)}}
    if keyring.active:
        item["active"] = {"S": keyring.active}
    for name, slot in keyring.slots.items():
        item[name] = {"M": {"kid": {"S": slot.kid}, "pem": {"S": slot.pem}, "state": {"S": slot.state}}}
        if slot.compact_kid:
            item[name]["M"].update(ckid={"S": slot.compact_kid}, cpub={"S": slot.compact_public})
    return item


def from_item(item: dict) -> Keyring:
    try:
        if int(item["f"]["N"]) != FORMAT:
            raise KeyringError(f"key item format {item['f']['N']} is not readable here (reads {FORMAT})")
        slots = {}
        for name in SLOTS:
            if name in item:
                raw = item[name]["M"]
                slots[name] = KeySlot(kid=raw["kid"]["S"], pem=raw["pem"]["S"], state=raw["state"]["S"],
                                      compact_kid=raw["ckid"]["S"] if "ckid" in raw else "",
                                      compact_public=raw["cpub"]["S"] if "cpub" in raw else "")
        active = item["active"]["S"] if "active" in item else None
        keyring = Keyring(version=int(item["v"]["N"]), slots=slots, active=active)
    except KeyringError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyringError(f"malformed key item: {exc.__class__.__name__}") from None
    _check(keyring)
    return keyring


def _check(keyring: Keyring) -> None:
    for name, slot in keyring.slots.items():
        if name not in SLOTS:
            raise KeyringError(f"unknown key slot {name!r}")
        if slot.state not in STATES:
            raise KeyringError(f"slot {name} has unknown state {slot.state!r}")
        if not (isinstance(slot.kid, str) and 0 < len(slot.kid) <= MAX_KID and slot.kid.isprintable()):
            raise KeyringError(f"slot {name} has an unusable kid")
        if not (isinstance(slot.pem, str) and 0 < len(slot.pem) <= MAX_PEM):
            raise KeyringError(f"slot {name} has an unusable public key")
        _check_compact(name, slot)
    kids = [slot.kid for slot in keyring.slots.values()]
    if len(set(kids)) != len(kids):
        raise KeyringError("both slots hold the same kid")
    compact_kids = [slot.compact_kid for slot in keyring.slots.values() if slot.compact_kid]
    if len(set(compact_kids)) != len(compact_kids):
        raise KeyringError("both slots hold the same compact kid")
    if keyring.active is not None and keyring.slots.get(keyring.active, KeySlot("", "", "")).state != ACTIVE:
        raise KeyringError(f"active slot {keyring.active!r} does not hold an active key")


def _check_compact(name: str, slot: KeySlot) -> None:
    if not slot.compact_kid and not slot.compact_public:
        return
    try:
        kid, public = _unb64(slot.compact_kid), _unb64(slot.compact_public)
    except ValueError:
        raise KeyringError(f"slot {name} has an unreadable compact key") from None
    if not 0 < len(kid) <= MAX_COMPACT_KID or len(public) != COMPACT_PUBLIC_BYTES:
        raise KeyringError(f"slot {name} has an unusable compact key")


def b64(raw: bytes) -> str:
    """How the item spells a compact kid or key (lambda_bridge/b64url.py)."""
    return b64url.encode(raw)


def _unb64(text: str) -> bytes:
    return b64url.decode(text)
