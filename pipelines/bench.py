"""Benchmark harness: ``revattr run`` (the real CLI) against the tuned SQL reference.

Measurement only. For each (size, format) it runs, alternately, the pipeline as a user
would (``.venv/bin/revattr run --events ... --reference ... --db ... [--no-checks]``, a
whole process, start-up included) and the tuned DuckDB reference
(``pipelines.reference_tuned.compute_reference``, in its own process), each writing a
fresh DuckDB file. Wall time and peak RSS are those of each process (``os.wait4``).
After each pair the two databases are compared (``compare_outputs``); any difference
makes the bench exit 1. Results are printed as a table, with the performance targets
beside them, and appended to ``bench/results.csv``.

    python -m pipelines.bench                      # the default plan (fits 15 min)
    BENCH_SIZES=1000000 BENCH_REPEATS=3 python -m pipelines.bench
    python -m pipelines.bench --sizes 1M,10M --formats parquet --repeats 1
    python -m pipelines.bench --dry-run            # print the plan and its estimate only
    python -m pipelines.bench --quick              # 2,000 events, correctness only
    python -m pipelines.bench reference --sizes 1M --formats jsonl,parquet   # reference only
    python -m pipelines.bench profile --size 1M --format parquet   # cProfile one CLI run

See bench/README.md for what is measured and how the default plan is chosen. Heavy
imports (DuckDB, rich) happen inside functions: the reference child imports only what
it runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import importlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
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

DEFAULT_SIZES = (1_000_000, 10_000_000)
BASE_SIZE = 1_000_000  # RSS growth and the checks on/off ratio are judged against this size
LARGE_SIZE = 10_000_000  # the peak RSS targets are judged at this size
DEFAULT_FORMATS = ("parquet", "jsonl")
DEFAULT_REPEATS = 3
DEFAULT_BUDGET_S = 15 * 60
BUDGET_MARGIN = 0.9  # the default plan aims at 90% of the budget: estimates are rough

PIPELINE = "revattr run"  # what the pipeline column measures (rows of other runs are not reused)
REFERENCES = {"tuned": "pipelines.reference_tuned", "sql": "pipelines.reference_sql"}
DEFAULT_REFERENCE = "tuned"
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

# The performance targets (bench/README.md).
TARGET_EPS = {"parquet": 1_000_000, "jsonl": 300_000}  # end to end, checks off, >= 1M events
TARGET_RATIO = 1.5  # pipeline time / tuned reference time, checks off
TARGET_STARTUP_S = 1.5  # the 100-event run, each format and checks mode
TARGET_RSS_MIB = 1.5 * 1024  # peak RSS at LARGE_SIZE
TARGET_RSS_GROWTH = 1.3  # peak RSS at LARGE_SIZE < 1.3 x the BASE_SIZE figure
TARGET_CHECKS_RATIO = 1.5  # checks on time <= 1.5 x checks off time at BASE_SIZE

CSV_COLUMNS = (
    "timestamp_utc", "git_commit", "code_digest", "host", "cpus", "cpu_model", "python", "dataset",
    "load_avg", "pipeline", "reference",
    "size", "format", "checks", "repeats",
    "pipeline_s_median", "reference_s_median",
    "pipeline_eps_median", "pipeline_eps_excl_startup", "reference_eps_median",
    "ratio_median", "startup_s", "pipeline_rss_mib_max", "reference_rss_mib_max",
    "rss_growth", "checks_ratio", "equal",
)

# Estimates used before this host has a row of ``revattr run`` against the same reference
# in results.csv (deliberately on the slow side of the targets).
_FALLBACK = {
    "startup_s": 1.5,  # revattr run on 100 events, checks off
    "startup_on_extra_s": 1.0,  # the same with checks on
    "pipeline_eps": {"parquet": 500_000, "jsonl": 200_000},  # after start-up, checks off
    "checks_on_factor": 1.5,  # events/s after start-up, checks off / checks on
    "reference_fixed_s": 0.5,
    "reference_eps": {"parquet": 250_000, "jsonl": 150_000},
    "generate_eps": 330_000,
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
    checks: str  # "off", "on" or "n/a" (the CLI has no checks flag)
    repeats: int = 0
    pipeline_seconds: list[float] = field(default_factory=list)
    reference_seconds: list[float] = field(default_factory=list)
    pipeline_rss_mib: list[float] = field(default_factory=list)
    reference_rss_mib: list[float] = field(default_factory=list)
    startup_seconds: float | None = None
    differences: list[str] = field(default_factory=list)
    pairs: int = 0  # pipeline/reference pairs that were compared
    rss_growth: float | None = None  # peak RSS / the BASE_SIZE row's (same format, checks)
    checks_ratio: float | None = None  # checks on rows: median time / the checks off row's

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
        """Median over pairs of pipeline time / reference time (the pair's own reference)."""
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
            "rss_growth": _fmt(self.rss_growth, 2),
            "checks_ratio": _fmt(self.checks_ratio, 2),
            "equal": "yes" if self.equal else "no",
        }


