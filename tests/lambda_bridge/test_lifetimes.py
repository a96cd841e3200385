"""Exact ends (docs/decisions/0007-exact-ends.md): a gateway that calls back
at every refresh, on time or late, keeps an accepted connection until its
token expires, and not a second longer.

The authorizer runs with a frozen clock on an in-memory table, with the
corpus's keys and tokens (tests/lambda_bridge/decision_corpus.py); the
gateway is played here as AWS documents it: the deadline fixed by the first
answer's disconnectAfterInSeconds, a call after each refreshAfterInSeconds.
"""
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bridge import keys
from lambda_bridge.authorizer import Authorizer
from lambda_bridge.config import Config
from lambda_bridge.snapshot import CONTROL, VIEW, Entry
from tests.lambda_bridge.decision_corpus import (
    AUDIENCE,
    ISSUER,
    KEY_NAME,
    DictStore,
    Tokens,
    _event,
    _keyring_item,
    _keys,
    _snap,
)

IAT = 1_800_000_000
LAMP, LOCK = "d-lamp00000001", "d-lock00000001"
MIN_TTL, SLACK = 300, 30  # AWS's shortest answer; how late a refresh may come (the decision record's numbers)
PRIVATE = _keys()


def config(*, refresh=300, disconnect=86_400) -> Config:
    return Config(table="t", issuer=ISSUER, audience=AUDIENCE, account="123456789012", region="eu-west-1",
                  table_region="us-east-1", token_key_name=KEY_NAME, refresh_seconds=refresh,
                  disconnect_seconds=disconnect)


@dataclass
class Gateway:
    """Calls the authorizer at connect and at every refresh until the
    connection's deadline, each call `late` seconds after it was due."""

    authorizer: Authorizer
    clock: list[int]
    calls: list[tuple[int, dict]] = field(default_factory=list)  # (time, response)

    def call(self, at: int, token: str) -> dict:
        self.clock[0] = at
        response = self.authorizer.decide(_event("token", token, client_id=None)).response()
        self.calls.append((at, response))
        return response

    def connect(self, at: int, token: str, *, lateness=lambda: 0) -> int | None:
        """The moment the connection ends, or None if refused at connect.
        It ends at the deadline or at the first refused refresh."""
        first = self.call(at, token)
        if not first["isAuthenticated"]:
            return None
        deadline = at + first["disconnectAfterInSeconds"]  # fixed at connect
        moment, answer = at, first
        while True:
            moment += answer["refreshAfterInSeconds"] + lateness()
            if moment >= deadline:
                return deadline
            answer = self.call(moment, token)
            if not answer["isAuthenticated"]:
                return moment


LAMP_ONLY = (Entry(LAMP, CONTROL),)


def gateway(*, entries=LAMP_ONLY, cfg=None) -> Gateway:
    items = dict([(keys.ITEM_KEY, _keyring_item(PRIVATE)), _snap("u", 1, "7", entries, fmt=3)])
    clock = [IAT]
    return Gateway(Authorizer(cfg or config(), DictStore(items), clock=lambda: clock[0], monotonic=lambda: 0.0),
                   clock)


def token(lifetime: int) -> str:
    return Tokens(PRIVATE).token(iat=IAT, nbf=IAT, exp=IAT + lifetime)


def answers(gw: Gateway) -> list[tuple[int, int, int]]:
    """(seconds after issue, refresh, disconnect) of each call."""
    return [(at - IAT, r["refreshAfterInSeconds"], r["disconnectAfterInSeconds"]) for at, r in gw.calls]


# --- the examples of the decision record ------------------------------------------------


def test_a_600_second_token_gets_one_call_and_ends_at_expiry():
    gw = gateway()

    assert gw.connect(IAT, token(600)) == IAT + 600
    assert answers(gw) == [(0, 600, 600)]


def test_a_3600_second_token_is_refreshed_every_300_seconds_and_ends_at_expiry():
    gw = gateway()

    assert gw.connect(IAT, token(3600)) == IAT + 3600
    assert [at for at, _, _ in answers(gw)] == list(range(0, 3001, 300))
    assert answers(gw)[-1] == (3000, 600, 600)  # 600 s left: the next call would come at expiry


