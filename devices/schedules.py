"""A grant's weekly schedule as the API, the console and the database hold it,
and the one ``lambda_bridge.schedule.Schedule`` every decision reads
(docs/sharing.md#weekly-schedules).

The JSON form, stored as it is on a share or an invitation::

    {"timezone": "Europe/Brussels",
     "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}

`days` are the days a window starts on; an `end` before its `start` crosses
midnight into the next day, and "24:00" (or "00:00") is the end of the day.
"""
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

# The one module of the Lambda that devices reads, besides the vocabulary:
# Django and the authorizer must decide "in force now?" by the same code.
from lambda_bridge.schedule import HORIZON_DAYS, MINUTES_PER_DAY, Schedule, Window, zone_names

from .errors import DomainError, ErrorCode

log = logging.getLogger(__name__)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Enough for a different window every day and a split shift on each; every
# window costs bytes in each grantee's snapshot.
MAX_WINDOWS = 14
WEEK = 7 * MINUTES_PER_DAY
# ASCII digits only: str.isdigit() also takes '²', which int() then refuses.
_HHMM = re.compile(r"[0-9]{2}:[0-9]{2}\Z")


@cache
def time_zones() -> frozenset[str]:
    """The IANA zone names a schedule may use: those of the pinned tzdata
    package both sides read, without legacy names such as "EST5EDT"."""
    return frozenset(name for name in zone_names() if "/" in name or name == "UTC")


def _invalid(message: str) -> DomainError:
    return DomainError(ErrorCode.SCHEDULE_INVALID, message, field="schedule")


def _minute(text, *, name: str, end: bool) -> int:
    if not isinstance(text, str) or not _HHMM.fullmatch(text):
        raise _invalid(f"A window's {name} is a time written HH:MM, like 09:30.")
    hours, minutes = int(text[:2]), int(text[3:])
    value = hours * 60 + minutes
    if minutes >= 60 or value > MINUTES_PER_DAY or (value == MINUTES_PER_DAY and not end):
        raise _invalid(f"A window's {name} must be between 00:00 and {'24:00' if end else '23:59'}.")
    return value


def _window(data) -> Window:
    if not isinstance(data, dict) or set(data) != {"days", "start", "end"}:
        raise _invalid("Each window has exactly days, start and end.")
    days = data["days"]
    if not isinstance(days, list) or not days or not all(d in DAYS for d in days) or len(set(days)) != len(days):
        raise _invalid(f"A window's days are a list of distinct names from {', '.join(DAYS)}.")
    start = _minute(data["start"], name="start", end=False)
    end = _minute(data["end"], name="end", end=True)
    if start == end:
        raise _invalid("A window cannot start and end at the same time; for a whole day write 00:00 to 24:00.")
    # An end of 00:00 is the coming midnight, stored as 24:00.
    return Window(days=frozenset(DAYS.index(d) for d in days), start=start, end=end or MINUTES_PER_DAY)


def parse(data) -> Schedule | None:
    """The schedule `data` (the JSON form, or None) describes; DomainError
    with code ``schedule_invalid`` or ``time_zone_unknown`` otherwise."""
    if data is None:
        return None
    if not isinstance(data, dict) or set(data) != {"timezone", "windows"}:
        raise _invalid("A schedule has exactly timezone and windows.")
    zone, windows = data["timezone"], data["windows"]
    if not isinstance(zone, str) or zone not in time_zones():
        raise DomainError(ErrorCode.TIME_ZONE_UNKNOWN, "The time zone must be an IANA name such as Europe/Brussels.",
                          field="schedule")
    if not isinstance(windows, list) or not 1 <= len(windows) <= MAX_WINDOWS:
        raise _invalid(f"A schedule has 1 to {MAX_WINDOWS} windows.")
    return Schedule(zone=zone, windows=_canonical(_window(w) for w in windows))


def _canonical(windows) -> tuple[Window, ...]:
    """`windows` in one order, so that the same hours sent in another order
    make an equal schedule (an identical repeat returns the existing share)
    and are stored alike."""
    return tuple(sorted(windows, key=lambda w: (min(w.days), w.start, w.end, sorted(w.days))))


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def to_json(schedule: Schedule | None) -> dict | None:
    """The JSON form of `schedule`, days in week order."""
    if schedule is None:
        return None
    if isinstance(schedule, Unreadable):
        return schedule.raw
    return {"timezone": schedule.zone, "windows": [
        {"days": [DAYS[d] for d in sorted(w.days)], "start": _hhmm(w.start), "end": _hhmm(w.end)}
        for w in schedule.windows
    ]}


