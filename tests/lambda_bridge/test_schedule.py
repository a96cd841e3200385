"""Weekly schedules (lambda_bridge/schedule.py): `next_change` agrees with
a minute-by-minute walk of the wall clock, in zones with 1-hour and
30-minute daylight-saving shifts, around their transitions."""
import zoneinfo
from datetime import UTC, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_bridge import schedule as schedule_module
from lambda_bridge.schedule import HORIZON_DAYS, Schedule, Window

ZONES = ["Europe/London", "America/New_York", "Australia/Lord_Howe", "Europe/Brussels", "UTC"]
# Instants near 2027's transitions in those zones, and one far from any.
NEAR = [datetime(2027, 3, 28, 1, tzinfo=UTC), datetime(2027, 10, 31, 1, tzinfo=UTC),
        datetime(2027, 3, 14, 7, tzinfo=UTC), datetime(2027, 11, 7, 6, tzinfo=UTC),
        datetime(2027, 4, 3, 15, tzinfo=UTC), datetime(2027, 10, 2, 15, tzinfo=UTC),
        datetime(2027, 6, 15, 12, tzinfo=UTC)]


def walked_change(schedule: Schedule, at: int) -> int | None:
    """The oracle: every whole minute after `at` (offsets here are whole
    minutes, so the wall clock only turns at them) until the horizon."""
    now = schedule.active(at)
    moment = at - at % 60 + 60
    while moment <= at + (HORIZON_DAYS - 1) * 86400:
        if schedule.active(moment) != now:
            return moment
        moment += 60
    return None


minutes = st.integers(0, 24 * 60 - 1)
windows = st.builds(lambda days, start, length: Window(frozenset(days), start, (start + length) % 1440 or 1440),
                    st.sets(st.integers(0, 6), min_size=1, max_size=7), minutes, st.integers(1, 24 * 60 - 1))
schedules = st.builds(Schedule, st.sampled_from(ZONES), st.lists(windows, min_size=1, max_size=3).map(tuple))
instants = st.builds(lambda near, hours, second: int(near.timestamp()) + hours * 3600 + second,
                     st.sampled_from(NEAR), st.integers(-30, 30), st.integers(0, 3599))


@settings(max_examples=120, deadline=None, derandomize=True)
@given(schedule=schedules, at=instants)
def test_next_change_is_the_first_minute_the_wall_clock_says_otherwise(schedule, at):
    assert_walked(schedule, at)


def assert_walked(schedule: Schedule, at: int) -> None:
    expected = walked_change(schedule, at)
    found = schedule.next_change(at)
    if expected is None:
        # Nothing changes within the walk: the schedule is always or never in force, or the next
        # window is over a week away (a weekly window the clocks skip this week).
        assert found is None or found > at + (HORIZON_DAYS - 1) * 86400, (schedule, at)
    else:
        assert found == expected, (schedule, at)


def test_a_window_starting_in_the_spring_gap_starts_when_the_clocks_jump():
    # London, 28 March 2027: 01:00 GMT becomes 02:00 BST; 01:30 never happens.
    gap = Schedule("Europe/London", (Window(frozenset({6}), 90, 180),))
    before = int(datetime(2027, 3, 28, 0, 59, tzinfo=UTC).timestamp())
    assert not gap.active(before)
    assert gap.next_change(before) == int(datetime(2027, 3, 28, 1, 0, tzinfo=UTC).timestamp())
    # ... and ends at 03:00 BST, one hour of wall time later.
    assert gap.next_change(before + 60) == int(datetime(2027, 3, 28, 2, 0, tzinfo=UTC).timestamp())


def test_a_window_in_the_autumn_overlap_is_in_force_both_times():
    # New York, 7 November 2027: 01:00-02:00 EDT, then 01:00-02:00 EST again.
    overlap = Schedule("America/New_York", (Window(frozenset({6}), 60, 90),))
    first = int(datetime(2027, 11, 7, 5, 10, tzinfo=UTC).timestamp())   # 01:10 EDT
    second = int(datetime(2027, 11, 7, 6, 10, tzinfo=UTC).timestamp())  # 01:10 EST
    middle = int(datetime(2027, 11, 7, 5, 45, tzinfo=UTC).timestamp())  # 01:45 EDT
    assert overlap.active(first) and not overlap.active(middle) and overlap.active(second)
    # It ends at the second 01:30 too, and starts again when the clocks go back.
    assert overlap.next_change(second) == int(datetime(2027, 11, 7, 6, 30, tzinfo=UTC).timestamp())
    assert overlap.next_change(middle) == int(datetime(2027, 11, 7, 6, 0, tzinfo=UTC).timestamp())


def test_lord_howes_half_hour_shift():
    # Lord Howe Island, Sunday 4 April 2027: 02:00 (+11) becomes 01:30 (+10:30).
    zone = ZoneInfo("Australia/Lord_Howe")
    window = Schedule("Australia/Lord_Howe", (Window(frozenset({6}), 90, 120),))  # Sunday 01:30-02:00
    start = int(datetime(2027, 4, 4, 1, 30, tzinfo=zone).timestamp())  # the first 01:30
    assert window.active(start)
    # 01:30-02:00 happens twice: in force for an hour of real time in all.
    assert window.next_change(start) == start + 30 * 60 + 30 * 60


