"""A grant's weekly schedule as the API, the console and the database hold it,
and the one ``lambda_bridge.schedule.Schedule`` every decision reads
(docs/sharing.md#weekly-schedules).

The JSON form, stored as it is on a share or an invitation::

    {"timezone": "Europe/Brussels",
     "windows": [{"days": ["tue"], "start": "09:00", "end": "12:00"}]}

`days` are the days a window starts on; an `end` at or before its `start`
crosses midnight into the next day, and "24:00" is the end of the day.
"""
from functools import cache
from zoneinfo import available_timezones

from lambda_bridge.schedule import MINUTES_PER_DAY, Schedule, Window

from .errors import DomainError, ErrorCode

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Enough for a different window every day and a split shift on each; every
# window costs bytes in each grantee's snapshot.
MAX_WINDOWS = 14
WEEK = 7 * MINUTES_PER_DAY


@cache
def time_zones() -> frozenset[str]:
    """The IANA zone names a schedule may use ("localtime" and the like are
    this machine's, not a zone the authorizer can read)."""
    return frozenset(name for name in available_timezones() if "/" in name or name == "UTC")


def _invalid(message: str) -> DomainError:
    return DomainError(ErrorCode.SCHEDULE_INVALID, message, field="schedule")


def _minute(text, *, name: str, end: bool) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":" or not (text[:2] + text[3:]).isdigit():
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
    if start == end % MINUTES_PER_DAY:
        raise _invalid("A window cannot start and end at the same time; for a whole day write 00:00 to 24:00.")
    return Window(days=frozenset(DAYS.index(d) for d in days), start=start, end=end)


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
    return Schedule(zone=zone, windows=tuple(_window(w) for w in windows))


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def to_json(schedule: Schedule | None) -> dict | None:
    """The JSON form of `schedule`, days in week order."""
    if schedule is None:
        return None
    return {"timezone": schedule.zone, "windows": [
        {"days": [DAYS[d] for d in sorted(w.days)], "start": _hhmm(w.start), "end": _hhmm(w.end)}
        for w in schedule.windows
    ]}


def of(grant) -> Schedule | None:
    """The schedule stored on a share or an invitation (checked when written)."""
    return parse(grant.schedule)


def week_minutes(schedule: Schedule) -> frozenset[int]:
    """The minutes of the week (0 = Monday 00:00) that `schedule` covers, on its own wall clock."""
    return frozenset(m for m in range(WEEK) if any(w.covers(m // MINUTES_PER_DAY, m % MINUTES_PER_DAY)
                                                 for w in schedule.windows))


def within(inner: Schedule | None, outer: Schedule | None) -> bool:
    """Whether `inner` is never in force when `outer` is not. Exact only for
    one zone (both read the same wall clock); across zones it says no."""
    if outer is None:
        return True
    if inner is None or inner.zone != outer.zone:
        return False
    return week_minutes(inner) <= week_minutes(outer)
