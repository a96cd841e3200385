"""The permission snapshot: the one definition of the DynamoDB item that Django
writes and the authorizer reads.

Stdlib only, because the Lambda ships this module as it is.

An item is a handful of plain attributes (key, format, principal, version,
time) plus the entries, one per grant a principal holds on a device:

- format 4 (current) is format 3 plus weekly schedules: a binary attribute
  `w` holds the item's distinct schedules, and an entry with one points into
  it (docs/snapshots.md#format-4-weekly-schedules);
- format 3 is format 2 plus the principal's token cut-off `c`, a number,
  when there is one: tokens issued before that second are refused;
- format 2 packs entries into a binary attribute, about 20 bytes per entry
  for a generated thing name;
- format 1 is the same entries as a JSON list.

Readers accept all four, and the writer's format is a setting, so readers
are upgraded first and writers flipped after; an operator can flip writers
back during a rollback, as long as no principal has what the older format
cannot say (a cut-off before 3, a schedule before 4): writing it there is
refused rather than dropped.
A reader here reads `c` in every format: an item carrying it is never read as
if it had none (docs/snapshots.md#format).

Times are whole seconds since the epoch. An entry carries its own window so
the authorizer drops it the moment it ends, whether or not a push ran.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache

from lambda_bridge import vocabulary
from lambda_bridge.schedule import MINUTES_PER_DAY, Schedule, Window, zone

FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)
# The formats that can carry a token cut-off, and those that can carry schedules.
CUTOFF_FORMATS = (3, 4)
SCHEDULE_FORMATS = (4,)

USER = "u"
DEVICE = "d"
KINDS = (USER, DEVICE)

# Access levels as stored (lambda_bridge/vocabulary.py); the Django side maps its own Level onto these.
VIEW, CONTROL, MANAGE, OWNER = (vocabulary.LEVEL_CODES[name] for name in vocabulary.LEVELS)
LEVEL_NAMES = {code: name for name, code in vocabulary.LEVEL_CODES.items()}

# Entry header byte: level in the low 3 bits, then which optional fields follow.
_LEVEL_MASK = 0x07
_HAS_NOT_BEFORE = 0x08
_HAS_EXPIRES = 0x10
_HAS_GROUP = 0x20
_HAS_SCHEDULE = 0x40  # format 4: an index into the item's schedule table `w` follows
_KNOWN_BITS = _LEVEL_MASK | _HAS_NOT_BEFORE | _HAS_EXPIRES | _HAS_GROUP
_ALL_DAYS = 0x7F  # a window's days byte: bit 0 is Monday … bit 6 Sunday


class SnapshotError(ValueError):
    """An item this reader cannot trust; the authorizer refuses the connection."""


@dataclass(frozen=True, slots=True)
class Entry:
    thing: str
    level: int
    not_before: int | None = None
    expires: int | None = None
    group: int | None = None
    # Weekly windows on top of not_before/expires (format 4); None: any hour.
    schedule: Schedule | None = None

    def active(self, now: int) -> bool:
        return ((self.not_before is None or self.not_before <= now) and (self.expires is None or now < self.expires)
                and (self.schedule is None or self.schedule.active(now)))


@dataclass(frozen=True, slots=True)
class Snapshot:
    kind: str
    tenant: int
    principal: str
    version: int
    generated_at: int
    entries: tuple[Entry, ...] = ()
    # The principal no longer exists for this tenant (left it, deactivated,
    # device deleted). Kept as an item, not deleted, so that the version check
    # still stops an older push from bringing its access back.
    gone: bool = False
    # Epoch second: every token of this principal issued (`iat`) before it is
    # refused (docs/snapshots.md#the-token-cut-off). A tombstone may carry one.
    cutoff: int | None = None
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        return item_key(self.kind, self.tenant, self.principal)

    def levels_at(self, now: int) -> dict[str, int]:
        """Thing name → highest level among the entries active at `now`."""
        levels: dict[str, int] = {}
        for entry in self.entries:
            if entry.active(now) and entry.level > levels.get(entry.thing, 0):
                levels[entry.thing] = entry.level
        return levels

    def next_change(self, now: int) -> int | None:
        """The first moment after `now` when some entry starts or ends, or a
        window of its schedule does while the entry's own span lasts (a
        window edge after the entry expired changes nothing)."""
        moments = [t for e in self.entries for t in (e.not_before, e.expires) if t is not None and t > now]
        for entry in self.entries:
            # Entries sharing a schedule share the object, which remembers its answer.
            if entry.schedule is not None and (edge := entry.schedule.next_change(now)) is not None \
                    and (entry.not_before is None or edge > entry.not_before) \
                    and (entry.expires is None or edge < entry.expires):
                moments.append(edge)
        return min(moments, default=None)


def item_key(kind: str, tenant: int, principal: str) -> str:
    return f"{kind}#{tenant}#{principal}"


# --- writing -----------------------------------------------------------------


def to_item(snapshot: Snapshot, *, fmt: int = FORMAT) -> dict:
    """The DynamoDB item in the low-level AttributeValue shape boto3 clients use."""
    if snapshot.kind not in KINDS:
        raise SnapshotError(f"unknown principal kind {snapshot.kind!r}")
    if snapshot.cutoff is not None and fmt not in CUTOFF_FORMATS:
        # A reader of that format would let the revoked tokens in.
        raise SnapshotError(f"snapshot format {fmt} cannot carry a token cut-off; "
                            f"write format {CUTOFF_FORMATS[0]} or later")
    if fmt not in SCHEDULE_FORMATS and any(e.schedule is not None for e in snapshot.entries):
        # A reader of that format would grant the device at every hour.
        raise SnapshotError(f"snapshot format {fmt} cannot carry a weekly schedule; "
                            f"write format {SCHEDULE_FORMATS[0]} or later")
    entries = sorted(snapshot.entries, key=_entry_order)
    schedules = _schedule_table(entries)
    item = {
        "pk": {"S": snapshot.key},
        "f": {"N": str(fmt)},
        "k": {"S": snapshot.kind},
        "t": {"N": str(snapshot.tenant)},
        "p": {"S": snapshot.principal},
        "v": {"N": str(snapshot.version)},
        "g": {"N": str(snapshot.generated_at)},
    }
    if fmt in (2, 3, 4):
        item["e"] = {"B": _pack(entries, snapshot.generated_at, schedules)}
    elif fmt == 1:
        rows = [[e.thing, e.level, e.not_before, e.expires, e.group] for e in entries]
        item["e"] = {"S": json.dumps(rows, separators=(",", ":"))}
    else:
        raise SnapshotError(f"cannot write snapshot format {fmt}; this code writes {READABLE_FORMATS}")
    if snapshot.gone:
        item["gone"] = {"BOOL": True}
    if snapshot.cutoff is not None:
        item["c"] = {"N": str(_cutoff(snapshot.cutoff))}
    if schedules:
        item["w"] = {"B": _pack_schedules(schedules)}
    return item


def _entry_order(entry: Entry):
    return (entry.thing, entry.level, entry.not_before or 0, entry.expires or 0)


def _schedule_table(entries: list[Entry]) -> dict[Schedule, int]:
    """Each distinct schedule → its row in `w`, in order of first use: the
    entries of one share (or of shares made alike) point at one row."""
    table: dict[Schedule, int] = {}
    for entry in entries:
        if entry.schedule is not None:
            table.setdefault(entry.schedule, len(table))
    return table


def _pack_schedules(table: dict[Schedule, int]) -> bytes:
    out = bytearray()
    for schedule in table:  # dicts keep insertion order: row n is the n-th key
        if len(schedule.zone) > _MAX_ZONE_NAME or not _ZONE_NAME.fullmatch(schedule.zone):
            raise SnapshotError(f"schedule zone {schedule.zone!r} is not a time-zone name a reader accepts")
        zone = schedule.zone.encode("ascii")
        _put_varint(out, len(zone))
        out += zone
        _put_varint(out, len(schedule.windows))
        for window in schedule.windows:
            out.append(sum(1 << day for day in window.days))
            _put_varint(out, window.start)
            _put_varint(out, window.end)
    return bytes(out)


def _pack(entries: list[Entry], base: int, schedules: dict[Schedule, int]) -> bytes:
    out = bytearray()
    for entry in entries:
        if not 1 <= entry.level <= _LEVEL_MASK:
            raise SnapshotError(f"level {entry.level} of {entry.thing} does not fit the format")
        name = entry.thing.encode()
        header = entry.level
        header |= _HAS_NOT_BEFORE if entry.not_before is not None else 0
        header |= _HAS_EXPIRES if entry.expires is not None else 0
        header |= _HAS_GROUP if entry.group is not None else 0
        header |= _HAS_SCHEDULE if entry.schedule is not None else 0
        out.append(header)
        _put_varint(out, len(name))
        out += name
        # Relative to generation time: windows are usually hours or days away,
        # so two or three bytes instead of five.
        if entry.not_before is not None:
            _put_varint(out, _zigzag(entry.not_before - base))
        if entry.expires is not None:
            _put_varint(out, _zigzag(entry.expires - base))
        if entry.group is not None:
            _put_varint(out, entry.group)
        if entry.schedule is not None:
            _put_varint(out, schedules[entry.schedule])
    return bytes(out)


def _zigzag(n: int) -> int:
    return n * 2 if n >= 0 else -n * 2 - 1


def _unzigzag(n: int) -> int:
    return n // 2 if n % 2 == 0 else -(n + 1) // 2


def _put_varint(out: bytearray, n: int) -> None:
    if n < 0:
        raise SnapshotError("negative varint")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


# --- reading -----------------------------------------------------------------


def from_item(item: dict) -> Snapshot:
    """Decode an item; raises SnapshotError for anything it cannot vouch for.
    Attributes it does not know are kept aside in `extra` and otherwise ignored."""
    try:
        fmt = int(item["f"]["N"])
    except (KeyError, TypeError, ValueError):
        raise SnapshotError("snapshot item has no format version") from None
    if fmt not in READABLE_FORMATS:
        raise SnapshotError(
            f"snapshot format {fmt} is not readable here (this reader reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}); upgrade the authorizer before the writer"
        )
    try:
        kind = item["k"]["S"]
        if kind not in KINDS:
            raise SnapshotError(f"unknown principal kind {kind!r}")
        generated_at = int(item["g"]["N"])
        raw = item["e"]
        if fmt == 1:
            entries = _from_json(raw["S"])
        else:
            # Only a format-4 reader knows the schedule flag; below 4 it is an unknown bit.
            schedules = _unpack_schedules(item["w"]["B"] if "w" in item else b"") if fmt >= 4 else None
            entries = _unpack(raw["B"], generated_at, schedules)
        return Snapshot(
            kind=kind,
            tenant=int(item["t"]["N"]),
            principal=item["p"]["S"],
            version=int(item["v"]["N"]),
            generated_at=generated_at,
            entries=entries,
            gone=_gone(item.get("gone")),
            cutoff=_read_cutoff(item.get("c")),
            extra={k: v for k, v in item.items() if k not in _KNOWN_ATTRIBUTES},
        )
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"malformed snapshot item: {exc.__class__.__name__}") from None


_KNOWN_ATTRIBUTES = {"pk", "f", "k", "t", "p", "v", "g", "e", "gone", "c", "w"}
_WHOLE_SECONDS = re.compile(r"[0-9]{1,19}")


def _cutoff(value) -> int:
    if type(value) is not int or not 0 <= value < 2**63:
        raise SnapshotError(f"cut-off {value!r} is not a whole second")
    return value


def _read_cutoff(value) -> int | None:
    # Read in every format: a writer that put one in an older format meant it,
    # and ignoring it would let revoked tokens in.
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"N"} or not isinstance(value["N"], str) \
            or not _WHOLE_SECONDS.fullmatch(value["N"]):
        raise SnapshotError("cut-off is not a whole number of seconds")
    return _cutoff(int(value["N"]))


def _gone(value) -> bool:
    # Strict: a tombstone mis-typed by some writer must not read as "present".
    if value is None:
        return False
    if not isinstance(value, dict) or not isinstance(value.get("BOOL"), bool):
        raise SnapshotError("gone is not a boolean")
    return value["BOOL"]


def _level(value) -> int:
    if type(value) is not int or value not in LEVEL_NAMES:
        raise SnapshotError(f"level {value!r} is not one this reader knows")
    return value


def _from_json(text: str) -> tuple[Entry, ...]:
    entries = []
    for thing, level, not_before, expires, group, *_future in json.loads(text):
        entries.append(Entry(str(thing), _level(level), _opt_int(not_before), _opt_int(expires), _opt_int(group)))
    return tuple(entries)


def _opt_int(value) -> int | None:
    return None if value is None else int(value)


@lru_cache(maxsize=512)
def _unpack_schedules(data: bytes) -> tuple[Schedule, ...]:
    """The table `w`. Strict: a schedule this reader could not evaluate
    exactly (a zone its tz database lacks, a day or minute out of range) is a
    bad snapshot, refused, never a grant at the wrong hours.

    Kept for the next read of the same table (a refresh or a reconnect of
    the same principal, every few minutes): decoding is most of what
    schedules add to a decision (docs/benchmarks.md#schedules). A refused
    table raises again each time; Schedules are immutable, their remembered
    answers only speed up the same question."""
    table = []
    pos, end = 0, len(data)
    while pos < end:
        length, pos = _get_varint(data, pos)
        if not 0 < length <= _MAX_ZONE_NAME or pos + length > end:
            raise SnapshotError("schedule zone name is empty, too long or runs past the end")
        zone = _zone(data[pos:pos + length])
        pos += length
        count, pos = _get_varint(data, pos)
        if count == 0:
            raise SnapshotError(f"schedule in {zone} has no windows")
        windows = []
        for _ in range(count):
            if pos >= end:
                raise SnapshotError("schedule window runs past the end")
            days = data[pos]
            pos += 1
            if not days or days & ~_ALL_DAYS:
                raise SnapshotError(f"schedule window days {days:#04x} are not a set of weekdays")
            start, pos = _get_varint(data, pos)
            stop, pos = _get_varint(data, pos)
            if not (0 <= start < MINUTES_PER_DAY and 0 < stop <= MINUTES_PER_DAY):
                raise SnapshotError(f"schedule window {start}..{stop} is outside the day's minutes")
            windows.append(Window(frozenset(d for d in range(7) if days >> d & 1), start, stop))
        table.append(Schedule(zone, tuple(windows)))
    return tuple(table)


# IANA names are at most ~30 characters; the bound only stops nonsense early.
_MAX_ZONE_NAME = 64
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*")


def _zone(raw: bytes) -> str:
    try:
        name = raw.decode("ascii")
    except UnicodeDecodeError:
        raise SnapshotError("schedule zone name is not ASCII") from None
    if not _ZONE_NAME.fullmatch(name):
        raise SnapshotError(f"schedule zone {name!r} is not a time-zone name")
    try:
        zone(name)  # cached, so deciding later costs nothing more
    except (KeyError, ValueError, OSError):  # not found (a KeyError), not a tz file
        raise SnapshotError(f"schedule zone {name!r} is not in this reader's time-zone database") from None
    return name


def _unpack(data: bytes, base: int, schedules: tuple[Schedule, ...] | None) -> tuple[Entry, ...]:
    """`schedules` is the item's table, or None for a reader of formats before 4."""
    known = _KNOWN_BITS if schedules is None else _KNOWN_BITS | _HAS_SCHEDULE
    entries = []
    pos, end = 0, len(data)
    while pos < end:
        header = data[pos]
        pos += 1
        if header & ~known:
            raise SnapshotError(f"entry header {header:#04x} uses flags this reader does not know")
        length, pos = _get_varint(data, pos)
        if pos + length > end:
            raise SnapshotError("entry runs past the end of the snapshot")
        thing = data[pos:pos + length].decode()
        pos += length
        not_before = expires = group = None
        if header & _HAS_NOT_BEFORE:
            n, pos = _get_varint(data, pos)
            not_before = base + _unzigzag(n)
        if header & _HAS_EXPIRES:
            n, pos = _get_varint(data, pos)
            expires = base + _unzigzag(n)
        if header & _HAS_GROUP:
            group, pos = _get_varint(data, pos)
        schedule = None
        if header & _HAS_SCHEDULE:
            index, pos = _get_varint(data, pos)
            if index >= len(schedules):
                raise SnapshotError(f"entry {thing} points at schedule {index}; the item has {len(schedules)}")
            schedule = schedules[index]
        entries.append(Entry(thing, _level(header & _LEVEL_MASK), not_before, expires, group, schedule))
    return tuple(entries)


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    if pos < len(data) and data[pos] < 0x80:  # most numbers here: names' lengths, groups
        return data[pos], pos + 1
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise SnapshotError("truncated or oversized number in snapshot")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def entries_size(snapshot: Snapshot, *, fmt: int = FORMAT) -> int:
    """Bytes the entries, and the schedules they use, take in an item of
    format `fmt` (what grows with devices)."""
    item = to_item(snapshot, fmt=fmt)
    return sum(len(value["B"]) if "B" in value else len(value["S"].encode())
               for name, value in item.items() if name in ("e", "w"))


def item_size(item: dict) -> int:
    """DynamoDB's item size rule: attribute names plus values (numbers ~ digits/2+1)."""
    total = 0
    for name, value in item.items():
        (kind, raw), = value.items()
        total += len(name.encode())
        if kind == "N":
            total += len(raw.strip("-").lstrip("0")) // 2 + 2
        elif kind == "BOOL":
            total += 1
        else:
            total += len(raw if isinstance(raw, bytes) else raw.encode())
    return total
