"""Weekly schedules as tests write them: the JSON form a share stores
(devices/schedules.py), and instants named by their wall time in a zone."""
from datetime import datetime
from zoneinfo import ZoneInfo


def weekly(zone: str, *windows: tuple[str, str, str]) -> dict:
    """The JSON form of `windows`, each (days, start, end) with days as
    space-separated names: weekly("UTC", ("tue thu", "09:00", "12:00"))."""
    return {"timezone": zone, "windows": [{"days": days.split(), "start": start, "end": end}
                                          for days, start, end in windows]}


def wall(zone: str, *fields: int, fold: int = 0) -> datetime:
    """The aware instant at which `zone`'s clocks read `fields` (year, month,
    day, hour, minute, ...); `fold=1` picks the second of a repeated hour."""
    return datetime(*fields, tzinfo=ZoneInfo(zone), fold=fold)


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())
