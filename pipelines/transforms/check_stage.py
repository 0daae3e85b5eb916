"""CheckStage: run one expectation suite on a stage's output, once per run.

Wiring only: the frames come from ``pipelines.quality.stage_frames``, the
validation from ``pipelines.quality.gx_runner`` (GX is imported by the worker
on the first check, never at graph construction).
"""

from __future__ import annotations

from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from pipelines.quality import stage_frames as sf
from pipelines.quality.gx_runner import DEFAULT_MAX_ROWS, run_suite


class _Reduction:
    """Accumulator: the reduced rows or totals so far, and how many input rows they cover."""

    __slots__ = ("tables", "seen", "kept")

    def __init__(self, tables: list[pa.Table] | None = None, seen: int = 0) -> None:
        self.tables = tables or []
        self.seen = seen
        self.kept = sum(t.num_rows for t in self.tables)


class ReduceInput(beam.CombineFn):
    """Combines the batches of one input of a suite into one reduced table.

    ``kind == "rows"``: each batch contributes a deterministic systematic sample
    (every k-th row, k = ceil(rows / ``sample_rows_per_batch``), starting with the
    first row; ``None`` keeps every row); the combined sample is bounded by
    ``max_rows``, thinned the same way when it grows past it (which rows survive
    that thinning depends on how the runner bundled the batches).
    ``kind == "totals"`` / ``"daily"``: exact mergeable sums of every row.
    """

    def __init__(
        self,
        kind: str,
        input_name: str,
        sample_rows_per_batch: int | None,
        max_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.input_name = input_name
        self.sample_rows_per_batch = sample_rows_per_batch
        self.max_rows = max_rows

    def create_accumulator(self) -> _Reduction:
        return _Reduction()

    def add_input(self, accumulator: _Reduction, batch: pa.Table) -> _Reduction:
        reduced = sf.reduce_input(self.kind, batch, self.input_name)
        if self.kind == "rows" and self.sample_rows_per_batch is not None:
            reduced, _ = sf.systematic_sample(reduced, self.sample_rows_per_batch)
        merged = _Reduction(accumulator.tables + [reduced], accumulator.seen + batch.num_rows)
        return self._bounded(merged)

    def merge_accumulators(self, accumulators: Iterable[_Reduction]) -> _Reduction:
        accumulators = list(accumulators)
        merged = _Reduction(
            [t for a in accumulators for t in a.tables], sum(a.seen for a in accumulators)
        )
        return self._bounded(merged)

    def extract_output(self, accumulator: _Reduction) -> tuple[pa.Table, int]:
        table = sf.merge_reduced(self.kind, accumulator.tables, self.input_name)
        return table, accumulator.seen

    def _bounded(self, reduction: _Reduction) -> _Reduction:
        if self.kind != "rows":
            if len(reduction.tables) > 1:  # keep partial sums small
                merged = sf.merge_reduced(self.kind, reduction.tables, self.input_name)
                return _Reduction([merged], reduction.seen)
            return reduction
        if reduction.kept <= self.max_rows:
            return reduction
        merged = sf.merge_reduced("rows", reduction.tables, self.input_name)
        thinned, _ = sf.systematic_sample(merged, self.max_rows)
        return _Reduction([thinned], reduction.seen)


def _check(
    _: object,
    *reduced: tuple[pa.Table, int],
    keys: list[tuple[str, str, str]],
    stage: str,
    suite: str,
    parameters: dict | None,
) -> pa.Table:
    """Build the suite's frames from the reduced inputs and validate them."""
    tables = {key: table for (key, _, _), (table, _) in zip(keys, reduced, strict=True)}
    rows = {
        name: (table.num_rows, seen)
        for (key, name, kind), (table, seen) in zip(keys, reduced, strict=True)
        if kind == "rows"
    }
    frames = sf.build_frames(suite, tables)
    notes = {}
    for frame, inputs in sf.FRAME_INPUTS[suite].items():
        parts = [
            f"built from {kept} of {seen} {name} rows (sampled per batch)"
            for name in inputs
            if name in rows
            for kept, seen in [rows[name]]
            if kept < seen
        ]
        if parts:
            notes[frame] = "; ".join(parts)
    return run_suite(stage, suite, frames, parameters, notes=notes)


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
        sample_rows_per_batch: int | None = 5000,
        parameters: dict | None = None,
        max_sample_rows: int = DEFAULT_MAX_ROWS,
    ) -> None:
        super().__init__()
        if suite not in sf.INPUTS:
            raise ValueError(f"unknown suite {suite!r}; known: {', '.join(sf.INPUTS)}")
        if sample_rows_per_batch is not None and sample_rows_per_batch < 1:
            raise ValueError("sample_rows_per_batch must be >= 1 (or None for every row)")
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
        if set(inputs) != set(needed):
            raise ValueError(
                f"suite {self.suite} reads {', '.join(needed)}, got {', '.join(inputs)}"
            )
        keys: list[tuple[str, str, str]] = []
        reduced = []
        for name, kinds in needed.items():
            for kind in kinds:
                key = sf.reduced_name(name, kind)
                keys.append((key, name, kind))
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
                keys=keys,
                stage=self.stage,
                suite=self.suite,
                parameters=self.parameters,
            )
        )
