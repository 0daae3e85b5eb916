"""EnrichAsOf: account manager, territory and territory manager as of event_time."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from pipelines.rules.enrich import EnrichmentIndex, enrich


class EnrichAsOf(beam.PTransform):
    """Appends the attribution keys and ``attribution_status`` to each batch.

    ``index`` is a singleton side input holding the ``EnrichmentIndex`` built once
    from the reference snapshot.
    """

    def __init__(self, index: beam.pvalue.AsSingleton) -> None:
        super().__init__()
        self.index = index

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return events | "LookUpAsOfEventTime" >> beam.Map(_enrich, self.index)


def _enrich(events: pa.Table, index: EnrichmentIndex) -> pa.Table:
    return enrich(events, index)
