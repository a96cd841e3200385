"""The snapshot codec, which both Django and the authorizer use."""
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bridge import snapshot
from lambda_bridge.schedule import Schedule, Window
from lambda_bridge.snapshot import Entry, Snapshot, SnapshotError, entries_size, from_item, to_item

NOW = 1_790_000_000
things = st.from_regex(r"[a-zA-Z0-9:_-]{1,128}", fullmatch=True)
moments = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))
windows = st.builds(Window, days=st.frozensets(st.integers(0, 6), min_size=1), start=st.integers(0, 1439),
                    end=st.integers(1, 1440))
# A few schedules drawn per snapshot, so entries often share one (one table row) and sometimes do not.
schedules = st.builds(Schedule, zone=st.sampled_from(["Europe/Brussels", "UTC", "America/New_York",
                                                      "Australia/Lord_Howe", "Asia/Kathmandu"]),
                      windows=st.lists(windows, min_size=1, max_size=14).map(tuple))
entries = st.builds(
    Entry, thing=things, level=st.sampled_from([1, 2, 3, 4]), not_before=moments, expires=moments,
    group=st.one_of(st.none(), st.integers(min_value=0, max_value=2**50)),
    schedule=st.one_of(st.none(), st.sampled_from([
        Schedule("Europe/Brussels", (Window(frozenset({1}), 540, 720),)),
        Schedule("America/New_York", (Window(frozenset({0, 1, 2, 3, 4}), 1320, 360), Window(frozenset({5}), 0, 1440))),
    ]), schedules),
)
snapshots = st.builds(
    Snapshot, kind=st.sampled_from(snapshot.KINDS), tenant=st.integers(1, 2**40), principal=things,
    version=st.integers(0, 2**62), generated_at=st.integers(0, 2**40),
    entries=st.lists(entries, max_size=30).map(tuple), gone=st.booleans(),
    cutoff=st.one_of(st.none(), st.integers(0, 2**40)),
)


def same(a: Snapshot, b: Snapshot) -> bool:
    order = lambda s: sorted(s.entries, key=repr)  # noqa: E731 - every field, schedules included
    return (a.kind, a.tenant, a.principal, a.version, a.generated_at, a.gone, a.cutoff, order(a)) == (
        b.kind, b.tenant, b.principal, b.version, b.generated_at, b.gone, b.cutoff, order(b))


@given(snapshots, st.sampled_from(snapshot.READABLE_FORMATS))
def test_every_snapshot_survives_a_round_trip_in_every_format_that_can_say_it(snap, fmt):
    if snap.cutoff is not None and fmt < 3:
        # Refused rather than dropped: a reader of formats 1 and 2 would let revoked tokens in.
        with pytest.raises(SnapshotError, match=f"format {fmt} cannot carry a token cut-off"):
            to_item(snap, fmt=fmt)
    elif any(e.schedule for e in snap.entries) and fmt < 4:
        # ... and one of formats 1 to 3 would grant a scheduled device at every hour.
        with pytest.raises(SnapshotError, match=f"format {fmt} cannot carry a weekly schedule"):
            to_item(snap, fmt=fmt)
    else:
        assert same(from_item(to_item(snap, fmt=fmt)), snap)


def test_format_3_is_format_2_plus_the_cut_off():
    snap = Snapshot(kind="u", tenant=3, principal="17", version=5, generated_at=NOW,
                    entries=(Entry("d-aaaaaaaaaaaa", snapshot.CONTROL, expires=NOW + 7200, group=4),))
    two, three = to_item(snap, fmt=2), to_item(replace(snap, cutoff=NOW + 1), fmt=3)

    assert three["e"] == two["e"] and three["f"] == {"N": "3"}
    assert three["c"] == {"N": str(NOW + 1)} and "c" not in to_item(snap, fmt=3)
    assert from_item(three).cutoff == NOW + 1 and from_item(to_item(snap, fmt=3)).cutoff is None


@pytest.mark.parametrize("fmt", [1, 2])
def test_a_cut_off_in_an_older_format_item_is_read_not_ignored(fmt):
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW), fmt=fmt)
    item["c"] = {"N": str(NOW)}

    assert from_item(item).cutoff == NOW


@pytest.mark.parametrize("fmt", [1, 2, 3])
@pytest.mark.parametrize("bad", [{"S": "1790000000"}, {"N": "-5"}, {"N": "1.5"}, {"N": "1e9"}, {"N": ""},
                                 {"N": "9" * 20}, {"BOOL": True}, "1790000000", {"N": "1", "S": "1"}])
def test_a_malformed_cut_off_is_refused_in_every_format(fmt, bad):
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW), fmt=fmt)
    item["c"] = bad

    with pytest.raises(SnapshotError, match="cut-off"):
        from_item(item)


