"""Benchmark harness: the Beam pipeline against the independent SQL reference.

Measurement only. For each (size, format) it runs, alternately, the pipeline and
``pipelines.reference_sql.compute_reference``, each in its own subprocess writing a
fresh DuckDB file, so every run's wall time and peak RSS are its own. After each
pair the two databases are compared (``compare_outputs``); any difference makes
the bench exit 1. Results are printed as a table, with the targets of the
performance issue beside them, and appended to ``bench/results.csv``.

    python -m pipelines.bench                      # the default plan (fits 15 min)
    BENCH_SIZES=1000000 BENCH_REPEATS=3 python -m pipelines.bench
    python -m pipelines.bench --sizes 1000000 --formats parquet --repeats 1
    python -m pipelines.bench --dry-run            # print the plan and its estimate only
    python -m pipelines.bench profile --size 1000000 --format parquet   # cProfile one run

See bench/README.md for what is measured and how the default plan is chosen.
Heavy imports (DuckDB, rich, Beam) happen inside functions: the child processes
import only what they run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# The data sets: realistic reference data, a few bad records, fixed seed.
SEED = 7
BAD_RATE = 0.01
ACCOUNTS = 50_000
TERRITORIES = 2_000
STARTUP_EVENTS = 100  # the tiny input whose run time is the fixed start-up cost
QUICK_SIZE = 2_000

DEFAULT_SIZES = (1_000_000, 5_000_000)
DEFAULT_FORMATS = ("parquet", "jsonl")
DEFAULT_REPEATS = 3
DEFAULT_BUDGET_S = 15 * 60
BUDGET_MARGIN = 0.9  # the default plan aims at 90% of the budget: estimates are rough
REFERENCE_THREADS = 2

# Business columns of attributed_events compared with the reference (as tests/test_end_to_end.py).
FACT_COLUMNS = (
    "event_id, event_type, event_time, day, deal_id, account_id, currency, amount, "
    "booked_revenue, pipeline_created, account_manager_id, territory_id, "
    "territory_manager_id, attribution_status"
)
COMPARED = (  # (pipeline relation, reference relation, columns; None = the reference's)
    ("attributed_events", "ref_attributed_events", FACT_COLUMNS),
    ("territory_revenue", "ref_territory_revenue", None),
    ("account_manager_revenue", "ref_account_manager_revenue", None),
)

# Targets of the performance issue.
TARGET_PARQUET_OFF_EPS = 1_000_000
TARGET_PARQUET_ON_EPS = 600_000
TARGET_JSONL_EPS = 300_000
TARGET_RATIO = 5.0
TARGET_RSS_MIB_AT_5M = 1.5 * 1024
TARGET_RSS_GROWTH = 1.3  # 5M peak RSS < 1.3 x the 1M figure

CSV_COLUMNS = (
    "timestamp_utc", "git_commit", "code_digest", "host", "cpus", "cpu_model", "python", "dataset",
    "size", "format", "checks", "repeats",
    "pipeline_s_median", "reference_s_median",
    "pipeline_eps_median", "pipeline_eps_excl_startup", "reference_eps_median",
    "ratio_median", "startup_s", "pipeline_rss_mib_max", "reference_rss_mib_max", "equal",
)

# Estimates used before this host has a row in results.csv: the first bench runs on the
# 2-core dev VM, 50k accounts / 2k territories (bench/README.md).
_FALLBACK = {
    "startup_s": 12.5,  # pipeline on 100 events: interpreter, imports, reference, graph
    "pipeline_eps": {"parquet": 45_000, "jsonl": 37_000},  # after start-up, checks off
    "reference_fixed_s": 2.0,
    "reference_eps": {"parquet": 33_000, "jsonl": 33_000},
    "checks_on_factor": 1.25,  # events/s after start-up, checks off / checks on
    "startup_on_extra_s": 13.5,  # importing and setting up Great Expectations
    "generate_eps": 250_000,
    "generate_fixed_s": 3.0,
    "compare_eps": 400_000,
}

Say = Callable[[str], None]


# ----------------------------------------------------------------------------- results


@dataclass
class BenchRow:
    """The measurements of one (size, format, checks) cell."""

    size: int
    format: str
    checks: str  # "off", "on" or "n/a" (the pipeline has no checks flag)
    repeats: int = 0
    pipeline_seconds: list[float] = field(default_factory=list)
    reference_seconds: list[float] = field(default_factory=list)
    pipeline_rss_mib: list[float] = field(default_factory=list)
    reference_rss_mib: list[float] = field(default_factory=list)
    startup_seconds: float | None = None
    differences: list[str] = field(default_factory=list)
    pairs: int = 0  # pipeline/reference pairs that were compared

    @property
    def equal(self) -> bool:
        return self.pairs > 0 and not self.differences

    @property
    def pipeline_eps(self) -> float | None:
        return _median([self.size / s for s in self.pipeline_seconds])

    @property
    def pipeline_eps_excl_startup(self) -> float | None:
        median = _median(self.pipeline_seconds)
        if median is None or self.startup_seconds is None or median <= self.startup_seconds:
            return None
        return self.size / (median - self.startup_seconds)

    @property
    def reference_eps(self) -> float | None:
        return _median([self.size / s for s in self.reference_seconds])

    @property
    def ratio(self) -> float | None:
        """Median over pairs of pipeline time / reference time."""
        return _median([p / r for p, r in zip(self.pipeline_seconds, self.reference_seconds,
                                               strict=False)])

    @property
    def peak_rss_mib(self) -> float | None:
        return max(self.pipeline_rss_mib, default=None)

    def csv_record(self, machine: dict[str, str]) -> dict[str, str]:
        return {
            **machine,
            "size": str(self.size), "format": self.format, "checks": self.checks,
            "repeats": str(self.repeats),
            "pipeline_s_median": _fmt(_median(self.pipeline_seconds), 2),
            "reference_s_median": _fmt(_median(self.reference_seconds), 2),
            "pipeline_eps_median": _fmt(self.pipeline_eps, 0),
            "pipeline_eps_excl_startup": _fmt(self.pipeline_eps_excl_startup, 0),
            "reference_eps_median": _fmt(self.reference_eps, 0),
            "ratio_median": _fmt(self.ratio, 2),
            "startup_s": _fmt(self.startup_seconds, 2),
            "pipeline_rss_mib_max": _fmt(self.peak_rss_mib, 0),
            "reference_rss_mib_max": _fmt(max(self.reference_rss_mib, default=None), 0),
            "equal": "yes" if self.equal else "no",
        }


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


# ----------------------------------------------------------------------------- comparison


def _sql_path(path: str | Path) -> str:
    return str(path).replace("'", "''")


def compare_outputs(pipeline_db: str | Path, reference_db: str | Path, sample: int = 3,
                    ) -> list[str]:
    """Differences between the pipeline's published outputs and the reference's.

    ``attributed_events`` (business columns), ``territory_revenue`` and
    ``account_manager_revenue``: ``EXCEPT`` both ways must be empty and the row
    counts equal; quarantined records per reason must match. Returns one line per
    difference (with up to ``sample`` example rows); empty when equal.
    """
    import duckdb

    differences: list[str] = []
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{_sql_path(pipeline_db)}' AS p (READ_ONLY)")
        con.execute(f"ATTACH '{_sql_path(reference_db)}' AS r (READ_ONLY)")
        tables = {(db, name) for db, name in con.execute(
            "SELECT database_name, table_name FROM duckdb_tables() "
            "UNION SELECT database_name, view_name FROM duckdb_views()").fetchall()}
        for mine, theirs, columns in COMPARED:
            missing = [f"{db}.{t}" for db, t in (("p", mine), ("r", theirs))
                       if (db, t) not in tables]
            if missing:
                differences.append(f"{mine}: missing relation(s) {', '.join(missing)}")
                continue
            if columns is None:
                names = [row[0] for row in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'r' "
                    "AND table_name = ? ORDER BY column_index", [theirs]).fetchall()]
                columns = ", ".join(f'"{n}"' for n in names)
            sides = ((f"p.{mine}", "pipeline", f"r.{theirs}", "reference"),
                     (f"r.{theirs}", "reference", f"p.{mine}", "pipeline"))
            for a, a_name, b, b_name in sides:
                query = f"SELECT {columns} FROM {a} EXCEPT SELECT {columns} FROM {b}"
                n = con.execute(f"SELECT count(*) FROM ({query})").fetchall()[0][0]
                if n:
                    rows = con.execute(f"{query} ORDER BY ALL LIMIT {sample}").fetchall()
                    differences.append(
                        f"{mine}: {n} row(s) of the {a_name} not in the {b_name}, e.g. {rows}")
            n_mine, n_theirs = con.execute(
                f"SELECT (SELECT count(*) FROM p.{mine}), (SELECT count(*) FROM r.{theirs})"
            ).fetchall()[0]
            if n_mine != n_theirs:
                differences.append(f"{mine}: {n_mine} rows in the pipeline, {n_theirs} in the "
                                   "reference")
        if ("p", "quarantine") in tables and ("r", "ref_quarantine_counts") in tables:
            got = dict(con.execute(
                "SELECT reason, count(*) FROM p.quarantine GROUP BY reason").fetchall())
            want = dict(con.execute("SELECT reason, n FROM r.ref_quarantine_counts").fetchall())
            if got != want:
                differences.append(f"quarantine by reason: pipeline {dict(sorted(got.items()))}, "
                                   f"reference {dict(sorted(want.items()))}")
    finally:
        con.close()
    return differences


# ----------------------------------------------------------------------------- data sets


def dataset_args(size: int, event_format: str, quick: bool = False) -> dict:
    """Arguments of ``generate_dataset`` for one bench data set (besides ``out_dir``)."""
    return {"events": size, "seed": SEED, "bad_rate": BAD_RATE, "event_format": event_format,
            "accounts": None if quick else ACCOUNTS,
            "territories": None if quick else TERRITORIES}


def _dataset_ok(path: Path, args: dict) -> bool:
    manifest = path / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError:
        return False
    recorded = {**data.get("args", {}), "seed": data.get("seed")}
    if any(recorded.get(key) != value for key, value in args.items()):
        return False
    files = [path / f for f in data.get("files", [])]
    files += [path / f for f in data.get("reference_files", [])]
    return bool(data.get("files")) and all(f.is_file() for f in files)


def ensure_dataset(data_dir: Path, size: int, event_format: str, quick: bool = False,
                   say: Say = print) -> Path:
    """``<data_dir>/<format>-<size>/``: reused when its manifest matches, else generated
    (into a temporary directory renamed at the end, so an interrupted run leaves nothing
    that looks complete)."""
    args = dataset_args(size, event_format, quick)
    return ensure_generated(data_dir / f"{event_format}-{size}", args, say)


def ensure_generated(path: Path, args: dict, say: Say = print) -> Path:
    """``generate_dataset(path, **args)`` unless ``path`` already holds that data set."""
    from pipelines.generate import generate_dataset

    if _dataset_ok(path, args):
        return path
    say(f"generating {path} ({args['events']:,} {args.get('event_format', 'jsonl')} events) ...")
    started = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(path, ignore_errors=True)
    generate_dataset(tmp, **args)
    tmp.rename(path)
    say(f"  generated in {time.perf_counter() - started:.1f}s")
    return path


def events_glob(dataset: Path, event_format: str) -> str:
    return str(dataset / "events" / f"*.{event_format}")


def expected_counts(dataset: Path) -> dict[str, int]:
    """What the generator says a correct run reports (input, accepted, duplicates, quarantined)."""
    expected = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))["expected"]
    return {k: int(expected[k]) for k in ("input_records", "accepted", "duplicates",
                                          "quarantined") if k in expected}


# ----------------------------------------------------------------------------- checks flag


def checks_modes(requested: Iterable[bool]) -> dict[str, list[str]]:
    """Label -> extra pipeline argv for each requested checks mode.

    Looks for a ``--checks`` or ``--no_checks`` flag in ``AttributionOptions``; without
    one the pipeline has a single mode, labelled ``"n/a"``."""
    requested = list(dict.fromkeys(bool(c) for c in requested))
    flags = _checks_flags()
    if flags is None:
        return {"n/a": []}
    return {("on" if mode else "off"): flags[mode] for mode in requested}


@functools.cache
def _option_actions() -> dict[str, argparse.Action]:
    """``AttributionOptions``' flags, as argparse sees them."""
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    from pipelines.options import AttributionOptions

    parser = _BeamArgumentParser(add_help=False)
    AttributionOptions._add_argparse_args(parser)
    return dict(parser._option_string_actions)  # noqa: SLF001 (introspection of our own flags)