def test_a_window_crossing_midnight_belongs_to_the_day_it_starts():
    late = Schedule("UTC", (Window(frozenset({4}), 22 * 60, 2 * 60),))  # Friday 22:00 to Saturday 02:00
    assert late.active(int(datetime(2027, 6, 19, 1, 0, tzinfo=UTC).timestamp()))  # Saturday 01:00
    assert not late.active(int(datetime(2027, 6, 20, 1, 0, tzinfo=UTC).timestamp()))  # Sunday 01:00


def test_always_and_never_have_no_next_change():
    always = Schedule("UTC", (Window(frozenset(range(7)), 0, 1440),))
    at = int(datetime(2027, 6, 15, tzinfo=UTC).timestamp())
    assert always.active(at) and always.next_change(at) is None


@pytest.mark.parametrize("days, start, end", [(frozenset(), 0, 60), (frozenset({7}), 0, 60),
                                              (frozenset({1}), 1440, 60), (frozenset({1}), 0, 0)])
def test_a_window_out_of_range_is_refused(days, start, end):
    with pytest.raises(ValueError):
        Window(days, start, end)


def transitions(zone: str, year: int) -> list[int]:
    """The instants in `year` where `zone`'s UTC offset changes, walked hour by
    hour and then to the second: apart from the schedule code on purpose."""
    tz = ZoneInfo(zone)
    offset = lambda t: datetime.fromtimestamp(t, tz).utcoffset()  # noqa: E731
    found, t, end = [], int(datetime(year, 1, 1, tzinfo=UTC).timestamp()), int(datetime(year + 1, 1, 1,
                                                                                         tzinfo=UTC).timestamp())
    while t < end:
        if offset(t) != offset(t + 3600):
            low, high = t, t + 3600
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
        t += 3600
    return found


# Clocks that change at midnight (Havana, Santiago) and a zone without changes, where next_change takes
# its shortcut for plain days: windows touching midnight, around each change and a week away from it.
MIDNIGHT_WINDOWS = [(frozenset({5, 6}), 23 * 60, 60), (frozenset({6}), 0, 30), (frozenset({0, 3}), 30, 1440),
                    (frozenset(range(7)), 23 * 60 + 30, 23 * 60 + 45)]


@pytest.mark.parametrize("zone", ["America/Havana", "America/Santiago", "Asia/Kolkata"])
@pytest.mark.parametrize("days, start, end", MIDNIGHT_WINDOWS)
def test_next_change_around_midnight_offset_changes_is_the_walked_one(zone, days, start, end):
    schedule = Schedule(zone, (Window(days, start, end),))
    changes = transitions(zone, 2027) or [int(datetime(2027, 6, 15, tzinfo=UTC).timestamp())]
    for change in changes:
        for at in (change - 2 * 86400 - 1, change - 3601, change - 1, change, change + 1799, change + 6 * 86400):
            assert_walked(schedule, at)


def test_the_remembered_answers_are_those_of_the_instant_asked():
    # One slot each for active and next_change: asking another instant must not get the last answer.
    tuesdays = Schedule("UTC", (Window(frozenset({1}), 9 * 60, 12 * 60),))
    ten, one = (int(datetime(2027, 6, 15, hour, tzinfo=UTC).timestamp()) for hour in (10, 13))

    assert (tuesdays.active(ten), tuesdays.next_change(ten)) == (True, ten + 2 * 3600)
    assert (tuesdays.active(one), tuesdays.next_change(one)) == (False, one + 7 * 86400 - 4 * 3600)
    assert (tuesdays.active(ten), tuesdays.next_change(ten)) == (True, ten + 2 * 3600)
    assert tuesdays == Schedule("UTC", tuesdays.windows) and hash(tuesdays) == hash(Schedule("UTC", tuesdays.windows))


def test_zones_come_from_the_pinned_tzdata_package_whatever_the_host_holds(tmp_path):
    """Django and the Lambda must read the same rules (docs/decisions/0008):
    a host database that says Brussels keeps UTC changes nothing here."""
    host = tmp_path / "zoneinfo"
    (host / "Europe").mkdir(parents=True)
    (host / "Europe" / "Brussels").write_bytes(resources.files("tzdata.zoneinfo").joinpath("UTC").read_bytes())
    january = int(datetime(2027, 1, 12, 8, 30, tzinfo=UTC).timestamp())  # 09:30 in Brussels, a Tuesday
    mornings = Schedule("Europe/Brussels", (Window(frozenset({1}), 9 * 60, 12 * 60),))
    zoneinfo.reset_tzpath(to=[str(host)])
    try:
        assert ZoneInfo.no_cache("Europe/Brussels").utcoffset(datetime(2027, 1, 12)).total_seconds() == 0
        assert schedule_module.zone("Europe/Brussels").utcoffset(datetime(2027, 1, 12)).total_seconds() == 3600
        assert mornings.active(january)
    finally:
        zoneinfo.reset_tzpath()


def test_a_horizon_past_year_9999_has_no_next_change():
    late = int(datetime(9999, 12, 28, tzinfo=UTC).timestamp())
    assert Schedule("UTC", (Window(frozenset({1}), 540, 720),)).next_change(late) is None


def test_a_wall_clock_past_year_9999_is_in_no_window():
    # 12:00 UTC on the calendar's last day is already year 10000 in Kiritimati (+14).
    every_day = Schedule("Pacific/Kiritimati", (Window(frozenset(range(7)), 0, 24 * 60),))
    assert every_day.active(int(datetime(9999, 12, 31, 9, tzinfo=UTC).timestamp()))
    assert not every_day.active(int(datetime(9999, 12, 31, 12, tzinfo=UTC).timestamp()))
