"""ReadEvents: event files (JSONL, CSV, Parquet) -> raw record batches."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.io import files
from pipelines.io.events_reader import iter_raw_batches
from pipelines.io.staging import INPUT_COUNT_SCHEMA
from pipelines.transforms._outputs import Outputs, with_outputs
from pipelines.transforms._tables import non_empty, tagged

COUNTS = "counts"


class _ReadFile(beam.DoFn):
    """One path, e.g. ``gs://bucket/events/part-00000.jsonl`` -> RAW_EVENT_SCHEMA tables
    (opened through Beam's FileSystems)."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.records = Metrics.counter(self.__class__, "records_read")

    def process(self, path: str) -> Iterator[pa.Table]:
        total = 0
        for batch in iter_raw_batches(path, batch_rows=self.batch_rows,
                                      opener=files.open_read):
            total += batch.num_rows
            self.records.inc(batch.num_rows)
            yield from non_empty(pa.Table.from_batches([batch]))
        counts = pa.table({"source": [path], "records": [total]}, schema=INPUT_COUNT_SCHEMA)
        yield from tagged(COUNTS, counts)


class ReadEvents(beam.PTransform):
    """Read every file once; the ``counts`` output says how many records each had."""

    def __init__(self, paths: list[str], batch_rows: int = 65536) -> None:
        super().__init__()
        self.paths = list(paths)
        self.batch_rows = batch_rows

    def expand(self, pbegin: beam.pvalue.PBegin) -> Outputs:
        paths = (
            pbegin
            | "ListFiles" >> beam.Create(self.paths)
            | "SpreadFiles" >> beam.Reshuffle()
        )
        return with_outputs(paths, "ReadFile", _ReadFile(self.batch_rows),
                            tags=[COUNTS], main="records")
