"""Weekly schedules in the decision (docs/authorizer.md#schedules): a
scheduled grant is in only inside a window, out within GRANT_END_MARGIN of
the window's end, and the refresh comes at the next window edge that falls
inside the grant's own span.

The authorizer runs with a frozen clock on an in-memory table, with the
corpus's keys (tests/lambda_bridge/decision_corpus.py). Instants are written
as wall times and converted with zoneinfo, independently of the schedule code."""
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from lambda_bridge import keys, snapshot
from lambda_bridge.authorizer import GRANT_END_MARGIN, Authorizer, Decision
from lambda_bridge.schedule import Schedule, Window
from lambda_bridge.snapshot import CONTROL, VIEW, Entry, Snapshot
from tests.lambda_bridge.decision_corpus import (
    CONFIGS,
    LAMP,
    LOCK,
    OVEN,
    DictStore,
    Tokens,
    _event,
    _keyring_item,
    _keys,
    _snap,
)

PRIVATE = _keys()
MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6
BRUSSELS = ZoneInfo("Europe/Brussels")
TUESDAY_MORNINGS = Schedule("Europe/Brussels", (Window(frozenset({TUE}), 9 * 60, 12 * 60),))


def at(year, month, day, hour, minute=0, second=0, zone=BRUSSELS) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=zone).timestamp())


def config(*, refresh=300):
    return replace(CONFIGS["default"], refresh_seconds=refresh, disconnect_seconds=86_400)


def decide(entries, now: int, *, lifetime=7 * 86_400, refresh=86_400) -> Decision:
    items = dict([(keys.ITEM_KEY, _keyring_item(PRIVATE)), _snap("u", 1, "7", entries, fmt=4)])
    authorizer = Authorizer(config(refresh=refresh), DictStore(items), clock=lambda: now, monotonic=lambda: 0.0)
    token = Tokens(PRIVATE).token(iat=now, nbf=now, exp=now + lifetime)
    return authorizer.decide(_event("token", token, client_id=None))


def granted(decision: Decision) -> set[str]:
    assert decision.allowed, decision.reason
    return {thing for thing in (LAMP, LOCK, OVEN) if any(thing in d for d in decision.documents)}


# --- in force or not --------------------------------------------------------------------


@pytest.mark.parametrize("when, inside", [
    (at(2027, 6, 15, 8, 59, 59), False),  # Tuesday, a second before 09:00
    (at(2027, 6, 15, 9), True),
    (at(2027, 6, 15, 11, 30), True),
    (at(2027, 6, 15, 12), False),          # the end is not in the window
    (at(2027, 6, 16, 10), False),          # Wednesday
    (at(2027, 6, 15, 10, zone=UTC), False),  # 12:00 in Brussels (CEST)
])
def test_a_scheduled_grant_is_in_only_inside_a_window(when, inside):
    decision = decide([Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS), Entry(LOCK, VIEW)], when)

    assert granted(decision) == ({LAMP, LOCK} if inside else {LOCK})
    assert decision.devices == (2 if inside else 1)


def test_outside_every_window_a_principal_with_only_scheduled_grants_connects_with_nothing():
    decision = decide([Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS)], at(2027, 6, 14, 10))

    assert decision.allowed and decision.devices == 0 and granted(decision) == set()


@pytest.mark.parametrize("left, inside", [(GRANT_END_MARGIN - 1, False), (GRANT_END_MARGIN, True), (60, True)])
def test_a_window_closing_within_the_margin_is_left_out_like_an_expiry(left, inside):
    noon = at(2027, 6, 15, 12)

    decision = decide([Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS), Entry(LOCK, VIEW)], noon - left)

    assert (LAMP in granted(decision)) is inside


