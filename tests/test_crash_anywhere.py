"""Crash anywhere: ``revattr run`` killed with SIGKILL at 20 points, then run again, leaves
published tables identical to those of an uninterrupted run; BI readers meanwhile never
see half a run. A full disk and a read-only output folder fail with one line and leave
the published state intact.

Two runs over a generated data set with bad records and duplicates: the first over one
event file, the second over both (so every event of the first is a duplicate of the
published history). The uninterrupted reference is the first run, then the second, into
store A. Each kill point copies the store after the first run (or starts from nothing,
killing the first run), starts the second run as a ``revattr`` process, SIGKILLs it, and
runs it again to completion (``revattr run`` through the CLI in this process: a timed
kill that came after the run had finished is drawn again, in a window scaled to it).

"Identical" here: every relation of the catalog (tables, views and derived views) holds
the same rows, and every live Parquet part the same rows, except for what differs
between any two runs of the same input: run ids (compared by the run's position in the
history), and the wall-clock columns ``VOLATILE``. A kill after the run's store
transaction committed publishes that run (the re-run exports it first); the re-run
then finds all its events published and records itself as a run that added nothing
(``accepted = 0``, no quarantine rows): such *no-op* runs' rows of ``pipeline_runs``
and ``dq_results`` are checked on their own, then left out of the comparison.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from pipelines.generate import generate_dataset
from pipelines.io.catalog import Layout, commit_name, part_name
from pipelines.io.publication import GRACE_SECONDS, Publication
from tests.utils import copy_database

pytestmark = pytest.mark.slow

REVATTR = Path(sys.executable).with_name("revattr")
READER = Path(__file__).with_name("crash_reader.py")
SEED = 20261212
VOLATILE = {
    "pipeline_runs": ("started_at", "finished_at"),
    "quarantine": ("quarantined_at",),
    "dq_results": ("checked_at",),
}

# Where the file system shows the second run has got to (version 2 of a store holding
# one run); a watcher kills the run the moment it sees it (after a jitter).
TRIGGERS = {
    "staging": lambda db, v: any((db.parent / ".staging").glob("*/*")),
    "facts placed": lambda db, v: (Layout.of(db).relation_dir("attributed_events")
                                   / part_name(v, v)).exists(),
    "export": lambda db, v: (Layout.of(db).relation_dir("quarantine") / part_name(v, v)).exists(),
    "marker": lambda db, v: (Layout.of(db).commits / commit_name(v)).exists(),
}
# (kind, store, trigger or None). 10 at a seeded random time: 2 in [0, S] (S: the
# start-up of an uninterrupted run, until its staging folder shows: about half a run is
# Python and library imports, flags, reference loading), 5 in [S, T] (T: the whole
# run), 3 in [0, T] of the first run on an empty store; and 10 the moment the file
# system shows a given step of the run (after a jitter for "staging").
KILL_POINTS = (
    [("startup", "history", None)] * 2
    + [("time", "history", None)] * 5
    + [("time", "fresh", None)] * 3
    + [("watch", "history", t) for t in ("staging", "staging", "facts placed", "facts placed",
                                         "export", "export", "export",
                                         "marker", "marker", "marker")]
)
PHASES = (
    "start-up (before staging)",
    "staging (engine running)",
    "store transaction (facts placed, not committed)",
    "committed in the store, not yet exported",
    "exported (marker written: maintenance, quality page, clean-up)",
    "finished before the kill",
)


@dataclass(frozen=True)
class Inputs:
    first: str  # events of the first run
    second: str  # events of the second run
    reference: Path


@dataclass
class Reference:
    after_first: Path  # the store after the first run
    final: Path  # store A: both runs, uninterrupted
    first_state: dict
    state: dict
    first: tuple[float, float]  # the first run: (start-up, whole run) in seconds
    second: tuple[float, float]  # the second run: the same
    allowed: Path  # the facts states readers may see (JSON)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("crash-data")
    summary = generate_dataset(root, events=2000, seed=5, bad_rate=0.03)
    files = sorted(root / f for f in summary.files)
    assert len(files) == 2
    return Inputs(str(files[0]), str(root / "events" / "*.jsonl"), root / "reference")


def revattr_run(db: Path, events: str, inputs: Inputs, **popen) -> list[str]:
    return [str(REVATTR), "run", "--events", events, "--reference", str(inputs.reference),
            "--db", str(db)]


def run_ok(db: Path, events: str, inputs: Inputs) -> tuple[float, float]:
    """Run to completion; (seconds until its staging folder showed, seconds in all)."""
    started = time.perf_counter()
    startup = None
    process = subprocess.Popen(revattr_run(db, events, inputs), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    while process.poll() is None:
        if startup is None and TRIGGERS["staging"](db, 0):
            startup = time.perf_counter() - started
        time.sleep(0.005)
    output = process.stdout.read()
    assert process.returncode == 0, output[-4000:]
    total = time.perf_counter() - started
    return (startup or total), total


def run_again(db: Path, events: str, inputs: Inputs) -> None:
    """The re-run after a kill (or a failure): ``revattr run`` with the same flags, through
    the CLI's own code (``pipelines.cli.app``: flags, exit code), in this process: without
    the interpreter's start-up and imports that each ``revattr`` process pays (about half
    a run). The killed runs and the reference runs stay ``revattr`` processes."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, revattr_run(db, events, inputs)[1:])
    assert result.exit_code == 0, (result.output[-4000:], result.exception)


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Reference:
    root = tmp_path_factory.mktemp("crash-reference")
    after_first = root / "first" / "revenue.duckdb"
    first = run_ok(after_first, inputs.first, inputs)
    final = copy_database(after_first, root / "a" / "revenue.duckdb")
    second = run_ok(final, inputs.second, inputs)
    empty = root / "empty" / "revenue.duckdb"
    Publication(empty).prepare()
    states = [facts_state(db) for db in (empty, after_first, final)]
    allowed = root / "allowed.json"
    allowed.write_text(json.dumps(states))
    return Reference(after_first, final, published_state(after_first), published_state(final),
                     first, second, allowed)