@dataclass(frozen=True)
class Unreadable(Schedule):
    """A stored schedule that no longer parses (its zone left the pinned
    tzdata): never in force, read on the UTC clock with no window, and
    written back as it was stored (`to_json`) until someone replaces it."""

    raw: object = field(default=None, compare=False)

    @property
    def raw_zone(self) -> str:
        return str(self.raw.get("timezone")) if isinstance(self.raw, dict) else "?"


def of(grant) -> Schedule | None:
    """The schedule stored on a share or an invitation."""
    return read(grant.schedule, holder=f"{type(grant).__name__} {grant.pk}")


def read(stored, *, holder: str) -> Schedule | None:
    """A stored JSON form (checked when written) as a Schedule. One that no
    longer parses (its zone left the pinned tzdata) is Unreadable, never in
    force, rather than failing every read, push and sweep that meets it
    (docs/sharing.md#a-stored-schedule-that-no-longer-reads); `holder`
    names the grant in the log."""
    try:
        return parse(stored)
    except DomainError:
        unreadable = Unreadable(zone="UTC", windows=(), raw=stored)
        _log_unreadable(holder, unreadable.raw_zone)
        return unreadable


@cache
def _log_unreadable(holder: str, zone: str) -> None:
    # Once per grant and process: a page, a push and a sweep each read it again.
    log.error("%s has a stored schedule that no longer reads (zone %r); it is never in force until "
              "replaced", holder, zone)


def week_minutes(schedule: Schedule) -> frozenset[int]:
    """The minutes of the week (0 = Monday 00:00) that `schedule` covers, on its own wall clock."""
    covered = set()
    for window in schedule.windows:
        length = (window.end - window.start) % MINUTES_PER_DAY or MINUTES_PER_DAY
        for day in window.days:
            first = day * MINUTES_PER_DAY + window.start
            covered.update(minute % WEEK for minute in range(first, first + length))
    return frozenset(covered)


def within(inner: Schedule | None, outer: Schedule | None) -> bool:
    """Whether `inner` is never in force when `outer` is not. Exact only for
    one zone (both read the same wall clock); across zones it says no."""
    if outer is None:
        return True
    if inner is None or inner.zone != outer.zone:
        return False
    return week_minutes(inner) <= week_minutes(outer)


def intersection(a: Schedule, b: Schedule) -> Schedule | None:
    """The schedule in force exactly when both `a` and `b` are (same week
    minutes as their common ones); None when they share no minute or read
    different zones' clocks. It may need more than MAX_WINDOWS windows."""
    if a.zone != b.zone:
        return None
    return _from_week_minutes(a.zone, week_minutes(a) & week_minutes(b))


def _from_week_minutes(zone: str, covered: frozenset[int]) -> Schedule | None:
    """The windows of `covered`: each run of consecutive minutes (the week
    wraps from Sunday to Monday) becomes one window a day, a run that goes
    past one midnight a window crossing it, and equal hours on several days
    one window with those days."""
    if not covered:
        return None
    if len(covered) == WEEK:
        return Schedule(zone=zone, windows=(Window(days=frozenset(range(7)), start=0, end=MINUTES_PER_DAY),))
    hours: dict[tuple[int, int], set[int]] = {}
    for start, length in _runs(covered):
        for day, begin, end in _day_pieces(start, length):
            hours.setdefault((begin, end), set()).add(day)
    windows = [Window(days=frozenset(days), start=begin, end=end) for (begin, end), days in hours.items()]
    return Schedule(zone=zone, windows=_canonical(windows))


def _runs(covered: frozenset[int]) -> list[tuple[int, int]]:
    """(first minute, length) of each maximal run, reading the week as a
    circle; `covered` is neither empty nor the whole week."""
    starts = [m for m in covered if (m - 1) % WEEK not in covered]
    runs = []
    for start in starts:
        length = 1
        while (start + length) % WEEK in covered:
            length += 1
        runs.append((start, length))
    return runs


