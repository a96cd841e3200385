"""Weekly schedules through the pipeline (docs/sharing.md#weekly-schedules):
the compiler puts each share's schedule on its entries and keeps what no
other entry covers; the sweep reports each window's end, once, so that the
grantee's live connections end with it (docs/live-access.md#exact-ends)."""
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from authz.live import receipts, sweep
from authz.models import SessionCut, ShareSweep
from authz.snapshots.compiler import LEVEL_CODES, Principal, compile_snapshots
from devices import schedules
from devices.models import Level
from devices.selectors import effective_access
from lambda_bridge import snapshot
from lambda_bridge.schedule import Schedule, Window
from tests.factories import DeviceFactory, ShareFactory, member
from tests.support.schedules import epoch, wall, weekly

pytestmark = pytest.mark.django_db

BRUSSELS = "Europe/Brussels"
# Tuesdays 09:00-12:00 in Brussels, written two ways: as a share stores it
# and as the authorizer reads it (Monday is day 0).
TUESDAY_MORNINGS = weekly(BRUSSELS, ("tue", "09:00", "12:00"))
TUESDAY_MORNINGS_READ = Schedule(BRUSSELS, (Window(frozenset({1}), 9 * 60, 12 * 60),))
EVENINGS = weekly("America/New_York", ("mon tue wed thu fri", "18:00", "23:00"))
EVENINGS_READ = Schedule("America/New_York", (Window(frozenset(range(5)), 18 * 60, 23 * 60),))
# Tuesday 30 March 2027, two days after Brussels moved to summer time.
IN_WINDOW = wall(BRUSSELS, 2027, 3, 30, 10, 0)
OUT_OF_WINDOW = wall(BRUSSELS, 2027, 3, 30, 13, 0)


def granted(world, grantee, level, schedule=None, *, device=None, group=None, **terms):
    """A share of the lock (or `device`, or `group`) made directly, schedule
    and all: the compiler and the sweep read rows; how a service writes
    them is the domain's."""
    if group is None:
        device = device or world.lock
    return ShareFactory(tenant=world.tenant, grantee=grantee, created_by=world.owner, level=level,
                        schedule=schedule, device=device, group=group, **terms)


def user_snapshot(world, user, now):
    key = (world.tenant.pk, snapshot.USER, str(user.pk))
    return compile_snapshots([Principal(*key, version=1)], now=now)[key]


def entries_of(world, user, now=IN_WINDOW):
    return sorted(((e.thing, e.level, e.group, e.schedule) for e in user_snapshot(world, user, now).entries),
                  key=lambda e: (e[0], e[1], e[3] is None))


def django_levels(world, user, moment) -> dict[str, int]:
    levels = {}
    for device in (world.lamp, world.lock):
        access = effective_access(user=user, device=device, now=moment)
        if access is not None:
            levels[device.thing_name] = LEVEL_CODES[access.level]
    return levels


# --- the compiler -------------------------------------------------------------------------


def test_direct_and_group_shares_carry_their_schedules(world):
    granted(world, world.alice, Level.CONTROL, TUESDAY_MORNINGS, device=world.lock)
    granted(world, world.alice, Level.VIEW, EVENINGS, group=world.group)
    assert entries_of(world, world.alice) == sorted([
        (world.lock.thing_name, snapshot.CONTROL, None, TUESDAY_MORNINGS_READ),
        (world.lamp.thing_name, snapshot.VIEW, world.group.pk, EVENINGS_READ),
    ], key=lambda e: e[0])


def test_a_scheduled_entry_beside_a_weaker_unscheduled_one_keeps_both(world):
    granted(world, world.alice, Level.VIEW, device=world.lamp)
    granted(world, world.alice, Level.CONTROL, TUESDAY_MORNINGS, group=world.group)
    assert entries_of(world, world.alice) == [
        (world.lamp.thing_name, snapshot.VIEW, world.group.pk, None),
        (world.lamp.thing_name, snapshot.CONTROL, world.group.pk, TUESDAY_MORNINGS_READ),
    ]
    snap = user_snapshot(world, world.alice, IN_WINDOW)
    for moment, level in ((IN_WINDOW, snapshot.CONTROL), (OUT_OF_WINDOW, snapshot.VIEW)):
        assert snap.levels_at(epoch(moment)) == {world.lamp.thing_name: level} == django_levels(
            world, world.alice, moment)