# -- what a store publishes ------------------------------------------------------------
def facts_state(db: Path) -> tuple[int, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        count, booked = con.execute(
            "SELECT count(*), coalesce(sum(booked_revenue), 0) FROM attributed_events"
        ).fetchall()[0]
    return count, str(booked)


def _rows(con: duckdb.DuckDBPyConnection, source: str, columns: list[str], relation: str,
          runs: dict[str, str]) -> list:
    """The rows of ``source`` without its ``VOLATILE`` columns, run ids replaced by their
    position in the history, in one canonical order (sorted in DuckDB: ``ORDER BY ALL``)."""
    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    picked = []
    for column in columns:
        if column in VOLATILE.get(relation, ()):
            continue
        name = '"' + column.replace('"', '""') + '"'
        if column == "run_id" and runs:
            cases = " ".join(f"WHEN {quoted(k)} THEN {quoted(v)}" for k, v in runs.items())
            name = f"CASE {name} {cases} ELSE {name} END"
        picked.append(name)
    return con.execute(f"SELECT {', '.join(picked)} FROM {source} ORDER BY ALL").fetchall()


def published_state(db: Path) -> dict:
    """Every catalog relation's rows and every live part's rows, normalised (module doc)."""
    with duckdb.connect(str(db), read_only=True) as con:
        history = con.execute(
            "SELECT r.run_id, r.accepted, r.input_records, r.duplicates, r.quarantined, "
            "r.status, (SELECT count(*) FROM quarantine q WHERE q.run_id = r.run_id) "
            "FROM pipeline_runs r ORDER BY r.started_at").fetchall()
        substantive = [r for r in history if r[1] or r[6]]
        noops = [r for r in history if not (r[1] or r[6])]
        runs = {r[0]: f"run#{i}" for i, r in enumerate(substantive, start=1)}
        runs |= {r[0]: f"noop#{i}" for i, r in enumerate(noops, start=1)}
        columns: dict[str, list[str]] = {}
        for name, column in con.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "ORDER BY table_name, ordinal_position").fetchall():
            columns.setdefault(name, []).append(column)
        relations = {}
        for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall():
            relations[name] = _rows(con, name, columns[name], name, runs)
        parts = {}
        publication = Publication(db)
        for name in Layout.of(db).published.iterdir():
            if name.name.startswith("_"):
                continue
            parts[name.name] = []
            for p in publication.live_parts(name.name):
                source = f"read_parquet('{p.path}')"
                names = [d[0] for d in con.execute(f"SELECT * FROM {source} LIMIT 0").description]
                parts[name.name].append(_rows(con, source, names, name.name, runs))
    return {"relations": relations, "parts": parts, "noops": [r[1:6] for r in noops]}