def relate_rows(rows: Sequence[BenchRow]) -> None:
    """Set each row's ``rss_growth`` (against the BASE_SIZE row of its format and checks
    mode) and, for checks-on rows, ``checks_ratio`` (against the checks-off row)."""
    by_key = {(r.size, r.format, r.checks): r for r in rows}
    for row in rows:
        base = by_key.get((BASE_SIZE, row.format, row.checks))
        if (row.size > BASE_SIZE and base is not None and base.peak_rss_mib
                and row.peak_rss_mib):
            row.rss_growth = row.peak_rss_mib / base.peak_rss_mib
        off = by_key.get((row.size, row.format, "off"))
        if row.checks == "on" and off is not None and off.pipeline_seconds and row.pipeline_seconds:
            row.checks_ratio = _median(row.pipeline_seconds) / _median(off.pipeline_seconds)


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


# ----------------------------------------------------------------------------- the CLI


def revattr_path() -> Path:
    """The ``revattr`` console script of this interpreter's environment (``BENCH_REVATTR``
    overrides)."""
    override = os.environ.get("BENCH_REVATTR", "").strip()
    if override:
        return Path(override)
    beside = Path(sys.executable).with_name("revattr")
    if beside.is_file():
        return beside
    found = shutil.which("revattr")
    if found is None:
        raise FileNotFoundError("no revattr executable (pip install -e . or set BENCH_REVATTR)")
    return Path(found)


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "200",
            "TERM": "dumb"}


@functools.cache
def _run_help(revattr: str) -> str:
    proc = subprocess.run([revattr, "run", "--help"], capture_output=True, text=True,
                          env=_cli_env(), timeout=120, check=False)
    return proc.stdout + proc.stderr


def checks_modes(requested: Iterable[bool], revattr: Path | None = None) -> dict[str, list[str]]:
    """Label -> extra ``revattr run`` arguments for each requested checks mode.

    ``revattr run --help`` names ``--checks/--no-checks``; without them the CLI has a
    single mode, labelled ``"n/a"``."""
    requested = list(dict.fromkeys(bool(c) for c in requested))
    text = _run_help(str(revattr or revattr_path()))
    if "--no-checks" not in text:
        return {"n/a": []}
    flags = {True: ["--checks"], False: ["--no-checks"]}
    return {("on" if mode else "off"): flags[mode] for mode in requested}


# ----------------------------------------------------------------------------- children


@dataclass
class ChildResult:
    ok: bool
    seconds: float  # wall time seen by the parent: process start to exit
    rss_mib: float | None  # peak RSS of that process (os.wait4)
    data: dict
    error: str = ""


# A child's ru_maxrss includes the high-water RSS of the process it was forked from (Linux
# records the old address space's peak at exec), so a run is started by this minimal
# interpreter (about 10 MiB), which times it and reads its rusage: not by the bench,
# whose RSS grows with the data sets it generates and the databases it compares.
_LAUNCHER = """
import json, os, sys, time
result, command = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawnp(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(result, "w") as f:
    json.dump({"code": os.waitstatus_to_exitcode(status), "seconds": seconds,
               "rss_kib": usage.ru_maxrss}, f)
"""


def spawn(command: Sequence[str], log: Path, timeout: float,
          env: dict[str, str] | None = None) -> tuple[int | None, float, float | None]:
    """Run ``command`` with output to ``log``; returns its exit code (None when killed at
    ``timeout``), wall seconds (process start to exit) and peak RSS in MiB of that very
    process (``os.wait4`` in a minimal launcher, see ``_LAUNCHER``)."""
    result = log.with_name(log.name + ".spawn.json")
    result.unlink(missing_ok=True)
    timed_out = threading.Event()
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(result),
                                 *command], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the launcher's group: it and its run
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
    if timed_out.is_set() or not result.is_file():
        return None if timed_out.is_set() else proc.returncode, seconds, None
    data = json.loads(result.read_text())
    result.unlink()
    return data["code"], data["seconds"], data["rss_kib"] / 1024  # KiB on Linux


