"""Follow mode (pipelines/follow.py, ``revattr follow``): every complete file dropped
in the landing folder is applied exactly once and published to readers at once."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import pipelines.follow as follow_module
from pipelines.batch import run as batch_run
from pipelines.cli import app
from pipelines.follow import Follower, FollowSettings
from pipelines.generate import generate_dataset
from pipelines.io.catalog import Layout
from pipelines.io.staging import write_part
from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA

REPO = Path(__file__).resolve().parents[1]
READER = Path(__file__).with_name("follow_reader.py")
FACT_COLUMNS = ", ".join(n for n in ATTRIBUTED_EVENTS_SCHEMA.names if n != "run_id")
VIEWS = ("territory_revenue", "account_manager_revenue", "reconciliation")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, events=1600, seed=23, bad_rate=0.02)
    return root


def event_lines(dataset: Path) -> list[str]:
    lines: list[str] = []
    for path in sorted((dataset / "events").glob("*.jsonl")):
        lines += path.read_text(encoding="utf-8").splitlines(keepends=True)
    return lines


def split(dataset: Path, folder: Path, parts: int) -> list[Path]:
    """The data set's event lines cut into ``parts`` files f00.jsonl, f01.jsonl, ..."""
    lines = event_lines(dataset)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(parts):
        path = folder / f"f{i:02d}.jsonl"
        path.write_text("".join(lines[i * len(lines) // parts : (i + 1) * len(lines) // parts]))
        files.append(path)
    return files


def drop(source: Path | bytes | str, landing: Path, name: str | None = None) -> Path:
    """Write a file into the landing folder as a producer does: ``.tmp``, then rename."""
    if isinstance(source, Path):
        name = name or source.name
        data = source.read_bytes()
    else:
        data = source.encode() if isinstance(source, str) else source
    target = landing / name
    tmp = landing / (name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def settings(landing: Path, reference: Path, db: Path, **overrides) -> FollowSettings:
    values = {"poll_seconds": 0.05, "stop_when_idle": 0.5, "checks": False, **overrides}
    return FollowSettings(landing=landing, reference=reference, db=db, **values)


def batch_db(files: list[Path], reference: Path, db: Path):
    """The batch pipeline on copies of ``files`` (same names, so the same first occurrences)."""
    folder = db.parent / "batch-input"
    folder.mkdir(parents=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    return batch_run(
        [f"--events={folder}/*.jsonl", f"--reference={reference}", f"--db={db}",
         "--checks=false"]
    )


def published_state(db: Path) -> dict[str, list[tuple]]:
    """What readers see, without run ids, timestamps or the folder files were read from."""
    with duckdb.connect(str(db), read_only=True) as con:
        def rows(sql: str) -> list[tuple]:
            return con.execute(sql).fetchall()

        return {
            "attributed_events": rows(f"SELECT {FACT_COLUMNS} FROM attributed_events ORDER BY ALL"),
            **{view: rows(f"SELECT * FROM {view} ORDER BY ALL") for view in VIEWS},
            "split_credit": rows("SELECT event_id, person_id, role, split_type, percent, "
                                 "booked_revenue, pipeline_created FROM split_credit "
                                 "ORDER BY ALL"),
            "quarantine_by_reason": rows(
                "SELECT reason, count(*) FROM quarantine GROUP BY ALL ORDER BY ALL"
            ),
            # detail may name the first occurrence's path: compared through the counts only
            "quarantine": rows(
                "SELECT regexp_extract(source, '[^/]+$'), position, raw, reason "
                "FROM quarantine ORDER BY ALL"
            ),
        }


def assert_same_state(follow_db: Path, batch_db_path: Path) -> None:
    followed, batched = published_state(follow_db), published_state(batch_db_path)
    assert followed["attributed_events"], "nothing was published"
    assert followed["quarantine_by_reason"], "nothing was quarantined: a weak comparison"
    assert followed["split_credit"], "no account team in the data: a weak comparison"
    for name in batched:
        assert followed[name] == batched[name], f"{name} differs from the batch run"


def ledger(db: Path) -> list[tuple]:
    """(file_name, size_bytes, sha256, run_id, status, reason) rows of the writer's store."""
    with duckdb.connect(str(Layout.of(db).store), read_only=True) as con:
        return con.execute(
            "SELECT file_name, size_bytes, sha256, run_id, status, reason FROM landing_files "
            "ORDER BY file_name, recorded_at"
        ).fetchall()


def catalog_rows(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def event_id(line: str) -> str | None:
    """The event_id of a JSONL line, None when the line is not a JSON object."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value.get("event_id") if isinstance(value, dict) else None


def run_totals(db: Path, status: str = "succeeded") -> tuple:
    return catalog_rows(
        db,
        "SELECT coalesce(sum(input_records), 0), coalesce(sum(accepted), 0), "
        "coalesce(sum(duplicates), 0), coalesce(sum(quarantined), 0) "
        f"FROM pipeline_runs WHERE status = '{status}'",
    )[0]


# --------------------------------------------------------------------------- 1


def test_three_files_are_applied_and_publish_what_a_batch_run_of_them_publishes(
    dataset, tmp_path
):
    files = split(dataset, tmp_path / "src", 3)
    landing = tmp_path / "landing"
    landing.mkdir()
    for f in files:
        drop(f, landing)
    db = tmp_path / "follow" / "revenue.duckdb"

    applied = Follower(settings(landing, dataset / "reference", db)).run()

    assert applied == 3
    assert names(landing) == []
    assert names(landing / "applied") == ["f00.jsonl", "f01.jsonl", "f02.jsonl"]
    assert names(landing / "quarantine") == []
    rows = ledger(db)
    assert [(r[0], r[1], r[2], r[4], r[5]) for r in rows] == [
        (f.name, f.stat().st_size, sha256(f), "applied", None) for f in files
    ]
    assert all(r[3].startswith("follow-") for r in rows)

    summary = batch_db(files, dataset / "reference", tmp_path / "batch" / "revenue.duckdb")
    assert summary.status == "succeeded"
    assert_same_state(db, tmp_path / "batch" / "revenue.duckdb")
    assert run_totals(db) == (
        summary.input_records, summary.accepted, summary.duplicates, summary.quarantined
    )
    assert catalog_rows(db, "SELECT count(*) FROM reconciliation WHERE NOT balanced") == [(0,)]


# --------------------------------------------------------------------------- 2


def test_a_file_dropped_again_is_not_applied_twice_and_a_repeated_event_is_a_duplicate(
    dataset, tmp_path
):
    first = split(dataset, tmp_path / "src", 4)[0]
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    follower = Follower(settings(landing, dataset / "reference", db))
    follower.start()

    drop(first, landing)
    assert follower.poll().applied == ["f00.jsonl"]
    facts = catalog_rows(db, f"SELECT {FACT_COLUMNS} FROM attributed_events ORDER BY ALL")
    runs = catalog_rows(db, "SELECT count(*) FROM pipeline_runs")
    assert facts and runs == [(1,)]

    # Same name, same content: moved aside, no run, no new fact, still one ledger row.
    drop(first, landing)
    again = follower.poll()
    assert again.runs == [] and again.applied == []
    assert names(landing) == []
    assert names(landing / "applied") == sorted(["f00.jsonl", f"f00.{sha256(first)[:12]}.jsonl"])
    assert catalog_rows(db, "SELECT count(*) FROM pipeline_runs") == runs
    assert catalog_rows(db, f"SELECT {FACT_COLUMNS} FROM attributed_events ORDER BY ALL") == facts
    assert [(r[0], r[4]) for r in ledger(db)] == [("f00.jsonl", "applied")]

    # A later file repeating two published events with the same payload, plus a new one.
    published_ids = {r[0] for r in catalog_rows(db, "SELECT event_id FROM attributed_events")}
    repeats = [line for line in first.read_text().splitlines(keepends=True)
               if event_id(line) in published_ids][:2]
    assert len(repeats) == 2
    new = repeats[0].replace(event_id(repeats[0]), "evt-follow-new-1")
    drop("".join([*repeats, new]), landing, "g01.jsonl")
    outcome = follower.poll()
    assert outcome.applied == ["g01.jsonl"]
    [summary] = outcome.runs
    assert (summary.input_records, summary.accepted, summary.duplicates, summary.quarantined) == (
        3, 1, 2, 0
    )
    after = catalog_rows(db, "SELECT event_id, count(*) FROM attributed_events GROUP BY ALL")
    assert len(after) == len(facts) + 1
    assert all(n == 1 for _, n in after)
    assert ("evt-follow-new-1", 1) in after


# --------------------------------------------------------------------------- 3


def test_an_unreadable_file_is_quarantined_whole_and_the_others_of_its_poll_apply(
    dataset, tmp_path
):
    files = split(dataset, tmp_path / "src", 4)
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    drop(files[0], landing)
    bad = drop(b"PAR1 this is not a Parquet file", landing, "f01.parquet")
    bad_sha = sha256(bad)
    drop(files[2], landing)
    follower = Follower(settings(landing, dataset / "reference", db))
    follower.start()

    outcome = follower.poll()

    assert outcome.applied == ["f00.jsonl", "f02.jsonl"]
    assert list(outcome.quarantined) == ["f01.parquet"]
    assert "not a readable Parquet file" in outcome.quarantined["f01.parquet"]
    assert names(landing) == []
    assert names(landing / "applied") == ["f00.jsonl", "f02.jsonl"]
    assert names(landing / "quarantine") == ["f01.parquet", "f01.parquet.reason.txt"]
    reason = (landing / "quarantine" / "f01.parquet.reason.txt").read_text()
    assert "not a readable Parquet file" in reason and "f01.parquet" in reason
    rows = {r[0]: r for r in ledger(db)}
    assert set(rows) == {"f00.jsonl", "f01.parquet", "f02.jsonl"}
    assert rows["f01.parquet"][2] == bad_sha
    assert rows["f01.parquet"][4] == "quarantined"
    assert "not a readable Parquet file" in rows["f01.parquet"][5]
    assert rows["f00.jsonl"][4] == rows["f02.jsonl"][4] == "applied"
    good = sum(len(f.read_text().splitlines()) for f in (files[0], files[2]))
    assert run_totals(db)[0] == good

    # Following goes on.
    drop(files[3], landing)
    assert follower.poll().applied == ["f03.jsonl"]


def test_a_line_that_is_not_utf8_is_quarantined_as_malformed_and_its_file_applies(
    dataset, tmp_path
):
    files = split(dataset, tmp_path / "src", 2)
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    good = files[0].read_bytes().splitlines(keepends=True)
    drop(b"".join([*good[:3], b'{"event_id": "evt-bad-1", "account_id": "caf\xe9"}\n',
                   *good[3:]]), landing, "f00.jsonl")
    follower = Follower(settings(landing, dataset / "reference", db))
    follower.start()

    outcome = follower.poll()

    assert outcome.applied == ["f00.jsonl"] and outcome.quarantined == {}
    quarantined = catalog_rows(
        db, "SELECT position, reason, detail, raw FROM quarantine WHERE position = 4")
    assert quarantined == [(4, "malformed", "line is not valid UTF-8 (byte 45)",
                            '{"event_id": "evt-bad-1", "account_id": "caf\ufffd"}')]
    assert catalog_rows(db, "SELECT count(*) FROM attributed_events WHERE event_id = 'evt-bad-1'")\
        == [(0,)]
    assert run_totals(db)[0] == len(good) + 1  # every line counted as read


def test_files_decided_before_a_crash_are_only_moved_on_restart_and_keep_their_reason(
    dataset, tmp_path, monkeypatch
):
    files = split(dataset, tmp_path / "src", 4)
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    drop(files[0], landing)
    drop(b"PAR1 this is not a Parquet file", landing, "f01.parquet")
    first = Follower(settings(landing, dataset / "reference", db))
    first.start()
    # the process dies once both files are decided (ledger committed), before any move
    monkeypatch.setattr(Follower, "_move", lambda self, file, status, reason=None: None)
    decided = first.poll()
    assert decided.applied == ["f00.jsonl"] and list(decided.quarantined) == ["f01.parquet"]
    assert names(landing) == ["f00.jsonl", "f01.parquet"]
    monkeypatch.undo()

    restarted = Follower(settings(landing, dataset / "reference", db))
    restarted.start()
    outcome = restarted.poll()

    assert outcome.runs == []  # nothing applied again
    assert names(landing) == []
    assert names(landing / "applied") == ["f00.jsonl"]
    assert names(landing / "quarantine") == ["f01.parquet", "f01.parquet.reason.txt"]
    reason = (landing / "quarantine" / "f01.parquet.reason.txt").read_text()
    assert "not a readable Parquet" in reason
    assert catalog_rows(db, "SELECT count(*) FROM pipeline_runs") == [(1,)]
    assert [(r[0], r[4]) for r in ledger(db)] == [("f00.jsonl", "applied"),
                                                   ("f01.parquet", "quarantined")]


# --------------------------------------------------------------------------- 4

INJECTED = "event_type_known"


@pytest.mark.slow
def test_a_file_failing_a_critical_check_is_quarantined_whole_while_the_others_apply(
    dataset, tmp_path, monkeypatch
):
    # No event data can fail a critical check on its own: the validator rejects
    # (quarantines) every record the raw_events criticals would catch, dedupe and
    # enrichment guarantee the enriched_events ones, and the views reconcile by
    # construction. So the real checks run (checks=True) and one more critical
    # result, failed, is staged for the runs that include f01.jsonl.
    real = follow_module.stage_embedded

    def stage_with_a_failure(paths, reference, timelines, staging, run_id, **kwargs):
        real(paths, reference, timelines, staging, run_id, **kwargs)
        if any(Path(p).name == "f01.jsonl" for p in paths):
            row = {"stage": "parsed", "suite": "raw_events", "expectation": INJECTED,
                   "severity": "critical", "success": False,
                   "observed": "1 unexpected value (injected by the test)", "examples": None}
            write_part(staging, "dq_results", pa.Table.from_pylist([row], CHECK_RESULT_SCHEMA))

    monkeypatch.setattr(follow_module, "stage_embedded", stage_with_a_failure)
    files = split(dataset, tmp_path / "src", 4)
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    for f in files[:3]:
        drop(f, landing)
    follower = Follower(settings(landing, dataset / "reference", db, checks=True))
    follower.start()

    outcome = follower.poll()

    assert outcome.applied == ["f00.jsonl", "f02.jsonl"]
    assert outcome.quarantined == {"f01.jsonl": f"failed_checks: raw_events.{INJECTED}"}
    assert names(landing) == []
    assert names(landing / "applied") == ["f00.jsonl", "f02.jsonl"]
    assert names(landing / "quarantine") == ["f01.jsonl", "f01.jsonl.reason.txt"]
    reason = (landing / "quarantine" / "f01.jsonl.reason.txt").read_text()
    assert f"raw_events.{INJECTED}" in reason
    # the three together failed, then each file alone: f00 ok, f01 failed, f02 ok
    statuses = [s.status for s in outcome.runs]
    assert statuses == ["succeeded", "failed_checks", "succeeded"]
    failed_run = outcome.runs[1].run_id
    rows = {r[0]: r for r in ledger(db)}
    assert rows["f01.jsonl"][3:] == (failed_run, "quarantined", f"raw_events.{INJECTED}")
    assert rows["f00.jsonl"][4] == rows["f02.jsonl"][4] == "applied"

    runs = catalog_rows(db, "SELECT run_id, status, input_records FROM pipeline_runs")
    f01_records = len(files[1].read_text().splitlines())
    assert sorted(s for _, s, _ in runs) == ["failed_checks", "failed_checks", "succeeded",
                                               "succeeded"]
    assert (failed_run, "failed_checks", f01_records) in runs
    assert catalog_rows(
        db, f"SELECT severity, success FROM dq_results WHERE run_id = '{failed_run}' "
        f"AND expectation = '{INJECTED}' AND NOT success"
    ) == [("critical", False)]
    # the real suites ran and passed on the applied files
    ok_runs = [r for r, s, _ in runs if s == "succeeded"]
    failures = catalog_rows(
        db, "SELECT count(*), count(*) FILTER (WHERE severity = 'critical' AND NOT success) "
        f"FROM dq_results WHERE run_id IN ({', '.join(repr(r) for r in ok_runs)})"
    )[0]
    assert failures[0] > 20 and failures[1] == 0
    # nothing of f01 was published: the facts are those of f00 and f02
    assert run_totals(db)[0] == sum(len(f.read_text().splitlines()) for f in (files[0], files[2]))
    only_f01 = {event_id(x) for x in files[1].read_text().splitlines()}
    others = {event_id(x) for f in (files[0], files[2]) for x in f.read_text().splitlines()}
    published = {r[0] for r in catalog_rows(db, "SELECT event_id FROM attributed_events")}
    assert published and not (published & (only_f01 - others))

    # Following goes on.
    drop(files[3], landing)
    later = follower.poll()
    assert later.applied == ["f03.jsonl"] and later.quarantined == {}


# --------------------------------------------------------------------------- 5


def _rewrite_assignments(reference: Path, account: str, rows: list[list[str]]) -> None:
    path = reference / "account_assignments.csv"
    with path.open(newline="") as handle:
        lines = list(csv.reader(handle))
    kept = [line for line in lines[1:] if line[0] != account]
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([lines[0], *kept, *rows])


def _won(event_id: str, account: str, when: str) -> str:
    return json.dumps({
        "event_id": event_id, "event_type": "deal_won", "event_time": when,
        "deal_id": f"deal-{event_id}", "account_id": account, "currency": "USD",
        "amount": "1000.00",
    }) + "\n"


def test_a_changed_reference_is_reloaded_and_used_for_files_applied_afterwards(
    dataset, tmp_path
):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(dataset / "reference", reference)
    with (reference / "people.csv").open(newline="") as handle:
        managers = [r["person_id"] for r in csv.DictReader(handle)
                    if r["role"] == "account_manager"]
    with (reference / "accounts.csv").open(newline="") as handle:
        account = next(csv.DictReader(handle))["account_id"]
    old, new = managers[0], managers[1]
    _rewrite_assignments(reference, account, [[account, old, "", ""]])
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "revenue.duckdb"
    messages: list[str] = []
    follower = Follower(settings(landing, reference, db), say=messages.append)
    follower.start()

    drop(_won("evt-ref-1", account, "2026-02-10T12:00:00Z"), landing, "r1.jsonl")
    assert follower.poll().applied == ["r1.jsonl"]

    # From Feb 1 the account belongs to another manager.
    _rewrite_assignments(reference, account, [
        [account, old, "", "2026-02-01T00:00:00Z"],
        [account, new, "2026-02-01T00:00:00Z", ""],
    ])
    messages.clear()
    drop(
        _won("evt-ref-2", account, "2026-01-20T12:00:00Z")
        + _won("evt-ref-3", account, "2026-02-10T12:00:00Z"),
        landing,
        "r2.jsonl",
    )
    assert follower.poll().applied == ["r2.jsonl"]
    assert messages.count("reference loaded") == 1

    managers_by_event = dict(catalog_rows(
        db, "SELECT event_id, account_manager_id FROM attributed_events ORDER BY event_id"
    ))
    assert managers_by_event == {
        "evt-ref-1": old,  # applied before the change: facts are not restated
        "evt-ref-2": old,  # as of Jan 20: still the old manager
        "evt-ref-3": new,  # as of Feb 10, applied after the change: the new manager
    }
    assert catalog_rows(
        db, "SELECT account_manager_id, valid_from IS NULL FROM account_assignments "
        f"WHERE account_id = '{account}' ORDER BY valid_from NULLS FIRST"
    ) == [(old, True), (new, False)]
    # the revenue views and reconciliation follow the facts
    assert catalog_rows(
        db, "SELECT account_manager_id, sum(booked_revenue)::VARCHAR FROM account_manager_revenue "
        "GROUP BY ALL ORDER BY ALL"
    ) == sorted([(old, "2000.00"), (new, "1000.00")])
    assert catalog_rows(db, "SELECT bool_and(balanced) FROM reconciliation") == [(True,)]

    # An unchanged reference is not reloaded.
    messages.clear()
    drop(_won("evt-ref-4", account, "2026-02-11T12:00:00Z"), landing, "r3.jsonl")
    assert follower.poll().applied == ["r3.jsonl"]
    assert "reference loaded" not in messages


def test_a_reference_folder_being_edited_or_moved_away_does_not_stop_following(
    dataset, tmp_path
):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(dataset / "reference", reference)
    with (reference / "accounts.csv").open(newline="") as handle:
        account = next(csv.DictReader(handle))["account_id"]
    landing = tmp_path / "landing"
    landing.mkdir()
    messages: list[str] = []
    follower = Follower(settings(landing, reference, tmp_path / "revenue.duckdb"),
                        say=messages.append)
    follower.start()

    # An editor's lock file: a dangling symbolic link next to the file being edited.
    (reference / ".#account_assignments.csv").symlink_to("someone@host.4242:1700000000")
    drop(_won("evt-edit-1", account, "2026-02-10T12:00:00Z"), landing, "e1.jsonl")
    assert follower.poll().applied == ["e1.jsonl"]

    # The folder moved away (a deployment swapping it): the previous reference is kept.
    reference.rename(tmp_path / "reference-old")
    drop(_won("evt-edit-2", account, "2026-02-11T12:00:00Z"), landing, "e2.jsonl")
    assert follower.poll().applied == ["e2.jsonl"]
    assert any(m.startswith("reference not reloaded, previous one kept") for m in messages)
    assert follower.poll().applied == []  # said once, not at every poll
    assert sum(m.startswith("reference not reloaded") for m in messages) == 1

    (tmp_path / "reference-old").rename(reference)
    messages.clear()
    drop(_won("evt-edit-3", account, "2026-02-12T12:00:00Z"), landing, "e3.jsonl")
    assert follower.poll().applied == ["e3.jsonl"]
    assert "reference loaded" in messages
    assert catalog_rows(tmp_path / "revenue.duckdb",
                        "SELECT count(*) FROM attributed_events") == [(3,)]


# --------------------------------------------------------------------------- 6


def _follow_command(landing: Path, reference: Path, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.cli", "follow",
        "--landing", str(landing), "--reference", str(reference), "--db", str(db),
        "--no-checks", "--poll-seconds", "0.05", *extra,
    ]


class FollowProcess:
    """One ``revattr follow`` subprocess (or ``command``), its output in a log file."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.log = log
        self.handle = log.open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
        self.proc = subprocess.Popen(command, stdout=self.handle, stderr=subprocess.STDOUT,
                                     cwd=REPO, env=env)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "reference loaded" not in self.text():
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, "the follower did not start"
            time.sleep(0.02)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.handle.close()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.handle.close()


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def committed_version(db: Path) -> int:
    markers = list(Layout.of(db).commits.glob("v*.json"))
    return max((int(p.stem[1:]) for p in markers), default=0)


def wait_for_staging(db: Path, timeout: float) -> bool:
    """Wait until the follower stages a run (a folder under ``<db>.d/staging``)."""
    staging = Layout.of(db).root / "staging"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if staging.is_dir() and any(staging.iterdir()):
            return True
        time.sleep(0.005)
    return False


@pytest.fixture(scope="module")
def eight_files(dataset, tmp_path_factory) -> tuple[list[Path], Path, object]:
    """The data set in 8 files, and the batch run of them (db, summary)."""
    root = tmp_path_factory.mktemp("eight")
    files = split(dataset, root / "src", 8)
    db = root / "batch" / "revenue.duckdb"
    return files, db, batch_db(files, dataset / "reference", db)


@pytest.fixture(scope="module")
def two_files(dataset, eight_files, tmp_path_factory) -> tuple[list[Path], Path]:
    """The first two of the eight files, and the batch run of them (db)."""
    chosen = eight_files[0][:2]
    db = tmp_path_factory.mktemp("two") / "batch" / "revenue.duckdb"
    batch_db(chosen, dataset / "reference", db)
    return chosen, db


KILL_AFTER = (1, 2, 3, 5, 6)  # kill -9 shortly after dropping these files


@pytest.mark.slow
def test_kill_9_while_following_applies_every_file_exactly_once_and_readers_never_see_a_tear(
    dataset, eight_files, tmp_path
):
    files, batch, summary = eight_files
    seed = int(os.environ.get("FOLLOW_KILL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    context = f"(FOLLOW_KILL_SEED={seed})"
    landing = tmp_path / "landing"
    landing.mkdir()
    db = tmp_path / "follow" / "revenue.duckdb"
    reference = dataset / "reference"
    logs = tmp_path / "logs"
    logs.mkdir()
    processes: list[FollowProcess] = []

    def start(*extra: str) -> FollowProcess:
        process = FollowProcess(_follow_command(landing, reference, db, *extra),
                                logs / f"follow-{len(processes) + 1}.log")
        processes.append(process)
        return process

    follower = start()
    follower.wait_ready()
    stop = tmp_path / "stop-readers"
    readers = [
        subprocess.Popen([sys.executable, str(READER), str(db), str(stop),
                          str(tmp_path / f"reader-{mode}.json"), mode, str(seed + i)], cwd=REPO)
        for i, mode in enumerate(("persistent", "mixed"))
    ]
    kills = []
    try:
        for i, f in enumerate(files):
            drop(f, landing)
            if i in KILL_AFTER:  # at a random moment of (or before) its apply
                # counted from the drop, or (every other kill) from the moment the
                # follower starts staging a run: kills land all along the apply
                anchor = "drop"
                if len(kills) % 2:
                    anchor = "staging" if wait_for_staging(db, 5.0) else "drop (no staging)"
                delay = rng.uniform(0.0, 0.5)
                time.sleep(delay)
                follower.kill()
                pending = [n for n in names(landing) if n.endswith(".jsonl")]
                kills.append({"after": f.name, "anchor": anchor, "delay": round(delay, 3),
                              "pending": pending, "committed": committed_version(db)})
                follower = start()
                follower.wait_ready()
            else:  # let this one finish: every incarnation gets work done
                wait_until(lambda f=f: (landing / "applied" / f.name).exists(), 30,
                           f"{f.name} to be applied {context}")
                time.sleep(rng.uniform(0.05, 0.3))
        follower.proc.send_signal(signal.SIGTERM)  # a clean stop ends with exit code 0
        assert follower.wait(timeout=30) == 0, follower.text()
        assert "stopped after applying" in follower.text()
        follower = start("--stop-when-idle", "1")  # finally: until idle
        assert follower.wait(timeout=60) == 0, follower.text()
        time.sleep(0.5)  # the readers see the final version
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=30)
        for process in processes:
            if process.proc.poll() is None:
                process.kill()
    reports = {mode: json.loads((tmp_path / f"reader-{mode}.json").read_text())
               for mode in ("persistent", "mixed")}
    for n, process in enumerate(processes, start=1):  # what each restart found
        if n > 1 and n - 2 < len(kills):
            text = process.text()
            kills[n - 2]["recovered"] = "exported version" in text
    print(context, "\n".join(str(k) for k in kills))
    for mode, report in reports.items():
        print(mode, {k: report[k] for k in ("rounds", "queries", "connections", "errors")},
              "distinct counts:", report["distinct_event_counts"])

    # Readers: no error, no imbalance, no count going down, and they saw it grow.
    final_events = catalog_rows(db, "SELECT count(*) FROM attributed_events")[0][0]
    for mode, report in reports.items():
        assert report["errors"] == 0, (mode, report["error_samples"], context)
        assert report["imbalances"] == 0, (mode, report["imbalance_samples"], context)
        assert report["decreases"] == 0, (mode, report["decrease_samples"], context)
        assert report["rounds"] > 20, (mode, report)
        assert len(report["distinct_event_counts"]) >= 3, (mode, report)
        assert report["last"]["events"] == final_events, (mode, report["last"], context)

    # Every file applied exactly once, and the result is the batch run's.
    assert names(landing) == [], context
    assert names(landing / "applied") == [f.name for f in files], context
    assert names(landing / "quarantine") == [], context
    rows = ledger(db)
    assert [(r[0], r[2], r[4]) for r in rows] == [(f.name, sha256(f), "applied") for f in files]
    assert len({r[3] for r in rows}) >= 3, context  # several incarnations applied files
    assert run_totals(db) == (
        summary.input_records, summary.accepted, summary.duplicates, summary.quarantined
    ), context
    assert catalog_rows(db, "SELECT count(*) FROM pipeline_runs WHERE status <> 'succeeded'") \
        == [(0,)]
    assert_same_state(db, batch)
    for process in processes:
        assert "Traceback" not in process.text(), process.text()


# A crash at a chosen point of the apply (the follower kills itself with SIGKILL):
# the code below runs ``revattr follow`` with one function wrapped to do that.
CRASHING_FOLLOWER = """
import os, signal, sys
import pipelines.follow as follow
from pipelines.io.duckdb_publisher import DuckDBPublisher
from pipelines.io.publication import Publication

point = sys.argv[1]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner, name, when=lambda *a, **k: True):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if when(*args, **kwargs):
            die()
        return result

    setattr(owner, name, wrapper)


def before(owner, name, when=lambda *a, **k: True):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if when(*args, **kwargs):
            die()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


moves = []
if point == "ledger_written_not_committed":
    after(follow, "_record_file")
elif point == "committed_not_exported":
    after(DuckDBPublisher, "publish")
elif point == "parts_written_no_marker":
    before(Publication, "_write_marker", lambda self, version, content: version > 0)
elif point == "exported_not_moved":
    before(follow.Follower, "_done")
elif point == "one_file_moved":
    before(follow.Follower, "_move", lambda *a, **k: moves.append(1) or len(moves) > 1)
else:
    raise SystemExit(f"unknown point {point}")
from pipelines.cli import main

sys.argv = ["revattr", *sys.argv[2:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("point", [
    "ledger_written_not_committed",
    "committed_not_exported",
    "parts_written_no_marker",
    "exported_not_moved",
    "one_file_moved",
])
def test_a_crash_at_each_point_of_an_apply_is_recovered_exactly_once(
    dataset, two_files, tmp_path, point
):
    chosen, expected = two_files
    landing = tmp_path / "landing"
    landing.mkdir()
    for f in chosen:
        drop(f, landing)
    db = tmp_path / "revenue.duckdb"
    command = _follow_command(landing, dataset / "reference", db)
    crashing = FollowProcess([sys.executable, "-c", CRASHING_FOLLOWER, point, *command[3:]],
                             tmp_path / "crash.log")
    assert crashing.wait(timeout=60) == -signal.SIGKILL, crashing.text()

    # Readers see all of it or none of it, balanced.
    if db.exists():
        events, unbalanced = catalog_rows(
            db, "SELECT (SELECT count(*) FROM attributed_events), "
            "(SELECT count(*) FROM reconciliation WHERE NOT balanced)")[0]
        assert unbalanced == 0
        crash_count = events
    else:
        crash_count = 0

    recovery = FollowProcess(command + ["--stop-when-idle", "0.5"], tmp_path / "recover.log")
    assert recovery.wait(timeout=60) == 0, recovery.text()
    text = recovery.text()
    assert ("exported version(s) [1]" in text) == (point in (
        "committed_not_exported", "parts_written_no_marker")), text
    assert ("applied 2 file(s)" in text) == (point == "ledger_written_not_committed"), text
    assert names(landing) == []
    assert names(landing / "applied") == ["f00.jsonl", "f01.jsonl"]
    rows = ledger(db)
    assert [(r[0], r[4]) for r in rows] == [("f00.jsonl", "applied"), ("f01.jsonl", "applied")]
    assert len({r[3] for r in rows}) == 1
    runs = catalog_rows(db, "SELECT status, input_records FROM pipeline_runs")
    assert runs == [("succeeded", sum(len(f.read_text().splitlines()) for f in chosen))]
    final = catalog_rows(db, "SELECT count(*) FROM attributed_events")[0][0]
    assert crash_count in (0, final) and final > 0
    assert crash_count == (final if point in ("exported_not_moved", "one_file_moved") else 0)
    assert_same_state(db, expected)


# --------------------------------------------------------------------------- 7

runner = CliRunner()


def test_follow_help_and_a_missing_landing_folder_exits_2_naming_it(dataset, tmp_path):
    result = runner.invoke(app, ["follow", "--help"])
    assert result.exit_code == 0
    for option in ("--landing", "--reference", "--db", "--poll-seconds", "--stop-when-idle",
                   "--no-checks"):
        assert option in result.output

    missing = tmp_path / "no-such-landing"
    result = runner.invoke(app, [
        "follow", "--landing", str(missing), "--reference", str(dataset / "reference"),
        "--db", str(tmp_path / "revenue.duckdb"), "--stop-when-idle", "0",
    ])
    assert result.exit_code == 2, result.output
    assert str(missing) in result.output
    assert "landing directory does not exist" in result.output
    assert "Traceback" not in result.output
    assert not missing.exists()


def test_follow_with_a_missing_reference_folder_exits_2_naming_it(tmp_path):
    (tmp_path / "landing").mkdir()
    missing = tmp_path / "no-such-reference"
    result = runner.invoke(app, [
        "follow", "--landing", str(tmp_path / "landing"), "--reference", str(missing),
        "--db", str(tmp_path / "revenue.duckdb"), "--stop-when-idle", "0",
    ])
    assert result.exit_code == 2, result.output
    assert str(missing) in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), no uncaught error
