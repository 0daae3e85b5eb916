"""Run one expectation suite on its frames with Great Expectations (pandas).

``run_suite(stage, suite_name, frames)`` validates each frame (``meta.batch``)
with the suite's expectations for it and returns one row per expectation
(``CHECK_RESULT_SCHEMA``), in suite-file order.

* GX is imported lazily, on the first check, with its analytics, progress bars,
  warnings and log noise switched off. One ephemeral context per process is
  created and reused (start-up is the slow part); calls are serialised by a
  lock, so Beam worker threads may share it.
* Arrow -> pandas only for the columns the frame's expectations and examples
  need. Frames longer than ``max_rows`` are validated on a deterministic
  systematic sample (every k-th row) and ``observed`` says so; row-count
  expectations always see the true row count.
* On an empty frame, column-value expectations pass vacuously; aggregate
  statistics that do not exist without rows (mean, ...) are recorded as passed
  with ``observed`` "not evaluated: no rows"; row-count expectations are
  evaluated.
* ``examples``: a JSON list of up to ``EXAMPLES`` failing values (with the
  frame's ``id_columns``), or, for row-count expectations on a derived frame,
  its first rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.errors import UserError
from pipelines.quality.stage_frames import systematic_sample
from pipelines.quality.suites import Expectation, Suite, load_suite
from schemas.outputs import CHECK_RESULT_SCHEMA  # re-exported for callers

DEFAULT_MAX_ROWS = 200_000
EXAMPLES = 5
_DATASOURCE = "revattr"


@dataclass
class _GX:
    """The process-wide GX state: module, ephemeral context, datasource, batch definitions."""

    gx: Any
    context: Any
    datasource: Any
    configuration: Any  # ExpectationConfiguration
    batch_definitions: dict[str, Any] = field(default_factory=dict)
    suites: dict[tuple[Path, str, str], Any] = field(default_factory=dict)


_STATE: _GX | None = None
_LOCK = threading.RLock()


def _silence_gx_logging() -> None:
    """GX logs at INFO (and sets some of its loggers' levels itself): keep all of it quiet."""
    names = ["great_expectations", "posthog"] + [
        name for name in list(logging.root.manager.loggerDict)
        if name.startswith("great_expectations.")]
    for name in names:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        logger.propagate = name != "great_expectations" and name != "posthog"
        if not logger.propagate and not logger.handlers:
            logger.addHandler(logging.NullHandler())


def _gx() -> _GX:
    """Import GX and build the ephemeral context, once per process (call with _LOCK held)."""
    global _STATE
    if _STATE is not None:
        return _STATE
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    _silence_gx_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        _silence_gx_logging()  # modules imported above set their own levels
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False)
        datasource = context.data_sources.add_pandas(_DATASOURCE)
    _STATE = _GX(gx=gx, context=context, datasource=datasource,
                 configuration=ExpectationConfiguration)
    return _STATE


def warm_up() -> float:
    """Import GX and create the context now; returns the seconds it took."""
    import time

    started = time.perf_counter()
    with _LOCK:
        _gx()
    return time.perf_counter() - started


def _batch_definition(state: _GX, frame: str) -> Any:
    definition = state.batch_definitions.get(frame)
    if definition is None:
        asset = state.datasource.add_dataframe_asset(f"frame_{frame}")
        definition = asset.add_batch_definition_whole_dataframe("whole")
        state.batch_definitions[frame] = definition
    return definition


def _gx_suite(state: _GX, suite: Suite, frame: str, expectations: list[Expectation]) -> Any:
    """The GX suite of one frame's expectations (built once per loaded suite file).

    Expectations are built one by one: ``gx.ExpectationSuite`` itself only logs
    (and drops) an expectation it cannot build.
    """
    key = (suite.path, suite.name, frame)
    cached = state.suites.get(key)
    if cached is not None and cached[0] is suite:
        return cached[1]
    built = []
    for expectation in expectations:
        raw = expectation.config
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                configuration = state.configuration(
                    type=expectation.type, kwargs=dict(raw.get("kwargs", {})),
                    meta=dict(raw.get("meta", {})), notes=raw.get("notes"),
                    severity=expectation.severity)
                built.append(configuration.to_domain_obj())
        except Exception as error:  # GX raises its own and pydantic errors for bad configs
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            lines = lines or [type(error).__name__]
            # pydantic: "1 validation error for X" / "<field>" / "<what>": keep field and what
            message = " ".join(lines[1:3]) if "validation error" in lines[0] else lines[-1]
            raise UserError(f"Great Expectations refuses the expectation: {message}",
                            where=f"{suite.path}: expectation #{expectation.position + 1} "
                                  f"({expectation.name})",
                            hint="fix its type or kwargs") from None
    gx_suite = state.gx.ExpectationSuite(name=f"{suite.name}.{frame}", expectations=built)
    if len(gx_suite.expectations) != len(built):
        raise UserError("Great Expectations dropped an expectation", where=str(suite.path))
    state.suites[key] = (suite, gx_suite)
    return gx_suite