def test_a_cut_off_that_is_not_a_whole_second_is_not_written():
    for bad in (1.5, -1, True, "1790000000"):
        with pytest.raises(SnapshotError, match="cut-off"):
            to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW, cutoff=bad), fmt=3)


def test_a_tombstone_keeps_its_cut_off():
    gone = Snapshot(kind="u", tenant=1, principal="1", version=2, generated_at=NOW, gone=True, cutoff=NOW)

    decoded = from_item(to_item(gone, fmt=3))

    assert (decoded.gone, decoded.cutoff) == (True, NOW)


def test_both_formats_decode_to_the_same_snapshot():
    snap = Snapshot(kind="u", tenant=3, principal="17", version=5, generated_at=NOW, entries=(
        Entry("d-aaaaaaaaaaaa", snapshot.CONTROL, expires=NOW + 7200, group=4),
        Entry("d-bbbbbbbbbbbb", snapshot.VIEW, not_before=NOW + 60),
    ))
    previous, current = to_item(snap, fmt=1), to_item(snap, fmt=2)
    assert "S" in previous["e"] and "B" in current["e"]
    assert from_item(previous) == from_item(current) == snap


def test_a_future_format_is_refused_with_a_clear_error():
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW))
    item["f"] = {"N": str(snapshot.FORMAT + 1)}
    with pytest.raises(SnapshotError, match=rf"format {snapshot.FORMAT + 1} is not readable here"):
        from_item(item)


def test_a_reader_of_formats_1_and_2_refuses_format_3_asking_for_the_authorizer_first(monkeypatch):
    # The reader of the previous release, as deployed before this one.
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW, cutoff=NOW), fmt=3)
    monkeypatch.setattr(snapshot, "READABLE_FORMATS", (1, 2))

    with pytest.raises(SnapshotError, match="format 3 is not readable here .*upgrade the authorizer before the writer"):
        from_item(item)


def test_a_missing_format_is_refused():
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW))
    del item["f"]
    with pytest.raises(SnapshotError, match="no format version"):
        from_item(item)


def test_unknown_attributes_are_ignored_and_kept_aside():
    snap = Snapshot(kind="d", tenant=2, principal="d-x", version=9, generated_at=NOW,
                    entries=(Entry("d-x", snapshot.OWNER),))
    item = to_item(snap) | {"future": {"S": "something new"}, "ttl": {"N": "1"}}
    decoded = from_item(item)
    assert decoded == snap
    assert decoded.extra == {"future": {"S": "something new"}, "ttl": {"N": "1"}}


def test_unknown_columns_in_a_format_1_entry_are_ignored():
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW), fmt=1)
    item["e"] = {"S": json.dumps([["d-1", 2, None, NOW + 5, None, "later-field", 7]])}
    assert from_item(item).entries == (Entry("d-1", 2, None, NOW + 5, None),)


@pytest.mark.parametrize("blob", [
    b"\x02\x05d-ab",          # name runs past the end
    b"\x12\x03d-a",           # says it has an expiry, has none
    b"\x82\x03d-a",           # a flag this reader does not know
    b"\x42\x03d-a",           # a schedule, with no index after it
    b"\x42\x03d-a\x00",       # index 0 of an item with no schedule table
    b"\x02" + b"\xff" * 12,   # a length that never ends
])
def test_corrupt_entries_are_refused_not_misread(blob):
    item = to_item(Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW))
    item["e"] = {"B": blob}
    with pytest.raises(SnapshotError):
        from_item(item)


@pytest.mark.parametrize("broken", [{}, {"f": {"N": "2"}}, {"f": {"N": "x"}}, {"f": {"N": "2"}, "k": {"S": "q"}}])
def test_items_missing_their_parts_are_refused(broken):
    with pytest.raises(SnapshotError):
        from_item(broken)


def test_a_generated_thing_name_costs_at_most_40_bytes_per_entry_even_with_a_window_and_group():
    def snap(n):
        return Snapshot(kind="u", tenant=12, principal="4711", version=1, generated_at=NOW, entries=tuple(
            Entry(f"d-{i:012d}", snapshot.CONTROL, not_before=NOW + 3600, expires=NOW + 30 * 86400, group=90000 + i)
            for i in range(n)))
    per_entry = (entries_size(snap(100)) - entries_size(snap(0))) / 100
    print(f"\nbytes per device entry (format {snapshot.FORMAT}, window + group): {per_entry:.1f}")
    assert per_entry <= 40


def test_levels_at_takes_the_best_active_entry_and_drops_ended_ones():
    snap = Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW, entries=(
        Entry("lamp", snapshot.VIEW),
        Entry("lamp", snapshot.CONTROL, not_before=NOW + 100),
        Entry("lock", snapshot.MANAGE, expires=NOW + 50),
    ))
    assert snap.levels_at(NOW) == {"lamp": snapshot.VIEW, "lock": snapshot.MANAGE}
    assert snap.levels_at(NOW + 100) == {"lamp": snapshot.CONTROL}
    assert snap.next_change(NOW) == NOW + 50
    assert snap.next_change(NOW + 50) == NOW + 100
    assert snap.next_change(NOW + 100) is None