def pipeline_flags(label: str, modes: dict[str, list[str]], work: Path) -> list[str]:
    """Flags of a pipeline run in checks mode ``label``: as ``revattr run`` does, a run
    with checks also writes the data-quality page (into the run's work directory)."""
    flags = list(modes[label])
    if label == "on" and "--quality_page" in _option_actions():
        flags.append(f"--quality_page={work / 'quality.html'}")
    return flags


def _checks_flags() -> dict[bool, list[str]] | None:
    actions = _option_actions()
    for name in ("--checks", "--no_checks", "--no-checks", "--skip_checks"):
        action = actions.get(name)
        if action is None:
            continue
        negative = name != "--checks"
        if isinstance(action, argparse.BooleanOptionalAction):
            positive, negated = (s for s in sorted(action.option_strings, key=len))
            return {True: [positive], False: [negated]}
        if action.nargs == 0:  # store_true / store_false / store_const
            return {True: [], False: [name]} if negative else {True: [name], False: []}
        values = {True: "true", False: "false"}
        if action.choices:
            choices = {str(c).lower(): str(c) for c in action.choices}
            for mode, candidates in ((True, ("on", "true", "yes", "all", "1")),
                                     (False, ("off", "false", "no", "none", "0"))):
                values[mode] = next((choices[c] for c in candidates if c in choices),
                                    values[mode])
        if negative:
            return {True: [f"{name}={values[False]}"], False: [f"{name}={values[True]}"]}
        return {True: [f"{name}={values[True]}"], False: [f"{name}={values[False]}"]}
    return None