def check_suite_definitions(suite: Suite) -> None:
    """Build every GX expectation of ``suite`` (UserError naming the file when GX refuses one)."""
    with _LOCK:
        state = _gx()
        for frame, expectations in suite.by_batch().items():
            _gx_suite(state, suite, frame, expectations)


# ------------------------------------------------------------------ running


def run_suite(
    stage: str,
    suite_name: str,
    frames: Mapping[str, pa.Table],
    parameters: dict | None = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    notes: Mapping[str, str] | None = None,
    suites_dir: str | Path | None = None,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Validate ``frames`` with suite ``suite_name``; one result row per expectation.

    ``frames`` maps each of the suite's batches to an Arrow table (built by
    ``pipelines.quality.stage_frames``). ``parameters`` override the suite's
    declared parameters. ``notes`` (frame -> text) are appended to ``observed``,
    e.g. to say a frame is a sample made upstream.
    """
    suite = load_suite(suite_name, suites_dir)
    values = suite.resolve_parameters(parameters, now)
    missing = [b for b in suite.batches if b not in frames]
    if missing:
        raise ValueError(f"suite {suite_name} needs frame(s) {', '.join(missing)}")
    rows: list[dict[str, Any]] = []
    for frame, expectations in suite.by_batch().items():
        outcomes = _run_frame(suite, frame, frames[frame], expectations, values, max_rows,
                              (notes or {}).get(frame))
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


Outcome = tuple[bool, str, str | None]


def _run_frame(suite: Suite, frame: str, table: pa.Table, expectations: list[Expectation],
               values: dict[str, Any], max_rows: int, note: str | None) -> dict[str, Outcome]:
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
    sample, step = systematic_sample(table, max_rows)
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
    id_columns = [c for c in batch.id_columns if c in table.column_names]
    for group, data, is_sample in groups:
        if not group:
            continue
        needed = set().union(*(e.columns() for e in group))
        if any(e.is_about_columns for e in group):
            needed = set(data.column_names)
        ids = id_columns if any(not e.is_row_count for e in group) else []
        data = data.select([c for c in data.column_names if c in needed or c in ids])
        results = _validate(suite, frame, group, data, values)
        notes = [x for x in (note, sample_note if is_sample else None) if x]
        for expectation in group:
            outcomes[expectation.name] = _outcome(
                expectation, results.get(expectation.name), table, data, ids, notes, values)
    return outcomes


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def _validate(suite: Suite, frame: str, expectations: list[Expectation], data: pa.Table,
              values: dict[str, Any]) -> dict[str, Any]:
    """GX results by expectation name.

    ``SUMMARY`` gives the positions of the first failing rows cheaply; asking GX
    for ``unexpected_index_column_names`` instead would build a record for every
    failing row (seconds on 100k rows), so example rows are taken from ``data``.
    """
    import pandas as pd

    frame_df = data.to_pandas() if data.num_columns else pd.DataFrame(
        index=pd.RangeIndex(data.num_rows))
    parameters = {k: (pd.Timestamp(v) if isinstance(v, dt.datetime) else v)
                  for k, v in values.items()}
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES}
    with _LOCK:
        state = _gx()
        gx_suite = _gx_suite(state, suite, frame, expectations)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = _batch_definition(state, frame).get_batch(
                batch_parameters={"dataframe": frame_df})
            validation = batch.validate(gx_suite, expectation_parameters=parameters or None,
                                        result_format=result_format)
    return {r.expectation_config.meta.get("name"): r for r in validation.results}


def _bounds(expectation: Expectation, values: dict[str, Any]) -> str:
    """' (expected between 0 and 0.2)' from the kwargs, parameters substituted."""
    def value(key: str) -> Any:
        raw = expectation.kwargs.get(key)
        if isinstance(raw, dict) and "$PARAMETER" in raw:
            return values.get(raw["$PARAMETER"])
        return raw

    low, high = value("min_value"), value("max_value")
    if low is not None and high is not None:
        return f" (expected between {_fmt(low)} and {_fmt(high)})"
    if high is not None:
        return f" (expected at most {_fmt(high)})"
    if low is not None:
        return f" (expected at least {_fmt(low)})"
    return ""


def _outcome(expectation: Expectation, result: Any, table: pa.Table, data: pa.Table,
             ids: list[str], notes: list[str], values: dict[str, Any]) -> Outcome:
    """(success, observed, examples) of one GX result.

    ``table`` is the whole frame, ``data`` what GX validated (maybe a sample).
    """
    def with_notes(text: str) -> str:
        return "; ".join([text, *notes]) if notes else text

    if result is None:
        return False, with_notes("error: no result from Great Expectations"), None
    info = result.exception_info or {}
    if info.get("raised_exception"):
        message = str(info.get("exception_message") or "exception").splitlines()[0]
        return False, with_notes(f"error: {message}"), None
    details = result.result or {}
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
    """JSON-friendly form of a value coming from pandas/numpy/GX."""
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
