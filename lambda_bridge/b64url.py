"""Base64url without padding (RFC 7515 §2): how JWT parts, compact tokens
and the key item's compact keys are spelled. Stdlib only.

`decode` takes the canonical spelling alone (the URL-safe alphabet, no `=`,
no stray bits in the last character), so a token has one spelling only.
"""
from __future__ import annotations

import base64
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes `text` spells; ValueError unless it is canonical."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _ALPHABET.fullmatch(text):
        raise ValueError("not canonical base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if encode(raw) != text:  # stray bits in the last character
        raise ValueError("not canonical base64url")
    return raw
