"""What both suite runners share (no Great Expectations here).

``run_suite_with(validate, ...)`` is the whole of ``run_suite`` except the
validation itself: load the suite, resolve its parameters, split each frame's
expectations into groups (row counts on the whole frame, the rest on a
deterministic systematic sample of at most ``max_rows`` rows), call
``validate(suite, frame, expectations, data, values)`` per group and turn each
``Result`` into a ``CHECK_RESULT_SCHEMA`` row: ``observed`` text and failing
``examples``.

A ``Result`` carries a GX-shaped ``details`` dict (the ``result`` of a GX
validation result in ``SUMMARY`` format): ``observed_value`` for aggregate and
table expectations, or ``element_count`` / ``unexpected_count`` /
``partial_unexpected_index_list`` (positions in ``data``) for map expectations.
``gx_runner`` converts GX's results into it, ``native_runner`` computes it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.quality.stage_frames import systematic_sample
from pipelines.quality.suites import Expectation, Suite, load_suite
from schemas.outputs import CHECK_RESULT_SCHEMA

DEFAULT_MAX_ROWS = 200_000
EXAMPLES = 5
RUNNERS = ("native", "gx")

Outcome = tuple[bool, str, str | None]


@dataclass(frozen=True)
class Result:
    """One expectation's result: success, GX-shaped details, or the error it raised."""

    success: bool
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the exception message when evaluating it raised


# (suite, frame, expectations, data, parameter values) -> results by expectation name
Validate = Callable[[Suite, str, list[Expectation], pa.Table, dict[str, Any]],
                    Mapping[str, Result]]


def runner_module(runner: str) -> Any:
    """The module (``native_runner`` or ``gx_runner``) whose ``run_suite`` ``runner`` names."""
    if runner == "native":
        from pipelines.quality import native_runner

        return native_runner
    if runner == "gx":
        from pipelines.quality import gx_runner

        return gx_runner
    raise ValueError(f"unknown check runner {runner!r}; use one of: {', '.join(RUNNERS)}")


def run_suite_with(
    validate: Validate,
    stage: str,
    suite_name: str,
    frames: Mapping[str, pa.Table],
    parameters: dict | None = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    notes: Mapping[str, str] | None = None,
    suites_dir: str | Path | None = None,
    now: dt.datetime | None = None,
    accept: Callable[[Suite], None] | None = None,
    engine: str = "Great Expectations",
) -> pa.Table:
    """``run_suite`` with ``validate`` doing the validation.

    ``accept(suite)`` runs right after loading (it raises for expectations the
    runner cannot evaluate); ``engine`` names the runner in "no result" errors.
    """
    suite = load_suite(suite_name, suites_dir)
    if accept is not None:
        accept(suite)
    values = suite.resolve_parameters(parameters, now)
    missing = [b for b in suite.batches if b not in frames]
    if missing:
        raise ValueError(f"suite {suite_name} needs frame(s) {', '.join(missing)}")
    rows: list[dict[str, Any]] = []
    for frame, expectations in suite.by_batch().items():
        outcomes = _run_frame(validate, suite, frame, frames[frame], expectations, values,
                              max_rows, (notes or {}).get(frame), engine)
        for expectation in expectations:
            success, observed, examples = outcomes[expectation.name]
            rows.append({
                "_position": expectation.position,
                "stage": stage, "suite": suite.name, "expectation": expectation.name,
                "severity": expectation.severity, "success": bool(success),
                "observed": observed, "examples": examples,
            })
    rows.sort(key=lambda r: r.pop("_position"))
    return pa.Table.from_pylist(rows, schema=CHECK_RESULT_SCHEMA)


def _run_frame(validate: Validate, suite: Suite, frame: str, table: pa.Table,
               expectations: list[Expectation], values: dict[str, Any], max_rows: int,
               note: str | None, engine: str) -> dict[str, Outcome]:
    batch = suite.batches[frame]
    n = table.num_rows
    outcomes: dict[str, Outcome] = {}
    runnable: list[Expectation] = []
    for expectation in expectations:
        absent = sorted(expectation.columns() - set(table.column_names))
        if absent and not expectation.is_about_columns:
            outcomes[expectation.name] = (
                False, f"error: frame {frame} has no column(s) {', '.join(absent)}", None)
        else:
            runnable.append(expectation)
    id_columns = [c for c in batch.id_columns if c in table.column_names]
    sample, step = systematic_sample(_sampled_columns(table, runnable, id_columns), max_rows)
    sampled = step > 1
    sample_note = (f"validated on a sample: every {_ordinal(step)} row, "
                   f"{sample.num_rows} of {n} rows") if sampled else None
    row_counts = [e for e in runnable if e.is_row_count]
    others = [e for e in runnable if not e.is_row_count]
    groups: list[tuple[list[Expectation], pa.Table, bool]] = []
    if sampled and row_counts:  # row counts always see the whole frame
        groups += [(row_counts, table.select([]), False), (others, sample, True)]
    else:
        groups.append((runnable, sample, sampled))
    for group, data, is_sample in groups:
        if not group:
            continue
        needed = set().union(*(e.columns() for e in group))
        if any(e.is_about_columns for e in group):
            needed = set(data.column_names)
        ids = id_columns if any(not e.is_row_count for e in group) else []
        data = data.select([c for c in data.column_names if c in needed or c in ids])
        results = validate(suite, frame, group, data, values)
        notes = [x for x in (note, sample_note if is_sample else None) if x]
        for expectation in group:
            outcomes[expectation.name] = _outcome(
                expectation, results.get(expectation.name), table, data, ids, notes, values,
                engine)
    return outcomes