def _failure(kind: str, code: int | None, timeout: float, log: Path) -> str:
    tail = log.read_text(errors="replace").strip().splitlines()[-15:] if log.is_file() else []
    reason = f"timed out after {timeout:.0f}s" if code is None else f"exit code {code}"
    return f"{kind} run failed ({reason}); log {log}:\n  " + "\n  ".join(tail)


def run_pipeline(events: str, reference_dir: str | Path, db: Path, flags: Sequence[str],
                 log: Path, timeout: float, revattr: Path | None = None,
                 env: dict[str, str] | None = None) -> ChildResult:
    """``revattr run --events ... --reference ... --db ... <flags>`` as a user runs it; the
    run's counts and status come from ``pipeline_runs`` in the database it wrote.
    ``env``: variables set for the run on top of the bench's."""
    command = [str(revattr or revattr_path()), "run", f"--events={events}",
               f"--reference={reference_dir}", f"--db={db}", *flags]
    code, seconds, rss = spawn(command, log, timeout, {**_cli_env(), **(env or {})})
    data: dict = {}
    if code in (0, 1) and db.exists():  # 1: finished, but unbalanced or a check failed
        try:
            data = published_run(db)
        except Exception as error:  # noqa: BLE001 (reported as the run's failure)
            return ChildResult(False, seconds, rss, {}, f"pipeline run: cannot read "
                                                       f"pipeline_runs in {db}: {error}")
    if not data:
        return ChildResult(False, seconds, rss, data, _failure("pipeline", code, timeout, log))
    return ChildResult(True, seconds, rss, data)


