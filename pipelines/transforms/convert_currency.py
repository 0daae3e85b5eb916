"""ConvertCurrency: amounts to the reporting currency with the dated FX rule."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pyarrow as pa

from pipelines.rules.fx import convert_to_reporting
from pipelines.transforms._outputs import Outputs, with_outputs
from pipelines.transforms._tables import QUARANTINE, non_empty, tagged


class _Convert(beam.DoFn):
    def __init__(self, reporting_currency: str) -> None:
        self.reporting_currency = reporting_currency

    def process(self, events: pa.Table, reference: dict[str, pa.Table]) -> Iterator[pa.Table]:
        converted, rejects = convert_to_reporting(
            events, reference["fx_rates"], self.reporting_currency
        )
        yield from non_empty(converted)
        yield from tagged(QUARANTINE, rejects)


class ConvertCurrency(beam.PTransform):
    """Adds ``amount_reporting``; events without a rate go to ``quarantine`` (no_fx_rate)."""

    def __init__(self, reference: beam.pvalue.AsSingleton, reporting_currency: str = "USD") -> None:
        super().__init__()
        self.reference = reference
        self.reporting_currency = reporting_currency

    def expand(self, events: beam.PCollection) -> Outputs:
        return with_outputs(events, "ApplyDatedRate", _Convert(self.reporting_currency),
                            self.reference, tags=[QUARANTINE], main="converted")