@pytest.mark.parametrize("unscheduled", [Level.CONTROL, Level.MANAGE])
def test_a_scheduled_entry_an_unscheduled_one_of_equal_or_higher_level_covers_is_dropped(world, unscheduled):
    granted(world, world.alice, Level.CONTROL, TUESDAY_MORNINGS, device=world.lamp)
    granted(world, world.alice, unscheduled, group=world.group)
    assert entries_of(world, world.alice) == [
        (world.lamp.thing_name, LEVEL_CODES[unscheduled], world.group.pk, None)]


def test_a_schedule_that_cannot_be_read_grants_nothing_and_fails_no_one_else(world, caplog):
    # Its zone has gone from the tz database since it was written: that grant
    # is left out of the snapshot (less access, never more), and the same
    # compile still gives everyone else, and the grantee's other grants, theirs.
    lost = granted(world, world.alice, Level.CONTROL, {**TUESDAY_MORNINGS, "timezone": "Europe/Atlantis"})
    granted(world, world.alice, Level.VIEW, device=world.lamp)
    granted(world, world.bob, Level.VIEW, TUESDAY_MORNINGS)
    keys = [(world.tenant.pk, snapshot.USER, str(user.pk)) for user in (world.alice, world.bob)]
    compiled = compile_snapshots([Principal(*key, version=1) for key in keys], now=IN_WINDOW)
    alice, bob = (compiled[key] for key in keys)
    assert [(e.thing, e.level) for e in alice.entries] == [(world.lamp.thing_name, snapshot.VIEW)]
    assert [(e.thing, e.schedule) for e in bob.entries] == [(world.lock.thing_name, TUESDAY_MORNINGS_READ)]
    assert f"Share {lost.pk} has a stored schedule that no longer reads (zone 'Europe/Atlantis')" in caplog.text


def test_two_shares_with_different_schedules_on_one_device_both_stay(world):
    granted(world, world.alice, Level.CONTROL, TUESDAY_MORNINGS, device=world.lamp)
    granted(world, world.alice, Level.CONTROL, EVENINGS, group=world.group)
    entries = entries_of(world, world.alice)
    assert len(entries) == 2 and {e[3] for e in entries} == {TUESDAY_MORNINGS_READ, EVENINGS_READ}
    snap = user_snapshot(world, world.alice, IN_WINDOW)
    evening = wall("America/New_York", 2027, 3, 30, 19, 0)
    for moment, levels in ((IN_WINDOW, {world.lamp.thing_name: snapshot.CONTROL}),
                           (evening, {world.lamp.thing_name: snapshot.CONTROL}),
                           (OUT_OF_WINDOW, {})):
        assert snap.levels_at(epoch(moment)) == levels == django_levels(world, world.alice, moment)


def test_snapshots_agree_with_effective_access_every_half_hour_around_a_dst_change(world):
    # Brussels moves to summer time on Sunday 28 March 2027 at 01:00 UTC.
    nights = weekly(BRUSSELS, ("sun", "01:30", "03:30"), ("sat sun", "23:00", "01:00"))
    granted(world, world.alice, Level.CONTROL, nights, device=world.lock)
    granted(world, world.alice, Level.VIEW, device=world.lamp)
    granted(world, world.alice, Level.MANAGE, weekly("Europe/London", ("sat sun", "00:30", "02:30")), group=world.group,
            expires_at=datetime(2027, 3, 28, 1, 15, tzinfo=UTC))
    granted(world, world.bob, Level.VIEW, EVENINGS, device=world.lock)
    start = datetime(2027, 3, 27, 0, 0, tzinfo=UTC)
    snaps = {user: user_snapshot(world, user, start) for user in (world.alice, world.bob)}
    seen = set()
    for step in range(0, 2 * 48):
        moment = start + timedelta(minutes=30 * step)
        for user, snap in snaps.items():
            levels = snap.levels_at(epoch(moment))
            assert levels == django_levels(world, user, moment), (user.email, moment)
            seen.add(tuple(sorted(levels.items())))
    assert len(seen) >= 4  # the walk went through windows, not only outside them