def published_run(db: Path) -> dict:
    """The latest ``pipeline_runs`` row of ``db``: status and counts."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT status, input_records, accepted, duplicates, quarantined "
                           "FROM pipeline_runs ORDER BY finished_at DESC NULLS LAST "
                           "LIMIT 1").fetchall()
    if not rows:
        return {}
    status, total, accepted, duplicates, quarantined = rows[0]
    return {"status": status, "input_records": total, "accepted": accepted,
            "duplicates": duplicates, "quarantined": quarantined}


def run_reference(events: str, reference_dir: str | Path, db: Path, log: Path,
                  timeout: float, impl: str = DEFAULT_REFERENCE) -> ChildResult:
    """The reference in a fresh interpreter: ``python -m pipelines.bench _child ...``."""
    result_file = log.with_suffix(".json")
    result_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pipelines.bench", "_child", f"--impl={impl}",
               f"--result={result_file}", f"--events={events}",
               f"--reference={reference_dir}", f"--db={db}"]
    code, seconds, rss = spawn(command, log, timeout, {**os.environ, "PYTHONUNBUFFERED": "1"})
    data = json.loads(result_file.read_text()) if result_file.is_file() else {}
    if code != 0 or not data:
        return ChildResult(False, seconds, rss, data, _failure("reference", code, timeout, log))
    return ChildResult(True, seconds, rss, data)


def _child(argv: list[str]) -> int:
    """Child entry: one reference computation into ``--db``; writes its counts as JSON."""
    parser = argparse.ArgumentParser(prog="pipelines.bench _child")
    parser.add_argument("--impl", choices=sorted(REFERENCES), default=DEFAULT_REFERENCE)
    parser.add_argument("--result", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    import duckdb

    compute_reference = importlib.import_module(REFERENCES[args.impl]).compute_reference
    started = time.perf_counter()
    con = duckdb.connect(args.db)
    con.execute(f"PRAGMA threads={REFERENCE_THREADS}")
    compute_reference(con, args.events, args.reference)
    total, accepted, duplicates, quarantined = con.execute(
        "SELECT * FROM ref_counts").fetchall()[0]
    con.close()
    Path(args.result).write_text(json.dumps({
        "status": "succeeded", "input_records": total, "accepted": accepted,
        "duplicates": duplicates, "quarantined": quarantined,
        "seconds_in_child": time.perf_counter() - started}))
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
    """Throughput model for the estimate: the latest results.csv rows of this host for the
    same pipeline and reference, by (format, checks) and size (the nearest measured size
    is used), else _FALLBACK."""

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


def load_rates(results_csv: Path, host: str, reference: str = DEFAULT_REFERENCE) -> Rates:
    """Rates from the latest rows of ``results_csv`` for ``host`` (runs of >= 100k events;
    pipeline rates from rows of ``revattr run``, reference rates from rows of the same
    reference; rows of earlier bench versions, without those columns, are not used)."""
    rates = Rates()
    if not results_csv.is_file():
        return rates
    with open(results_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("host") == host]
    for row in rows:  # later rows win
        try:
            size, fmt, checks = int(row["size"]), row["format"], row["checks"]
        except (KeyError, ValueError):
            continue
        if size < 100_000 or fmt not in DEFAULT_FORMATS:
            continue
        try:
            if row.get("pipeline") == PIPELINE:
                pipeline, startup = float(row["pipeline_s_median"]), float(row["startup_s"])
                rates.startup_s[(fmt, checks)] = startup
                rates.pipeline_eps.setdefault((fmt, checks), {})[size] = size / max(
                    0.1, pipeline - startup)
                rates.source = f"{results_csv.name} (this host)"
            if row.get("reference") == reference:
                rates.reference_eps.setdefault(fmt, {})[size] = size / max(
                    0.1, float(row["reference_s_median"]) - _FALLBACK["reference_fixed_s"])
                rates.source = f"{results_csv.name} (this host)"
        except (KeyError, ValueError):
            continue
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
    if not quick:  # two start-up runs each: reference cache cold, then warm
        total += 2 * sum(rates.startup(f, m) for f, m in {(c.format, m) for c in cells
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
    pipeline_args: Sequence[str] = (),
    dry_run: bool = False,
    reference: str = DEFAULT_REFERENCE,
    say: Say = print,
) -> list[BenchRow]:
    """Run the benchmark; returns one row per (size, format, checks mode) and appends them
    to ``results_csv``.

    ``quick``: correctness only, sizes ``(QUICK_SIZE,)``, one repeat, small reference
    data, no start-up run; with the default ``data_dir`` a temporary directory is used
    (and removed), with the default ``results_csv`` no CSV is written.
    ``budget_s``: with ``trim_to_budget``, trim the plan (see ``fit_to_budget``) until
    its estimate fits; else only warn when the estimate is over it.
    ``pipeline_args``: extra ``revattr run`` arguments for every pipeline run.
    ``reference``: ``tuned`` (``pipelines.reference_tuned``) or ``sql`` (the oracle).
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
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}; use {' or '.join(REFERENCES)}")
    revattr = revattr_path()
    modes = checks_modes(checks, revattr)
    load = os.getloadavg()[0]
    machine = {**machine_info(), "dataset": dataset_label(quick), "load_avg": f"{load:.2f}",
               "pipeline": PIPELINE, "reference": reference}
    rates = load_rates(results_csv, machine["host"], reference)

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
    say(f"pipeline: {revattr} run ...; reference: {REFERENCES[reference]}")
    if budget_s is not None and total > budget_s:
        say(f"  warning: over the {budget_s / 60:.0f} min budget")
    if "n/a" in modes:
        say("  revattr run has no --checks/--no-checks: one mode, checks = n/a")
    if load > 0.5 * (os.cpu_count() or 1) and not quick:
        say(f"  warning: load average {load:.2f} before the start: other jobs share the cores, "
            "timings will be slower and noisier")
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
    context = _Context(modes, data_dir, runs, quick, list(pipeline_args), startup, say,
                       revattr, reference)
    try:
        for cell in cells:
            rows += _bench_cell(cell, context)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
        if scratch is not None and rows and all(r.equal for r in rows):
            shutil.rmtree(scratch, ignore_errors=True)  # else keep _failed/ for a look
    relate_rows(rows)
    say(f"bench finished in {(time.perf_counter() - started) / 60:.1f} min")
    if code_digest() != machine["code_digest"]:
        say("warning: the code changed while the bench ran; its rows mix versions")
        machine["code_digest"] += "+changed"
    if write_csv:
        append_results(results_csv, [row.csv_record(machine) for row in rows])
    return rows


def _timeout(size: int) -> float:
    return 120 + size / 20_000  # 1M events: about 3 min; 10M: about 10 min