def test_a_window_crossing_midnight_grants_into_the_next_morning_only_after_its_own_day():
    late = Schedule("Europe/Brussels", (Window(frozenset({FRI}), 22 * 60, 2 * 60),))  # Friday 22:00 to 02:00
    entries = [Entry(LAMP, CONTROL, schedule=late)]

    assert granted(decide(entries, at(2027, 6, 18, 23))) == {LAMP}       # Friday 23:00
    assert granted(decide(entries, at(2027, 6, 19, 1, 59))) == {LAMP}    # Saturday 01:59
    assert granted(decide(entries, at(2027, 6, 19, 2))) == set()         # Saturday 02:00
    assert granted(decide(entries, at(2027, 6, 20, 1))) == set()         # Sunday 01:00: Saturday has no window
    # From Friday 23:00 the next change is Saturday 02:00, three hours on.
    assert decide(entries, at(2027, 6, 18, 23)).refresh == 3 * 3600


def test_the_best_level_in_force_wins_and_a_closed_window_does_not_lower_it():
    entries = [Entry(LAMP, VIEW), Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS)]
    window, after = at(2027, 6, 15, 10), at(2027, 6, 15, 13)

    assert decide(entries, window).documents != decide(entries, after).documents
    assert granted(decide(entries, after)) == {LAMP}


# --- the refresh at window edges ---------------------------------------------------------


@pytest.mark.parametrize("when, edge", [
    (at(2027, 6, 15, 7), at(2027, 6, 15, 9)),     # before the window: when it opens
    (at(2027, 6, 15, 10), at(2027, 6, 15, 12)),   # inside: when it closes
    (at(2027, 6, 14, 12), at(2027, 6, 15, 9)),    # Monday noon: 21 h to Tuesday's opening
])
def test_the_refresh_comes_at_the_next_window_edge(when, edge):
    decision = decide([Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS), Entry(LOCK, VIEW)], when)

    assert decision.refresh == edge - when


def test_the_refresh_is_still_within_awss_bounds_and_the_configured_refresh():
    entries = [Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS)]

    assert decide(entries, at(2027, 6, 15, 8, 59)).refresh == 300            # 60 s to the edge: AWS's least
    assert decide(entries, at(2027, 6, 15, 7), refresh=900).refresh == 900   # the configured refresh first
    assert decide(entries, at(2027, 6, 16, 12)).refresh == 86_400            # 6 days away: AWS's most


def test_window_edges_outside_the_grants_own_span_are_not_changes():
    # Starts on Wednesday: Tuesday's 09:00 is no change for it; its start is.
    later = Entry(LAMP, CONTROL, not_before=at(2027, 6, 16, 0), schedule=TUESDAY_MORNINGS)
    # Expires at 10:00, inside the window: its expiry is the change, not the window's 12:00.
    ending = Entry(LOCK, VIEW, expires=at(2027, 6, 15, 10), schedule=TUESDAY_MORNINGS)
    # Already expired: none of its window's edges changes anything.
    ended = Entry(OVEN, VIEW, expires=at(2027, 6, 15, 6), schedule=TUESDAY_MORNINGS)

    def change(entry, now):
        return Snapshot(kind="u", tenant=1, principal="7", version=1, generated_at=now,
                        entries=(entry,)).next_change(now)

    assert change(later, at(2027, 6, 15, 8)) == at(2027, 6, 16, 0)
    assert change(later, at(2027, 6, 16, 0)) == at(2027, 6, 22, 9)  # from its start, the next Tuesday's opening
    assert change(ending, at(2027, 6, 15, 8)) == at(2027, 6, 15, 9)
    assert change(ending, at(2027, 6, 15, 9)) == at(2027, 6, 15, 10)
    assert change(ended, at(2027, 6, 15, 8)) is None
    assert decide([later, ended], at(2027, 6, 15, 8)).refresh == at(2027, 6, 16, 0) - at(2027, 6, 15, 8)


# --- daylight-saving changes ---------------------------------------------------------------


def test_london_spring_gap_opens_the_window_when_the_clocks_jump():
    # 28 March 2027: 01:00 GMT becomes 02:00 BST, so Sunday 01:30-03:00 opens at the jump.
    gap = Schedule("Europe/London", (Window(frozenset({SUN}), 90, 180),))
    jump = at(2027, 3, 28, 1, zone=UTC)
    entries = [Entry(LAMP, CONTROL, schedule=gap), Entry(LOCK, VIEW)]

    assert granted(decide(entries, jump - 400)) == {LOCK}
    assert decide(entries, jump - 400).refresh == 400
    assert granted(decide(entries, jump)) == {LAMP, LOCK}
    assert decide(entries, jump).refresh == 3600  # 03:00 BST, an hour of real time after the jump