# ----------------------------------------------------------------------------- children


@dataclass
class ChildResult:
    ok: bool
    seconds: float  # wall time seen by the parent: interpreter start to exit
    rss_mib: float | None
    data: dict
    error: str = ""


def _run_child(kind: str, args: list[str], log: Path, timeout: float) -> ChildResult:
    """``python -m pipelines.bench _child <kind> ...`` in a fresh interpreter."""
    result_file = log.with_suffix(".json")
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pipelines.bench", "_child", kind,
               f"--result={result_file}", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    with open(log, "wb") as out:
        try:
            proc = subprocess.run(command, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  env=env, timeout=timeout, check=False)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    seconds = time.perf_counter() - started
    data = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if code != 0 or not data:
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        reason = f"timed out after {timeout:.0f}s" if code is None else f"exit code {code}"
        return ChildResult(False, seconds, data.get("rss_mib"), data,
                           f"{kind} run failed ({reason}); log {log}:\n  " + "\n  ".join(tail))
    return ChildResult(True, seconds, data.get("rss_mib"), data)


def _child(argv: list[str]) -> int:
    """Child entry: run one pipeline or reference computation, write JSON with its figures."""
    parser = argparse.ArgumentParser(prog="pipelines.bench _child")
    parser.add_argument("kind", choices=("pipeline", "reference"))
    parser.add_argument("--result", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--profile", default=None, help="write a cProfile dump of the run here")
    args, extra = parser.parse_known_args(argv)
    import logging
    import resource

    logging.basicConfig(level=logging.ERROR)
    for name in ("apache_beam", "great_expectations", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    started = time.perf_counter()
    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    if args.kind == "pipeline":
        from pipelines.batch import run

        summary = run([f"--events={args.events}", f"--reference={args.reference}",
                       f"--db={args.db}", *extra])
        data = {"status": summary.status, "input_records": summary.input_records,
                "accepted": summary.accepted, "duplicates": summary.duplicates,
                "quarantined": summary.quarantined, "balanced": summary.balanced}
    else:
        import duckdb

        from pipelines.reference_sql import compute_reference

        con = duckdb.connect(args.db)
        con.execute(f"PRAGMA threads={REFERENCE_THREADS}")
        compute_reference(con, args.events, args.reference)
        total, accepted, duplicates, quarantined = con.execute(
            "SELECT * FROM ref_counts").fetchall()[0]
        con.close()
        data = {"status": "succeeded", "input_records": total, "accepted": accepted,
                "duplicates": duplicates, "quarantined": quarantined}
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # e.g. SDK workers
    data.update(seconds_in_child=time.perf_counter() - started,
                rss_mib=max(own, children) / 1024)  # ru_maxrss is in KiB on Linux
    Path(args.result).write_text(json.dumps(data))
    return 0


# ----------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Cell:
    """One (size, format) of the plan: ``repeats`` pairs, pipeline in each ``checks`` mode."""

    size: int
    format: str
    repeats: int
    checks: tuple[str, ...] = ("n/a",)

    def replace(self, **changes: object) -> Cell:
        return dataclasses.replace(self, **changes)


@dataclass
class Rates:
    """Throughput model for the estimate: the latest results.csv rows of this host, by
    (format, checks) and size (the nearest measured size is used), else _FALLBACK."""

    startup_s: dict[tuple[str, str], float] = field(default_factory=dict)
    pipeline_eps: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)
    reference_eps: dict[str, dict[int, float]] = field(default_factory=dict)
    source: str = "built-in estimates"

    @staticmethod
    def _nearest(by_size: dict[int, float] | None, size: int) -> float | None:
        if not by_size:
            return None
        return by_size[min(by_size, key=lambda s: abs(math.log(s / size)))]

    def pipeline_s(self, size: int, fmt: str, checks: str) -> float:
        eps = self._nearest(self.pipeline_eps.get((fmt, checks)), size)
        if eps is None:
            eps = _FALLBACK["pipeline_eps"][fmt]
            if checks == "on":
                eps /= _FALLBACK["checks_on_factor"]
        return self.startup(fmt, checks) + size / eps

    def startup(self, fmt: str, checks: str) -> float:
        fallback = _FALLBACK["startup_s"] + (_FALLBACK["startup_on_extra_s"]
                                             if checks == "on" else 0.0)
        return self.startup_s.get((fmt, checks), fallback)

    def reference_s(self, size: int, fmt: str) -> float:
        eps = self._nearest(self.reference_eps.get(fmt), size)
        return _FALLBACK["reference_fixed_s"] + size / (eps or _FALLBACK["reference_eps"][fmt])


def load_rates(results_csv: Path, host: str) -> Rates:
    """Rates from the latest rows of ``results_csv`` for ``host`` (runs of >= 100k events)."""
    rates = Rates()
    if not results_csv.is_file():
        return rates
    with open(results_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("host") == host]
    for row in rows:  # later rows win
        try:
            size, fmt, checks = int(row["size"]), row["format"], row["checks"]
            pipeline, reference = float(row["pipeline_s_median"]), float(row["reference_s_median"])
            startup = float(row["startup_s"])
        except (KeyError, ValueError):
            continue
        if size < 100_000 or fmt not in DEFAULT_FORMATS:
            continue
        rates.startup_s[(fmt, checks)] = startup
        rates.pipeline_eps.setdefault((fmt, checks), {})[size] = size / max(1.0, pipeline - startup)
        rates.reference_eps.setdefault(fmt, {})[size] = size / max(
            1.0, reference - _FALLBACK["reference_fixed_s"])
        rates.source = f"{results_csv.name} (this host)"
    return rates


def estimate_seconds(cells: Sequence[Cell], rates: Rates, data_dir: Path,
                     quick: bool = False) -> float:
    """Seconds the plan should take: runs, comparisons, start-up runs, missing data sets."""
    total = 0.0
    for cell in cells:
        per_repeat = rates.reference_s(cell.size, cell.format) + sum(
            rates.pipeline_s(cell.size, cell.format, m) + cell.size / _FALLBACK["compare_eps"]
            for m in cell.checks)
        total += cell.repeats * per_repeat
        if not _dataset_ok(data_dir / f"{cell.format}-{cell.size}",
                           dataset_args(cell.size, cell.format, quick)):
            total += _FALLBACK["generate_fixed_s"] + cell.size / _FALLBACK["generate_eps"]
    if not quick:
        total += sum(rates.startup(f, m) for f, m in {(c.format, m) for c in cells
                                                       for m in c.checks})
    return total


def make_cells(sizes: Sequence[int], formats: Sequence[str], repeats: int,
               checks: Sequence[str] = ("n/a",)) -> list[Cell]:
    return [Cell(s, f, repeats, tuple(checks)) for s in sizes for f in formats]


def fit_to_budget(cells: list[Cell], estimate: Callable[[list[Cell]], float],
                  budget_s: float) -> tuple[list[Cell], list[str]]:
    """Trim the plan until its estimate fits ``budget_s``; returns it and what was cut.

    In order, until it fits: one repeat at the largest size; Parquet only at the
    largest size; checks off only at the largest size; checks off only for JSONL;
    fewer repeats at the other sizes (down to one); no run at the largest size.
    What is kept longest covers every target: Parquet with checks off and on, JSONL,
    and Parquet at the largest size (peak RSS growth)."""
    cuts: list[str] = []
    largest = max((c.size for c in cells), default=0)
    smaller = sorted({c.size for c in cells if c.size != largest})

    def off_only(cell: Cell) -> Cell:
        return cell.replace(checks=("off",)) if "off" in cell.checks else cell

    def steps() -> Iterable[tuple[str, Callable[[list[Cell]], list[Cell]]]]:
        yield (f"1 repeat at {largest:,}",
               lambda cs: [c.replace(repeats=1) if c.size == largest else c for c in cs])
        yield (f"parquet only at {largest:,}",
               lambda cs: [c for c in cs if c.size != largest or c.format == "parquet"])
        yield (f"checks off only at {largest:,}",
               lambda cs: [off_only(c) if c.size == largest else c for c in cs])
        yield ("checks off only for jsonl",
               lambda cs: [off_only(c) if c.format == "jsonl" else c for c in cs])
        most = max((c.repeats for c in cells), default=1)
        for r in range(most - 1, 0, -1):
            yield (f"{r} repeat(s) below {largest:,}",
                   lambda cs, r=r: [c.replace(repeats=min(c.repeats, r)) for c in cs])
        if smaller:
            yield (f"no {largest:,} run", lambda cs: [c for c in cs if c.size != largest])

    for label, step in steps():
        if estimate(cells) <= budget_s:
            break
        trimmed = step(cells)
        if trimmed != cells:
            cells = trimmed
            cuts.append(label)
    return cells, cuts


# ----------------------------------------------------------------------------- machine


def machine_info() -> dict[str, str]:
    return {
        "timestamp_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(),
        "code_digest": code_digest(),
        "host": socket.gethostname(),
        "cpus": str(os.cpu_count() or ""),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
    }


def dataset_label(quick: bool = False) -> str:
    args = dataset_args(0, "", quick)
    return (f"seed={args['seed']} bad_rate={args['bad_rate']} accounts={args['accounts']} "
            f"territories={args['territories']}")


def git_commit() -> str:
    """Short HEAD commit, ``+dirty`` when tracked files differ (read-only git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def code_digest() -> str:
    """Digest of the code a run executes (pipelines/ but this file, schemas/, expectations/):
    tells apart rows of one dirty commit, and shows edits made while the bench ran."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("pipelines", "schemas", "expectations"):
        for path in sorted((REPO_ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".json", ".j2", ".html") or path == Path(__file__):
                continue
            if "__pycache__" in path.parts or not path.is_file():
                continue
            digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------- run


def run_bench(
    sizes: Sequence[int] = DEFAULT_SIZES,
    formats: Sequence[str] = DEFAULT_FORMATS,
    repeats: int = DEFAULT_REPEATS,
    data_dir: str | Path = "bench/data",
    results_csv: str | Path = "bench/results.csv",
    checks: Sequence[bool] = (False, True),
    quick: bool = False,
    budget_s: float | None = None,
    trim_to_budget: bool = True,
    beam_args: Sequence[str] = (),
    dry_run: bool = False,
    say: Say = print,
) -> list[BenchRow]:
    """Run the benchmark; returns one row per (size, format, checks mode) and appends them
    to ``results_csv``.

    ``quick``: correctness only, sizes ``(QUICK_SIZE,)``, one repeat, small reference
    data, no start-up run; with the default ``data_dir`` a temporary directory is used
    (and removed), with the default ``results_csv`` no CSV is written.
    ``budget_s``: with ``trim_to_budget``, trim the plan (see ``fit_to_budget``) until
    its estimate fits; else only warn when the estimate is over it.
    ``dry_run``: print the plan and its estimate, run nothing.
    """
    scratch: Path | None = None  # a temporary data directory, removed at the end
    write_csv = True
    if quick:
        sizes, repeats = (QUICK_SIZE,), 1
        if str(data_dir) == "bench/data":
            data_dir = scratch = Path(tempfile.mkdtemp(prefix="revattr-bench-"))
        if str(results_csv) == "bench/results.csv":  # keep quick rows out of the real file
            results_csv, write_csv = Path(data_dir) / "results.csv", False
    data_dir = Path(data_dir).resolve()
    results_csv = Path(results_csv).resolve()
    for fmt in formats:
        if fmt not in DEFAULT_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; use {' or '.join(DEFAULT_FORMATS)}")
    modes = checks_modes(checks)
    machine = {**machine_info(), "dataset": dataset_label(quick)}
    rates = load_rates(results_csv, machine["host"])

    def estimate(cs: list[Cell]) -> float:
        return estimate_seconds(cs, rates, data_dir, quick)

    cells = make_cells(sorted(set(sizes)), list(dict.fromkeys(formats)), max(1, repeats),
                       list(modes))
    cuts: list[str] = []
    if budget_s is not None and trim_to_budget and not quick:
        cells, cuts = fit_to_budget(cells, estimate, budget_s * BUDGET_MARGIN)
    total = estimate(cells)
    say("plan: " + "; ".join(f"{c.size:,} {c.format} x{c.repeats} checks {'+'.join(c.checks)}"
                             for c in cells))
    if cuts:
        say(f"  trimmed to fit {budget_s / 60:.0f} min: {', '.join(cuts)}")
    say(f"estimated total: {total / 60:.1f} min (rates from {rates.source})")
    if budget_s is not None and total > budget_s:
        say(f"  warning: over the {budget_s / 60:.0f} min budget")
    if "n/a" in modes:
        say("  the pipeline has no checks flag yet: one mode, checks = n/a")
    if dry_run:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        return []

    runs = data_dir / "_runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    started = time.perf_counter()
    startup: dict[tuple[str, str], float | None] = {}
    rows: list[BenchRow] = []
    try:
        for cell in cells:
            rows += _bench_cell(cell, modes, data_dir, runs, quick, list(beam_args), startup, say)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        if scratch is not None and rows and all(r.equal for r in rows):
            shutil.rmtree(scratch, ignore_errors=True)  # else keep _failed/ for a look
    say(f"bench finished in {(time.perf_counter() - started) / 60:.1f} min")
    if code_digest() != machine["code_digest"]:
        say("warning: the code changed while the bench ran; its rows mix versions")
        machine["code_digest"] += "+changed"
    if write_csv:
        append_results(results_csv, [row.csv_record(machine) for row in rows])
    return rows


def _timeout(size: int) -> float:
    return 300 + size / 1_000  # 1M events: 23 min; far above any sane run


def _bench_cell(cell: Cell, modes: dict[str, list[str]], data_dir: Path, runs: Path,
                quick: bool, beam_args: list[str],
                startup: dict[tuple[str, str], float | None], say: Say) -> list[BenchRow]:
    dataset = ensure_dataset(data_dir, cell.size, cell.format, quick, say)
    pattern, reference_dir = events_glob(dataset, cell.format), str(dataset / "reference")
    expected = expected_counts(dataset)
    rows = {label: BenchRow(cell.size, cell.format, label, cell.repeats) for label in cell.checks}
    for label in cell.checks:
        if quick:
            continue
        if (cell.format, label) not in startup:
            tiny = ensure_dataset(data_dir, STARTUP_EVENTS, cell.format, quick, say)
            work = runs / f"startup-{cell.format}-{label}"
            work.mkdir()
            result = _run_child("pipeline", [
                f"--events={events_glob(tiny, cell.format)}", f"--reference={tiny / 'reference'}",
                f"--db={work / 'pipeline.duckdb'}", *pipeline_flags(label, modes, work),
                *beam_args],
                work / "pipeline.log", _timeout(STARTUP_EVENTS))
            startup[(cell.format, label)] = result.seconds if result.ok else None
            say(f"start-up {cell.format} checks={label}: "
                + (f"{result.seconds:.1f}s" if result.ok else result.error))
            shutil.rmtree(work, ignore_errors=True)
        rows[label].startup_seconds = startup[(cell.format, label)]
    for i in range(1, cell.repeats + 1):
        work = runs / f"{cell.format}-{cell.size}-{i}"
        work.mkdir()
        reference_db = work / "reference.duckdb"
        pipeline_dbs: dict[str, Path] = {}
        reference: ChildResult | None = None
        labels = list(cell.checks)
        # Alternate: pipeline, reference, pipeline (other checks mode) ...
        order = [("pipeline", labels[0]), ("reference", None)]
        order += [("pipeline", m) for m in labels[1:]]
        pipelines: dict[str, ChildResult] = {}
        before = sum(len(r.differences) for r in rows.values())
        for kind, label in order:
            if kind == "reference":
                reference = _run_child("reference", [
                    f"--events={pattern}", f"--reference={reference_dir}",
                    f"--db={reference_db}"], work / "reference.log", _timeout(cell.size))
                _report(say, cell, i, "reference", None, reference)
                continue
            db = work / f"pipeline-{label}.duckdb"
            pipeline_dbs[label] = db
            result = _run_child("pipeline", [
                f"--events={pattern}", f"--reference={reference_dir}", f"--db={db}",
                *pipeline_flags(label, modes, work), *beam_args],
                work / f"pipeline-{label}.log", _timeout(cell.size))
            pipelines[label] = result
            _report(say, cell, i, "pipeline", label, result)
        assert reference is not None
        if reference.ok:
            rows_ref = {k: reference.data.get(k) for k in expected}
            if rows_ref != expected:
                for row in rows.values():
                    row.differences.append(f"run {i}: reference counts {rows_ref} != generator's "
                                           f"expected {expected}")
        for label, result in pipelines.items():
            row = rows[label]
            if not result.ok:
                row.differences.append(f"run {i}: {result.error}")
                continue
            if not reference.ok:
                row.differences.append(f"run {i}: {reference.error}")
                continue
            row.pipeline_seconds.append(result.seconds)
            row.reference_seconds.append(reference.seconds)
            row.pipeline_rss_mib.append(result.rss_mib or 0.0)
            row.reference_rss_mib.append(reference.rss_mib or 0.0)
            if result.data.get("status") != "succeeded":
                row.differences.append(f"run {i}: pipeline status {result.data.get('status')}")
            got = {k: result.data.get(k) for k in expected}
            if got != expected:
                row.differences.append(f"run {i}: pipeline counts {got} != generator's "
                                       f"expected {expected}")
            compared = time.perf_counter()
            found = compare_outputs(pipeline_dbs[label], reference_db)
            row.pairs += 1
            row.differences += [f"run {i}: {d}" for d in found]
            say(f"  compared in {time.perf_counter() - compared:.1f}s: "
                + ("equal" if not found else f"{len(found)} difference(s)"))
        if sum(len(r.differences) for r in rows.values()) > before:
            kept = data_dir / "_failed" / work.name  # databases and logs, for a look
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(exist_ok=True)
            shutil.move(str(work), kept)
            say(f"  kept the databases and logs of this run in {kept}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return list(rows.values())


def _report(say: Say, cell: Cell, i: int, kind: str, label: str | None,
            result: ChildResult) -> None:
    what = f"{cell.size:,} {cell.format} run {i}/{cell.repeats} {kind}"
    if label is not None:
        what += f" checks={label}"
    if result.ok:
        say(f"{what}: {result.seconds:.1f}s, {cell.size / result.seconds:,.0f} ev/s, "
            f"peak RSS {result.rss_mib or 0:.0f} MiB")
    else:
        say(f"{what}: FAILED\n  {result.error}")


def append_results(path: Path, records: list[dict[str, str]],
                   columns: Sequence[str] | None = None) -> None:
    """Append rows to a results CSV (header ``columns``, default CSV_COLUMNS); a file with
    another header is rewritten with ``columns``, its rows kept."""
    columns = tuple(columns or CSV_COLUMNS)
    if not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    old: list[dict[str, str]] | None = []
    if path.is_file() and path.stat().st_size:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            old = None if tuple(reader.fieldnames or ()) == columns else list(reader)
    with open(path, "a" if old is None else "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore", restval="")
        if old is not None:
            writer.writeheader()
            writer.writerows(old)
        writer.writerows(records)


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetCheck:
    target: str
    observed: str
    met: bool


def evaluate_targets(rows: Sequence[BenchRow]) -> list[TargetCheck]:
    """The performance issue's targets against the rows (throughput at >= 1M events only).

    ``checks = n/a`` (no checks stage to switch) is held to the checks-off target."""
    out: list[TargetCheck] = []
    for row in rows:
        if row.size < 1_000_000 or not row.pipeline_seconds:
            continue
        where = f"{row.size / 1e6:g}M {row.format} checks {row.checks}"
        if row.format == "parquet":
            goal = TARGET_PARQUET_ON_EPS if row.checks == "on" else TARGET_PARQUET_OFF_EPS
        else:
            goal = TARGET_JSONL_EPS
        eps = row.pipeline_eps or 0.0
        out.append(TargetCheck(f"{where}: >= {goal / 1e3:,.0f}k ev/s", f"{eps / 1e3:,.1f}k ev/s",
                               eps >= goal))
        ratio = row.ratio or math.inf
        out.append(TargetCheck(f"{where}: pipeline/reference <= {TARGET_RATIO:g}x",
                               f"{ratio:.2f}x", ratio <= TARGET_RATIO))
    by_key = {(r.size, r.format, r.checks): r for r in rows if r.pipeline_rss_mib}
    for (size, fmt, checks), row in sorted(by_key.items()):
        if size != 5_000_000:
            continue
        where = f"5M {fmt} checks {checks}"
        rss = row.peak_rss_mib or 0.0
        out.append(TargetCheck(f"{where}: peak RSS <= 1.5 GiB", f"{rss:,.0f} MiB",
                               rss <= TARGET_RSS_MIB_AT_5M))
        small = by_key.get((1_000_000, fmt, checks))
        if small is not None and small.peak_rss_mib:
            growth = rss / small.peak_rss_mib
            out.append(TargetCheck(f"{where}: peak RSS < {TARGET_RSS_GROWTH:g}x the 1M run",
                                   f"{growth:.2f}x ({small.peak_rss_mib:,.0f} MiB at 1M)",
                                   growth < TARGET_RSS_GROWTH))
    return out


# ----------------------------------------------------------------------------- output


def _cell_eps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_rows(rows: Sequence[BenchRow], console=None) -> None:  # noqa: ANN001 (rich Console)
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 180)  # a log file: do not squeeze the table
    table = Table(title="revattr bench: pipeline vs SQL reference", title_justify="left")
    for name in ("size", "format", "checks", "pipeline ev/s", "ev/s excl. start-up",
                 "reference ev/s", "ratio p/r", "start-up s", "peak RSS MiB", "runs", "equal"):
        table.add_column(name, justify="left" if name in ("format", "checks") else "right")
    for row in rows:
        goal = (TARGET_JSONL_EPS if row.format == "jsonl" else
                TARGET_PARQUET_ON_EPS if row.checks == "on" else TARGET_PARQUET_OFF_EPS)
        eps = _cell_eps(row.pipeline_eps)
        if row.size >= 1_000_000 and row.pipeline_eps is not None:
            mark = "[green]met[/]" if row.pipeline_eps >= goal else "[red]not met[/]"
            eps += f" (≥{goal / 1e3:,.0f}k {mark})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        if row.ratio is not None and row.size >= 1_000_000:
            mark = "[green]met[/]" if row.ratio <= TARGET_RATIO else "[red]not met[/]"
            ratio += f" (≤{TARGET_RATIO:g}x {mark})"
        table.add_row(
            f"{row.size:,}", row.format, row.checks, eps, _cell_eps(row.pipeline_eps_excl_startup),
            _cell_eps(row.reference_eps), ratio,
            "-" if row.startup_seconds is None else f"{row.startup_seconds:.1f}",
            "-" if row.peak_rss_mib is None else f"{row.peak_rss_mib:,.0f}",
            str(len(row.pipeline_seconds)),
            "[green]yes[/]" if row.equal else "[bold red]NO[/]",
        )
    console.print(table)
    checks = evaluate_targets(rows)
    if checks:
        targets_table = Table(title="targets (performance issue)", title_justify="left")
        for name in ("target", "observed", "status"):
            targets_table.add_column(name)
        for check in checks:
            targets_table.add_row(check.target, check.observed,
                                  "[green]met[/]" if check.met else "[red]not met[/]")
        console.print(targets_table)
    if not any(r.size == 5_000_000 and r.pipeline_seconds for r in rows) and any(
            r.size >= 1_000_000 for r in rows):
        console.print("RSS targets (≤ 1.5 GiB at 5M, < 1.3x the 1M figure): not measured "
                      "(no 5M run in this plan)")
    for row in rows:
        for difference in row.differences:
            console.print(f"[bold red]{row.size:,} {row.format} checks {row.checks}:[/] "
                          f"{difference}", soft_wrap=True)


# ----------------------------------------------------------------------------- CLI


def _env_list(name: str) -> list[str] | None:
    value = os.environ.get(name, "").strip()
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    factor = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1]) * factor) if factor != 1 else int(text)