def without_noops(state: dict) -> dict:
    """The state with the rows of no-op runs left out (and parts left empty by that)."""
    def keep(rows: list) -> list:
        return [r for r in rows if not any(isinstance(v, str) and v.startswith("noop#")
                                           for v in r)]
    relations = {name: keep(rows) for name, rows in state["relations"].items()}
    parts = {name: [kept for p in ps if (kept := keep(p)) or not p]
             for name, ps in state["parts"].items()}
    return {"relations": relations, "parts": parts}


def assert_same_published(actual: dict, expected: dict) -> None:
    actual, expected = without_noops(actual), without_noops(expected)
    assert sorted(actual["relations"]) == sorted(expected["relations"])
    for name, rows in expected["relations"].items():
        assert actual["relations"][name] == rows, f"relation {name} differs"
    assert sorted(actual["parts"]) == sorted(expected["parts"])
    for name, parts in expected["parts"].items():
        assert actual["parts"][name] == parts, f"Parquet parts of {name} differ"


def leftovers(db: Path) -> list[str]:
    """Files a crash may leave that no reader sees: temporary files, staging folders."""
    layout = Layout.of(db)
    found = [str(p) for p in layout.published.rglob("_tmp-*")]
    found += [str(p) for p in (db.parent / ".staging").glob("*")]
    found += [str(p) for p in db.parent.glob(f".{db.name}.tmp-*")]
    return found


# -- kill points -----------------------------------------------------------------------
def store_version(db: Path, scratch: Path) -> int:
    """The highest version the store recorded (a copy is opened: its WAL is replayed)."""
    store = Layout.of(db).store
    if not store.exists():
        return -1
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for path in store.parent.glob(store.name + "*"):
        shutil.copy(path, scratch / path.name)
    with duckdb.connect(str(scratch / store.name)) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        if "publications" not in tables:
            return 0
        return con.execute("SELECT coalesce(max(version), 0) FROM publications").fetchall()[0][0]


def phase_of(db: Path, version: int, finished: bool, scratch: Path) -> str:
    """Where the killed run was, read from what it left (``version``: the one it makes)."""
    layout = Layout.of(db)
    if finished:
        return PHASES[5]
    if (layout.commits / commit_name(version)).exists():
        return PHASES[4]
    if store_version(db, scratch) >= version:
        return PHASES[3]
    if (layout.relation_dir("attributed_events") / part_name(version, version)).exists():
        return PHASES[2]
    if any((db.parent / ".staging").glob("*/*")):
        return PHASES[1]
    return PHASES[0]


@dataclass
class Reader:
    process: subprocess.Popen
    stop: Path
    out: Path

    @classmethod
    def start(cls, db: Path, allowed: Path, seed: int) -> Reader:
        stop, out = db.with_name("reader.stop"), db.with_name("reader.json")
        process = subprocess.Popen(
            [sys.executable, str(READER), str(db), str(stop), str(out), str(seed), str(allowed)],
            cwd=Path(__file__).parent.parent)
        return cls(process, stop, out)

    def finish(self) -> dict:
        self.stop.touch()
        assert self.process.wait(timeout=60) == 0
        return json.loads(self.out.read_text())


