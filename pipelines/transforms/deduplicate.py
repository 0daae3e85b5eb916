"""Deduplicate: one copy per event_id, within the run and against published history."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipelines.io.staging import write_part
from pipelines.rules.dedupe import deduplicate, shard_of
from pipelines.transforms._tables import QUARANTINE, tagged

DUPLICATES = "duplicates"


class History(Protocol):
    """Where already published events are looked up (DuckDB locally)."""

    def lookup(self, event_ids: pa.Array) -> pa.Table | None: ...


def split_by_shard(events: pa.Table, shards: int) -> Iterator[tuple[int, pa.Table]]:
    """(shard, rows) for each event_id shard present in the batch (batch and streaming dedupe)."""
    shard = shard_of(events["event_id"], shards)
    for value in np.unique(shard):
        yield int(value), events.filter(pa.array(shard == value))


def _spill_by_shard(events: pa.Table, shards: int, spill_dir: str) -> Iterator[tuple[int, str]]:
    """Write each shard's rows to a Parquet part; only the path travels through the shuffle."""
    for shard, rows in split_by_shard(events, shards):
        path = write_part(spill_dir, f"shard-{shard:05d}", rows)
        if path is not None:
            yield shard, str(path)


def _read_spilled(element: tuple[int, Iterable[str]]) -> tuple[int, list[pa.Table]]:
    shard, paths = element
    return shard, [pq.read_table(path) for path in sorted(paths)]


class _DeduplicateShard(beam.DoFn):
    """(shard, [event tables]) -> unique events; duplicates and conflicts tagged."""

    def __init__(self, history: History | None, batch_rows: int = 65536) -> None:
        self.history = history
        self.batch_rows = batch_rows
        self.duplicates = Metrics.counter(self.__class__, "duplicates")
        self.conflicts = Metrics.counter(self.__class__, "conflicting_duplicates")

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator[pa.Table]:
        _, tables = element
        events = pa.concat_tables(list(tables)).combine_chunks()
        published = None
        if self.history is not None:
            published = self.history.lookup(pc.unique(events["event_id"]))
        result = deduplicate(events, published)
        self.duplicates.inc(result.duplicates.num_rows)
        self.conflicts.inc(result.conflicts.num_rows)
        # In batch-sized slices: the fused steps downstream then hold one slice's
        # intermediate tables at a time, not copies of the whole shard.
        for start in range(0, result.unique.num_rows, self.batch_rows):
            yield result.unique.slice(start, self.batch_rows)
        yield from tagged(DUPLICATES, result.duplicates)
        yield from tagged(QUARANTINE, result.conflicts)


class Deduplicate(beam.PTransform):
    """Co-locate every copy of an event_id (by a stable hash shard), then dedupe.

    With ``spill_dir``, the shuffle carries file paths instead of rows: each batch's
    shard slices are written as Parquet parts under ``spill_dir`` (the run's staging
    area) and each shard is read back whole by one worker. Memory then holds about
    one shard at a time (input / ``shards``), not the whole input: the runner
    buffers what crosses a shuffle. Without it, the rows themselves are shuffled.
    """

    def __init__(self, history: History | None = None, shards: int = 8,
                 spill_dir: str | None = None, batch_rows: int = 65536) -> None:
        super().__init__()
        self.history = history
        self.shards = shards
        self.spill_dir = spill_dir
        self.batch_rows = batch_rows

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self.spill_dir is None:
            gathered = (
                events
                | "ShardByEventId" >> beam.FlatMap(split_by_shard, self.shards)
                | "GatherShard" >> beam.GroupByKey()
            )
        else:
            gathered = (
                events
                | "SpillByEventId" >> beam.FlatMap(_spill_by_shard, self.shards, self.spill_dir)
                | "GatherShardFiles" >> beam.GroupByKey()
                | "ReadShard" >> beam.Map(_read_spilled)
            )
        return gathered | "DropRepeats" >> beam.ParDo(
            _DeduplicateShard(self.history, self.batch_rows)
        ).with_outputs(DUPLICATES, QUARANTINE, main="unique")
