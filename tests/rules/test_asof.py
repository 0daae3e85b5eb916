"""Effective-dated timelines and as-of lookups (pipelines.rules.asof)."""

from __future__ import annotations

import datetime as dt
import pickle

import numpy as np
import pyarrow as pa
import pytest

from pipelines.rules.asof import (
    CANDIDATE_SCHEMA,
    TIME_TYPE,
    AsOfIndex,
    lookup_asof,
    resolve_timeline,
)
from tests.utils import ts


def _t(text: str | None) -> dt.datetime | None:
    return None if text is None else ts(text)


def candidates(rows: list[tuple]) -> pa.Table:
    """(key, from, to, priority, value) rows; times as RFC 3339 text or None."""
    return pa.table(
        {
            "key": [r[0] for r in rows],
            "valid_from": [_t(r[1]) for r in rows],
            "valid_to": [_t(r[2]) for r in rows],
            "priority": [r[3] for r in rows],
            "value": [r[4] for r in rows],
        },
        schema=CANDIDATE_SCHEMA,
    )


def rows_of(timeline: pa.Table) -> list[tuple]:
    def text(value: dt.datetime | None) -> str | None:
        return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")

    return [
        (r["key"], text(r["valid_from"]), text(r["valid_to"]), r["value"])
        for r in timeline.to_pylist()
    ]


def look(timeline: pa.Table, queries: list[tuple[str | None, str | None]]) -> list[str | None]:
    keys = pa.array([q[0] for q in queries], pa.string())
    times = pa.array([_t(q[1]) for q in queries], TIME_TYPE)
    return lookup_asof(timeline, keys, times).to_pylist()


# ------------------------------------------------------------------ resolve


def test_resolve_higher_priority_wins_and_adjacent_equal_values_merge():
    timeline = resolve_timeline(candidates([
        ("a", None, None, 0, "base"),
        ("a", "2026-01-05T00:00:00Z", "2026-01-08T00:00:00Z", 1, "override"),
        # same value as the base: merges with its neighbours into one interval
        ("a", "2026-01-10T00:00:00Z", "2026-01-12T00:00:00Z", 1, "base"),
    ]))
    assert rows_of(timeline) == [
        ("a", None, "2026-01-05T00:00:00Z", "base"),
        ("a", "2026-01-05T00:00:00Z", "2026-01-08T00:00:00Z", "override"),
        ("a", "2026-01-08T00:00:00Z", None, "base"),
    ]


