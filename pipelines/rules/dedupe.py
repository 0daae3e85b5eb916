"""Duplicates and conflicting duplicates, by ``event_id`` (CONTRACT.md section 1).

The first occurrence of an event_id wins: an already published event first, then
the smallest (source, position). A later repeat with the same payload (every
contract field but ``event_id``, compared as typed values) is a duplicate:
counted, applied once. A later repeat with a different payload is quarantined
as ``conflicting_duplicate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules.validate import rejects_from
from schemas.events import PAYLOAD_FIELDS

# What the rule reads of already published events.
PUBLISHED_COLUMNS: tuple[str, ...] = ("event_id", *PAYLOAD_FIELDS)

PUBLISHED_SOURCE = "<published>"
DUPLICATE_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
    ]
)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class DedupeResult:
    """What deduplication made of one group of events."""

    unique: pa.Table  # events applied once
    duplicates: pa.Table  # DUPLICATE_SCHEMA: identical repeats, counted
    conflicts: pa.Table  # REJECT_SCHEMA rows, reason conflicting_duplicate


def shard_of(event_ids: pa.Array | pa.ChunkedArray, shards: int) -> np.ndarray:
    """A stable shard number in ``[0, shards)`` for each id (same on every worker).

    A vectorised polynomial hash of the UTF-8 bytes with a splitmix64 finish;
    Python's ``hash()`` is salted per process, so it cannot be used here.
    """
    if isinstance(event_ids, pa.ChunkedArray):
        event_ids = event_ids.combine_chunks()
    if len(event_ids) == 0:
        return np.zeros(0, dtype=np.int64)
    event_ids = pc.fill_null(event_ids.cast(pa.large_string()), "")
    offsets = np.frombuffer(event_ids.buffers()[1], dtype=np.int64)[
        event_ids.offset : event_ids.offset + len(event_ids) + 1
    ]
    data = np.frombuffer(event_ids.buffers()[2], dtype=np.uint8) if event_ids.buffers()[2] else None
    lengths = np.diff(offsets)
    start = offsets[:-1] - offsets[0]
    total = int(offsets[-1] - offsets[0])
    hashes = lengths.astype(np.uint64)
    if total:
        chunk = data[offsets[0] : offsets[-1]].astype(np.uint64)
        position = np.arange(total, dtype=np.int64) - np.repeat(start, lengths)
        powers = np.cumprod(np.full(int(lengths.max()), 0x100000001B3, dtype=np.uint64))
        with np.errstate(over="ignore"):
            terms = chunk * powers[position]
            sums = np.add.reduceat(terms, np.minimum(start, total - 1))
        hashes = hashes + np.where(lengths > 0, sums, np.uint64(0))
    with np.errstate(over="ignore"):  # splitmix64 finaliser
        hashes = (hashes ^ (hashes >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        hashes = (hashes ^ (hashes >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        hashes = hashes ^ (hashes >> np.uint64(31))
    return (hashes % np.uint64(shards)).astype(np.int64)


def _null_safe_equal(left: pa.Array, right: pa.Array) -> pa.Array:
    both_null = pc.and_(pc.is_null(left), pc.is_null(right))
    return pc.or_(pc.fill_null(pc.equal(left, right), False), both_null)


def _empty_result(events: pa.Table) -> DedupeResult:
    no_conflicts = rejects_from(events.slice(0, 0), "conflicting_duplicate", None)
    return DedupeResult(events, DUPLICATE_SCHEMA.empty_table(), no_conflicts)


def deduplicate(events: pa.Table, published: pa.Table | None = None) -> DedupeResult:
    """Split ``events`` (EVENT_SCHEMA) into unique events, duplicates and conflicts.

    ``published`` holds already published events (``event_id`` and PAYLOAD_FIELDS);
    only rows whose id occurs in ``events`` matter, others are ignored.
    """
    ids = events["event_id"]
    counts = pa.table({"event_id": ids}).group_by("event_id").aggregate([("event_id", "count")])
    repeated = counts.filter(pc.greater(counts["event_id_count"], 1))["event_id"]
    if published is not None and published.num_rows:
        published = published.filter(pc.is_in(published["event_id"], value_set=ids))
        repeated = pa.concat_arrays(
            [repeated.combine_chunks(), published["event_id"].combine_chunks()]
        ).unique()
    if len(repeated) == 0:
        return _empty_result(events)

    contested_mask = pc.is_in(ids, value_set=repeated)
    clean = events.filter(pc.invert(contested_mask))
    contested = events.filter(contested_mask)
    incoming = (
        contested.select(["event_id", *PAYLOAD_FIELDS, "source", "position"])
        .append_column("origin", pa.repeat(pa.scalar(1, pa.int8()), contested.num_rows))
        .append_column("row", pa.array(np.arange(contested.num_rows), pa.int64()))
    )
    parts = [incoming]
    if published is not None and published.num_rows:
        n = published.num_rows
        known = (
            published.select(list(PUBLISHED_COLUMNS))
            .append_column("source", pa.repeat(pa.scalar(PUBLISHED_SOURCE), n))
            .append_column("position", pa.repeat(pa.scalar(0, pa.int64()), n))
            .append_column("origin", pa.repeat(pa.scalar(0, pa.int8()), n))
            .append_column("row", pa.repeat(pa.scalar(-1, pa.int64()), n))
        )
        parts.insert(0, known.cast(incoming.schema))
    combined = pa.concat_tables(parts).combine_chunks()
    order = pc.sort_indices(
        combined,
        sort_keys=[
            ("event_id", "ascending"),
            ("origin", "ascending"),
            ("source", "ascending"),
            ("position", "ascending"),
        ],
    )
    combined = combined.take(order)

    sorted_ids = combined["event_id"].combine_chunks()
    starts = np.ones(combined.num_rows, dtype=bool)
    if combined.num_rows > 1:
        starts[1:] = pc.not_equal(sorted_ids[1:], sorted_ids[:-1]).to_numpy(zero_copy_only=False)
    index = np.arange(combined.num_rows)
    winner = np.maximum.accumulate(np.where(starts, index, 0))
    winner_rows = combined.take(pa.array(winner))
    same = pa.array(np.ones(combined.num_rows, dtype=bool))
    for field in PAYLOAD_FIELDS:
        same = pc.and_(
            same,
            _null_safe_equal(combined[field].combine_chunks(), winner_rows[field].combine_chunks()),
        )
    is_incoming = pc.equal(combined["origin"], 1)
    is_winner = pa.array(starts)
    later = pc.and_(is_incoming, pc.invert(is_winner))

    keep_rows = combined.filter(pc.and_(is_incoming, is_winner))["row"]
    duplicate_mask = pc.and_(later, same)
    conflict_mask = pc.and_(later, pc.invert(same))

    first_seen = pc.if_else(
        pc.equal(winner_rows["origin"], 0),
        "the already published event",
        pc.binary_join_element_wise(
            "the first occurrence at ",
            winner_rows["source"],
            ":",
            pc.cast(winner_rows["position"], pa.string()),
            "",
        ),
    )
    detail = pc.binary_join_element_wise(
        "event_id ", combined["event_id"], " has a different payload from ", first_seen, ""
    )
    conflict_rows = contested.take(combined.filter(conflict_mask)["row"])
    conflicts = rejects_from(conflict_rows, "conflicting_duplicate", detail.filter(conflict_mask))
    duplicates = (
        combined.filter(duplicate_mask).select(DUPLICATE_SCHEMA.names).cast(DUPLICATE_SCHEMA)
    )
    unique = pa.concat_tables([clean, contested.take(keep_rows)])
    return DedupeResult(unique, duplicates, conflicts)