@dataclass
class _Context:
    modes: dict[str, list[str]]
    data_dir: Path
    runs: Path
    quick: bool
    pipeline_args: list[str]
    startup: dict[tuple[str, str], float | None]
    say: Say
    revattr: Path
    reference: str


def _startup(ctx: _Context, fmt: str, label: str) -> float | None:
    """Wall time of ``revattr run`` on the 100-event data set into a new database
    (measured once per format and checks mode), with the resolved reference already in
    the reference cache: the fixed cost of every run but the first after a reference
    change. That first run (empty cache) is measured before it and reported beside it."""
    if (fmt, label) not in ctx.startup:
        tiny = ensure_dataset(ctx.data_dir, STARTUP_EVENTS, fmt, ctx.quick, ctx.say)
        work = ctx.runs / f"startup-{fmt}-{label}"
        work.mkdir()
        env = {"REVATTR_CACHE_DIR": str(work / "reference-cache")}  # empty: a cold first run
        seconds: dict[str, float | None] = {}
        for kind in ("cold", "warm"):
            result = run_pipeline(events_glob(tiny, fmt), tiny / "reference",
                                  work / f"{kind}.duckdb", [*ctx.modes[label], *ctx.pipeline_args],
                                  work / f"{kind}.log", _timeout(STARTUP_EVENTS), ctx.revattr, env)
            ok = result.ok and result.data.get("status") == "succeeded"
            seconds[kind] = result.seconds if ok else None
            ctx.say(f"start-up {fmt} checks={label}, reference cache {kind}: " + (
                f"{result.seconds:.2f}s, peak RSS {result.rss_mib:.0f} MiB" if ok else
                result.error or f"status {result.data.get('status')}"))
        ctx.startup[(fmt, label)] = seconds["warm"]
        shutil.rmtree(work, ignore_errors=True)
    return ctx.startup[(fmt, label)]


