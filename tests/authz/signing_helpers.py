"""Shared by the signing-key tests: a clock to walk the rotation through and
a check that the database and the key item agree."""
import time
import uuid
from datetime import timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from authz.models import SigningKey, SigningKeyring
from authz.tokens import rotation, signing_keys
from lambda_bridge import keys
from tests.support.lambda_env import AUDIENCE, ISSUER


class Clock:
    """Rotation time, walked forward by the tests; tokens keep real time."""

    def __init__(self):
        self.now = timezone.now()

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)
        return self.now

    def past_propagation(self):
        return self.advance(settings.SIGNING_PROPAGATION_SECONDS + 1)

    def past_token_lifetime(self):
        return self.advance(settings.TOKEN_MAX_LIFETIME_SECONDS + rotation.RETIRE_MARGIN_SECONDS + 1)


def keyring(table) -> keys.Keyring | None:
    item = table.items().get(keys.ITEM_KEY)
    return keys.from_item(item) if item else None


def assert_converged(table) -> keys.Keyring:
    """Published what the database holds: the item and the live keys agree."""
    row = SigningKeyring.objects.get()
    assert row.pushed_version == row.desired_version, "publication lags"
    assert row.last_error == ""
    ring = keyring(table)
    assert ring is not None and ring.version == row.pushed_version
    live = {k.slot: (k.kid, k.public_pem, k.state) for k in SigningKey.objects.exclude(state=keys.RETIRED)}
    assert {name: (s.kid, s.pem, s.state) for name, s in ring.slots.items()} == live
    active = SigningKey.objects.filter(state=keys.ACTIVE).first()
    assert ring.active == (active.slot if active else None)
    return ring


def token(key: signing_keys.ActiveSigningKey, *, lifetime: int = 3600) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user:7", "tid": 1, "cid": "u1.7.app",
              "iat": now, "nbf": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
