"""AggregateViews: the two parallel views, summed per (key, day)."""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from pipelines.rules.aggregate import VIEW_SCHEMAS, aggregate_view, merge_partials


class MergeViewPartials(beam.CombineFn):
    """Combines per-batch partial aggregates of one view into one table."""

    def __init__(self, view: str) -> None:
        super().__init__()
        self.view = view

    def create_accumulator(self) -> pa.Table:
        return VIEW_SCHEMAS[self.view].empty_table()

    def add_input(self, accumulator: pa.Table, partial: pa.Table) -> pa.Table:
        return merge_partials([accumulator, partial], self.view)

    def merge_accumulators(self, accumulators: Iterable[pa.Table]) -> pa.Table:
        return merge_partials(accumulators, self.view)

    def extract_output(self, accumulator: pa.Table) -> pa.Table:
        return accumulator


class AggregateViews(beam.PTransform):
    """Attributed events -> {view name: PCollection of one aggregate table}."""

    def expand(self, events: beam.PCollection) -> dict[str, beam.PCollection]:
        views = {}
        for view in VIEW_SCHEMAS:
            views[view] = (
                events
                | f"PreAggregate_{view}" >> beam.Map(aggregate_view, view)
                | f"Combine_{view}" >> beam.CombineGlobally(MergeViewPartials(view))
            )
        return views