def _bench_cell(cell: Cell, ctx: _Context) -> list[BenchRow]:
    dataset = ensure_dataset(ctx.data_dir, cell.size, cell.format, ctx.quick, ctx.say)
    pattern, reference_dir = events_glob(dataset, cell.format), dataset / "reference"
    expected = expected_counts(dataset)
    rows = {label: BenchRow(cell.size, cell.format, label, cell.repeats) for label in cell.checks}
    if not ctx.quick:
        for label in cell.checks:
            rows[label].startup_seconds = _startup(ctx, cell.format, label)
    for i in range(1, cell.repeats + 1):
        work = ctx.runs / f"{cell.format}-{cell.size}-{i}"
        work.mkdir()
        reference_db = work / "reference.duckdb"
        reference: ChildResult | None = None
        labels = list(cell.checks)
        # Alternate: pipeline, reference, pipeline (other checks mode) ...
        order = [("pipeline", labels[0]), ("reference", None)]
        order += [("pipeline", m) for m in labels[1:]]
        pipelines: dict[str, tuple[ChildResult, Path]] = {}
        before = sum(len(r.differences) for r in rows.values())
        for kind, label in order:
            if kind == "reference":
                reference = run_reference(pattern, reference_dir, reference_db,
                                          work / "reference.log", _timeout(cell.size),
                                          ctx.reference)
                _report(ctx.say, cell, i, "reference", None, reference)
                continue
            db = work / f"pipeline-{label}" / "revenue.duckdb"
            db.parent.mkdir()
            result = run_pipeline(pattern, reference_dir, db,
                                  [*ctx.modes[label], *ctx.pipeline_args],
                                  work / f"pipeline-{label}.log", _timeout(cell.size),
                                  ctx.revattr)
            pipelines[label] = (result, db)
            _report(ctx.say, cell, i, "pipeline", label, result)
        assert reference is not None
        if reference.ok:
            got_reference = {k: reference.data.get(k) for k in expected}
            if got_reference != expected:
                for row in rows.values():
                    row.differences.append(f"run {i}: reference counts {got_reference} != "
                                           f"generator's expected {expected}")
        for label, (result, db) in pipelines.items():
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
            found = compare_outputs(db, reference_db)
            row.pairs += 1
            row.differences += [f"run {i}: {d}" for d in found]
            ctx.say(f"  compared in {time.perf_counter() - compared:.1f}s: "
                    + ("equal" if not found else f"{len(found)} difference(s)"))
        if sum(len(r.differences) for r in rows.values()) > before:
            kept = ctx.data_dir / "_failed" / work.name  # databases and logs, for a look
            shutil.rmtree(kept, ignore_errors=True)
            kept.parent.mkdir(exist_ok=True)
            shutil.move(str(work), kept)
            ctx.say(f"  kept the databases and logs of this run in {kept}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return list(rows.values())


def _report(say: Say, cell: Cell, i: int, kind: str, label: str | None,
            result: ChildResult) -> None:
    what = f"{cell.size:,} {cell.format} run {i}/{cell.repeats} {kind}"
    if label is not None:
        what += f" checks={label}"
    if result.ok:
        say(f"{what}: {result.seconds:.2f}s, {cell.size / result.seconds:,.0f} ev/s, "
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


def _where(row: BenchRow) -> str:
    return f"{row.size / 1e6:g}M {row.format} checks {row.checks}"


def evaluate_targets(rows: Sequence[BenchRow]) -> list[TargetCheck]:
    """The performance targets against the rows (bench/README.md).

    Throughput and pipeline/reference ratio: rows of >= BASE_SIZE events with checks off
    (``n/a``: a CLI without the flag counts as off), end to end. Start-up: every format
    and checks mode measured. Peak RSS: rows at LARGE_SIZE, and their growth over the
    BASE_SIZE row. Checks on/off: the time ratio at BASE_SIZE."""
    out: list[TargetCheck] = []
    for row in rows:
        if row.size < BASE_SIZE or not row.pipeline_seconds or row.checks == "on":
            continue
        goal = TARGET_EPS[row.format]
        eps = row.pipeline_eps or 0.0
        out.append(TargetCheck(f"{_where(row)}: >= {goal / 1e3:,.0f}k ev/s",
                               f"{eps / 1e3:,.1f}k ev/s", eps >= goal))
        ratio = row.ratio or math.inf
        out.append(TargetCheck(f"{_where(row)}: pipeline/reference <= {TARGET_RATIO:g}x",
                               f"{ratio:.2f}x", ratio <= TARGET_RATIO))
    startups = {(r.format, r.checks): r.startup_seconds for r in rows
                if r.startup_seconds is not None}
    for (fmt, checks), seconds in sorted(startups.items()):
        out.append(TargetCheck(f"start-up {fmt} checks {checks}: < {TARGET_STARTUP_S:g} s",
                               f"{seconds:.2f} s", seconds < TARGET_STARTUP_S))
    for row in rows:
        if row.size != LARGE_SIZE or not row.pipeline_rss_mib:
            continue
        rss = row.peak_rss_mib or 0.0
        out.append(TargetCheck(f"{_where(row)}: peak RSS <= {TARGET_RSS_MIB / 1024:g} GiB",
                               f"{rss:,.0f} MiB", rss <= TARGET_RSS_MIB))
        if row.rss_growth is not None:
            out.append(TargetCheck(
                f"{_where(row)}: peak RSS < {TARGET_RSS_GROWTH:g}x the "
                f"{BASE_SIZE / 1e6:g}M run", f"{row.rss_growth:.2f}x", row.rss_growth
                < TARGET_RSS_GROWTH))
    for row in rows:
        if row.size == BASE_SIZE and row.checks_ratio is not None:
            out.append(TargetCheck(
                f"{_where(row)}: time <= {TARGET_CHECKS_RATIO:g}x checks off",
                f"{row.checks_ratio:.2f}x", row.checks_ratio <= TARGET_CHECKS_RATIO))
    return out


def unmeasured_targets(rows: Sequence[BenchRow]) -> list[str]:
    """Targets the rows cannot judge (not in the plan, or every run failed)."""
    measured = [r for r in rows if r.pipeline_seconds]
    missing = []
    if not any(r.size == LARGE_SIZE for r in measured):
        missing.append(f"peak RSS at {LARGE_SIZE / 1e6:g}M and its growth over "
                       f"{BASE_SIZE / 1e6:g}M (no {LARGE_SIZE / 1e6:g}M run)")
    if not any(r.size == BASE_SIZE and r.checks_ratio is not None for r in measured):
        missing.append(f"checks on/off at {BASE_SIZE / 1e6:g}M (not both modes measured)")
    for fmt in DEFAULT_FORMATS:
        if not any(r.size >= BASE_SIZE and r.format == fmt and r.checks != "on"
                   for r in measured):
            missing.append(f"{fmt} throughput and ratio (no run of >= {BASE_SIZE / 1e6:g}M "
                           "with checks off)")
    if not any(r.startup_seconds is not None for r in rows):
        missing.append("start-up (no start-up run)")
    return missing


# ----------------------------------------------------------------------------- output


def _cell_eps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _mark(met: bool) -> str:
    return "[green]met[/]" if met else "[red]not met[/]"


def print_rows(rows: Sequence[BenchRow], console=None) -> None:  # noqa: ANN001 (rich Console)
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 200)  # a log file: do not squeeze the table
    table = Table(title=f"revattr bench: {PIPELINE} vs the SQL reference", title_justify="left")
    for name in ("size", "format", "checks", "pipeline ev/s", "ev/s excl. start-up",
                 "reference ev/s", "ratio p/r", "start-up s", "peak RSS MiB",
                 f"RSS vs {BASE_SIZE / 1e6:g}M", "on/off", "runs", "equal"):
        table.add_column(name, justify="left" if name in ("format", "checks") else "right")
    for row in rows:
        judged = row.size >= BASE_SIZE and row.checks != "on"
        eps = _cell_eps(row.pipeline_eps)
        if judged and row.pipeline_eps is not None:
            goal = TARGET_EPS[row.format]
            eps += f" (≥{goal / 1e3:,.0f}k {_mark(row.pipeline_eps >= goal)})"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        if judged and row.ratio is not None:
            ratio += f" (≤{TARGET_RATIO:g}x {_mark(row.ratio <= TARGET_RATIO)})"
        table.add_row(
            f"{row.size:,}", row.format, row.checks, eps, _cell_eps(row.pipeline_eps_excl_startup),
            _cell_eps(row.reference_eps), ratio,
            "-" if row.startup_seconds is None else f"{row.startup_seconds:.2f}",
            "-" if row.peak_rss_mib is None else f"{row.peak_rss_mib:,.0f}",
            "-" if row.rss_growth is None else f"{row.rss_growth:.2f}x",
            "-" if row.checks_ratio is None else f"{row.checks_ratio:.2f}x",
            str(len(row.pipeline_seconds)),
            "[green]yes[/]" if row.equal else "[bold red]NO[/]",
        )
    console.print(table)
    checks = evaluate_targets(rows)
    if checks:
        targets_table = Table(title="targets", title_justify="left")
        for name in ("target", "observed", "status"):
            targets_table.add_column(name)
        for check in checks:
            targets_table.add_row(check.target, check.observed, _mark(check.met))
        console.print(targets_table)
    if any(r.size >= BASE_SIZE for r in rows):
        for missing in unmeasured_targets(rows):
            console.print(f"not measured: {missing}")
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
                                     description="cProfile one revattr run on a bench data set.")
    parser.add_argument("--size", type=_parse_size, default=1_000_000)
    parser.add_argument("--format", default="parquet", choices=DEFAULT_FORMATS)
    parser.add_argument("--data-dir", default="bench/data")
    parser.add_argument("--out", default=None, help="profile dump (default: <data-dir>/profile-"
                                                    "<format>-<size>.prof)")
    parser.add_argument("--top", type=int, default=30)
    args, extra = parser.parse_known_args(argv)
    import pstats

    data_dir = Path(args.data_dir).resolve()
    dataset = ensure_dataset(data_dir, args.size, args.format)
    out = Path(args.out or data_dir / f"profile-{args.format}-{args.size}.prof").resolve()
    work = Path(tempfile.mkdtemp(prefix="profile-", dir=data_dir))
    command = [sys.executable, "-m", "cProfile", "-o", str(out), str(revattr_path()), "run",
               f"--events={events_glob(dataset, args.format)}",
               f"--reference={dataset / 'reference'}", f"--db={work / 'revenue.duckdb'}",
               *[a for a in extra if a != "--"]]
    code, seconds, rss = spawn(command, work / "pipeline.log", _timeout(args.size) * 3,
                               _cli_env())
    if code != 0:
        print(_failure("profiled pipeline", code, _timeout(args.size) * 3,
                       work / "pipeline.log"))  # the work directory is kept
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print(f"{args.size:,} {args.format}: {seconds:.1f}s under cProfile, peak RSS {rss:.0f} MiB; "
          f"profile in {out}")
    stats = pstats.Stats(str(out))
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


