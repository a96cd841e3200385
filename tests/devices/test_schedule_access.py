"""Effective access under weekly schedules, and when it next changes
(docs/sharing.md#weekly-schedules). Every instant is fixed; the expected
instants are worked out by hand from the zones' rules (checked against
zoneinfo's UTC offsets in `test_the_transitions_these_tests_rely_on`)."""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devices.models import Level
from devices.selectors import access_and_next_change, device_access_list, effective_access, held_level
from lambda_bridge.schedule import Schedule, Window
from tests.factories import ShareFactory

pytestmark = pytest.mark.django_db

TUESDAY_MORNINGS = {"timezone": "Europe/Brussels", "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}


def next_change_of(*, user, device, now):
    """When `user`'s access to `device` next changes, with access now or without."""
    return access_and_next_change(user=user, device=device, now=now)[1]


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def grant(world, level=Level.CONTROL, schedule=None, user=None, **fields):
    """A share of the lock unless `fields` name another target, made directly (fixed past instants)."""
    return ShareFactory(**{"device": world.lock, **fields}, grantee=user or world.alice, created_by=world.owner,
                        level=level, schedule=schedule)


def level_at(world, at, user=None):
    access = effective_access(user=user or world.alice, device=world.lock, now=at)
    return None if access is None else access.level


def test_the_transitions_these_tests_rely_on():
    def offset(zone, at):
        return at.astimezone(ZoneInfo(zone)).utcoffset()

    second = timedelta(seconds=1)
    hour, half = timedelta(hours=1), timedelta(minutes=30)
    for zone, at, shift in [("Europe/Brussels", utc(2027, 3, 28, 1), hour),
                            ("Europe/London", utc(2027, 3, 28, 1), hour),
                            ("Europe/London", utc(2027, 10, 31, 1), -hour),
                            ("America/New_York", utc(2027, 3, 14, 7), hour),
                            ("America/New_York", utc(2027, 11, 7, 6), -hour),
                            ("Australia/Lord_Howe", utc(2027, 10, 2, 15, 30), half),
                            ("Australia/Lord_Howe", utc(2027, 4, 3, 15), -half)]:
        assert offset(zone, at) - offset(zone, at - second) == shift, (zone, at)
    assert utc(2027, 3, 30).weekday() == 1  # a Tuesday


class TestInsideAndOutsideTheHours:
    """Brussels is at UTC+2 from 28 March 2027: Tuesday 09:00-12:00 there is 07:00-10:00 UTC."""

    def test_access_only_inside_the_window(self, world):
        share = grant(world, schedule=TUESDAY_MORNINGS)
        assert level_at(world, utc(2027, 3, 30, 6, 59, 59)) is None
        inside = effective_access(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 7))
        assert (inside.level, inside.share, inside.schedule) == (
            Level.CONTROL, share, Schedule("Europe/Brussels", (Window(frozenset({1}), 540, 720),)))
        assert level_at(world, utc(2027, 3, 30, 9, 59, 59)) == Level.CONTROL
        assert level_at(world, utc(2027, 3, 30, 10)) is None
        assert level_at(world, utc(2027, 3, 31, 8)) is None  # a Wednesday

    def test_the_next_change_inside_and_outside(self, world):
        grant(world, schedule=TUESDAY_MORNINGS)
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8)) == utc(
            2027, 3, 30, 10)
        # Without access the selector still says when it begins: next Tuesday 09:00 CEST.
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 10)) == utc(
            2027, 4, 6, 7)
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8)) == utc(2027, 3, 30, 10)

    def test_a_schedule_does_not_hide_the_share_or_the_right_to_manage(self, world):
        grant(world, level=Level.MANAGE, schedule=TUESDAY_MORNINGS)
        outside = utc(2027, 3, 31, 8)
        assert level_at(world, outside) is None
        assert held_level(user=world.alice, device=world.lock, now=outside) == Level.MANAGE

    def test_the_access_list_shows_everyone_with_a_live_grant_and_who_is_inside_their_hours(self, world):
        grant(world, schedule=TUESDAY_MORNINGS)
        grant(world, level=Level.VIEW, user=world.bob)
        tuesdays = Schedule("Europe/Brussels", (Window(frozenset({1}), 540, 720),))

        def rows(at):
            return [(user, access.level, access.schedule, access.in_force)
                    for user, access in device_access_list(device=world.lock, now=at)]

        assert rows(utc(2027, 3, 30, 8)) == [(world.owner, Level.OWNER, None, True),
                                             (world.alice, Level.CONTROL, tuesdays, True),
                                             (world.bob, Level.VIEW, None, True)]
        # Outside her hours the cleaner is still listed, after those in force.
        assert rows(utc(2027, 3, 30, 10)) == [(world.owner, Level.OWNER, None, True),
                                              (world.bob, Level.VIEW, None, True),
                                              (world.alice, Level.CONTROL, tuesdays, False)]

    def test_the_access_list_row_is_the_level_in_force_before_a_higher_one_outside_its_hours(self, world):
        # Both reach the lamp: the scheduled MANAGE share itself, the VIEW one through its group.
        grant(world, level=Level.MANAGE, schedule=TUESDAY_MORNINGS, device=world.lamp)
        grant(world, level=Level.VIEW, group=world.group, device=None)

        def alices_row(at):
            (row,) = [access for user, access in device_access_list(device=world.lamp, now=at) if user == world.alice]
            return row.level, row.in_force, row.schedule

        assert alices_row(utc(2027, 3, 31, 8)) == (Level.VIEW, True, None)  # Wednesday: the VIEW in force
        assert alices_row(utc(2027, 3, 30, 8)) == (
            Level.MANAGE, True, Schedule("Europe/Brussels", (Window(frozenset({1}), 540, 720),)))  # Tuesday 10:00
        # Ended and revoked grants are not listed at all.
        grant(world, level=Level.VIEW, user=world.bob, expires_at=utc(2027, 3, 1), device=world.lamp)
        grant(world, level=Level.VIEW, user=world.carol, revoked_at=utc(2027, 3, 1), device=world.lamp)
        listed = {user for user, _ in device_access_list(device=world.lamp, now=utc(2027, 3, 31, 8))}
        assert listed == {world.owner, world.alice}

    def test_the_owner_and_inactive_people_have_no_next_change(self, world):
        grant(world, schedule=TUESDAY_MORNINGS)
        assert next_change_of(user=world.owner, device=world.lock, now=utc(2027, 3, 30, 8)) is None
        assert next_change_of(user=world.owner, device=world.lock, now=utc(2027, 3, 30, 8)) is None
        world.alice.is_active = False
        world.alice.save()
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 10)) is None

    def test_one_query_for_the_access_and_its_next_change(self, world, django_assert_num_queries):
        grant(world, schedule=TUESDAY_MORNINGS)
        grant(world, level=Level.VIEW, group=world.group, device=None)
        with django_assert_num_queries(1):
            access, change = access_and_next_change(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8))
        assert (access.level, change) == (Level.CONTROL, utc(2027, 3, 30, 10))
        with django_assert_num_queries(1):
            next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 10))


