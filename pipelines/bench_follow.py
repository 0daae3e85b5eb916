"""Benchmark of follow mode: landing-to-visible latency at a steady offered rate.

Measurement only. One run per checks mode, each with three actors on this machine:

* a **producer** (this process) drops one JSONL file every ``interval`` seconds
  into the landing folder (``batch-NNNNNN.jsonl.tmp``, then renamed), so that the
  offered rate is ``rate`` events/s, and records the time of each rename;
* the **follower**: ``revattr follow`` in a subprocess (``_follower`` below: the
  CLI's own command, with timers wrapped around its phases, which write one JSON
  line per batch: stage, store transaction, Parquet export, files, records);
* a **reader** subprocess (``_reader``) keeping ONE read-only connection to the
  catalog for the whole run. Every ``reader_interval`` seconds it asks
  ``pipeline_runs`` whether a version appeared; when one did, a table of probes
  (file index, event_id) is joined with ``attributed_events`` and the files
  found are visible from then on. Probes are event ids that occur once in the
  whole stream (a duplicate could make a file look visible through another
  file), so a file is visible as soon as one of its accepted events is.

Reported per mode: offered rate, achieved throughput (records applied / s from
the first landing to the last file visible), latency median / p95 / max,
versions, batches, reader errors (must be 0), the follower's busy share, and the
publication cost against history: median seconds per batch, per 1k records and
per phase (stage with its history lookup and GX checks, store transaction,
Parquet export) of the first vs the last ``EDGE_BATCHES`` batches, with the
facts published then, and a least-squares fit ``s = a + b x records + c x facts``
(batches grow when the follower falls behind; the fit separates the two).
Rows are appended to ``bench/follow_results.csv``.

    python -m pipelines.bench_follow               # 60 s at 5,000 ev/s, checks on then off
    BENCH_FOLLOW_CHECKS=on python -m pipelines.bench_follow       # one mode only
    BENCH_FOLLOW_SECONDS=5 BENCH_FOLLOW_RATE=2000 python -m pipelines.bench_follow
    python -m pipelines.bench_follow --quick       # 5 s, checks on, small data, temp dir, no CSV

Data (``generate_dataset``, seed 7, 1% bad records, 50k accounts / 2k territories)
is generated once under ``bench/data/follow/`` (ignored by git) and cut into
files of ``rate x interval`` lines in stream order.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pipelines.bench import ACCOUNTS, BAD_RATE, SEED, TERRITORIES, code_digest, cpu_model

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_RATE = 20_000  # events/s offered (issue 10: median <= 1 s at 20k ev/s, checks on)
DEFAULT_INTERVAL = 0.5  # seconds between two files
DEFAULT_SECONDS = 60.0
DEFAULT_POLL = 0.1  # the follower's --poll-seconds
DEFAULT_CHECKS = ("on", "off")  # ~75 s each: the default run fits ~3 min
READER_INTERVAL = 0.05
PROBES_PER_FILE = 16
EDGE_BATCHES = 10  # batches compared at the start and at the end of the run
QUICK_SECONDS = 5.0
DATA_BLOCK = 100_000  # data sets are generated in multiples of this many events
START_TIMEOUT = 180.0  # the follower's start-up (imports, reference) and the reader's
TARGET_MEDIAN_S = 1.0

CSV_COLUMNS = (
    "timestamp_utc", "git_commit", "code_digest", "host", "cpus", "cpu_model", "python",
    "dataset", "checks", "rate_eps", "interval_s", "seconds", "poll_s",
    "reader_interval_s",
    "files", "events_offered", "offered_eps", "records_applied", "throughput_eps",
    "latency_median_s", "latency_p95_s", "latency_max_s", "first_file_latency_s",
    "files_applied", "files_quarantined", "files_never_visible", "versions", "batches",
    "reader_errors", "reader_poll_ms_median", "reader_lookup_ms_median", "busy_pct",
    "edge_batches", "early_batch_s", "late_batch_s", "early_ms_per_1k", "late_ms_per_1k",
    "early_files_per_batch", "late_files_per_batch",
    "early_facts", "late_facts", "early_stage_s", "late_stage_s", "early_store_s",
    "late_store_s", "early_history_s", "late_history_s", "early_checks_s", "late_checks_s",
    "early_export_s", "late_export_s", "follower_rss_mib", "follower_cpu_s", "reader_cpu_s",
    "other_cpu_s", "median_target_met",
)

Say = Callable[[str], None]


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    rate: int = DEFAULT_RATE
    interval: float = DEFAULT_INTERVAL
    seconds: float = DEFAULT_SECONDS
    poll: float = DEFAULT_POLL
    reader_interval: float = READER_INTERVAL
    quick: bool = False  # small reference data (the generator's defaults)

    @property
    def events_per_file(self) -> int:
        return max(1, round(self.rate * self.interval))

    @property
    def files(self) -> int:
        return max(1, round(self.seconds / self.interval))

    @property
    def events(self) -> int:
        return self.files * self.events_per_file


# ----------------------------------------------------------------------------- data


def dataset_args(events: int, quick: bool) -> dict:
    return {"events": events, "seed": SEED, "bad_rate": BAD_RATE, "event_format": "jsonl",
            "accounts": None if quick else ACCOUNTS,
            "territories": None if quick else TERRITORIES}


def dataset_label(quick: bool) -> str:
    args = dataset_args(0, quick)
    return (f"seed={args['seed']} bad_rate={args['bad_rate']} accounts={args['accounts']} "
            f"territories={args['territories']}")


def ensure_follow_dataset(data_dir: Path, events: int, quick: bool, say: Say) -> Path:
    """``<data_dir>/jsonl-<n>/`` with at least ``events`` events (n rounded up to a
    multiple of DATA_BLOCK, so a few sizes serve every setting), generated once."""
    from pipelines.bench import ensure_generated

    size = -(-events // DATA_BLOCK) * DATA_BLOCK
    return ensure_generated(data_dir / f"jsonl-{size}", dataset_args(size, quick), say)


def load_chunks(dataset: Path, settings: Settings) -> list[bytes]:
    """The content of each file the producer drops: consecutive lines of the data set."""
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    lines: list[bytes] = []
    for name in manifest["files"]:
        with open(dataset / name, "rb") as handle:
            lines += handle.read().splitlines(keepends=True)
        if len(lines) >= settings.events:
            break
    if len(lines) < settings.events:
        raise RuntimeError(f"{dataset} holds {len(lines):,} events, {settings.events:,} needed")
    k = settings.events_per_file
    return [b"".join(lines[i * k:(i + 1) * k]) for i in range(settings.files)]


def choose_probes(chunks: Sequence[bytes], per_file: int = PROBES_PER_FILE) -> dict[int, list]:
    """file index -> up to ``per_file`` event ids that occur once in the whole stream
    (only the file holding it can make such an id visible)."""
    ids: list[list[str]] = []
    for chunk in chunks:
        found = []
        for line in chunk.splitlines():
            try:
                event_id = json.loads(line).get("event_id")
            except (ValueError, AttributeError):
                continue  # malformed on purpose
            if isinstance(event_id, str) and event_id:
                found.append(event_id)
        ids.append(found)
    seen = Counter(i for found in ids for i in found)
    return {n: [i for i in found if seen[i] == 1][:per_file] for n, found in enumerate(ids)}


# ----------------------------------------------------------------------------- follower child


def _follower(argv: list[str]) -> int:
    """``revattr follow`` (the CLI command itself) with per-batch timers.

    ``--metrics FILE``: one JSON line per batch that applied or quarantined files
    (end time, seconds of the poll and of its phases, files, records, accepted);
    ``--ready FILE``: written once the follower has started (reference loaded);
    then ``--`` and the ``revattr follow`` flags.
    """
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="pipelines.bench_follow _follower")
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--ready", required=True)
    args = parser.parse_args(argv[:split])
    import atexit
    import resource

    import pipelines.follow as follow
    import pipelines.quality.stage_check as stage_check
    from pipelines.io.publication import Publication, PublishedEvents

    phases: dict[str, float] = {}

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*a: object, **k: object) -> object:
            started = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - started
        return wrapper

    follow.stage_embedded = timed("stage", follow.stage_embedded)
    stage_check.run_stage_check = timed("checks", stage_check.run_stage_check)
    PublishedEvents.lookup = timed("history", PublishedEvents.lookup)
    Publication.publish = timed("publish", Publication.publish)
    # Export = the version's Parquet parts and marker, then compaction and clean-up.
    Publication._export_pending = timed("export", Publication._export_pending)
    Publication.compact = timed("export", Publication.compact)
    Publication.collect_garbage = timed("export", Publication.collect_garbage)
    metrics = open(args.metrics, "a", encoding="utf-8")  # noqa: SIM115 (closed at exit)
    original_poll, original_start = follow.Follower.poll, follow.Follower.start

    def poll(self: follow.Follower) -> follow.BatchOutcome:
        phases.clear()
        outcome = original_poll(self)
        if outcome.applied or outcome.quarantined:
            runs = [r for r in outcome.runs if r.status == "succeeded"]
            record = {
                "t_end": time.time(), "poll_s": outcome.seconds,
                "applied": len(outcome.applied), "quarantined": len(outcome.quarantined),
                "input_records": sum(r.input_records for r in runs),
                "accepted": sum(r.accepted for r in runs), "runs": len(outcome.runs),
                **{f"{k}_s": v for k, v in phases.items()},
            }
            metrics.write(json.dumps(record) + "\n")
            metrics.flush()
        return outcome

    def start(self: follow.Follower) -> None:
        original_start(self)
        Path(args.ready).write_text(str(time.time()))

    def at_exit() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        metrics.write(json.dumps({"rss_mib": usage.ru_maxrss / 1024,
                                  "cpu_s": usage.ru_utime + usage.ru_stime}) + "\n")
        metrics.close()

    atexit.register(at_exit)
    follow.Follower.poll, follow.Follower.start = poll, start
    from pipelines.cli import app

    app(["follow", *argv[split + 1:]], prog_name="revattr")
    return 0


# ----------------------------------------------------------------------------- reader child


def _reader(argv: list[str]) -> int:
    """One read-only connection to the catalog, kept open; polls which files are visible.

    Each poll asks ``pipeline_runs`` (one row per version: cheap) whether a version
    was published since the last poll; only then are the probes of the files not
    yet seen joined with ``attributed_events`` (a full scan of its event ids).
    Writes ``--out`` JSON at the end (when ``--stop`` exists): the wall time each
    file index was first seen, query errors, query durations and final counts.
    """
    parser = argparse.ArgumentParser(prog="pipelines.bench_follow _reader")
    parser.add_argument("--db", required=True)
    parser.add_argument("--probes", required=True, help="JSON: file index -> event ids")
    parser.add_argument("--out", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--interval", type=float, default=READER_INTERVAL)
    args = parser.parse_args(argv)
    import duckdb
    import pyarrow as pa

    probes = {int(k): v for k, v in json.loads(Path(args.probes).read_text()).items()}
    con = duckdb.connect(args.db, read_only=True)
    con.execute("SET threads = 1").fetchall()  # a light reader: the follower has 2 cores
    visible: dict[int, float] = {}
    errors: list[str] = []
    n_errors = 0
    polls: list[float] = []  # seconds of each poll query
    lookups: list[float] = []  # seconds of each probe join
    runs_seen = -1

    def register() -> None:
        rows = [(n, i) for n, ids in probes.items() if n not in visible for i in ids]
        con.register("probes", pa.table({"file_index": [r[0] for r in rows],
                                          "event_id": [r[1] for r in rows]}))

    register()
    Path(args.ready).write_text(str(time.time()))
    stop = Path(args.stop)
    while not stop.exists():
        started = time.perf_counter()
        try:
            # Cheap: has a new version been published? (one row per run)
            runs = con.execute("SELECT count(*) FROM pipeline_runs").fetchall()[0][0]
            polls.append(time.perf_counter() - started)
            if runs != runs_seen:
                lookup = time.perf_counter()
                found = [r[0] for r in con.execute(
                    "SELECT DISTINCT p.file_index FROM probes p "
                    "SEMI JOIN attributed_events a ON a.event_id = p.event_id").fetchall()]
                now = time.time()
                lookups.append(time.perf_counter() - lookup)
                runs_seen = runs
                for n in found:
                    visible.setdefault(n, now)
                if found:
                    register()
        except duckdb.Error as error:
            n_errors += 1
            if len(errors) < 5:
                errors.append(f"{type(error).__name__}: {error}")
        time.sleep(max(0.0, args.interval - (time.perf_counter() - started)))
    final: dict[str, object] = {}
    try:  # on the same connection, after the follower stopped
        final["facts"], final["distinct_ids"] = con.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM attributed_events").fetchall()[0]
        final["all_balanced"] = con.execute(
            "SELECT coalesce(bool_and(balanced), true) FROM reconciliation").fetchall()[0][0]
    except duckdb.Error as error:
        n_errors += 1
        errors.append(f"final: {type(error).__name__}: {error}")
    con.close()
    Path(args.out).write_text(json.dumps({
        "cpu_s": sum(os.times()[:2]),
        "visible": visible, "errors": n_errors, "error_samples": errors,
        "polls": len(polls), "lookups": len(lookups),
        "poll_ms_median": 1000 * statistics.median(polls) if polls else None,
        "lookup_ms_median": 1000 * statistics.median(lookups) if lookups else None,
        "lookup_ms_max": 1000 * max(lookups) if lookups else None,
        **final,
    }))
    return 0


# ----------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    checks: str
    settings: Settings
    files: int = 0
    events_offered: int = 0
    offered_eps: float | None = None
    landed: list[float] = field(default_factory=list)  # wall time of each rename
    visible: dict[int, float] = field(default_factory=dict)
    batches: list[dict] = field(default_factory=list)
    versions: int = 0
    files_applied: int = 0
    files_quarantined: int = 0
    reader: dict = field(default_factory=dict)
    follower_rss_mib: float | None = None
    follower_exit: int | None = None
    follower_cpu_s: float | None = None
    reader_cpu_s: float | None = None
    other_cpu_s: float | None = None  # CPU used meanwhile by processes not of this bench
    wall_s: float | None = None  # from the follower's start to the reader's exit
    problems: list[str] = field(default_factory=list)

    # -- derived -----------------------------------------------------------
    @property
    def latencies(self) -> list[float]:
        return [self.visible[n] - t for n, t in enumerate(self.landed) if n in self.visible]

    @property
    def never_visible(self) -> int:
        return sum(1 for n in range(len(self.landed)) if n not in self.visible)

    @property
    def records_applied(self) -> int:
        return sum(b.get("input_records", 0) for b in self.batches)

    @property
    def span(self) -> float | None:
        if not self.landed or not self.visible:
            return None
        return max(self.visible.values()) - self.landed[0]

    @property
    def throughput(self) -> float | None:
        return self.records_applied / self.span if self.span else None

    @property
    def busy_pct(self) -> float | None:
        return 100 * sum(b["poll_s"] for b in self.batches) / self.span if self.span else None

    def _window(self, late: bool) -> range:
        """Indexes of the first (or last) EDGE_BATCHES batches; the two never overlap."""
        n = len(self.batches)
        k = min(EDGE_BATCHES, n // 2) if n > 1 else n
        return range(n - k, n) if late else range(k)

    def edge(self, key: str, late: bool) -> float | None:
        """Median of ``key`` over the first (or last) batches."""
        values = [self.batches[i].get(key) for i in self._window(late)]
        values = [v for v in values if v is not None]
        return _median(values) if values else None

    def facts_at(self, late: bool) -> int | None:
        """Facts published when the middle batch of the first (or last) window ended."""
        window = self._window(late)
        if not window:
            return None
        middle = window[len(window) // 2]
        return sum(b.get("accepted", 0) for b in self.batches[:middle + 1])

    @property
    def reader_errors(self) -> int:
        return int(self.reader.get("errors", 0)) if self.reader else -1

    @property
    def ok(self) -> bool:
        return (not self.problems and self.never_visible == 0 and self.reader_errors == 0
                and self.files_applied == self.files)

    def csv_record(self, machine: dict[str, str]) -> dict[str, str]:
        lat = self.latencies
        return {
            **machine, "checks": self.checks, "rate_eps": str(self.settings.rate),
            "interval_s": _fmt(self.settings.interval, 3),
            "seconds": _fmt(self.settings.seconds, 1),
            "poll_s": _fmt(self.settings.poll, 3),
            "reader_interval_s": _fmt(self.settings.reader_interval, 3),
            "files": str(self.files), "events_offered": str(self.events_offered),
            "offered_eps": _fmt(self.offered_eps, 0), "records_applied": str(self.records_applied),
            "throughput_eps": _fmt(self.throughput, 0),
            "latency_median_s": _fmt(_median(lat), 3), "latency_p95_s": _fmt(_pct(lat, 95), 3),
            "latency_max_s": _fmt(max(lat, default=None), 3),
            "first_file_latency_s": _fmt(lat[0] if 0 in self.visible else None, 3),
            "files_applied": str(self.files_applied),
            "files_quarantined": str(self.files_quarantined),
            "files_never_visible": str(self.never_visible), "versions": str(self.versions),
            "batches": str(len(self.batches)), "reader_errors": str(self.reader_errors),
            "reader_poll_ms_median": _fmt(self.reader.get("poll_ms_median"), 1),
            "reader_lookup_ms_median": _fmt(self.reader.get("lookup_ms_median"), 1),
            "edge_batches": str(len(self._window(False))),
            "busy_pct": _fmt(self.busy_pct, 0),
            **{f"{side}_{name}": _fmt(self.edge(key, side == "late"), 3)
               for side in ("early", "late")
               for name, key in (("batch_s", "poll_s"), ("ms_per_1k", "ms_per_1k"),
                                 ("stage_s", "stage_s"), ("history_s", "history_s"),
                                 ("checks_s", "checks_s"),
                                 ("store_s", "store_s"), ("export_s", "export_s"))},
            "early_files_per_batch": _fmt(self.edge("applied", False), 1),
            "late_files_per_batch": _fmt(self.edge("applied", True), 1),
            "early_facts": str(self.facts_at(False) or ""),
            "late_facts": str(self.facts_at(True) or ""),
            "follower_rss_mib": _fmt(self.follower_rss_mib, 0),
            "follower_cpu_s": _fmt(self.follower_cpu_s, 1),
            "reader_cpu_s": _fmt(self.reader_cpu_s, 1), "other_cpu_s": _fmt(self.other_cpu_s, 1),
            "median_target_met": "yes" if (_median(lat) or 1e9) <= TARGET_MEDIAN_S else "no",
        }


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def _fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _child_command(kind: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipelines.bench_follow", kind, *args]


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {what} was not ready after {timeout:.0f}s")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen | None, timeout: float = 60.0) -> int | None:
    """SIGTERM (the follower finishes its batch), then SIGKILL if it does not exit."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_once(checks: bool, settings: Settings, dataset: Path, chunks: Sequence[bytes],
             probes: dict[int, list], work: Path, say: Say) -> RunResult:
    """Producer + follower + reader for one checks mode; the work folder keeps the logs."""
    from pipelines.io.publication import Publication

    label = "on" if checks else "off"
    shutil.rmtree(work, ignore_errors=True)
    landing = work / "landing"
    landing.mkdir(parents=True)
    db = work / "revenue.duckdb"
    (work / "probes.json").write_text(json.dumps(probes))
    result = RunResult(label, settings, files=len(chunks),
                       events_offered=len(chunks) * settings.events_per_file)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    follower = reader = None
    busy_before, own_before, wall_before = _host_busy_s(), _own_cpu_s(), time.monotonic()
    follower_log = open(work / "follower.log", "wb")  # noqa: SIM115 (closed below)
    reader_log = open(work / "reader.log", "wb")  # noqa: SIM115
    try:
        say(f"checks {label}: starting the follower ...")
        started = time.perf_counter()
        follower = subprocess.Popen(
            _child_command("_follower", f"--metrics={work / 'metrics.jsonl'}",
                           f"--ready={work / 'follower.ready'}", "--",
                           f"--landing={landing}", f"--reference={dataset / 'reference'}",
                           f"--db={db}", f"--poll-seconds={settings.poll}",
                           "--checks" if checks else "--no-checks"),
            cwd=REPO_ROOT, stdout=follower_log, stderr=subprocess.STDOUT, env=env)
        _wait_for(work / "follower.ready", follower, START_TIMEOUT, "follower")
        say(f"  follower ready in {time.perf_counter() - started:.1f}s; starting the reader")
        reader = subprocess.Popen(
            _child_command("_reader", f"--db={db}", f"--probes={work / 'probes.json'}",
                           f"--out={work / 'reader.json'}", f"--ready={work / 'reader.ready'}",
                           f"--stop={work / 'reader.stop'}",
                           f"--interval={settings.reader_interval}"),
            cwd=REPO_ROOT, stdout=reader_log, stderr=subprocess.STDOUT, env=env)
        _wait_for(work / "reader.ready", reader, START_TIMEOUT, "reader")
        say(f"  producing {len(chunks)} files of {settings.events_per_file:,} events every "
            f"{settings.interval:g}s ({settings.rate:,} ev/s offered) ...")
        result.landed = _produce(landing, chunks, settings.interval, follower)
        span = result.landed[-1] - result.landed[0] + settings.interval
        result.offered_eps = result.events_offered / span
        say("  all files dropped; waiting for the follower to apply them ...")
        drain_deadline = time.monotonic() + max(60.0, 2 * settings.seconds)
        while _pending(landing, len(chunks)) and follower.poll() is None:
            if time.monotonic() > drain_deadline:
                result.problems.append("the follower did not apply every file in time")
                break
            time.sleep(0.1)
        time.sleep(max(0.5, 4 * settings.reader_interval))  # the reader's last poll
    except RuntimeError as error:
        result.problems.append(str(error))
    finally:
        result.follower_exit = _stop(follower)
        if reader is not None:
            (work / "reader.stop").write_text("")
            try:
                reader.wait(60)
            except subprocess.TimeoutExpired:
                _stop(reader)
                result.problems.append("the reader did not stop")
        follower_log.close()
        reader_log.close()
    result.wall_s = time.monotonic() - wall_before
    busy = _host_busy_s()
    if busy is not None and busy_before is not None:  # children were waited for: counted
        result.other_cpu_s = max(0.0, busy - busy_before - (_own_cpu_s() - own_before))
    if follower is not None and result.follower_exit not in (0, None) and not result.problems:
        result.problems.append(f"the follower exited with code {result.follower_exit}")
    metrics = work / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            if "rss_mib" in record:
                result.follower_rss_mib = record["rss_mib"]
                result.follower_cpu_s = record.get("cpu_s")
            else:
                record["store_s"] = max(0.0, record.get("publish_s", 0.0)
                                        - record.get("export_s", 0.0))
                if record.get("input_records"):
                    record["ms_per_1k"] = 1e6 * record["poll_s"] / record["input_records"]
                result.batches.append(record)
    if (work / "reader.json").is_file():
        result.reader = json.loads((work / "reader.json").read_text())
        result.visible = {int(k): v for k, v in result.reader.pop("visible").items()}
        result.reader_cpu_s = result.reader.get("cpu_s")
    elif reader is not None:
        result.problems.append(f"the reader wrote no results; see {work / 'reader.log'}")
    if db.with_name(db.name + ".d").exists():
        result.versions = Publication(db).committed_version()
    result.files_applied = _count(landing / "applied")
    result.files_quarantined = _count(landing / "quarantine")
    if result.files_quarantined:
        result.problems.append(f"{result.files_quarantined} file(s) quarantined; see "
                               f"{landing / 'quarantine'}")
    facts = result.reader.get("facts")
    accepted = sum(b.get("accepted", 0) for b in result.batches)
    if facts is not None and facts != accepted:
        result.problems.append(f"the reader sees {facts:,} facts, the follower accepted "
                               f"{accepted:,}")
    if result.reader.get("all_balanced") is False:
        result.problems.append("reconciliation is not balanced on every day")
    return result