def _reference_only(argv: list[str]) -> int:
    """``python -m pipelines.bench reference``: time the reference alone (whole process)."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bench reference",
        description="Run only the SQL reference on bench data sets, each run a fresh process "
                    "(`python -m pipelines.bench _child ...`), and print its events/s.")
    parser.add_argument("--sizes", default="1M", help="comma-separated event counts")
    parser.add_argument("--formats", default="parquet,jsonl")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--impl", choices=sorted(REFERENCES), default=DEFAULT_REFERENCE)
    parser.add_argument("--data-dir", default="bench/data")
    args = parser.parse_args(argv)
    data_dir = Path(args.data_dir).resolve()
    runs = data_dir / "_reference_runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; reference "
          f"{REFERENCES[args.impl]}", flush=True)
    failed = False
    try:
        for size in (_parse_size(s) for s in args.sizes.split(",")):
            for fmt in (f.strip() for f in args.formats.split(",")):
                dataset = ensure_dataset(data_dir, size, fmt)
                expected = expected_counts(dataset)
                seconds, rss = [], []
                for i in range(1, args.repeats + 1):
                    db = runs / f"{fmt}-{size}-{i}.duckdb"
                    result = run_reference(events_glob(dataset, fmt), dataset / "reference",
                                           db, runs / f"{fmt}-{size}-{i}.log", _timeout(size),
                                           args.impl)
                    if not result.ok:
                        print(f"{size:,} {fmt} run {i}: FAILED\n  {result.error}")
                        failed = True
                        continue
                    counts = {k: result.data.get(k) for k in expected}
                    if counts != expected:
                        print(f"  counts {counts} != generator's expected {expected}")
                        failed = True
                    seconds.append(result.seconds)
                    rss.append(result.rss_mib or 0.0)
                    print(f"{size:,} {fmt} run {i}: {result.seconds:.2f}s, "
                          f"{size / result.seconds:,.0f} ev/s, peak RSS {result.rss_mib:.0f} MiB "
                          f"(compute {result.data.get('seconds_in_child', 0):.2f}s)", flush=True)
                    db.unlink(missing_ok=True)
                if seconds:
                    print(f"{size:,} {fmt}: median {statistics.median(seconds):.2f}s = "
                          f"{size / statistics.median(seconds):,.0f} ev/s over {len(seconds)} "
                          f"run(s), peak RSS {max(rss):.0f} MiB", flush=True)
    finally:
        shutil.rmtree(runs, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_child"]:
        return _child(argv[1:])
    if argv[:1] == ["profile"]:
        return _profile(argv[1:])
    if argv[:1] == ["reference"]:
        return _reference_only(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bench",
        description="Benchmark `revattr run` against the tuned SQL reference (see "
                    "bench/README.md). Defaults come from BENCH_SIZES, BENCH_FORMATS, "
                    "BENCH_REPEATS, BENCH_CHECKS, BENCH_BUDGET_MIN; without sizes/formats/"
                    "repeats the default plan is trimmed to the budget. Arguments after -- "
                    "go to every `revattr run` (also BENCH_PIPELINE_ARGS, comma-separated).")
    parser.add_argument("--sizes", help="comma-separated event counts, e.g. 1000000,10M")
    parser.add_argument("--formats", help="comma-separated: parquet,jsonl")
    parser.add_argument("--repeats", type=int, help="pipeline/reference pairs per cell")
    parser.add_argument("--checks", help="comma-separated: off,on (when the CLI has the flag)")
    parser.add_argument("--budget-min", type=float, help="time budget in minutes (default 15)")
    parser.add_argument("--reference", choices=sorted(REFERENCES), default=DEFAULT_REFERENCE,
                        help="tuned (default) or sql: the plain oracle (much slower)")
    parser.add_argument("--data-dir", default="bench/data")
    parser.add_argument("--results", default="bench/results.csv")
    parser.add_argument("--quick", action="store_true", help="2,000 events, correctness only")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args, extra = parser.parse_known_args(argv)
    pipeline_args = [a for a in extra if a != "--"] + (
        _env_list("BENCH_PIPELINE_ARGS") or _env_list("BENCH_BEAM_ARGS") or [])

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
        pipeline_args=pipeline_args, dry_run=args.dry_run, reference=args.reference,
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