def test_writing_an_unknown_format_or_level_is_refused():
    snap = Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW, entries=(Entry("x", 9),))
    with pytest.raises(SnapshotError, match="level 9"):
        to_item(snap)
    with pytest.raises(SnapshotError, match="cannot write snapshot format 7"):
        to_item(snap, fmt=7)


def test_the_codec_imports_with_the_standard_library_alone():
    # -I -S: no site-packages, so neither Django nor boto3 can sneak in.
    import subprocess
    import sys

    from tests.support.paths import ROOT
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import lambda_bridge.snapshot as s; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'boto3', 'devices', 'authz'}))")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- format 4: weekly schedules (docs/snapshots.md#format-4-weekly-schedules) ---------------------------

TUESDAY_MORNINGS = Schedule("Europe/Brussels", (Window(frozenset({1}), 9 * 60, 12 * 60),))


def scheduled(*entries: Entry, **fields) -> Snapshot:
    return Snapshot(kind="u", tenant=1, principal="1", version=1, generated_at=NOW, entries=entries, **fields)


def test_format_4_bytes_are_those_the_docs_spell_out():
    # Written from the example in docs/snapshots.md, byte by byte, not from the encoder.
    snap = scheduled(Entry("d-b", snapshot.VIEW, schedule=TUESDAY_MORNINGS),
                     Entry("d-a", snapshot.CONTROL, expires=NOW + 3600, schedule=TUESDAY_MORNINGS))
    zone = b"Europe/Brussels"
    table = bytes([len(zone)]) + zone + bytes([1, 0b10, 0x9C, 0x04, 0xD0, 0x05])  # 540 = 0x9c 0x04, 720 = 0xd0 0x05
    first = bytes([0x02 | 0x10 | 0x40, 3]) + b"d-a" + bytes([0xA0, 0x38, 0])    # zigzag(3600) = 7200
    second = bytes([0x01 | 0x40, 3]) + b"d-b" + bytes([0])

    item = to_item(snap, fmt=4)

    assert item["f"] == {"N": "4"} and item["w"] == {"B": table} and item["e"] == {"B": first + second}
    assert from_item(item).entries == tuple(sorted(snap.entries, key=lambda e: e.thing))


def test_entries_sharing_a_schedule_share_one_row_of_the_table():
    other = Schedule("Europe/Brussels", (Window(frozenset({3}), 9 * 60, 12 * 60),))
    one = to_item(scheduled(Entry("d-0", snapshot.VIEW, schedule=TUESDAY_MORNINGS)))
    shared = to_item(scheduled(*(Entry(f"d-{i}", snapshot.VIEW, schedule=TUESDAY_MORNINGS) for i in range(10))))
    two = to_item(scheduled(Entry("d-0", snapshot.VIEW, schedule=TUESDAY_MORNINGS),
                            Entry("d-1", snapshot.VIEW, schedule=other),
                            Entry("d-2", snapshot.VIEW, schedule=TUESDAY_MORNINGS)))

    assert shared["w"] == one["w"]
    assert len(two["w"]["B"]) == 2 * len(one["w"]["B"])
    assert [e.schedule for e in from_item(two).entries] == [TUESDAY_MORNINGS, other, TUESDAY_MORNINGS]


def test_an_item_without_schedules_has_no_table_and_format_4_is_format_3_otherwise():
    snap = scheduled(Entry("d-a", snapshot.CONTROL, not_before=NOW - 5, expires=NOW + 60, group=3), cutoff=NOW)
    three, four = to_item(snap, fmt=3), to_item(snap, fmt=4)

    assert "w" not in four and four["f"] == {"N": "4"}
    assert {k: v for k, v in four.items() if k != "f"} == {k: v for k, v in three.items() if k != "f"}


@pytest.mark.parametrize("fmt", [1, 2, 3])
def test_a_schedule_is_not_written_in_a_format_whose_reader_would_grant_every_hour(fmt):
    snap = scheduled(Entry("d-a", snapshot.VIEW), Entry("d-b", snapshot.VIEW, schedule=TUESDAY_MORNINGS))

    with pytest.raises(SnapshotError, match=f"format {fmt} cannot carry a weekly schedule; write format 4 or later"):
        to_item(snap, fmt=fmt)


