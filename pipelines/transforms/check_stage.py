"""CheckStage: run one expectation suite on a stage's output, once per run.

Wiring only: the reductions and the suite run are ``pipelines.quality.stage_check``'s
(frames from ``stage_frames``, validation from ``gx_runner``; GX is imported by the
worker on the first check, never at graph construction).
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from pipelines.quality import stage_check as sc
from pipelines.quality import stage_frames as sf
from pipelines.quality.gx_runner import DEFAULT_MAX_ROWS
from pipelines.quality.stage_check import InputReducer, Reduction


class ReduceInput(beam.CombineFn):
    """Combines the batches of one input of a suite into one reduced table.

    ``kind == "rows"``: each batch contributes a deterministic systematic sample
    (every k-th row, k = ceil(rows / ``sample_rows_per_batch``), starting with the
    first row; ``None`` keeps every row); the combined sample is bounded by
    ``max_rows``, thinned the same way when it grows past it (which rows survive
    that thinning depends on how the runner bundled the batches).
    ``kind == "totals"`` / ``"daily"``: exact mergeable sums of every row.
    The logic is ``stage_check.InputReducer``'s.
    """

    def __init__(
        self,
        kind: str,
        input_name: str,
        sample_rows_per_batch: int | None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        super().__init__()
        self.reducer = InputReducer(kind, input_name, sample_rows_per_batch, max_rows)

    def create_accumulator(self) -> Reduction:
        return Reduction()

    def add_input(self, accumulator: Reduction, batch: pa.Table) -> Reduction:
        return self.reducer.add(accumulator, batch)

    def merge_accumulators(self, accumulators: Iterable[Reduction]) -> Reduction:
        return self.reducer.merge(accumulators)

    def extract_output(self, accumulator: Reduction) -> tuple[pa.Table, int]:
        return self.reducer.output(accumulator)


def _check(
    _: object,
    *reduced: tuple[pa.Table, int],
    stage: str,
    suite: str,
    parameters: dict | None,
) -> pa.Table:
    """The reduced inputs, in ``stage_check.reductions(suite)`` order -> suite results."""
    keys = [key for key, _, _ in sc.reductions(suite)]
    return sc.check_reduced(stage, suite, dict(zip(keys, reduced, strict=True)), parameters)


class CheckStage(beam.PTransform):
    """Validate a stage's ``pa.Table`` batches with one expectation suite.

    Input: a PCollection of batches, or for suites reading several inputs
    (``stage_frames.INPUTS``) a dict ``{input name: PCollection}``, e.g.
    ``{"territory_revenue": view, "attributed_events": facts}``. Output: a
    PCollection of one table (``gx_runner.CHECK_RESULT_SCHEMA``), one row per
    expectation.

    Sampling: of every batch the rows 0, k, 2k, ... are kept, with
    k = ceil(batch rows / ``sample_rows_per_batch``) (``None``: every row, for
    small inputs such as reference tables or a view whose key uniqueness must
    be checked exhaustively); the samples are combined by one
    ``CombineGlobally`` bounded at ``max_sample_rows``, and the suite runs once
    on the combined sample; ``observed`` says when a frame was sampled. Totals
    (views against facts, reconciliation per day) are exact sums, never sampled.

    An empty input gives empty frames: column-value expectations pass
    vacuously, row-count expectations are evaluated on zero rows, aggregate
    statistics (e.g. the UNASSIGNED share) are reported as not evaluated.
    """

    def __init__(
        self,
        stage: str,
        suite: str,
        sample_rows_per_batch: int | None = sc.DEFAULT_SAMPLE_ROWS_PER_BATCH,
        parameters: dict | None = None,
        max_sample_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        super().__init__()
        sc.check_settings(suite, sample_rows_per_batch)
        self.stage = stage
        self.suite = suite
        self.sample_rows_per_batch = sample_rows_per_batch
        self.parameters = dict(parameters) if parameters else None
        self.max_sample_rows = max_sample_rows

    def expand(self, inputs: beam.PCollection | dict[str, beam.PCollection]) -> beam.PCollection:
        needed = sf.INPUTS[self.suite]
        if not isinstance(inputs, dict):
            if len(needed) != 1:
                raise ValueError(
                    f"suite {self.suite} reads {', '.join(needed)}: pass a dict of PCollections"
                )
            inputs = {next(iter(needed)): inputs}
        sc.check_input_names(self.suite, inputs)
        reduced = []
        for key, name, kind in sc.reductions(self.suite):
            combine = ReduceInput(kind, name, self.sample_rows_per_batch, self.max_sample_rows)
            label = key.replace(":", "_")
            reduced.append(
                beam.pvalue.AsSingleton(
                    inputs[name] | f"Reduce_{label}" >> beam.CombineGlobally(combine)
                )
            )
        pipeline = next(iter(inputs.values())).pipeline
        return (
            pipeline
            | "Once" >> beam.Create([None])
            | "RunSuite"
            >> beam.Map(
                _check,
                *reduced,
                stage=self.stage,
                suite=self.suite,
                parameters=self.parameters,
            )
        )