def test_new_york_autumn_overlap_grants_both_times_the_wall_clock_reads_the_window():
    # 7 November 2027: 01:00-02:00 happens in EDT, then again in EST.
    overlap = Schedule("America/New_York", (Window(frozenset({SUN}), 60, 90),))  # Sunday 01:00-01:30
    entries = [Entry(LAMP, CONTROL, schedule=overlap), Entry(LOCK, VIEW)]
    first, between, second = (at(2027, 11, 7, 5, 10, zone=UTC), at(2027, 11, 7, 5, 45, zone=UTC),
                              at(2027, 11, 7, 6, 10, zone=UTC))

    assert LAMP in granted(decide(entries, first))
    assert LAMP not in granted(decide(entries, between))
    assert decide(entries, between).refresh == 15 * 60  # 01:00 EST comes back at 06:00 UTC
    assert LAMP in granted(decide(entries, second))
    assert decide(entries, second).refresh == 20 * 60  # and 01:30 EST closes it


def test_lord_howes_half_hour_shift_repeats_the_window_for_an_hour_in_all():
    # 4 April 2027: 02:00 (+11) becomes 01:30 (+10:30); Sunday 01:30-02:00 happens twice.
    window = Schedule("Australia/Lord_Howe", (Window(frozenset({SUN}), 90, 120),))
    start = at(2027, 4, 4, 1, 30, zone=ZoneInfo("Australia/Lord_Howe"))
    entries = [Entry(LAMP, CONTROL, schedule=window)]

    assert granted(decide(entries, start)) == {LAMP}
    assert decide(entries, start).refresh == 3600
    assert granted(decide(entries, start + 3600 - GRANT_END_MARGIN + 1)) == set()  # within the margin of its end


# --- what a decision costs and what it refuses ------------------------------------------------


def test_a_schedule_shared_by_many_entries_is_worked_out_once_per_decision(monkeypatch):
    other = Schedule("Europe/Brussels", (Window(frozenset({MON, TUE}), 8 * 60, 10 * 60),))
    entries = [Entry(f"d-shared{i:06d}", CONTROL, schedule=TUESDAY_MORNINGS) for i in range(10)]
    entries += [Entry(f"d-other{i:07d}", VIEW, schedule=other) for i in range(5)]
    walked = []
    real = Schedule._moments  # the costly part of finding the next edge
    monkeypatch.setattr(Schedule, "_moments", lambda self, now: walked.append(self.windows) or real(self, now))

    decision = decide(entries, at(2027, 6, 15, 9, 30))

    assert decision.devices == 15
    assert len(walked) == 2 and set(walked) == {TUESDAY_MORNINGS.windows, other.windows}


def test_a_zone_the_authorizer_cannot_load_refuses_as_a_bad_snapshot():
    key, item = _snap("u", 1, "7", [Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS)], fmt=4)
    item["w"] = {"B": item["w"]["B"].replace(b"Europe/Brussels", b"Europe/Brussell")}
    authorizer = Authorizer(config(), DictStore({keys.ITEM_KEY: _keyring_item(PRIVATE), key: item}),
                            clock=lambda: at(2027, 6, 15, 10), monotonic=lambda: 0.0)
    now = at(2027, 6, 15, 10)

    decision = authorizer.decide(_event("token", Tokens(PRIVATE).token(iat=now, nbf=now, exp=now + 3600),
                                        client_id=None))

    assert (decision.allowed, decision.reason) == (False, "bad_snapshot")
    assert "Europe/Brussell" in decision.detail


def test_a_scheduled_snapshot_is_format_4():
    _, item = _snap("u", 1, "7", [Entry(LAMP, CONTROL, schedule=TUESDAY_MORNINGS)], fmt=snapshot.FORMAT)
    assert item["f"] == {"N": "4"}
