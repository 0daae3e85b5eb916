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

The GX-free parts (suite loading, grouping and sampling, ``observed`` and
``examples``) are ``pipelines.quality.results``', shared with ``native_runner``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.errors import UserError
from pipelines.pandas_probe import import_pandas
from pipelines.quality.results import (  # re-exported for callers
    DEFAULT_MAX_ROWS,
    EXAMPLES,
    Result,
    run_suite_with,
)
from pipelines.quality.suites import Expectation, Suite
from schemas.outputs import CHECK_RESULT_SCHEMA  # re-exported for callers

__all__ = ["CHECK_RESULT_SCHEMA", "DEFAULT_MAX_ROWS", "EXAMPLES", "check_suite_definitions",
           "run_suite", "warm_up"]

_DATASOURCE = "revattr"


@dataclass
class _GX:
    """The process-wide GX state: module, ephemeral context, datasource, batch definitions."""

    gx: Any
    context: Any
    datasource: Any
    configuration: Any  # ExpectationConfiguration
    batch_definitions: dict[str, Any] = field(default_factory=dict)
    suites: dict[tuple[Path, str, str, tuple[str, ...]], Any] = field(default_factory=dict)


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
    # per group of expectations: a sampled frame's row counts are validated apart
    key = (suite.path, suite.name, frame, tuple(e.name for e in expectations))
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
    return run_suite_with(_validate, stage, suite_name, frames, parameters, max_rows=max_rows,
                          notes=notes, suites_dir=suites_dir, now=now)


def _validate(suite: Suite, frame: str, expectations: list[Expectation], data: pa.Table,
              values: dict[str, Any]) -> dict[str, Result]:
    """GX results by expectation name.

    ``SUMMARY`` gives the positions of the first failing rows cheaply; asking GX
    for ``unexpected_index_column_names`` instead would build a record for every
    failing row (seconds on 100k rows), so example rows are taken from ``data``.
    """
    pd = import_pandas()

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
    return {r.expectation_config.meta.get("name"): _result(r) for r in validation.results}


def _result(result: Any) -> Result:
    """A GX ``ExpectationValidationResult`` as a ``Result``."""
    info = result.exception_info or {}
    error = None
    if info.get("raised_exception"):
        error = str(info.get("exception_message") or "exception")
    return Result(success=bool(result.success), details=result.result or {}, error=error)