@dataclass
class Outcome:
    kind: str
    store: str
    trigger: str | None
    delay: float | None
    phase: str
    reader: dict
    leftovers: list[str] = field(default_factory=list)


def kill_at(db: Path, inputs: Inputs, events: str, version: int, delay: float | None,
            trigger: str | None, rng: random.Random) -> tuple[bool, float]:
    """Start the run, SIGKILL it after ``delay`` s or when ``trigger`` shows; (finished, at)."""
    log = db.with_name("killed.log").open("w")
    started = time.perf_counter()
    process = subprocess.Popen(revattr_run(db, events, inputs), stdout=log, stderr=log,
                               start_new_session=True)
    try:
        if trigger is None:
            deadline = started + delay
            while time.perf_counter() < deadline and process.poll() is None:
                time.sleep(0.001)
        else:
            seen = TRIGGERS[trigger]
            while process.poll() is None and not seen(db, version):
                time.sleep(0.002)
            if trigger == "staging":
                time.sleep(rng.uniform(0.0, 0.6))
        finished = process.poll() is not None
        if not finished:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return finished and process.returncode == 0, time.perf_counter() - started
    finally:
        log.close()


def test_a_run_killed_anywhere_then_run_again_publishes_what_an_uninterrupted_run_does(
        inputs, reference, tmp_path):
    rng = random.Random(SEED)
    began = time.perf_counter()
    outcomes: list[Outcome] = []
    failures: list[str] = []
    retried: list[str] = []
    steps: Counter = Counter()  # seconds spent per step, for the report

    def timed(step: str, since: float) -> float:
        now = time.perf_counter()
        steps[step] += now - since
        return now

    for i, (kind, store, trigger) in enumerate(KILL_POINTS):
        db = tmp_path / f"k{i:02d}" / "revenue.duckdb"
        startup, total = reference.first if store == "fresh" else reference.second
        whole = total * 0.85  # runs vary: a kill at the very end would often come too late
        window = {"startup": (0.0, startup), "time": (startup, whole)}.get(kind)
        if store == "fresh":
            events, version, expected = inputs.first, 1, reference.first_state
            window = (0.0, whole)
        else:
            events, version, expected = inputs.second, 2, reference.state
        drawn = window
        earlier: list[dict] = []  # readers of attempts that came too late (below)
        for attempt in range(4):
            mark = time.perf_counter()
            if store == "fresh":
                db.parent.mkdir()
            else:
                copy_database(reference.after_first, db)
            delay = rng.uniform(*window) if window else None
            reader = Reader.start(db, reference.allowed, SEED + i + 100 * attempt)
            mark = timed("copy, reader start", mark)
            try:
                finished, took = kill_at(db, inputs, events, version, delay, trigger, rng)
                mark = timed("killed run", mark)
                if finished and delay is not None and attempt < 3:
                    # A timed kill after the run had finished: this run was faster than
                    # the reference's (a busy machine varies). The same kill point again,
                    # its window scaled to the run just seen, from the same store.
                    earlier.append(reader.finish())
                    reader = None
                    retried.append(f"kill {i}: {delay:.2f}s > run {took:.2f}s")
                    window = (drawn[0] * took / total, drawn[1] * took / total)
                    shutil.rmtree(db.parent)
                    continue
                phase = phase_of(db, version, finished, tmp_path / "scratch")
                mark = timed("phase", mark)
                run_again(db, events, inputs)
                mark = timed("re-run", mark)
            finally:
                if reader is not None:
                    summary = reader.finish()
            break
        for seen in earlier:  # what a reader saw of a finished run must hold too
            if seen["errors"] or seen["violations"]:
                failures.append(f"kill {i} (attempt too late): reader {seen['samples']}")
            summary["snapshots"] += seen["snapshots"]
            summary["cross_checked"] += seen["cross_checked"]
        # What a kill left that no reader sees: staging folders are removed by the re-run;
        # temporary files (a part or marker being written) by the garbage collection of
        # a later publication, once older than grace_seconds.
        left = leftovers(db)
        Publication(db).collect_garbage(now=time.time() + GRACE_SECONDS + 1)
        outcome = Outcome(kind, store, trigger, delay, phase, summary, left)
        outcomes.append(outcome)
        if leftovers(db):
            failures.append(f"kill {i}: left {leftovers(db)} after the re-run and the GC")
        label = f"kill {i} ({kind} {trigger or f'{delay:.2f}s'}, {store}, {phase})"
        state = published_state(db)
        mark = timed("reader stop, GC, published state", mark)
        try:
            assert_same_published(state, expected)
        except AssertionError as error:
            failures.append(f"{label}: {error}")
        committed = phase in PHASES[3:]
        expected_noops = int(committed)
        if len(state["noops"]) != expected_noops:
            failures.append(f"{label}: {len(state['noops'])} no-op run(s), expected "
                            f"{expected_noops}")
        for accepted, records, duplicates, quarantined, status in state["noops"]:
            if not (accepted == 0 and records == duplicates + quarantined
                    and status == "succeeded"):
                failures.append(f"{label}: odd no-op run {accepted, records, duplicates}")
        if summary["errors"] or summary["violations"]:
            failures.append(f"{label}: reader {summary['samples']}")
    report = {
        "phases": Counter(o.phase for o in outcomes),
        "by_kind": Counter(f"{o.trigger or f'time ({o.store} store)'}: {o.phase}"
                           for o in outcomes),
        "seconds": round(time.perf_counter() - began, 1),
        "seconds_by_step": {k: round(v, 1) for k, v in steps.items()},
        "reader_snapshots": sum(o.reader["snapshots"] for o in outcomes),
        "cross_checked": sum(o.reader["cross_checked"] for o in outcomes),
        "reader_errors": sum(o.reader["errors"] for o in outcomes),
        "reader_violations": sum(o.reader["violations"] for o in outcomes),
        "timed_kills_drawn_again": retried,
        "left_for_the_gc": [Path(p).name for o in outcomes for p in o.leftovers],
        "first_run_startup_and_total_s": [round(x, 2) for x in reference.first],
        "second_run_startup_and_total_s": [round(x, 2) for x in reference.second],
    }
    print("\ncrash-anywhere:", json.dumps(report, indent=1, default=str))
    (Path(os.environ.get("REVATTR_CRASH_REPORT", tmp_path / "report.json"))
     .write_text(json.dumps(report, indent=1, default=str)))
    assert not failures, "\n".join(failures)
    assert report["phases"][PHASES[5]] == 0, "a kill came after the run had finished"
    assert len(report["phases"]) >= 4, f"kills landed in too few phases: {report['phases']}"
    assert report["reader_snapshots"] > 100
    assert not [p for o in outcomes for p in o.leftovers if "/.staging/" in p]