def test_a_format_3_reader_refuses_a_scheduled_entry_rather_than_grant_it_at_every_hour(monkeypatch):
    item = to_item(scheduled(Entry("d-a", snapshot.VIEW, schedule=TUESDAY_MORNINGS)), fmt=4)
    relabelled = item | {"f": {"N": "3"}}

    # This reader, reading the entries as format 3 does: the schedule flag is an unknown bit.
    with pytest.raises(SnapshotError, match="0x41 uses flags this reader does not know"):
        from_item(relabelled)
    # The previous release's reader refuses the item by its format, asking for the authorizer first.
    monkeypatch.setattr(snapshot, "READABLE_FORMATS", (1, 2, 3))
    with pytest.raises(SnapshotError, match="format 4 is not readable here .*upgrade the authorizer before the writer"):
        from_item(item)


def _table(zone: bytes, *windows: bytes, count: int | None = None) -> bytes:
    return bytes([len(zone)]) + zone + bytes([len(windows) if count is None else count]) + b"".join(windows)


TUESDAY_9_TO_12 = bytes([0b10, 0x9C, 0x04, 0xD0, 0x05])


@pytest.mark.parametrize("table, why", [
    (_table(b"Europe/Atlantis", TUESDAY_9_TO_12), "not in this reader's time-zone database"),
    (_table(b"Europe", TUESDAY_9_TO_12), "not in this reader's time-zone database"),  # a folder of zones
    (_table(b"../../etc/passwd", TUESDAY_9_TO_12), "not a time-zone name"),
    (_table(b"/usr/share/zoneinfo/UTC", TUESDAY_9_TO_12), "not a time-zone name"),
    (_table("Europe/Brüssel".encode(), TUESDAY_9_TO_12), "not ASCII"),
    (_table(b"", TUESDAY_9_TO_12), "zone name is empty"),
    (_table(b"UTC" * 30, TUESDAY_9_TO_12), "too long"),
    (_table(b"UTC", count=0), "no windows"),
    (_table(b"UTC", bytes([0, 0x9C, 0x04, 0xD0, 0x05])), "days 0x00"),
    (_table(b"UTC", bytes([0x81, 0x9C, 0x04, 0xD0, 0x05])), "days 0x81"),
    (_table(b"UTC", bytes([1, 0xA0, 0x0B, 0x01])), "1440..1"),        # starts at 24:00
    (_table(b"UTC", bytes([1, 0x00, 0x00])), "0..0"),                 # ends at 00:00
    (_table(b"UTC", bytes([1, 0x00, 0xA1, 0x0B])), "0..1441"),        # ends after midnight's end
    (_table(b"UTC", bytes([1, 0x9C, 0x04])), "truncated"),            # no end
    (_table(b"UTC", TUESDAY_9_TO_12, count=2), "runs past the end"),  # one window of two
    (bytes([20]) + b"UTC", "runs past the end"),
])
def test_a_schedule_table_this_reader_cannot_evaluate_exactly_is_refused(table, why):
    item = to_item(scheduled(Entry("d-a", snapshot.VIEW, schedule=TUESDAY_MORNINGS)))
    item["w"] = {"B": table}

    with pytest.raises(SnapshotError, match=why):
        from_item(item)


def test_an_index_past_the_table_is_refused():
    item = to_item(scheduled(Entry("d-a", snapshot.VIEW, schedule=TUESDAY_MORNINGS),
                             Entry("d-b", snapshot.VIEW, schedule=TUESDAY_MORNINGS)))
    item["e"] = {"B": item["e"]["B"][:-1] + b"\x01"}

    with pytest.raises(SnapshotError, match="d-b points at schedule 1; the item has 1"):
        from_item(item)


def test_a_scheduled_entry_is_active_only_inside_a_window():
    tuesday_10 = 1_790_064_000  # Tuesday 22 September 2026, 10:00 in Brussels (08:00 UTC)
    entry = from_item(to_item(scheduled(Entry("d-a", snapshot.VIEW, schedule=TUESDAY_MORNINGS)))).entries[0]

    assert entry.active(tuesday_10) and not entry.active(tuesday_10 + 2 * 3600)
    assert not entry.active(tuesday_10 + 86400)


def test_the_entries_size_counts_the_schedules_they_use():
    plain = scheduled(Entry("d-a", snapshot.VIEW))
    with_schedule = scheduled(Entry("d-a", snapshot.VIEW, schedule=TUESDAY_MORNINGS))
    row = 1 + len("Europe/Brussels") + 1 + 5  # name length, name, window count, one window

    assert entries_size(with_schedule) - entries_size(plain) == row + 1  # and the entry's index byte


@pytest.mark.parametrize("zone", ["Europe/Brüssel", "../etc/passwd", "", "A/" + "b" * 70])
def test_a_zone_no_reader_accepts_is_not_written(zone):
    snap = scheduled(Entry("d-a", snapshot.VIEW, schedule=Schedule(zone, TUESDAY_MORNINGS.windows)))

    with pytest.raises(SnapshotError, match="not a time-zone name a reader accepts"):
        to_item(snap)