def test_a_call_with_330_seconds_left_carries_the_connection_to_expiry():
    gw = gateway()

    # Connected 270 s after issue: calls with 3,330, 3,030 … 630 and then 330 s left.
    assert gw.connect(IAT + 270, token(3600)) == IAT + 3600
    assert answers(gw)[-2:] == [(2970, 300, 630), (3270, 330, 330)]
    assert all(r["isAuthenticated"] for _, r in gw.calls)


def test_a_refresh_20_seconds_late_with_310_seconds_left_is_accepted():
    gw = gateway()

    response = gw.call(IAT + 3290, token(3600))

    assert response["isAuthenticated"] is True
    assert (response["refreshAfterInSeconds"], response["disconnectAfterInSeconds"]) == (310, 310)


@pytest.mark.parametrize("left, allowed", [(299, False), (300, True)])
def test_a_call_with_under_300_seconds_left_is_refused(left, allowed):
    gw = gateway()

    assert gw.call(IAT + 3600 - left, token(3600))["isAuthenticated"] is allowed
    assert gw.authorizer.decide(_event("token", token(3600), client_id=None)).reason == (
        "ok" if allowed else "expires_too_soon")


def test_a_token_beyond_the_longest_refresh_is_called_back_with_330_seconds_left():
    gw = gateway(cfg=config(refresh=86_400))

    assert gw.connect(IAT, token(86_500)) == IAT + 86_400  # the configured disconnect comes first
    assert answers(gw) == [(0, 86_500 - 330, 86_400), (86_500 - 330, 330, 330)]


def test_a_grant_change_brings_the_refresh_forward_but_never_under_300_seconds():
    gw = gateway(entries=(Entry(LAMP, CONTROL), Entry(LOCK, VIEW, expires=IAT + 1000)), cfg=config(refresh=3600))

    gw.connect(IAT + 900, token(7200))

    assert answers(gw)[:2] == [(900, 300, 6300), (1200, 3600, 6000)]


# --- the rule, for any lifetime, connect time and lateness -------------------------------


@st.composite
def connections(draw):
    lifetime = draw(st.integers(1, 31 * 86_400))
    # At most about 60 calls per example: a long token gets a long configured refresh.
    refresh = draw(st.integers(max(MIN_TTL, min(86_400, lifetime // 60)), 86_400))
    disconnect = draw(st.sampled_from([MIN_TTL, 900, 86_400]) | st.integers(MIN_TTL, 86_400))
    connect_after = draw(st.integers(0, lifetime + 10))
    lateness = draw(st.lists(st.integers(0, SLACK), min_size=1, max_size=20))
    change = draw(st.none() | st.integers(0, lifetime))  # a grant ending somewhere in the token's life
    return lifetime, refresh, disconnect, connect_after, lateness, change


@settings(max_examples=300, deadline=None)
@given(connections())
def test_an_accepted_connection_ends_exactly_at_expiry_or_the_configured_disconnect(case):
    lifetime, refresh, disconnect, connect_after, lateness, change = case
    entries = [Entry(LAMP, CONTROL)] + ([Entry(LOCK, VIEW, expires=IAT + change)] if change is not None else [])
    gw = gateway(entries=tuple(entries), cfg=config(refresh=refresh, disconnect=disconnect))
    late = iter(lateness * 1000)

    ended = gw.connect(IAT + connect_after, token(lifetime), lateness=lambda: next(late))

    left = lifetime - connect_after
    # Refused at connect exactly when a connection could not end at expiry.
    assert (ended is None) == (left < MIN_TTL)
    if ended is None:
        return
    # Never cut before: every call until the deadline was accepted, each a
    # refresh up to 30 s late; and never later than the token's expiry.
    assert all(r["isAuthenticated"] for _, r in gw.calls)
    assert ended == IAT + connect_after + min(disconnect, left)
    expiry = IAT + lifetime
    for at, r in gw.calls:
        refresh_in = r["refreshAfterInSeconds"]
        assert MIN_TTL <= refresh_in <= 86_400 and MIN_TTL <= r["disconnectAfterInSeconds"] <= 86_400
        # No refresh is due inside the token's last 330 s, where a late one could be refused.
        due = at + refresh_in
        assert expiry - due >= MIN_TTL + SLACK or due >= expiry
        # Before expiry, a grant's end brings the refresh forward (as far as AWS allows).
        if change is not None and IAT + change > at and due < expiry:
            assert refresh_in <= max(MIN_TTL, IAT + change - at)