def _sampled_columns(table: pa.Table, runnable: list[Expectation],
                     id_columns: list[str]) -> pa.Table:
    """The columns some group may read (sampling only those is cheaper, same values)."""
    if any(e.is_about_columns for e in runnable):
        return table
    needed = set(id_columns).union(*(e.columns() for e in runnable))
    columns = [c for c in table.column_names if c in needed]
    return table.select(columns) if columns else table  # a table of no columns loses its rows


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def parameter_value(raw: Any, values: dict[str, Any]) -> Any:
    """A kwarg value with a ``{"$PARAMETER": name}`` replaced by the parameter's value."""
    if isinstance(raw, dict) and "$PARAMETER" in raw:
        return values.get(raw["$PARAMETER"])
    return raw


def _bounds(expectation: Expectation, values: dict[str, Any]) -> str:
    """' (expected between 0 and 0.2)' from the kwargs, parameters substituted."""
    low = parameter_value(expectation.kwargs.get("min_value"), values)
    high = parameter_value(expectation.kwargs.get("max_value"), values)
    if low is not None and high is not None:
        return f" (expected between {_fmt(low)} and {_fmt(high)})"
    if high is not None:
        return f" (expected at most {_fmt(high)})"
    if low is not None:
        return f" (expected at least {_fmt(low)})"
    return ""


def _outcome(expectation: Expectation, result: Result | None, table: pa.Table, data: pa.Table,
             ids: list[str], notes: list[str], values: dict[str, Any],
             engine: str = "Great Expectations") -> Outcome:
    """(success, observed, examples) of one result.

    ``table`` is the whole frame, ``data`` what was validated (maybe a sample).
    """
    def with_notes(text: str) -> str:
        return "; ".join([text, *notes]) if notes else text

    if result is None:
        return False, with_notes(f"error: no result from {engine}"), None
    if result.error is not None:
        message = result.error.splitlines()[0] if result.error else ""
        return False, with_notes(f"error: {message}"), None
    details = result.details
    success = bool(result.success)
    if "observed_value" in details:
        observed_value = details["observed_value"]
        if expectation.is_row_count:
            text = f"{observed_value} row(s)"
        elif observed_value is None and data.num_rows == 0:
            return True, with_notes("not evaluated: no rows"), None
        else:
            text = f"observed {_fmt(observed_value)}{_bounds(expectation, values)}"
    elif "unexpected_count" in details:
        bad, total = details.get("unexpected_count") or 0, details.get("element_count") or 0
        text = f"{bad} of {total} value(s) unexpected"
        if bad and total:
            text += f" ({_fmt(100.0 * bad / total)}%)"
    else:
        text = "passed" if success else "failed"
    examples = None
    if not success:
        if expectation.is_row_count:
            examples = _json([_plain_row(r) for r in table.slice(0, EXAMPLES).to_pylist()])
        else:
            examples = _map_examples(expectation, details, data, ids)
    return success, with_notes(text), examples


def _map_examples(expectation: Expectation, details: dict[str, Any], data: pa.Table,
                  ids: list[str]) -> str | None:
    """The first failing rows: the expectation's columns, then the frame's id columns."""
    positions = details.get("partial_unexpected_index_list") or []
    if positions and all(isinstance(p, int) and 0 <= p < data.num_rows for p in positions):
        own = [c for c in data.column_names if c in expectation.columns()]
        columns = own + [c for c in ids if c not in own]
        rows = data.select(columns).take(pa.array(positions[:EXAMPLES], pa.int64())).to_pylist()
        return _json([_plain_row(r) for r in rows])
    values = details.get("partial_unexpected_list") or []
    return _json([_plain(v) for v in values[:EXAMPLES]]) if values else None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(_plain(value))


def _plain(value: Any) -> Any:
    """JSON-friendly form of a value coming from Arrow, pandas/numpy or GX."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | str):
        return value
    try:
        if value != value:  # NaN, NaT, pd.NA
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        try:
            return isoformat()
        except (TypeError, ValueError):  # NaT
            return None
    return str(value)


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in row.items()}


def _json(items: list[Any]) -> str:
    return json.dumps(items, ensure_ascii=False, default=str)
