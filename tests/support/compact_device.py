"""Compact device tokens as tests mint them
(lambda_bridge/compact.py, docs/local-iot.md#two-authorizers): an Ed25519
key published as a slot's compact half in the key item through
`lambda_bridge.keys`, tokens encoded with `lambda_bridge.compact.encode`,
and the places a device puts one (the MQTT password, an HTTPS header or
query parameter) at the unsigned authorizer; HTTPS publish with the real
`curl`."""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lambda_bridge import compact, keys, snapshot
from lambda_bridge.snapshot import Entry
from local_iot.gateway import DEFAULT_COMPACT_AUTHORIZER_NAME
from tests.support.lambda_env import KEY_NAME
from tests.support.local_iot import LAMP

COMPACT_AUTHORIZER = DEFAULT_COMPACT_AUTHORIZER_NAME


@dataclass(frozen=True)
class CompactKey:
    private: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def kid(self) -> bytes:
        return compact.kid_for(self.public_raw)

    def token(self, thing: str = LAMP, *, tenant: int = 1, lifetime: int = 3600, issued_at: int | None = None,
              kid: bytes | None = None) -> str:
        """A compact token for `thing`, issued now unless `issued_at` says
        otherwise; `kid` names another key than the one that signs."""
        issued = int(time.time()) if issued_at is None else issued_at
        claims = compact.CompactClaims(thing=thing, tenant=tenant, issued_at=issued, expires=issued + lifetime)
        return compact.encode(claims, kid=kid or self.kid, sign=self.private.sign)


def publish(fn, key: CompactKey) -> None:
    """The key item: slot A active, holding fn's RSA key (tests/support/authorizer.py)
    and `key` as its compact half, as Django's rotation publishes a slot."""
    rsa = fn.keys["a"]
    slot = keys.KeySlot(kid=rsa.kid, pem=rsa.public_pem, state=keys.ACTIVE,
                        compact_kid=keys.b64(key.kid), compact_public=keys.b64(key.public_raw))
    fn.put_item(keys.to_item(keys.Keyring(version=2, slots={"A": slot}, active="A")))


def device_snapshot(fn, thing: str = LAMP, *, gone: bool = False) -> None:
    """The device's own snapshot (it owns itself), or its tombstone."""
    fn.put_snapshot(kind=snapshot.DEVICE, principal=thing, entries=[] if gone else [Entry(thing, snapshot.OWNER)],
                    gone=gone)


def mqtt_username(authorizer: str = COMPACT_AUTHORIZER) -> str:
    """What a compact device sends as its MQTT username: the name only; the token is the password."""
    return compact.mqtt_username(authorizer)


def headers(token: str, authorizer: str = COMPACT_AUTHORIZER) -> dict[str, str]:
    """HTTPS publish with the authorizer's parameters in headers."""
    return {"x-amz-customauthorizer-name": authorizer, KEY_NAME: token}


def query(token: str, authorizer: str = COMPACT_AUTHORIZER) -> str:
    """The same, in the URL's query string."""
    return (f"x-amz-customauthorizer-name={quote(authorizer, safe='')}"
            f"&{quote(KEY_NAME, safe='')}={quote(token, safe='')}")


def curl_publish(url: str, payload: str, *, ca_file: str, headers: dict[str, str] | None = None) -> int:
    """HTTPS publish (POST `url`) with the real curl, trusting `ca_file`: the
    HTTP status. The authorizer's parameters ride in `headers` or in `url`."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca_file, "-X", "POST"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run([*command, "--data-binary", payload, url],  # noqa: S603 (curl, a fixed argv)
                            capture_output=True, text=True, timeout=30, check=True)
    return int(result.stdout)
