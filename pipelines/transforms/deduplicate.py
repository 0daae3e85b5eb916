"""Deduplicate: one copy per event_id, within the run and against published history
(read as data from the published facts parts)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipelines.io import files
from pipelines.io.files import write_parquet_part
from pipelines.rules.dedupe import PUBLISHED_COLUMNS, deduplicate, shard_of
from pipelines.transforms._outputs import Outputs, with_outputs
from pipelines.transforms._tables import QUARANTINE, tagged

DUPLICATES = "duplicates"


class History(Protocol):
    """Where already published events are looked up (the embedded engine, locally)."""

    def lookup(self, event_ids: pa.Array) -> pa.Table | None: ...


def split_by_shard(events: pa.Table, shards: int) -> Iterator[tuple[int, pa.Table]]:
    """(shard, rows) for each event_id shard present in the batch (batch and streaming dedupe)."""
    shard = shard_of(events["event_id"], shards)
    for value in np.unique(shard):
        yield int(value), events.filter(pa.array(shard == value))


def _spill_by_shard(events: pa.Table, shards: int, spill_dir: str) -> Iterator[tuple[int, str]]:
    """Write each shard's rows to a Parquet part; only the path travels through the shuffle."""
    for shard, rows in split_by_shard(events, shards):
        path = write_parquet_part(spill_dir, f"shard-{shard:05d}", rows)
        if path is not None:
            yield shard, path


def _read_published(path: str, shards: int, batch_rows: int) -> Iterator[tuple[int, pa.Table]]:
    """One published facts part (any FileSystems path) -> (shard, event_id + payload)."""
    with files.open_read(path) as handle:
        parquet = pq.ParquetFile(handle)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(PUBLISHED_COLUMNS)):
            yield from split_by_shard(pa.Table.from_batches([batch]), shards)


class _DeduplicateShard(beam.DoFn):
    """(shard, {"run": [tables or spilled paths], "published": [tables]}) -> unique events;
    duplicates and conflicts tagged. Published rows are data here, not a lookup."""

    def __init__(self, batch_rows: int = 65536) -> None:
        self.batch_rows = batch_rows
        self.duplicates = Metrics.counter(self.__class__, "duplicates")
        self.conflicts = Metrics.counter(self.__class__, "conflicting_duplicates")

    def process(self, element: tuple[int, dict[str, Iterable]]) -> Iterator[pa.Table]:
        _, groups = element
        tables = [files.read_parquet(item) if isinstance(item, str) else item
                  for item in sorted(groups["run"], key=_order)]
        if tables:  # else: published rows of this shard, none of this run's
            yield from self._deduplicate(pa.concat_tables(tables).combine_chunks(),
                                         list(groups.get("published", ())))

    def _deduplicate(self, events: pa.Table, history: list[pa.Table]) -> Iterator[pa.Table]:
        result = deduplicate(events, pa.concat_tables(history) if history else None)
        self.duplicates.inc(result.duplicates.num_rows)
        self.conflicts.inc(result.conflicts.num_rows)
        # In batch-sized slices: the fused steps downstream then hold one slice's
        # intermediate tables at a time, not copies of the whole shard.
        for start in range(0, result.unique.num_rows, self.batch_rows):
            yield result.unique.slice(start, self.batch_rows)
        yield from tagged(DUPLICATES, result.duplicates)
        yield from tagged(QUARANTINE, result.conflicts)


def _order(item: str | pa.Table) -> tuple[int, str]:
    """Spilled paths in name order (deterministic); tables keep their arrival order."""
    return (0, item) if isinstance(item, str) else (1, "")


class Deduplicate(beam.PTransform):
    """Co-locate every copy of an event_id (by a stable hash shard), then dedupe.

    ``history_parts``: the published facts parts (paths the workers can read, through
    FileSystems); their ``event_id`` and payload are read as data and joined with the
    run's events by shard (CoGroupByKey), so a worker never queries the store.

    With ``spill_dir``, the shuffle carries file paths instead of rows: each batch's
    shard slices are written as Parquet parts under ``spill_dir`` (the run's staging
    area, any FileSystems path) and each shard is read back whole by one worker.
    Memory then holds about one shard at a time (input / ``shards``), not the whole
    input: the runner buffers what crosses a shuffle. Without it, the rows themselves
    are shuffled.
    """

    def __init__(self, history_parts: list[str] | None = None, shards: int = 8,
                 spill_dir: str | None = None, batch_rows: int = 65536) -> None:
        super().__init__()
        self.history_parts = list(history_parts or [])
        self.shards = shards
        self.spill_dir = spill_dir
        self.batch_rows = batch_rows

    def expand(self, events: beam.PCollection) -> Outputs:
        if self.spill_dir is None:
            run = events | "ShardByEventId" >> beam.FlatMap(split_by_shard, self.shards)
        else:
            run = events | "SpillByEventId" >> beam.FlatMap(
                _spill_by_shard, self.shards, self.spill_dir)
        groups = {"run": run}
        if self.history_parts:
            groups["published"] = (
                events.pipeline
                | "PublishedParts" >> beam.Create(self.history_parts)
                | "SpreadPublishedParts" >> beam.Reshuffle()
                | "ReadPublishedIds" >> beam.FlatMap(
                    _read_published, self.shards, self.batch_rows)
            )
        gathered = groups | "GatherShard" >> beam.CoGroupByKey()
        return with_outputs(gathered, "DropRepeats", _DeduplicateShard(self.batch_rows),
                            tags=[DUPLICATES, QUARANTINE], main="unique")
