"""Weekly schedules: when a scheduled grant is in force, and when that next
changes (docs/sharing.md#weekly-schedules).

An instant is inside a schedule when the wall clock of the schedule's zone,
at that instant, reads a weekday and minute that one of its windows covers.
Daylight-saving changes then need no rule of their own: a wall time that the
clocks skip (the spring gap) never happens, so a window starting inside the
gap starts when the clocks jump past its start; a wall time that happens
twice (the autumn overlap) is inside the window both times.

Stdlib only (zoneinfo), because the Lambda ships this module as it is.
Zones come from the pinned `tzdata` package, never from the host's
database, so that Django and the Lambda read the same rules whatever their
hosts hold (docs/decisions/0008-the-lambda-ships-its-time-zones.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache, lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MINUTES_PER_DAY = 24 * 60
# A weekly schedule repeats within 7 days; 8 covers a window crossing midnight.
HORIZON_DAYS = 8


@cache
def zone_names() -> frozenset[str]:
    """Every zone the pinned tzdata package defines; none without it."""
    try:
        return frozenset(resources.files("tzdata").joinpath("zones").read_text(encoding="ascii").split())
    except ModuleNotFoundError:
        return frozenset()


@cache
def zone(name: str) -> ZoneInfo:
    """The zone `name` as the pinned tzdata package defines it;
    ZoneInfoNotFoundError (a KeyError) for any other name."""
    if name not in zone_names():
        raise ZoneInfoNotFoundError(f"No time zone found with key {name}")
    with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as data:
        return ZoneInfo.from_file(data, key=name)


@dataclass(frozen=True)
class Window:
    """On `days` (0 = Monday … 6 = Sunday, the day it starts), from `start`
    to `end`, in minutes after local midnight. `end` at or before `start`
    crosses midnight into the next day; 1,440 is the end of the day."""

    days: frozenset[int]
    start: int
    end: int

    def __post_init__(self):
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError("a window's days are 0 (Monday) to 6 (Sunday), at least one")
        if not 0 <= self.start < MINUTES_PER_DAY or not 0 < self.end <= MINUTES_PER_DAY:
            raise ValueError("a window starts at 0..1439 and ends at 1..1440 minutes after midnight")

    def covers(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or ((weekday - 1) % 7 in self.days
                                                                    and minute < self.end)


@dataclass(frozen=True)
class Schedule:
    zone: str
    windows: tuple[Window, ...]
    # The last instant asked and its answer, one slot each: a decision asks
    # one instant of a schedule once per entry carrying it (the entries read
    # from one item share the object), and next_change is costly
    # (docs/authorizer.md#schedules). A tuple is replaced whole, so a reader
    # in another thread sees an old pair or a new one, never half of each.
    _last_active: tuple = field(default=(None, False), init=False, repr=False, compare=False)
    _last_change: tuple = field(default=(None, None), init=False, repr=False, compare=False)

    def active(self, at: int) -> bool:
        """Whether the schedule is in force at epoch second `at`."""
        asked, answer = self._last_active
        if asked != at:
            answer = self._in_force(at)
            object.__setattr__(self, "_last_active", (at, answer))
        return answer

    def next_change(self, at: int) -> int | None:
        """The first epoch second after `at` at which `active` answers
        otherwise; None when it never changes (always or never in force)."""
        asked, answer = self._last_change
        if asked != at:
            now = self._in_force(at)
            try:
                moments = self._moments(at)
            except (OverflowError, ValueError):  # the horizon runs past year 9999: nothing to find there
                moments = []
            answer = next((moment for moment in moments if self._in_force(moment) != now), None)
            object.__setattr__(self, "_last_change", (at, answer))
        return answer

    def ended_between(self, after: int, until: int) -> bool:
        """Whether the schedule stopped being in force at some second in
        (`after`, `until`]: what the sweep of window ends asks. It changes
        only at whole minutes (windows are whole minutes of wall time, zone
        offsets whole minutes), so a span shorter than a minute holds one
        change at most and its two ends say all; a longer one walks the changes."""
        if until - after < 60:
            return self.active(after) and not self.active(until)
        in_force, at = self.active(after), after
        while (change := self.next_change(at)) is not None and change <= until:
            if in_force:
                return True
            in_force, at = not in_force, change
        return False

    def _in_force(self, at: int) -> bool:
        try:
            local = datetime.fromtimestamp(at, zone(self.zone))
        except (OverflowError, ValueError):  # a wall clock past year 9999: no window is there
            return False
        minute = local.hour * 60 + local.minute
        return any(window.covers(local.weekday(), minute) for window in self.windows)

    def _moments(self, at: int) -> list[int]:
        """Every instant after `at`, within the horizon, where the answer may
        change: each window edge's wall time on each day (both readings of
        an ambiguous one) and each change of the zone's UTC offset. Between
        two of them the wall clock crosses no edge, so the answer holds."""
        zone_info = zone(self.zone)
        first = datetime.fromtimestamp(at, zone_info).date() - timedelta(days=1)
        edges = {minute % MINUTES_PER_DAY for window in self.windows for minute in (window.start, window.end)}
        seconds = [minute * 60 for minute in edges]
        moments = set()
        for day in _days(self.zone, first):
            moments.update(day.changes)
            if day.plain:
                moments.update([day.midnight + second for second in seconds])
                continue
            for minute in edges:
                wall = datetime.combine(day.date, time(minute // 60, minute % 60))
                moments.update(int(wall.replace(tzinfo=zone_info, fold=fold).timestamp()) for fold in (0, 1))
        return sorted(moment for moment in moments if moment > at)


@dataclass(frozen=True)
class _Day:
    date: date
    midnight: int             # epoch second of the day's first wall-clock midnight
    changes: tuple[int, ...]  # offset changes within 48 h of it
    # No offset change from the previous midnight to 48 h after this one: each
    # wall time of the day happens once, at its minutes after midnight.
    plain: bool = False


@lru_cache(maxsize=256)
def _days(zone_name: str, first: date) -> tuple[_Day, ...]:
    """The horizon's days from `first`, as `_moments` needs them, kept across
    decisions: a warm Lambda asks about the same few zones and days over and
    over, and finding the offset changes is most of the cost
    (bench/schedules_bench.py)."""
    zone_info = zone(zone_name)
    days = []
    previous = _day(zone_info, first - timedelta(days=1))
    for n in range(HORIZON_DAYS + 2):
        day = _day(zone_info, first + timedelta(days=n))
        days.append(_Day(day.date, day.midnight, day.changes, plain=not previous.changes and not day.changes))
        previous = day
    return tuple(days)


def _day(zone_info: ZoneInfo, day: date) -> _Day:
    low = int(datetime.combine(day, time(), zone_info).timestamp())
    return _Day(day, low, tuple(_offset_changes(zone_info, low)))


def _offset_changes(zone_info: ZoneInfo, low: int) -> list[int]:
    """The instants in the 48 h from `low` at which the zone's UTC offset
    changes (found by bisection: at most a couple a year)."""
    high = low + 2 * MINUTES_PER_DAY * 60  # past the next midnight, whatever the day's length
    if _offset(zone_info, low) == _offset(zone_info, high):
        return []
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(zone_info, middle) == _offset(zone_info, low):
            low = middle
        else:
            high = middle
    return [high]


def _offset(zone_info: ZoneInfo, at: int) -> timedelta:
    return datetime.fromtimestamp(at, zone_info).utcoffset()
