"""Duplicates and conflicting duplicates by event_id."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pytest

from pipelines.rules.dedupe import PUBLISHED_SOURCE, deduplicate, shard_of
from schemas.events import PAYLOAD_FIELDS
from tests.utils import events_table


def test_unique_events_pass_through_untouched():
    events = events_table([{"event_id": "e1"}, {"event_id": "e2"}])
    result = deduplicate(events)
    assert result.unique.equals(events)
    assert result.duplicates.num_rows == 0
    assert result.conflicts.num_rows == 0


def test_identical_repeat_is_counted_and_applied_once():
    events = events_table([{"event_id": "e1"}, {"event_id": "e2"}, {"event_id": "e1"}])
    result = deduplicate(events)
    assert sorted(result.unique["event_id"].to_pylist()) == ["e1", "e2"]
    assert result.duplicates.to_pylist() == [
        {"event_id": "e1", "source": "events.jsonl", "position": 3}
    ]
    assert result.conflicts.num_rows == 0


def test_same_instant_in_another_offset_and_trailing_zero_is_the_same_payload():
    events = events_table(
        [
            {"event_id": "e1", "event_time": "2026-03-01T12:00:00Z", "amount": "10.5"},
            {"event_id": "e1", "event_time": "2026-03-01T07:00:00-05:00", "amount": "10.50"},
        ]
    )
    result = deduplicate(events)
    assert result.unique.num_rows == 1
    assert result.duplicates.num_rows == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("amount", "101.00"),
        ("event_type", "deal_lost"),
        ("event_time", "2026-03-02T12:00:00Z"),
        ("deal_id", "D2"),
        ("account_id", "A2"),
        ("currency", "EUR"),
        ("stage", "Closed"),
        ("product", "Pro"),
        ("opportunity_owner_id", "P9"),
    ],
)
def test_repeat_with_any_different_field_is_a_conflicting_duplicate(field, value):
    assert field in PAYLOAD_FIELDS
    events = events_table([{"event_id": "e1"}, {"event_id": "e1", field: value}])
    result = deduplicate(events)
    assert result.unique["position"].to_pylist() == [1]  # the first occurrence wins
    assert result.duplicates.num_rows == 0
    [conflict] = result.conflicts.to_pylist()
    assert conflict["reason"] == "conflicting_duplicate"
    assert conflict["position"] == 2
    assert "events.jsonl:1" in conflict["detail"]


def test_first_occurrence_is_smallest_source_then_position_whatever_the_input_order():
    events = events_table(
        [
            {"event_id": "e1", "amount": "2.00", "source": "b.jsonl", "position": 1},
            {"event_id": "e1", "amount": "1.00", "source": "a.jsonl", "position": 9},
            {"event_id": "e1", "amount": "1.00", "source": "a.jsonl", "position": 3},
        ]
    )
    result = deduplicate(events)
    assert result.unique.select(["source", "position"]).to_pylist() == [
        {"source": "a.jsonl", "position": 3}
    ]
    assert result.duplicates["position"].to_pylist() == [9]
    assert result.conflicts["source"].to_pylist() == ["b.jsonl"]


def test_already_published_identical_event_is_a_duplicate():
    published = events_table([{"event_id": "e1"}]).select(["event_id", *PAYLOAD_FIELDS])
    events = events_table([{"event_id": "e1"}, {"event_id": "e2"}])
    result = deduplicate(events, published)
    assert result.unique["event_id"].to_pylist() == ["e2"]
    assert result.duplicates["event_id"].to_pylist() == ["e1"]


def test_already_published_event_with_new_payload_is_conflicting():
    published = events_table([{"event_id": "e1"}]).select(["event_id", *PAYLOAD_FIELDS])
    events = events_table([{"event_id": "e1", "amount": "5.00"}])
    result = deduplicate(events, published)
    assert result.unique.num_rows == 0
    assert "already published" in result.conflicts["detail"][0].as_py()
    assert PUBLISHED_SOURCE not in result.conflicts["source"].to_pylist()


def test_published_rows_of_other_ids_are_ignored():
    published = events_table([{"event_id": "old"}]).select(["event_id", *PAYLOAD_FIELDS])
    events = events_table([{"event_id": "e1"}])
    assert deduplicate(events, published).unique.num_rows == 1


def test_shard_is_stable_in_range_and_equal_for_equal_ids():
    ids = pa.array([f"evt-{i:06d}" for i in range(10_000)] + ["evt-000001"])
    shards = shard_of(ids, 8)
    assert shards.min() >= 0 and shards.max() < 8
    assert shards[1] == shards[-1]
    counts = Counter(shards.tolist())
    assert min(counts.values()) > 10_000 / 8 * 0.8  # spread roughly evenly
    # the same answer for a sliced / chunked input (offsets honoured)
    chunked = pa.chunked_array([ids.slice(0, 5000), ids.slice(5000)])
    assert np.array_equal(shard_of(chunked, 8), shards)
    assert np.array_equal(shard_of(ids.slice(5000), 8), shards[5000:])