# -- a full disk, a read-only output folder ----------------------------------------------
def _fails_in_one_line(done: subprocess.CompletedProcess, words: str) -> str:
    """The run failed with one ``error:`` line naming a path and what to do; returns it."""
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 2, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("error: /"), output[-4000:]
    assert words in line and "run" in line.split("(", 1)[1], line
    return line


def _published_intact(db: Path, before: dict) -> None:
    assert published_state(db) == before  # readers still open it and see the last run


def _limited_file_size(limit: int):  # noqa: ANN202 (a preexec_fn)
    def limit_in_child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_in_child


def test_a_full_disk_fails_in_one_line_and_a_run_with_space_publishes_the_same(
        inputs, reference, tmp_path):
    """A file size limit (RLIMIT_FSIZE) stands in for a full disk without root: a write
    past it fails with EFBIG, as a write to a full disk fails with ENOSPC (the same path
    through the code). Two limits: one the first large staged file exceeds (the engine's
    facts), one a little above the run's facts part, so staging succeeds and the store's
    commit (its WAL) fails."""
    facts_part = Layout.of(reference.final).relation_dir("attributed_events") / part_name(2, 2)
    limits = {"staging": 8 * 1024, "publication": facts_part.stat().st_size + 8 * 1024}
    named = {}
    for where, limit in limits.items():
        db = copy_database(reference.after_first, tmp_path / where / "revenue.duckdb")
        before = reference.first_state  # the copy's, as the fixture read it
        done = subprocess.run(revattr_run(db, inputs.second, inputs), capture_output=True,
                              text=True, preexec_fn=_limited_file_size(limit))
        named[where] = _fails_in_one_line(done, "file size limit")
        _published_intact(db, before)
        run_again(db, inputs.second, inputs)
        state = published_state(db)
        assert_same_published(state, reference.state)
        assert state["noops"] == []  # the failed run published nothing
        assert leftovers(db) == []
    print("\nfull disk:", json.dumps(named, indent=1))
    assert ".staging" in named["staging"]
    assert ".staging" not in named["publication"]