def _host_busy_s() -> float | None:
    """CPU seconds the whole host spent busy since boot (all cores), from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of its children that were waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _cpus() -> int:
    return os.cpu_count() or 1


def _produce(landing: Path, chunks: Sequence[bytes], interval: float,
             follower: subprocess.Popen) -> list[float]:
    """Drop one file per ``interval`` (write ``.tmp``, rename); the wall time of each rename."""
    landed = []
    start = time.monotonic()
    for n, chunk in enumerate(chunks):
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if follower.poll() is not None:
            raise RuntimeError(f"the follower exited with code {follower.returncode} "
                               f"after {n} file(s)")
        final = landing / f"batch-{n:06d}.jsonl"
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_bytes(chunk)
        os.replace(tmp, final)
        landed.append(time.time())
    return landed


def _pending(landing: Path, files: int) -> bool:
    ready = any(p.name.endswith(".jsonl") for p in landing.iterdir() if p.is_file())
    done = _count(landing / "applied") + _count(landing / "quarantine")
    return ready or done < files


def _count(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.name.endswith(".jsonl"))


# ----------------------------------------------------------------------------- machine, CSV


def git_commit() -> str:
    """HEAD's short commit, read from ``.git`` files (no git process; no dirty flag:
    ``code_digest`` tells apart rows of one commit whose code differs)."""
    git = REPO_ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:7]
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:7]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0][:7]
    except OSError:
        pass
    return "unknown"


def machine_info(quick: bool) -> dict[str, str]:
    import platform

    return {
        "timestamp_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": git_commit(), "code_digest": code_digest(),
        "host": socket.gethostname(), "cpus": str(os.cpu_count() or ""),
        "cpu_model": cpu_model(), "python": platform.python_version(),
        "dataset": dataset_label(quick),
    }


def append_results(path: Path, records: list[dict[str, str]]) -> None:
    """Append rows with CSV_COLUMNS (see ``pipelines.bench.append_results``)."""
    from pipelines.bench import append_results as append

    append(path, records, CSV_COLUMNS)


# ----------------------------------------------------------------------------- table


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table_rows(results: Sequence[RunResult]) -> list[tuple[str, list[str]]]:
    """(label, one value per result) rows of the printed table."""

    def per(fn: Callable[[RunResult], str]) -> list[str]:
        return [fn(r) for r in results]

    def edge(key: str, digits: int = 2) -> Callable[[RunResult], str]:
        return lambda r: f"{_s(r.edge(key, False), digits)} -> {_s(r.edge(key, True), digits)}"

    return [
        ("checks", per(lambda r: r.checks)),
        ("offered rate (ev/s)", per(lambda r: f"{r.offered_eps or 0:,.0f} "
                                              f"({r.files} files x {r.settings.events_per_file:,}"
                                              f" every {r.settings.interval:g}s)")),
        ("achieved throughput (ev/s)", per(lambda r: f"{r.throughput or 0:,.0f} "
                                                     f"({r.records_applied:,} records)")),
        ("latency median (s)", per(lambda r: _s(_median(r.latencies)))),
        ("latency p95 (s)", per(lambda r: _s(_pct(r.latencies, 95)))),
        ("latency max (s)", per(lambda r: _s(max(r.latencies, default=None)))),
        ("first file latency (s)", per(lambda r: _s(r.latencies[0] if 0 in r.visible
                                                     else None))),
        ("files applied / dropped", per(lambda r: f"{r.files_applied} / {r.files}"
                                                  + (f" ({r.never_visible} never visible)"
                                                     if r.never_visible else ""))),
        ("versions / batches", per(lambda r: f"{r.versions} / {len(r.batches)}")),
        ("reader query errors", per(lambda r: str(r.reader_errors))),
        ("reader ms: poll / probe join", per(
            lambda r: f"{_s(r.reader.get('poll_ms_median'), 0)} / "
                      f"{_s(r.reader.get('lookup_ms_median'), 0)} (medians)")),
        ("follower busy", per(lambda r: f"{_s(r.busy_pct, 0)}%")),
        ("CPU s: follower / reader / others", per(
            lambda r: f"{_s(r.follower_cpu_s, 0)} / {_s(r.reader_cpu_s, 0)} / "
                      f"{_s(r.other_cpu_s, 0)} (of {_s(r.wall_s and r.wall_s * _cpus(), 0)})")),
        ("follower peak RSS (MiB)", per(lambda r: _s(r.follower_rss_mib, 0))),
        ("batches compared (first, last)", per(lambda r: f"{len(r._window(False))} + "
                                                         f"{len(r._window(True))}")),
        ("s per batch, first -> last", per(edge("poll_s"))),
        ("  ms per 1k records", per(edge("ms_per_1k", 0))),
        ("  stage (parse..checks)", per(edge("stage_s"))),
        ("    of which history lookup", per(edge("history_s"))),
        ("    of which checks (GX)", per(edge("checks_s"))),
        ("  store transaction", per(edge("store_s"))),
        ("  export (parquet+compact)", per(edge("export_s"))),
        ("  files per batch", per(edge("applied", 1))),
        ("  facts published then", per(lambda r: f"{r.facts_at(False) or 0:,} -> "
                                                 f"{r.facts_at(True) or 0:,}")),
        (f"median <= {TARGET_MEDIAN_S:g} s", per(
            lambda r: "met" if (_median(r.latencies) or 1e9) <= TARGET_MEDIAN_S else "NOT met")),
    ]


def print_results(results: Sequence[RunResult], say: Say = print) -> None:
    rows = table_rows(results)
    width = max(len(label) for label, _ in rows)
    widths = [max(len(values[i]) for _, values in rows) for i in range(len(results))]
    for label, values in rows:
        say(f"{label:<{width}}  " + "  ".join(f"{v:<{w}}" for v, w in zip(values, widths,
                                                                        strict=True)))
    for r in results:
        for problem in r.problems:
            say(f"problem (checks {r.checks}): {problem}")
        for sample in r.reader.get("error_samples", []):
            say(f"reader error (checks {r.checks}): {sample}")


# ----------------------------------------------------------------------------- main


def run_bench(settings: Settings, checks: Sequence[bool], data_dir: str | Path,
              results_csv: str | Path | None, say: Say = print) -> list[RunResult]:
    """Every checks mode in turn; appends one CSV row per mode unless ``results_csv`` is None."""
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info(settings.quick)
    dataset = ensure_follow_dataset(data_dir, settings.events, settings.quick, say)
    chunks = load_chunks(dataset, settings)
    probes = choose_probes(chunks)
    results = []
    for mode in checks:
        work = data_dir / f"run-checks-{'on' if mode else 'off'}"
        results.append(run_once(mode, settings, dataset, chunks, probes, work, say))
        if results[-1].ok:  # keep the logs, metrics and reader.json; drop the bulky copies
            for bulky in ("landing", "revenue.duckdb.d"):
                shutil.rmtree(work / bulky, ignore_errors=True)
            (work / "revenue.duckdb").unlink(missing_ok=True)
    if code_digest() != machine["code_digest"]:
        machine["code_digest"] += "+changed"
    if results_csv is not None:
        append_results(Path(results_csv), [r.csv_record(machine) for r in results])
    return results


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_follower"]:
        return _follower(argv[1:])
    if argv[:1] == ["_reader"]:
        return _reader(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.bench_follow",
        description="Benchmark follow mode: latency from landing to visible at a steady rate. "
                    "Defaults from BENCH_FOLLOW_RATE, BENCH_FOLLOW_INTERVAL, "
                    "BENCH_FOLLOW_SECONDS, BENCH_FOLLOW_CHECKS (on, off or on,off), "
                    "BENCH_FOLLOW_POLL.")
    parser.add_argument("--rate", type=int, default=int(_env("BENCH_FOLLOW_RATE",
                                                             str(DEFAULT_RATE))))
    parser.add_argument("--interval", type=float,
                        default=float(_env("BENCH_FOLLOW_INTERVAL", str(DEFAULT_INTERVAL))))
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"producer run time (default {DEFAULT_SECONDS:g}, quick "
                             f"{QUICK_SECONDS:g})")
    parser.add_argument("--poll", type=float, default=float(_env("BENCH_FOLLOW_POLL",
                                                                 str(DEFAULT_POLL))),
                        help="the follower's --poll-seconds")
    parser.add_argument("--checks", default=os.environ.get("BENCH_FOLLOW_CHECKS", "").strip(),
                        help="comma-separated: on, off (default on,off; quick: on)")
    parser.add_argument("--data-dir", default=None,
                        help="default bench/data/follow (quick: a temporary directory)")
    parser.add_argument("--results", default=None,
                        help="CSV to append to (default bench/follow_results.csv; quick: none)")
    parser.add_argument("--quick", action="store_true",
                        default=_env("BENCH_FOLLOW_QUICK", "") not in ("", "0"),
                        help=f"{QUICK_SECONDS:g} s, small reference data, temporary directory, "
                             "no CSV row unless --results")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else float(
        _env("BENCH_FOLLOW_SECONDS", str(QUICK_SECONDS if args.quick else DEFAULT_SECONDS)))
    checks = args.checks or ("on" if args.quick else ",".join(DEFAULT_CHECKS))
    modes = [c.strip().lower() for c in checks.split(",") if c.strip()]
    wrong = [m for m in modes if m not in ("on", "off")]
    if wrong or not modes:
        parser.error(f"--checks takes on, off or on,off (got {checks!r})")
    settings = Settings(rate=args.rate, interval=args.interval, seconds=seconds,
                        poll=args.poll, quick=args.quick)
    scratch = None
    if args.data_dir is None:
        data_dir = "bench/data/follow"
        if args.quick:
            data_dir = scratch = tempfile.mkdtemp(prefix="revattr-bench-follow-")
    else:
        data_dir = args.data_dir
    results_csv = args.results or (None if args.quick else "bench/follow_results.csv")

    def say(message: str) -> None:
        print(message, flush=True)

    say(f"follow bench: {settings.rate:,} ev/s for {settings.seconds:g}s, checks "
        f"{'+'.join(modes)}, data in {data_dir}")
    started = time.perf_counter()
    results = run_bench(settings, [m == "on" for m in modes], data_dir, results_csv, say)
    say(f"bench finished in {time.perf_counter() - started:.0f}s\n")
    print_results(results, say)
    if results_csv:
        say(f"appended {len(results)} row(s) to {results_csv}")
    ok = all(r.ok for r in results)
    if scratch is not None and ok:
        shutil.rmtree(scratch, ignore_errors=True)
    elif not ok:
        say(f"logs kept under {data_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
