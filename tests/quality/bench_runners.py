"""Native vs GX suite runner on 100k-row frames, per suite (a measurement, not a test).

    .venv/bin/python -m tests.quality.bench_runners [--rows 100000] [--repeat 3]

Each suite's frames are the clean data set's (``tests.quality``) tiled to ``--rows``
rows per frame, with the columns that must be unique made unique (so the checks
pass, as in a healthy run). Frames are built once; only ``run_suite`` is timed
(best of ``--repeat``), after GX's one-time import and context creation, which
is reported apart. ``max_rows`` is ``--rows`` (no sampling) unless given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.quality.stage_frames import frames_from_tables
from pipelines.quality.suites import SUITES, load_suite
from tests.quality.test_planted_defects import CLEAN


def _unique_columns(suite: str) -> dict[str, set[str]]:
    columns: dict[str, set[str]] = {}
    for expectation in load_suite(suite).expectations:
        if expectation.type in ("expect_column_values_to_be_unique",
                                "expect_compound_columns_to_be_unique"):
            columns.setdefault(expectation.batch, set()).update(expectation.columns())
    return columns


def _distinct(column: pa.ChunkedArray) -> pa.Array:
    """Values 0..n-1 made into the column's type (distinct per row)."""
    n = len(column)
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.array([f"k{i}" for i in range(n)], kind)
    if pa.types.is_date(kind):
        start = np.datetime64("2000-01-01")
        return pa.array(start + np.arange(n).astype("timedelta64[D]")).cast(kind)
    if pa.types.is_timestamp(kind):
        start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        return pa.array([start + dt.timedelta(seconds=i) for i in range(n)], kind)
    return pa.array(np.arange(n)).cast(kind)


def tiled(suite: str, rows: int) -> dict[str, pa.Table]:
    """The suite's clean frames, each grown to ``rows`` rows."""
    unique = _unique_columns(suite)
    frames = {}
    for name, table in frames_from_tables(suite, CLEAN[suite]()).items():
        if table.num_rows == 0 or name == "totals":  # derived / one row per measure
            frames[name] = table
            continue
        copies = -(-rows // table.num_rows)
        big = pa.concat_tables([table] * copies).slice(0, rows).combine_chunks()
        keys = sorted(unique.get(name, ()))
        for column in keys[:1]:  # one distinct column makes a compound key unique too
            big = big.set_column(big.schema.get_field_index(column),
                                 big.schema.field(column), _distinct(big[column]))
        if suite == "reconciliation":  # one row per day: keep it balanced
            big = big.set_column(big.schema.get_field_index("balanced"), "balanced",
                                 pc.fill_null(pc.equal(big["events_total"],
                                                       big["territory_total"]), False))
        frames[name] = big
    return frames


def _best(run, repeat: int) -> tuple[float, pa.Table]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-rows", type=int, default=None)
    args = parser.parse_args(argv)
    max_rows = args.max_rows or args.rows

    started = time.perf_counter()
    from pipelines.quality import native_runner
    native_import = time.perf_counter() - started
    from pipelines.quality import gx_runner
    gx_start = gx_runner.warm_up()
    print(f"one-time: native import {native_import * 1000:.0f} ms, "
          f"GX import + context {gx_start:.2f} s")
    print(f"{'suite':<26}{'exp.':>5}{'rows':>9}{'native ms':>11}{'gx ms':>10}{'gx/native':>10}"
          "  same results")
    total_native = total_gx = 0.0
    for suite in SUITES:
        frames = tiled(suite, args.rows)
        rows = sum(t.num_rows for t in frames.values())
        expectations = len(load_suite(suite).expectations)

        def run_native(suite=suite, frames=frames):
            return native_runner.run_suite(suite, suite, frames, max_rows=max_rows)

        def run_gx(suite=suite, frames=frames):
            return gx_runner.run_suite(suite, suite, frames, max_rows=max_rows)

        native_s, native = _best(run_native, args.repeat)
        gx_s, gx = _best(run_gx, args.repeat)
        total_native += native_s
        total_gx += gx_s
        failed = [r["expectation"] for r in native.to_pylist() if not r["success"]]
        print(f"{suite:<26}{expectations:>5}{rows:>9}{native_s * 1000:>11.1f}"
              f"{gx_s * 1000:>10.0f}{gx_s / native_s:>10.0f}  "
              f"{native.equals(gx)}{'  failed: ' + ', '.join(failed) if failed else ''}")
    print(f"{'all suites':<40}{total_native * 1000:>11.1f}{total_gx * 1000:>10.0f}"
          f"{total_gx / total_native:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