class TestSeveralShares:
    def test_a_higher_window_over_a_lower_share(self, world):
        grant(world, level=Level.VIEW, group=world.group, device=None)
        grant(world, level=Level.CONTROL, device=world.lamp, schedule=TUESDAY_MORNINGS)
        before, change = access_and_next_change(user=world.alice, device=world.lamp, now=utc(2027, 3, 30, 6))
        assert (before.level, before.schedule, change) == (Level.VIEW, None, utc(2027, 3, 30, 7))
        during, change = access_and_next_change(user=world.alice, device=world.lamp, now=utc(2027, 3, 30, 7))
        assert (during.level, change) == (Level.CONTROL, utc(2027, 3, 30, 10))

    def test_edges_that_change_nothing_are_passed_over(self, world):
        # A manage share at any hour, ending on 2 April, over a Tuesday-morning view share:
        # the windows of 30 March change nothing; the end of the manage share does.
        grant(world, level=Level.MANAGE, device=world.lamp, expires_at=utc(2027, 4, 2, 12))
        grant(world, level=Level.VIEW, schedule=TUESDAY_MORNINGS, group=world.group, device=None)
        access, change = access_and_next_change(user=world.alice, device=world.lamp, now=utc(2027, 3, 29, 12))
        assert (access.level, change) == (Level.MANAGE, utc(2027, 4, 2, 12))

    def test_an_expiry_inside_the_window_ends_it_early(self, world):
        grant(world, schedule=TUESDAY_MORNINGS, expires_at=utc(2027, 3, 30, 8, 30))
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8)) == utc(2027, 3, 30, 8, 30)
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8, 30)) is None

    def test_a_start_weeks_ahead_then_the_first_window_after_it(self, world):
        # Starts Wednesday 21 April: the first Tuesday morning after that is 27 April.
        grant(world, schedule=TUESDAY_MORNINGS, starts_at=utc(2027, 4, 21))
        assert next_change_of(user=world.alice, device=world.lock, now=utc(2027, 3, 30, 8)) == utc(
            2027, 4, 27, 7)

    def test_a_start_or_end_past_the_look_ahead_is_still_found(self, world):
        # Eight days of Tuesday windows under a manage share change nothing; the
        # search then jumps to the manage share's end, a month away.
        grant(world, level=Level.MANAGE, device=world.lamp, expires_at=utc(2027, 4, 30))
        grant(world, level=Level.VIEW, schedule=TUESDAY_MORNINGS, group=world.group, device=None)
        access, change = access_and_next_change(user=world.alice, device=world.lamp, now=utc(2027, 3, 29, 12))
        assert (access.level, change) == (Level.MANAGE, utc(2027, 4, 30))

    def test_after_a_far_end_that_changes_nothing_the_hours_are_followed_again(self, world):
        # The manage share at any hour ends on Friday 30 April at noon (UTC), while
        # a Friday-only manage share still holds; the level drops at Saturday midnight.
        grant(world, level=Level.MANAGE, device=world.lamp, expires_at=utc(2027, 4, 30, 12))
        grant(world, level=Level.MANAGE, group=world.group, device=None,
              schedule={"timezone": "UTC", "windows": [{"days": ["fri"], "start": "00:00", "end": "24:00"}]})
        assert next_change_of(user=world.alice, device=world.lamp, now=utc(2027, 3, 29, 12)) == utc(2027, 5, 1)

    def test_without_any_start_or_end_ahead_the_answer_is_none(self, world):
        grant(world, level=Level.MANAGE, device=world.lamp)
        grant(world, level=Level.VIEW, schedule=TUESDAY_MORNINGS, group=world.group, device=None)
        assert next_change_of(user=world.alice, device=world.lamp, now=utc(2027, 3, 29, 12)) is None
        # Without a schedule the end is found however far it is.
        grant(world, level=Level.MANAGE, expires_at=utc(2027, 6, 30), user=world.bob)
        assert next_change_of(user=world.bob, device=world.lock, now=utc(2027, 3, 29)) == utc(
            2027, 6, 30)