def test_a_full_disk_after_the_store_commit_publishes_the_run_with_the_next_one(
        inputs, reference, tmp_path, monkeypatch):
    """The disk fills while the run's parts are exported, after its store transaction
    committed: the run is applied but not visible; the error is one line; the next run
    exports it first, then finds every event published (a no-op run)."""
    from pipelines.embedded.run import run
    from pipelines.errors import storage_error

    db = copy_database(reference.after_first, tmp_path / "export" / "revenue.duckdb")
    before = reference.first_state  # the copy's, as the fixture read it
    write = Publication._write

    def full_disk(self, con, sql, target, keep_empty=False):  # noqa: ANN001, ANN202
        if target.parent.name == "quarantine":
            raise OSError(28, os.strerror(28), str(target.with_name("_tmp-x.parquet")))
        return write(self, con, sql, target, keep_empty)

    monkeypatch.setattr(Publication, "_write", full_disk)
    with pytest.raises(OSError) as raised:
        run([f"--events={inputs.second}", f"--reference={inputs.reference}", f"--db={db}"])
    assert str(storage_error(raised.value)).startswith(f"{db}.d/published/quarantine/_tmp-x")
    monkeypatch.undo()
    _published_intact(db, before)
    run_again(db, inputs.second, inputs)
    state = published_state(db)
    assert_same_published(state, reference.state)
    assert len(state["noops"]) == 1


def _without_dac_override() -> None:
    """In the child: root loses CAP_DAC_OVERRIDE and CAP_FOWNER (dropped from the
    bounding set, so the exec'd process never has them): permission bits bind it."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 3):  # CAP_DAC_OVERRIDE, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


def _chmod_tree(folder: Path, mode: int) -> None:
    for root, _, _ in os.walk(folder):
        os.chmod(root, mode)


@pytest.mark.parametrize("read_only", ["output folder", "published folder"])
def test_a_read_only_output_fails_in_one_line_and_leaves_the_published_state(
        inputs, reference, tmp_path, read_only):
    """chmod 0o555 on the folder of --db (the run cannot even stage) or on the published
    parts only (staging works; placing the facts, inside the store transaction, fails
    and rolls it back). As root, permission bits bind only without CAP_DAC_OVERRIDE:
    the run is started without it."""
    db = copy_database(reference.after_first, tmp_path / "ro" / "revenue.duckdb")
    before = reference.first_state  # the copy's, as the fixture read it
    folder = db.parent if read_only == "output folder" else Layout.of(db).published
    preexec = _without_dac_override if os.geteuid() == 0 else None
    _chmod_tree(folder, 0o555)
    try:
        done = subprocess.run(revattr_run(db, inputs.second, inputs), capture_output=True,
                              text=True, preexec_fn=preexec)
    finally:
        _chmod_tree(folder, 0o755)
    if done.returncode == 99:
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE for the child")
    line = _fails_in_one_line(done, "permission denied")
    assert str(folder) in line
    _published_intact(db, before)
    run_again(db, inputs.second, inputs)
    state = published_state(db)
    assert_same_published(state, reference.state)
    assert state["noops"] == []
    assert leftovers(db) == []
