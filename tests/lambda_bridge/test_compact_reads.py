"""The unsigned authorizer hears every stranger (issue 17, point 3): what it
refuses before reading DynamoDB. GetItem calls are counted on the real
moto-backed client with botocore's event hooks, on a cold Lambda and a warm
one (docs/authorizer.md#compact-device-tokens)."""
import time

import cbor2
import pytest

from lambda_bridge import keys, snapshot
from lambda_bridge.authorizer import Authorizer
from lambda_bridge.snapshot import Entry
from lambda_bridge.store import DynamoStore
from tests.lambda_bridge.compact_support import b64url, event, keyring_item, swap_claims

LAMP, LOCK = "d-lamp00000001", "d-lock00000001"


class Reads:
    """Every GetItem the client makes, by the key it asks for."""

    def __init__(self, client):
        self.keys: list[str] = []
        client.meta.events.register("before-parameter-build.dynamodb.GetItem", self._seen)

    def _seen(self, params, **_):
        self.keys.append(params["Key"]["pk"]["S"])

    def taken(self) -> list[str]:
        found, self.keys = self.keys, []
        return found


@pytest.fixture
def start(cold_start, compact_keys):
    """start() → (a cold handler, its GetItem counter), with the lamp's
    snapshot and slot A's keys in the table."""

    def started():
        lam = cold_start()
        lam.put_item(keyring_item(lam, compact_keys))
        lam.put_snapshot(kind=snapshot.DEVICE, principal=LAMP, entries=[Entry(LAMP, snapshot.OWNER)])
        return lam, Reads(lam.handler.authorizer.store.client)

    return started


def refuse(lam, token: str, *, signed=False) -> str:
    assert lam.invoke(event("token", token, signed=signed))["isAuthenticated"] is False
    return lam.last_log["reason"]


def _es256(key) -> str:
    """A token naming alg ES256 (-7), otherwise well formed."""
    protected = cbor2.dumps({1: -7, 4: key.kid})
    payload = cbor2.dumps({2: LAMP, 4: int(time.time()) + 3600, 6: int(time.time()), "tid": 1})
    signature = key.private.sign(cbor2.dumps(["Signature1", protected, b"", payload]))
    return b64url(cbor2.dumps([protected, {}, payload, signature]))


STRANGERS_COLD = {
    "malformed": (lambda lam, ck: ck["a"].token(LAMP)[:-1], False, "malformed_token"),
    "a re-spelled alphabet": (lambda lam, ck: ck["a"].token(LAMP).replace("-", "+") + "/", False, "malformed_token"),
    "too large": (lambda lam, ck: "A" * 4000, False, "token_too_large"),
    "another alg": (lambda lam, ck: _es256(ck["a"]), False, "unsupported_alg"),
    "a JWT at the unsigned authorizer": (lambda lam, ck: lam.token(sub=f"device:{LAMP}"), False, "wrong_authorizer"),
    "a compact token at the signed one": (lambda lam, ck: ck["a"].token(LAMP), True, "wrong_authorizer"),
    # Garbage is malformed at either authorizer, not "the other kind".
    "dotted garbage at the unsigned authorizer": (lambda lam, ck: "not.a.jwt", False, "malformed_token"),
    "dotless garbage at the signed one": (lambda lam, ck: "hello", True, "malformed_token"),
}


@pytest.mark.parametrize("case", STRANGERS_COLD)
def test_refused_without_any_read_even_on_a_cold_lambda(start, compact_keys, case):
    lam, reads = start()
    make, signed, expected = STRANGERS_COLD[case]

    assert refuse(lam, make(lam, compact_keys), signed=signed) == expected
    assert reads.taken() == []
    assert lam.last_log["cold_start"] is True


def test_unknown_kids_and_bad_signatures_read_nothing_on_a_warm_lambda(start, compact_keys):
    lam, reads = start()
    good = compact_keys["a"].token(LAMP)
    assert lam.invoke(event("token", good))["isAuthenticated"] is True
    assert reads.taken() == [keys.ITEM_KEY, f"d#1#{LAMP}"]  # the cold call: key item, then snapshot

    for i in range(20):
        assert refuse(lam, compact_keys["stranger"].token(f"d-stranger{i:04d}")) == "unknown_kid"
        assert refuse(lam, compact_keys["stranger"].token(LAMP, kid=compact_keys["a"].kid)) == "bad_signature"
        assert refuse(lam, swap_claims(good, compact_keys["a"].token(LOCK))) == "bad_signature"

    assert reads.taken() == []


def test_a_cold_lambda_reads_the_key_item_once_for_its_first_stranger_and_never_a_snapshot(start, compact_keys):
    lam, reads = start()

    for _ in range(10):
        assert refuse(lam, compact_keys["stranger"].token(LAMP)) == "unknown_kid"

    assert reads.taken() == [keys.ITEM_KEY]