def compile_queries(principals, now) -> int:
    with CaptureQueriesContext(connection) as ctx:
        compile_snapshots(principals, now=now)
    return len(ctx)


def test_schedules_cost_no_query(world):
    one = [Principal(world.tenant.pk, snapshot.USER, str(world.alice.pk), 1)]
    granted(world, world.alice, Level.VIEW)
    plain = compile_queries(one, IN_WINDOW)
    people = [member(world.tenant) for _ in range(5)]
    for person in people:
        granted(world, person, Level.CONTROL, TUESDAY_MORNINGS, group=world.group)
        granted(world, person, Level.VIEW, EVENINGS, device=world.lock)
    for _ in range(20):
        DeviceFactory(tenant=world.tenant, owner=world.owner, device_type=world.type, group=world.group)
    granted(world, world.alice, Level.MANAGE, EVENINGS, group=world.group)
    many = one + [Principal(world.tenant.pk, snapshot.USER, str(p.pk), 1) for p in people]
    snaps = compile_snapshots(many, now=IN_WINDOW)
    assert sum(e.schedule is not None for s in snaps.values() for e in s.entries) == 6 * 21 + 5
    assert compile_queries(many, IN_WINDOW) == plain


# --- the sweep of window ends ---------------------------------------------------------------

WINDOW_END = wall(BRUSSELS, 2027, 3, 30, 12, 0)  # TUESDAY_MORNINGS' end, in summer time


def swept_from(moment: datetime) -> None:
    """Start the sweep's mark at `moment`, as if the previous sweep ran then."""
    ShareSweep.objects.update_or_create(pk=ShareSweep.SINGLETON, defaults={"swept_until": moment})


def cut_version(world, user) -> int:
    row = SessionCut.objects.filter(tenant=world.tenant, kind=snapshot.USER, principal=str(user.pk)).first()
    return row.desired_version if row else 0


def reporting_sweeps(start: datetime, stop: datetime, every: timedelta) -> list[datetime]:
    """Sweep from `start` to `stop`, one sweep every `every`; the moments of
    the sweeps that reported something."""
    swept_from(start)
    reported, moment = [], start
    while moment < stop:
        moment += every
        if sweep.sweep_ended_shares(now=moment):
            reported.append(moment)
    return reported