def _day_pieces(start: int, length: int) -> list[tuple[int, int, int]]:
    """A run as windows (day it starts, start, end): one window within a
    day, one crossing midnight when shorter than a day, else split at midnights."""
    day, begin = divmod(start, MINUTES_PER_DAY)
    if begin + length <= MINUTES_PER_DAY:
        return [(day % 7, begin, begin + length)]
    if length < MINUTES_PER_DAY:
        return [(day % 7, begin, begin + length - MINUTES_PER_DAY)]
    pieces, left = [], length
    while left:
        piece = min(left, MINUTES_PER_DAY - begin)
        pieces.append((day % 7, begin, begin + piece))
        day, begin, left = day + 1, 0, left - piece
    return pieces


def reached_between(schedule: Schedule | None, start: datetime, end: datetime | None) -> bool:
    """Whether `schedule` is in force at some instant in [`start`, `end`)
    (`end` None: never ends; a schedule recurs every week, so yes)."""
    if schedule is None or end is None:
        return True
    at = int(start.timestamp())
    while at < end.timestamp():
        if schedule.active(at):
            return True
        change = schedule.next_change(at)
        # None: not in force for the whole horizon ahead (a window only in
        # a skipped hour); look again a horizon later.
        at = change if change is not None else at + HORIZON_DAYS * MINUTES_PER_DAY * 60
    return False


# --- the console's text form: one window a line, "tue,thu 09:00-12:00" -------------------

_TIME = re.compile(r"([0-9]{1,2}):([0-9]{2})\Z")


def parse_text(text: str, *, zone: str) -> dict | None:
    """The JSON form of a schedule written one window a line, as the console
    takes it: days (names, commas, ranges such as mon-fri) then hours, e.g.
    ``mon-fri 22:00-06:00``. No line: no schedule. Checked by `parse`."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    if not zone:
        raise DomainError(ErrorCode.TIME_ZONE_UNKNOWN, "Choose the time zone the hours are read in.",
                          field="schedule")
    windows = []
    for number, line in enumerate(lines, 1):
        try:
            window = _text_window(line)
            _window(window)
        except DomainError as error:
            raise _invalid(f"Line {number} ({line}): {error.messages[0]}") from None
        windows.append(window)
    return to_json(parse({"timezone": zone, "windows": windows}))


def _text_window(line: str) -> dict:
    line = re.sub(r"\s+", "", line.lower().replace("–", "-"))
    hours_at = next((i for i, char in enumerate(line) if char.isdigit()), len(line))
    start, dash, end = line[hours_at:].partition("-")
    if not hours_at or not dash:
        raise _invalid("Write days then hours, like tue,thu 09:00-12:00.")
    return {"days": _text_days(line[:hours_at]), "start": _text_time(start), "end": _text_time(end)}


def _text_days(text: str) -> list[str]:
    days: list[str] = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            raise _invalid(f"Days are {', '.join(DAYS)}, separated by commas, or a range such as mon-fri.")
        span = (DAYS.index(last) - DAYS.index(first)) % 7 if dash else 0
        days.extend(DAYS[(DAYS.index(first) + n) % 7] for n in range(span + 1))
    return list(dict.fromkeys(days))


def _text_time(text: str) -> str:
    match = _TIME.match(text)
    return f"{int(match[1]):02d}:{match[2]}" if match else text


def to_text(data: dict | None) -> str:
    """The console's text form of a stored schedule (its zone apart), one window a line."""
    try:
        schedule = parse(data)
    except DomainError:
        return _unreadable_text(data)
    if schedule is None:
        return ""
    return "\n".join(f"{_day_list(w.days)} {_hhmm(w.start)}-{_hhmm(w.end)}" for w in schedule.windows)


def _day_list(days: frozenset[int]) -> str:
    """Week order; three or more days in a row as a range (mon-fri)."""
    parts, ordered = [], sorted(days)
    while ordered:
        run = 1
        while run < len(ordered) and ordered[run] == ordered[0] + run:
            run += 1
        names = [DAYS[d] for d in ordered[:run]]
        parts.append(f"{names[0]}-{names[-1]}" if run >= 3 else ",".join(names))
        ordered = ordered[run:]
    return ",".join(parts)


def summary(data: dict | None) -> str:
    """One line for lists and messages: "tue 09:00-12:00 (Europe/Brussels)"; "" for none."""
    if data is None:
        return ""
    try:
        parse(data)
    except DomainError:
        return _unreadable_text(data)
    return f"{'; '.join(to_text(data).splitlines())} ({data['timezone']})"


def _unreadable_text(data) -> str:
    return f"unreadable ({Unreadable(zone='UTC', windows=(), raw=data).raw_zone})"
