"""Attribute: each event's signed revenue effect, in the published fact shape."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from pipelines.rules.effects import apply_effects, to_attributed_events


class Attribute(beam.PTransform):
    """Enriched events -> ``attributed_events`` rows stamped with the run id."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def expand(self, events: beam.PCollection) -> beam.PCollection:
        return events | "ApplyRevenueEffects" >> beam.Map(_attribute, self.run_id)


def _attribute(events: pa.Table, run_id: str) -> pa.Table:
    return to_attributed_events(apply_effects(events), run_id)
