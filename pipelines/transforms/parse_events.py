"""ParseEvents: raw string batches -> typed events; bad records to the quarantine."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipelines.rules.validate import validate_events
from pipelines.transforms._outputs import Outputs, with_outputs
from pipelines.transforms._tables import QUARANTINE, non_empty, tagged


class _Validate(beam.DoFn):
    """A RAW_EVENT_SCHEMA batch -> EVENT_SCHEMA batch + REJECT_SCHEMA rows."""

    def __init__(self) -> None:
        self.rejected = Metrics.counter(self.__class__, "records_rejected")

    def process(self, raw: pa.Table) -> Iterator[pa.Table]:
        events, rejects = validate_events(raw)
        self.rejected.inc(rejects.num_rows)
        yield from non_empty(events)
        yield from tagged(QUARANTINE, rejects)


class ParseEvents(beam.PTransform):
    """Validate against the contract; outputs ``events`` and ``quarantine``."""

    def expand(self, raw: beam.PCollection) -> Outputs:
        return with_outputs(raw, "Validate", _Validate(), tags=[QUARANTINE], main="events")
