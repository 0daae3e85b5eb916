"""One stage check without a runner: reduce each input's batches, build frames, run the suite.

Pure (pyarrow/numpy; GX only with ``runner="gx"``). ``CheckStage`` runs the same
steps as a Beam ``CombineGlobally`` per input (``InputReducer`` is its
``CombineFn`` logic) followed by ``check_reduced``; ``run_stage_check`` folds
in-memory batches through them (the embedded engine, ``pipelines.embedded``).

Sampling: of every batch the rows 0, k, 2k, ... are kept, with
k = ceil(batch rows / ``sample_rows_per_batch``) (``None``: every row); the
combined sample is bounded by ``max_rows``, thinned the same way when it grows
past it. Totals and daily sums are exact, never sampled.

``runner`` picks the suite runner: ``"native"`` (``native_runner``, pyarrow; the
default) or ``"gx"`` (``gx_runner``, Great Expectations); same results.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from pipelines.quality import stage_frames as sf
from pipelines.quality.results import DEFAULT_MAX_ROWS, runner_module

DEFAULT_SAMPLE_ROWS_PER_BATCH = 5000


class Reduction:
    """The reduced rows or totals so far, and how many input rows they cover."""

    __slots__ = ("tables", "seen", "kept")

    def __init__(self, tables: list[pa.Table] | None = None, seen: int = 0) -> None:
        self.tables = tables or []
        self.seen = seen
        self.kept = sum(t.num_rows for t in self.tables)


@dataclass(frozen=True)
class InputReducer:
    """Reduces the batches of one input of a suite (``kind``: rows, totals or daily)."""

    kind: str
    input_name: str
    sample_rows_per_batch: int | None
    max_rows: int = DEFAULT_MAX_ROWS

    def add(self, reduction: Reduction, batch: pa.Table) -> Reduction:
        reduced = sf.reduce_input(self.kind, batch, self.input_name)
        if self.kind == "rows" and self.sample_rows_per_batch is not None:
            reduced, _ = sf.systematic_sample(reduced, self.sample_rows_per_batch)
        return self._bounded(Reduction(reduction.tables + [reduced],
                                       reduction.seen + batch.num_rows))

    def merge(self, reductions: Iterable[Reduction]) -> Reduction:
        reductions = list(reductions)
        merged = Reduction([t for r in reductions for t in r.tables],
                           sum(r.seen for r in reductions))
        return self._bounded(merged)

    def output(self, reduction: Reduction) -> tuple[pa.Table, int]:
        """(reduced table, input rows it covers)."""
        return sf.merge_reduced(self.kind, reduction.tables, self.input_name), reduction.seen

    def reduce(self, batches: Iterable[pa.Table]) -> tuple[pa.Table, int]:
        """All batches in order (one bundle): what ``output`` gives after adding each."""
        reduction = Reduction()
        for batch in batches:
            reduction = self.add(reduction, batch)
        return self.output(reduction)

    def _bounded(self, reduction: Reduction) -> Reduction:
        if self.kind != "rows":
            if len(reduction.tables) > 1:  # keep partial sums small
                merged = sf.merge_reduced(self.kind, reduction.tables, self.input_name)
                return Reduction([merged], reduction.seen)
            return reduction
        if reduction.kept <= self.max_rows:
            return reduction
        merged = sf.merge_reduced("rows", reduction.tables, self.input_name)
        thinned, _ = sf.systematic_sample(merged, self.max_rows)
        return Reduction([thinned], reduction.seen)


def check_settings(suite: str, sample_rows_per_batch: int | None) -> None:
    """ValueError for an unknown suite or a sample size below 1."""
    if suite not in sf.INPUTS:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(sf.INPUTS)}")
    if sample_rows_per_batch is not None and sample_rows_per_batch < 1:
        raise ValueError("sample_rows_per_batch must be >= 1 (or None for every row)")


def check_input_names(suite: str, names: Iterable[str]) -> None:
    """ValueError unless ``names`` are exactly the inputs ``suite`` reads."""
    needed = sf.INPUTS[suite]
    names = list(names)
    if set(names) != set(needed):
        raise ValueError(f"suite {suite} reads {', '.join(needed)}, got {', '.join(names)}")


def reductions(suite: str) -> list[tuple[str, str, str]]:
    """(key, input name, kind) of every reduction ``suite`` needs, in a fixed order."""
    return [(sf.reduced_name(name, kind), name, kind)
            for name, kinds in sf.INPUTS[suite].items() for kind in kinds]


def check_reduced(stage: str, suite: str, reduced: Mapping[str, tuple[pa.Table, int]],
                  parameters: dict | None = None, *, runner: str = "native") -> pa.Table:
    """Build the suite's frames from its reduced inputs (key -> (table, rows seen)) and
    validate them; frames built from a sample say so in ``observed``."""
    keys = reductions(suite)
    frames = sf.build_frames(suite, {key: reduced[key][0] for key, _, _ in keys})
    rows = {name: (reduced[key][0].num_rows, reduced[key][1])
            for key, name, kind in keys if kind == "rows"}
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
    return runner_module(runner).run_suite(stage, suite, frames, parameters, notes=notes)


def run_stage_check(
    stage: str,
    suite: str,
    inputs: Mapping[str, Sequence[pa.Table]],
    sample_rows_per_batch: int | None = DEFAULT_SAMPLE_ROWS_PER_BATCH,
    parameters: dict | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    *,
    runner: str = "native",
) -> pa.Table:
    """``CheckStage`` on in-memory batches: ``inputs`` maps each input the suite reads
    (``stage_frames.INPUTS``) to its batches; returns ``CHECK_RESULT_SCHEMA`` rows."""
    runner_module(runner)  # an unknown runner fails before any work
    check_settings(suite, sample_rows_per_batch)
    check_input_names(suite, inputs)
    reduced = {
        key: InputReducer(kind, name, sample_rows_per_batch, max_rows).reduce(inputs[name])
        for key, name, kind in reductions(suite)
    }
    return check_reduced(stage, suite, reduced, parameters, runner=runner)
