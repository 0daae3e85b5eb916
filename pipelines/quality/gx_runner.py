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

CHECK_RESULT_SCHEMA = pa.schema([
    pa.field("stage", pa.string(), nullable=False),
    pa.field("suite", pa.string(), nullable=False),
    pa.field("expectation", pa.string(), nullable=False),
    pa.field("severity", pa.string(), nullable=False),
    pa.field("success", pa.bool_(), nullable=False),
    pa.field("observed", pa.string()),
    pa.field("examples", pa.string()),
])

DEFAULT_MAX_ROWS = 200_000
EXAMPLES = 5
_DATASOURCE = "revattr"


@dataclass
class _GX:
    """The process-wide GX state: module, ephemeral context, datasource, batch definitions."""

    gx: Any
    context: Any
    datasource: Any
    batch_definitions: dict[str, Any] = field(default_factory=dict)
    suites: dict[tuple[Path, str, str], Any] = field(default_factory=dict)


_STATE: _GX | None = None
_LOCK = threading.RLock()


def _gx() -> _GX:
    """Import GX and build the ephemeral context, once per process (call with _LOCK held)."""
    global _STATE
    if _STATE is not None:
        return _STATE
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    for name in ("great_expectations", "great_expectations.core", "posthog"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False)
        datasource = context.data_sources.add_pandas(_DATASOURCE)
    _STATE = _GX(gx=gx, context=context, datasource=datasource)
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
    key = (suite.path, suite.name, frame)
    cached = state.suites.get(key)
    if cached is not None and cached[0] == tuple(e.position for e in expectations) and (
            cached[1] is suite):
        return cached[2]
    configs = []
    for expectation in expectations:
        config = dict(expectation.config)
        config["severity"] = expectation.severity
        configs.append(config)
    try:
        built = state.gx.ExpectationSuite(name=f"{suite.name}.{frame}", expectations=configs)
    except Exception as error:  # GX raises pydantic / its own errors for bad kwargs
        culprit = _culprit(state, expectations)
        raise UserError(f"Great Expectations refuses the suite: {error}".splitlines()[0],
                        where=f"{suite.path}: {culprit}",
                        hint="fix the expectation's type or kwargs") from None
    state.suites[key] = (tuple(e.position for e in expectations), suite, built)
    return built


def _culprit(state: _GX, expectations: list[Expectation]) -> str:
    """Which expectation GX refuses (built one by one to find it)."""
    for expectation in expectations:
        try:
            state.gx.ExpectationSuite(name="probe", expectations=[dict(expectation.config)])
        except Exception:
            return f"expectation #{expectation.position + 1} ({expectation.name})"
    return "an expectation"


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
        if absent:
            outcomes[expectation.name] = (
                False, f"error: frame {frame} has no column(s) {', '.join(absent)}", None)
        else:
            runnable.append(expectation)
    sample, step = systematic_sample(table, max_rows)
    notes = [note] if note else []
    if step > 1:
        notes.append(f"validated on every {step}th row: {sample.num_rows} of {n} rows")
    sampled = step > 1
    row_counts = [e for e in runnable if e.is_row_count]
    others = [e for e in runnable if not e.is_row_count]
    groups: list[tuple[list[Expectation], pa.Table, bool]] = []
    if sampled and row_counts:
        groups.append((row_counts, table.select([]), False))
        groups.append((others, sample, True))
    else:
        groups.append((runnable, sample, sampled))
    id_columns = [c for c in batch.id_columns if c in table.column_names]
    for group, data, is_sample in groups:
        if not group:
            continue
        needed = set().union(*(e.columns() for e in group))
        has_map = any(not e.is_row_count for e in group)
        ids = id_columns if has_map else []
        columns = [c for c in data.column_names if c in needed or c in ids]
        results = _validate(suite, frame, group, data.select(columns), values, ids)
        for expectation in group:
            result = results.get(expectation.name)
            outcomes[expectation.name] = _outcome(
                expectation, result, table, n, data.num_rows,
                notes if (is_sample or not expectation.is_row_count) else [
                    x for x in notes if x == note])
    return outcomes


def _validate(suite: Suite, frame: str, expectations: list[Expectation], data: pa.Table,
              values: dict[str, Any], ids: list[str]) -> dict[str, Any]:
    """GX results by expectation name."""
    import pandas as pd

    frame_df = data.to_pandas() if data.num_columns else pd.DataFrame(
        index=pd.RangeIndex(data.num_rows))
    parameters = {k: (pd.Timestamp(v) if isinstance(v, dt.datetime) else v)
                  for k, v in values.items()}
    result_format: dict[str, Any] = {"result_format": "SUMMARY",
                                     "partial_unexpected_count": EXAMPLES}
    if ids:
        result_format["unexpected_index_column_names"] = ids
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


def _outcome(expectation: Expectation, result: Any, table: pa.Table, n: int, validated: int,
             notes: list[str]) -> Outcome:
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
        elif observed_value is None and validated == 0:
            return True, with_notes("not evaluated: no rows"), None
        else:
            text = f"observed {_fmt(observed_value)}"
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
            found = details.get("partial_unexpected_index_list") or details.get(
                "partial_unexpected_list") or []
            if found and not all(isinstance(x, dict) for x in found):
                found = details.get("partial_unexpected_list") or []
            examples = _json([_plain(x) for x in found[:EXAMPLES]]) if found else None
    return success, with_notes(text), examples


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
