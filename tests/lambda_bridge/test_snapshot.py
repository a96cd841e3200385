"""The snapshot codec, which both Django and the authorizer use."""
import json
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lambda_bridge import snapshot
from lambda_bridge.snapshot import Entry, Snapshot, SnapshotError, entries_size, from_item, to_item

NOW = 1_790_000_000
things = st.from_regex(r"[a-zA-Z0-9:_-]{1,128}", fullmatch=True)
moments = st.one_of(st.none(), st.integers(min_value=0, max_value=2**40))
entries = st.builds(
    Entry, thing=things, level=st.sampled_from([1, 2, 3, 4]), not_before=moments, expires=moments,
    group=st.one_of(st.none(), st.integers(min_value=0, max_value=2**50)),
)
snapshots = st.builds(
    Snapshot, kind=st.sampled_from(snapshot.KINDS), tenant=st.integers(1, 2**40), principal=things,
    version=st.integers(0, 2**62), generated_at=st.integers(0, 2**40),
    entries=st.lists(entries, max_size=30).map(tuple), gone=st.booleans(),
    cutoff=st.one_of(st.none(), st.integers(0, 2**40)),
)


def same(a: Snapshot, b: Snapshot) -> bool:
    order = lambda s: sorted(s.entries, key=lambda e: (e.thing, e.level, e.not_before or 0, e.expires or 0))  # noqa: E731
    return (a.kind, a.tenant, a.principal, a.version, a.generated_at, a.gone, a.cutoff, order(a)) == (
        b.kind, b.tenant, b.principal, b.version, b.generated_at, b.gone, b.cutoff, order(b))


@given(snapshots, st.sampled_from(snapshot.READABLE_FORMATS))
def test_every_snapshot_survives_a_round_trip_in_every_format_that_can_say_it(snap, fmt):
    if snap.cutoff is not None and fmt != 3:
        # Refused rather than dropped: a reader of formats 1 and 2 would let revoked tokens in.
        with pytest.raises(SnapshotError, match=f"format {fmt} cannot carry a token cut-off"):
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
    b"\x42\x03d-a",           # a flag this reader does not know
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