def sweep_after(ends: list[datetime], start: datetime, every: timedelta) -> list[datetime]:
    """The sweep whose span (previous sweep, this one] holds each of `ends`."""
    return [start + every * -(-(end - start) // every) for end in ends]


def test_a_window_end_between_two_sweeps_is_reported_once_as_the_platform(world, other):
    granted(world, world.alice, Level.CONTROL, TUESDAY_MORNINGS)
    ShareFactory(tenant=other.tenant, device=other.lock, grantee=other.alice, created_by=other.owner,
                 schedule=TUESDAY_MORNINGS)
    granted(world, world.bob, Level.CONTROL, weekly(BRUSSELS, ("tue", "09:00", "12:01")))  # ends a minute later
    granted(world, world.carol, Level.CONTROL, TUESDAY_MORNINGS, revoked_at=WINDOW_END - timedelta(hours=1))

    swept_from(WINDOW_END - timedelta(seconds=7))
    assert sweep.sweep_ended_shares(now=WINDOW_END - timedelta(seconds=2)) == 0
    with receipts.collecting() as found:
        assert sweep.sweep_ended_shares(now=WINDOW_END + timedelta(seconds=3)) == 2
    assert sorted(r.tenant_id for r in found) == sorted([world.tenant.pk, other.tenant.pk])
    assert all(r.actor_id is None for r in found)  # the platform, not a person, ended them
    versions = cut_version(world, world.alice), cut_version(other, other.alice)
    assert min(versions) >= 1 and cut_version(world, world.bob) == cut_version(world, world.carol) == 0

    for later in (8, 13, 30, 55):
        assert sweep.sweep_ended_shares(now=WINDOW_END + timedelta(seconds=later)) == 0
    assert sweep.sweep_ended_shares(now=WINDOW_END + timedelta(seconds=63)) == 1  # bob's, a minute later
    assert (cut_version(world, world.alice), cut_version(other, other.alice)) == versions
    assert cut_version(world, world.carol) == 0  # revoked: nothing left to end


SECOND = timedelta(seconds=1)


@pytest.mark.parametrize("starts, expires, reported", [
    (None, None, True),
    (WINDOW_END - 30 * SECOND, None, True),          # started in the window's last half minute
    (WINDOW_END - SECOND / 2, None, True),           # ... or its last half second
    (WINDOW_END, None, False),                       # starts as the window ends: never in force
    (WINDOW_END + 30 * SECOND, None, False),         # the window ended before the share began
    (None, WINDOW_END - 30 * SECOND, False),         # the share ended first (reported then)
    (None, WINDOW_END - SECOND / 2, False),
    (None, WINDOW_END + 30 * SECOND, True),
    (None, WINDOW_END, True),                        # both end at once: reported, once
])
def test_only_a_window_end_inside_the_shares_own_start_and_expiry_is_reported(world, starts, expires, reported):
    granted(world, world.alice, Level.VIEW, TUESDAY_MORNINGS, starts_at=starts, expires_at=expires)
    swept_from(WINDOW_END - SECOND / 4)
    assert sweep.sweep_ended_shares(now=WINDOW_END + 4 * SECOND) == int(reported)
    assert (cut_version(world, world.alice) > 0) == reported


LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"  # a 30-minute shift
NEW_YORK = "America/New_York"


@pytest.mark.parametrize("every", [timedelta(seconds=50), timedelta(minutes=25)], ids=["beat", "after-pauses"])
@pytest.mark.parametrize("zone, window, start, ends", [
    # London, 28 March 2027: 01:00 GMT becomes 02:00 BST, and 01:30 never
    # happens: the window ends when the clocks jump, not an hour later.
    (LONDON, ("sun", "00:30", "01:30"), datetime(2027, 3, 28, 0, 0, tzinfo=UTC),
     [datetime(2027, 3, 28, 1, 0, tzinfo=UTC)]),
    # London, 31 October 2027: 02:00 BST becomes 01:00 GMT, so 01:00-01:30
    # happens twice, and so does the window's end.
    (LONDON, ("sun", "01:00", "01:30"), datetime(2027, 10, 30, 23, 30, tzinfo=UTC),
     [wall(LONDON, 2027, 10, 31, 1, 30), wall(LONDON, 2027, 10, 31, 1, 30, fold=1)]),
    # Lord Howe, 4 April 2027: 02:00 (+11) becomes 01:30 (+10:30).
    (LORD_HOWE, ("sun", "01:00", "01:45"), datetime(2027, 4, 3, 13, 30, tzinfo=UTC),
     [wall(LORD_HOWE, 2027, 4, 4, 1, 45), wall(LORD_HOWE, 2027, 4, 4, 1, 45, fold=1)]),
    # New York, 14 March 2027: 02:00 EST becomes 03:00 EDT; a window across
    # midnight on Saturday ends at 02:30, which never happens, so at the jump.
    (NEW_YORK, ("sat", "22:00", "02:30"), datetime(2027, 3, 14, 6, 0, tzinfo=UTC),
     [datetime(2027, 3, 14, 7, 0, tzinfo=UTC)]),
])
def test_window_ends_on_days_the_clocks_change_are_reported_once_each(world, zone, window, start, ends, every):
    granted(world, world.alice, Level.CONTROL, weekly(zone, window))
    stop = max(ends) + timedelta(minutes=30)
    assert start < min(ends)
    assert reporting_sweeps(start, stop, every) == sweep_after(ends, start, every)


def test_after_a_long_pause_the_sweep_reports_the_ends_within_its_lookback_and_not_before(world, settings):
    now = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)  # a Tuesday
    assert settings.SNAPSHOT_SWEEP_LOOKBACK_SECONDS == 3600
    granted(world, world.alice, Level.VIEW, weekly("UTC", ("tue", "10:00", "10:59")))  # ended 61 minutes ago
    granted(world, world.bob, Level.VIEW, weekly("UTC", ("tue", "10:00", "11:01")))    # ended 59 minutes ago
    granted(world, world.carol, Level.VIEW, weekly("UTC", ("tue", "10:00", "13:00")))  # has not ended
    swept_from(now - timedelta(days=1))
    assert sweep.sweep_ended_shares(now=now) == 1
    assert {r.principal for r in SessionCut.objects.all()} == {str(world.bob.pk)}


def test_a_sweep_in_which_no_minute_turns_reads_no_share_and_one_that_does_reads_one_query_more(world):
    def share_queries(since, now) -> int:
        swept_from(since)
        with CaptureQueriesContext(connection) as ctx:
            sweep.sweep_ended_shares(now=now)
        return sum('"devices_share"' in q["sql"] for q in ctx.captured_queries)

    for person in (world.alice, world.bob, world.carol):
        granted(world, person, Level.VIEW, EVENINGS, group=world.group)
    minute = datetime(2027, 6, 15, 12, 0, tzinfo=UTC)
    assert share_queries(minute + SECOND, minute + 6 * SECOND) == 1  # the expiries alone
    assert share_queries(minute - 3 * SECOND, minute + 2 * SECOND) == 2


def test_every_zone_a_schedule_may_use_shifts_by_whole_minutes_at_whole_minutes():
    """The sweep judges a span under a minute by its two ends alone. That is
    exact because a schedule, whose windows are whole minutes of wall time,
    then changes only at whole UTC minutes: no two changes are less than a
    minute apart."""
    def offset(zone, at: int) -> int:
        return int(datetime.fromtimestamp(at, zone).utcoffset().total_seconds())

    day, first = 86400, int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    shifts = 0
    for name in schedules.time_zones():
        zone = ZoneInfo(name)
        for low in range(first, first + 365 * day, day):
            high = low + day
            assert offset(zone, low) % 60 == 0, name
            if offset(zone, low) == offset(zone, high):
                continue
            while high - low > 1:  # the second the offset changes
                middle = (low + high) // 2
                low, high = (middle, high) if offset(zone, middle) == offset(zone, low) else (low, middle)
            assert high % 60 == 0 and offset(zone, high) % 60 == 0, (name, high)
            shifts += 1
    assert shifts > 300  # the zones with daylight saving were walked through their changes


def test_a_schedule_that_cannot_be_read_is_logged_and_stops_no_other_end(world, caplog):
    # Checked when written; here its zone has gone from the tz database since.
    lost = granted(world, world.alice, Level.VIEW, {**TUESDAY_MORNINGS, "timezone": "Europe/Atlantis"})
    granted(world, world.bob, Level.VIEW, TUESDAY_MORNINGS)
    granted(world, world.carol, Level.VIEW, expires_at=WINDOW_END)
    swept_from(WINDOW_END - 2 * SECOND)
    assert sweep.sweep_ended_shares(now=WINDOW_END + 3 * SECOND) == 2
    assert {r.principal for r in SessionCut.objects.all()} == {str(world.bob.pk), str(world.carol.pk)}
    assert f"Share {lost.pk} has a stored schedule that no longer reads (zone 'Europe/Atlantis')" in caplog.text
