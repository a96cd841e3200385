"""A token outlives the rotation that follows it, as the authorizer Lambda's
own code sees it: `lambda_bridge.tokens.verify` with a `KeyCache` reading
the key item from the table the rotation publishes to."""
import time

import pytest

from authz.snapshots import store
from authz.tokens import rotation, signing_keys
from lambda_bridge import tokens
from lambda_bridge.refusal import Refused
from tests.authz.signing_helpers import Clock, token
from tests.support.lambda_env import AUDIENCE, ISSUER

pytestmark = pytest.mark.django_db


class Lambda:
    """A warm Lambda: its key cache, and time passing past the cache's TTL between steps."""

    TTL = 60

    def __init__(self):
        self.monotonic = 0.0
        self.cache = tokens.KeyCache(store.get_item, ttl=self.TTL, clock=lambda: self.monotonic)

    def later(self):
        self.monotonic += self.TTL

    def verify(self, jwt_token: str):
        return tokens.verify(jwt_token, self.cache, issuer=ISSUER, audience=AUDIENCE, leeway=30, now=int(time.time()))

    def refusal(self, jwt_token: str) -> str:
        with pytest.raises(Refused) as refused:
            self.verify(jwt_token)
        return refused.value.reason


def test_a_token_verifies_through_stage_and_promote_and_is_refused_after_retire(table):
    clock, lam = Clock(), Lambda()
    rotation.rotate(actor=None, now=clock.now)
    old_key = signing_keys.active_signing_key()
    before = token(old_key)
    assert lam.verify(before).principal == "7"

    rotation.stage(actor=None, now=clock.now)
    lam.later()
    assert lam.verify(before).principal == "7"
    assert signing_keys.active_signing_key().kid == old_key.kid

    rotation.promote(actor=None, now=clock.past_propagation())
    lam.later()
    assert lam.verify(before).principal == "7"
    new_key = signing_keys.active_signing_key()
    assert new_key.kid != old_key.kid and new_key.slot == "B"
    after = token(new_key)
    assert lam.verify(after).principal == "7"

    rotation.retire(actor=None, now=clock.past_token_lifetime())
    lam.later()
    assert lam.refusal(before) == "unknown_kid"
    assert lam.verify(after).principal == "7"
    assert lam.verify(token(signing_keys.active_signing_key())).principal == "7"


def test_a_freshly_staged_key_is_known_without_waiting_for_the_cache(table):
    """A kid the cache does not know re-reads the item (at most every 10 s),
    so a key is usable as soon as it is published."""
    clock, lam = Clock(), Lambda()
    rotation.rotate(actor=None, now=clock.now)
    lam.verify(token(signing_keys.active_signing_key()))
    rotation.stage(actor=None, now=clock.now)
    rotation.promote(actor=None, force=True, now=clock.now)

    lam.monotonic += 10
    assert lam.verify(token(signing_keys.active_signing_key())).principal == "7"