def _profile(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.bench profile",
                                     description="cProfile one pipeline run on a bench data set.")
    parser.add_argument("--size", type=_parse_size, default=1_000_000)
    parser.add_argument("--format", default="parquet", choices=DEFAULT_FORMATS)
    parser.add_argument("--data-dir", default="bench/data")
    parser.add_argument("--out", default=None, help="profile dump (default: <data-dir>/profile-"
                                                    "<format>-<size>.prof)")
    parser.add_argument("--top", type=int, default=30)
    args, beam_args = parser.parse_known_args(argv)
    import pstats

    data_dir = Path(args.data_dir).resolve()
    dataset = ensure_dataset(data_dir, args.size, args.format)
    out = Path(args.out or data_dir / f"profile-{args.format}-{args.size}.prof").resolve()
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=data_dir))
    result = _run_child("pipeline", [
        f"--events={events_glob(dataset, args.format)}",
        f"--reference={dataset / 'reference'}", f"--db={work / 'pipeline.duckdb'}",
        f"--profile={out}", *beam_args], work / "pipeline.log", _timeout(args.size) * 3)
    if not result.ok:
        print(result.error)  # the work directory is kept: its log says more
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size:,} {args.format}: {result.seconds:.1f}s under cProfile, peak RSS "
          f"{result.rss_mib:.0f} MiB; profile in {out}")
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        return _child(argv[1:])
    import logging

    logging.basicConfig(level=logging.ERROR)  # Beam's import-time warnings
    if argv[:1] == ["profile"]:
        return _profile(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bench",
        description="Benchmark the pipeline against the SQL reference (see bench/README.md). "
                    "Defaults come from BENCH_SIZES, BENCH_FORMATS, BENCH_REPEATS, BENCH_CHECKS, "
                    "BENCH_BUDGET_MIN; without sizes/formats/repeats the default plan is "
                    "trimmed to the budget.")
    parser.add_argument("--sizes", help="comma-separated event counts, e.g. 1000000,5M")
    parser.add_argument("--formats", help="comma-separated: parquet,jsonl")
    parser.add_argument("--repeats", type=int, help="pipeline/reference pairs per cell")
    parser.add_argument("--checks", help="comma-separated: off,on (when the pipeline has a flag)")
    parser.add_argument("--budget-min", type=float, help="time budget in minutes (default 15)")
    parser.add_argument("--data-dir", default="bench/data")
    parser.add_argument("--results", default="bench/results.csv")
    parser.add_argument("--quick", action="store_true", help="2,000 events, correctness only")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args, beam_args = parser.parse_known_args(argv)
    beam_args = [a for a in beam_args if a != "--"] + (_env_list("BENCH_BEAM_ARGS") or [])

    sizes = args.sizes.split(",") if args.sizes else _env_list("BENCH_SIZES")
    formats = args.formats.split(",") if args.formats else _env_list("BENCH_FORMATS")
    repeats = args.repeats if args.repeats is not None else (
        int(os.environ["BENCH_REPEATS"]) if os.environ.get("BENCH_REPEATS") else None)
    checks = args.checks.split(",") if args.checks else _env_list("BENCH_CHECKS")
    budget_min = args.budget_min if args.budget_min is not None else float(
        os.environ.get("BENCH_BUDGET_MIN") or DEFAULT_BUDGET_S / 60)
    explicit = sizes is not None or formats is not None or repeats is not None
    rows = run_bench(
        sizes=tuple(_parse_size(s) for s in sizes) if sizes else DEFAULT_SIZES,
        formats=tuple(f.strip().lower() for f in formats) if formats else DEFAULT_FORMATS,
        repeats=repeats or DEFAULT_REPEATS,
        data_dir=args.data_dir, results_csv=args.results,
        checks=tuple(c.strip().lower() in ("on", "true", "1", "yes") for c in checks)
        if checks else (False, True),
        quick=args.quick,
        budget_s=budget_min * 60, trim_to_budget=not explicit,
        beam_args=beam_args, dry_run=args.dry_run,
        say=lambda message: print(message, flush=True),
    )
    if args.dry_run:
        return 0
    print_rows(rows)
    if not args.quick:
        print(f"appended {len(rows)} row(s) to {Path(args.results)}")
    return 0 if rows and all(r.equal for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