def test_resolve_ties_go_to_the_smallest_value_and_gaps_stay_absent():
    timeline = resolve_timeline(candidates([
        ("k", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", 5, "zeta"),
        ("k", "2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z", 5, "alpha"),
        ("k", "2026-02-01T00:00:00Z", None, 5, "zeta"),
        ("j", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 0, "x"),
    ]))
    assert rows_of(timeline) == [
        ("j", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "x"),
        ("k", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "zeta"),
        ("k", "2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z", "alpha"),
        ("k", "2026-02-01T00:00:00Z", None, "zeta"),
    ]


def test_resolve_ignores_empty_intervals_null_keys_and_values():
    timeline = resolve_timeline(candidates([
        ("a", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z", 9, "empty"),
        ("a", "2026-01-03T00:00:00Z", "2026-01-02T00:00:00Z", 9, "backwards"),
        (None, None, None, 9, "no key"),
        ("a", None, None, 9, None),
        ("a", None, None, 0, "kept"),
    ]))
    assert rows_of(timeline) == [("a", None, None, "kept")]


def test_resolve_empty_input():
    assert resolve_timeline(CANDIDATE_SCHEMA.empty_table()).num_rows == 0


# ------------------------------------------------------------------- lookup


@pytest.fixture
def assignments() -> pa.Table:
    return resolve_timeline(candidates([
        ("A1", None, "2026-03-01T14:30:00Z", 0, "M-old"),
        ("A1", "2026-03-01T14:30:00Z", None, 0, "M-new"),  # mid-day reassignment
        ("A2", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", 0, "M2"),
        ("A2", "2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z", 0, "M3"),
    ]))


def test_lookup_from_is_inclusive_and_to_exclusive(assignments):
    assert look(assignments, [
        ("A2", "2026-01-01T00:00:00Z"),  # exactly valid_from: the new value
        ("A2", "2026-01-31T23:59:59.999999Z"),
        ("A2", "2026-02-01T00:00:00Z"),  # exactly valid_to: no longer
        ("A2", "2026-03-31T23:59:59Z"),
        ("A2", "2026-04-01T00:00:00Z"),
    ]) == ["M2", "M2", None, "M3", None]


def test_lookup_null_bounds_are_unbounded_and_reassignment_mid_day(assignments):
    assert look(assignments, [
        ("A1", "1900-01-01T00:00:00Z"),
        ("A1", "2026-03-01T14:29:59.999999Z"),
        ("A1", "2026-03-01T14:30:00Z"),
        ("A1", "2999-12-31T00:00:00Z"),
    ]) == ["M-old", "M-old", "M-new", "M-new"]


def test_lookup_gaps_unknown_keys_and_nulls_give_null(assignments):
    assert look(assignments, [
        ("A2", "2026-02-15T00:00:00Z"),  # gap between two intervals
        ("A2", "2025-12-31T23:59:59Z"),  # before the first
        ("nobody", "2026-03-01T00:00:00Z"),
        (None, "2026-03-01T00:00:00Z"),
        ("A1", None),
    ]) == [None, None, None, None, None]


def test_lookup_timestamps_with_offsets_are_instants(assignments):
    # 09:30-05:00 is 14:30Z: the new manager.
    keys = pa.array(["A1", "A1"])
    times = pa.array(
        [dt.datetime(2026, 3, 1, 9, 29, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
         dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))],
        pa.timestamp("us", tz="America/New_York"),
    )
    assert lookup_asof(assignments, keys, times).to_pylist() == ["M-old", "M-new"]


def test_lookup_accepts_other_units_and_chunked_inputs(assignments):
    keys = pa.chunked_array([["A2"], ["A2"]])
    times = pa.chunked_array(
        [pa.array([ts("2026-01-15T00:00:00Z")], pa.timestamp("ns", tz="UTC")),
         pa.array([ts("2026-03-15T00:00:00Z")], pa.timestamp("ns", tz="UTC"))]
    )
    assert lookup_asof(assignments, keys, times).to_pylist() == ["M2", "M3"]


def test_lookup_on_an_empty_timeline():
    empty = resolve_timeline(CANDIDATE_SCHEMA.empty_table())
    assert look(empty, [("A1", "2026-01-01T00:00:00Z")]) == [None]


def test_index_is_picklable_and_shares_a_key_space(assignments):
    index = AsOfIndex.build(assignments, keys=pa.array(["A0", "A1", "A2", "A9"]))
    clone = pickle.loads(pickle.dumps(index))
    codes = np.array([1, 2, 3, -1], dtype=np.int64)  # A1, A2, A9 (no intervals), unknown
    times = np.full(4, int(ts("2026-03-15T00:00:00Z").timestamp()) * 1_000_000, np.int64)
    found = clone.lookup_codes(codes, times)
    assert [None if c < 0 else clone.values[c].as_py() for c in found] == [
        "M-new", "M3", None, None]


def test_index_refuses_keys_missing_from_the_given_dictionary(assignments):
    with pytest.raises(ValueError):
        AsOfIndex.build(assignments, keys=pa.array(["A1"]))


def _brute_force(cands: list[tuple], key: str, t: int) -> str | None:
    best = None
    for k, start, end, priority, value in cands:
        if k == key and (start is None or start <= t) and (end is None or t < end):
            if best is None or (-priority, value) < (-best[0], best[1]):
                best = (priority, value)
    return None if best is None else best[1]


def test_resolve_and_lookup_agree_with_a_brute_force_reference():
    rng = np.random.default_rng(7)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    cands = []
    for _ in range(300):
        key = f"k{rng.integers(0, 12)}"
        start = None if rng.random() < 0.15 else int(rng.integers(0, 100))
        end = None if rng.random() < 0.15 else int(rng.integers(0, 100))
        cands.append((key, start, end, int(rng.integers(-2, 3)), f"v{rng.integers(0, 6)}"))

    def as_time(x: int | None) -> dt.datetime | None:
        return None if x is None else epoch + dt.timedelta(microseconds=x)

    table = pa.table({
        "key": [c[0] for c in cands],
        "valid_from": [as_time(c[1]) for c in cands],
        "valid_to": [as_time(c[2]) for c in cands],
        "priority": [c[3] for c in cands],
        "value": [c[4] for c in cands],
    }, schema=CANDIDATE_SCHEMA)
    timeline = resolve_timeline(table)
    # Non-overlapping per key, and no two touching intervals with one value.
    rows = timeline.to_pylist()
    for before, after in zip(rows, rows[1:], strict=False):
        if before["key"] == after["key"]:
            assert before["valid_to"] is not None and after["valid_from"] is not None
            assert before["valid_to"] <= after["valid_from"]
            assert before["valid_to"] < after["valid_from"] or before["value"] != after["value"]
    queries = [(f"k{rng.integers(0, 13)}", int(rng.integers(-5, 105))) for _ in range(3000)]
    got = lookup_asof(
        timeline,
        pa.array([q[0] for q in queries]),
        pa.array([q[1] for q in queries], pa.int64()).cast(TIME_TYPE),
    ).to_pylist()
    assert got == [_brute_force(cands, k, t) for k, t in queries]