def hours(zone, day, start, end):
    return {"timezone": zone, "windows": [{"days": [day], "start": start, "end": end}]}


class TestDaylightSaving:
    """Wall clock rules (lambda_bridge/schedule.py's docstring): a window
    starting in a spring gap starts when the clocks jump; in an autumn
    overlap a wall time inside a window is inside both times."""

    @pytest.mark.parametrize("zone, window, asked_at, changes", [
        # London, 28 March: 01:00 GMT becomes 02:00 BST. 01:30-03:00 starts at the jump (01:00 UTC)
        # and ends at 03:00 BST (02:00 UTC).
        ("Europe/London", ("sun", "01:30", "03:00"), utc(2027, 3, 27, 12), [utc(2027, 3, 28, 1), utc(2027, 3, 28, 2)]),
        # 01:00-02:00 lies wholly in the gap: nothing that day; next Sunday 01:00 BST (00:00 UTC).
        ("Europe/London", ("sun", "01:00", "02:00"), utc(2027, 3, 27, 12), [utc(2027, 4, 4), utc(2027, 4, 4, 1)]),
        # London, 31 October: 02:00 BST becomes 01:00 GMT; 01:00-02:00 happens twice, two hours in a row.
        ("Europe/London", ("sun", "01:00", "02:00"), utc(2027, 10, 30, 12),
         [utc(2027, 10, 31, 0), utc(2027, 10, 31, 2)]),
        # New York, 14 March: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:30-04:00 runs 03:00-04:00 EDT.
        ("America/New_York", ("sun", "02:30", "04:00"), utc(2027, 3, 13, 12),
         [utc(2027, 3, 14, 7), utc(2027, 3, 14, 8)]),
        # New York, 7 November: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:00-01:30 happens twice, apart.
        ("America/New_York", ("sun", "01:00", "01:30"), utc(2027, 11, 6, 12),
         [utc(2027, 11, 7, 5), utc(2027, 11, 7, 5, 30), utc(2027, 11, 7, 6), utc(2027, 11, 7, 6, 30)]),
        # Lord Howe, 3 October: 02:00 (+10:30) becomes 02:30 (+11:00) at 15:30 UTC the day before;
        # 02:00-03:00 lasts the half hour from the jump.
        ("Australia/Lord_Howe", ("sun", "02:00", "03:00"), utc(2027, 10, 2),
         [utc(2027, 10, 2, 15, 30), utc(2027, 10, 2, 16)]),
        # Lord Howe, 4 April: 02:00 (+11:00) becomes 01:30 (+10:30) at 15:00 UTC the day before;
        # 01:00-02:00 lasts from 01:00 (+11:00) to 02:00 (+10:30): 90 minutes.
        ("Australia/Lord_Howe", ("sun", "01:00", "02:00"), utc(2027, 4, 3),
         [utc(2027, 4, 3, 14), utc(2027, 4, 3, 15, 30)]),
    ])
    def test_the_changes_around_a_transition(self, world, zone, window, asked_at, changes):
        grant(world, schedule=hours(zone, *window))
        found, at = [], asked_at
        for _ in changes:
            at = next_change_of(user=world.alice, device=world.lock, now=at)
            found.append(at)
        assert found == changes
        # In force exactly between an opening and the closing after it.
        for opened, closed in zip(changes[::2], changes[1::2], strict=True):
            assert level_at(world, opened) == Level.CONTROL
            assert level_at(world, closed - timedelta(seconds=1)) == Level.CONTROL
            assert level_at(world, closed) is None