@pytest.fixture
def stepped(start):
    """A warm Authorizer on the same table and client whose monotonic clock
    the test sets."""
    lam, reads = start()
    clock = [0.0]
    authorizer = Authorizer(lam.handler.authorizer.config, lam.handler.authorizer.store, monotonic=lambda: clock[0])
    return lam, reads, clock, authorizer


def test_the_key_item_is_read_once_a_cache_period_however_many_strangers_call(stepped, compact_keys):
    """With the Lambda's own clock stepped: one read at the start, one when the
    period (DEVSHARE_KEY_CACHE_SECONDS, 60 by default) has passed, none between."""
    lam, reads, clock, authorizer = stepped
    stranger = event("token", compact_keys["stranger"].token(LAMP))
    per_step = []
    for clock[0] in (0.0, 1.0, 10.0, 11.0, 30.0, 59.9, 60.0, 61.0, 119.9, 120.0):
        for _ in range(5):
            assert authorizer.decide(stranger).reason == "unknown_kid"
        per_step.append(len(reads.taken()))

    assert authorizer.config.key_cache_seconds == 60
    assert per_step == [1, 0, 0, 0, 0, 0, 1, 0, 0, 1]


def test_a_key_staged_after_the_last_read_is_seen_at_the_next_period(stepped, compact_keys):
    """No early re-read for a compact kid: a key staged just after a read is
    not seen before the period ends, which is why one is staged
    SIGNING_PROPAGATION_SECONDS (300 by default) before it signs."""
    lam, reads, clock, authorizer = stepped
    token = compact_keys["b"].token(LAMP)
    assert authorizer.decide(event("token", token)).reason == "unknown_kid"

    lam.put_item(keyring_item(lam, compact_keys, a=keys.ACTIVE, b=keys.STAGED, version=2))
    clock[0] = 59.0
    assert authorizer.decide(event("token", token)).reason == "unknown_kid"
    clock[0] = 60.0
    assert authorizer.decide(event("token", token)).allowed is True
    assert reads.taken() == [keys.ITEM_KEY, keys.ITEM_KEY, f"d#1#{LAMP}"]


def test_the_counter_sees_reads(start, compact_keys):
    """Guards the counting itself: an allowed warm decision reads its snapshot."""
    lam, reads = start()
    for _ in range(3):
        assert lam.invoke(event("token", compact_keys["a"].token(LAMP)))["isAuthenticated"] is True

    assert reads.taken() == [keys.ITEM_KEY] + [f"d#1#{LAMP}"] * 3


def test_a_key_item_that_cannot_be_read_is_tried_again_once_a_recheck_however_many_strangers_call(start,
                                                                                                 compact_keys):
    """An outage or throttling must not let strangers multiply reads: a failed
    read is not tried again for 10 s (the recheck), whoever calls."""
    lam, reads = start()
    config = lam.handler.authorizer.config
    missing = DynamoStore(lam.handler.authorizer.store.client, "no-such-table")  # moto answers ResourceNotFound
    clock = [0.0]
    authorizer = Authorizer(config, missing, monotonic=lambda: clock[0])
    stranger = event("token", compact_keys["stranger"].token(LAMP))
    per_step = []
    for clock[0] in (0.0, 5.0, 9.9, 10.0, 19.9, 20.0):
        for _ in range(10):
            decision = authorizer.decide(stranger)
            assert (decision.allowed, decision.reason) == (False, "keys_unavailable")
        per_step.append(len(reads.taken()))

    assert per_step == [1, 0, 0, 1, 0, 1]


def test_while_the_item_holds_no_compact_key_an_unknown_compact_kid_is_looked_for_once_a_recheck(stepped,
                                                                                                compact_keys):
    """A first key is made active at once (no staging), so a Lambda that read
    the item before it had a compact half looks again, at most once every
    10 s; once it knows a compact key, an unknown kid never makes it look."""
    lam, reads, clock, authorizer = stepped
    rsa_only = keys.to_item(keys.Keyring(version=1, active="A", slots={"A": keys.KeySlot(
        kid=lam.keys["a"].kid, pem=lam.keys["a"].public_pem, state=keys.ACTIVE)}))
    lam.put_item(rsa_only)
    token = compact_keys["a"].token(LAMP)
    assert authorizer.decide(event("token", token)).reason == "unknown_kid"
    lam.put_item(keyring_item(lam, compact_keys, version=2))
    clock[0] = 9.9
    assert authorizer.decide(event("token", token)).reason == "unknown_kid"
    clock[0] = 10.0
    assert authorizer.decide(event("token", token)).allowed is True
    assert reads.taken() == [keys.ITEM_KEY, keys.ITEM_KEY, f"d#1#{LAMP}"]

    clock[0] = 25.0  # a compact key is known now: strangers' kids read nothing
    for _ in range(5):
        assert authorizer.decide(event("token", compact_keys["stranger"].token(LAMP))).reason == "unknown_kid"
    assert reads.taken() == []
