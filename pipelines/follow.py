"""Follow mode: apply each file dropped in a landing directory once, and publish it.

Producers write ``name.jsonl.tmp`` (or ``.csv``/``.parquet``) and rename it to
``name.jsonl`` when complete. Each poll takes the complete files in name order
(up to ``max_files`` at a time) and runs the batch steps on them in this
process on the embedded engine (``pipelines.embedded``: a Beam runner's start-up
would exceed the latency budget), then publishes them as one version (``Publication``).

Exactly once: the ledger row of each file (name, size, sha256) is written in
the same store transaction as the run that applies it; only then is the file
moved to ``landing/applied/``. A restart after ``kill -9`` at any point either
finds no ledger row (the transaction never committed: the file is applied
again) or finds it (the file is only moved). Events repeated across files are
duplicates for the dedupe step, as in batch runs.

A batch failing a critical check is retried file by file; a file that fails on
its own, or cannot be read at all, is quarantined whole: moved to
``landing/quarantine/`` with ``<name>.reason.txt`` beside it and a ledger row
with the reason, and following goes on. The reference directory is re-read
when any of its files changes and checked once per snapshot (its results are
stored with every run that uses it); a reference that fails to load or fails a
critical check keeps the previous one in use (and says so) until it is fixed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.embedded.engine import stage_embedded
from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import RunInfo, RunSummary, connect
from pipelines.io.duckdb_sql import fetch_all, table_names
from pipelines.io.publication import Publication, PublishedEvents
from pipelines.io.reference_cache import ResolvedReference, resolve_reference
from pipelines.rules.enrich import EnrichmentTimelines

EVENT_SUFFIXES = (".jsonl", ".csv", ".parquet")
APPLIED, QUARANTINED = "applied", "quarantined"


@dataclass(frozen=True)
class FollowSettings:
    landing: Path
    reference: Path
    db: Path
    poll_seconds: float = 0.5
    stop_when_idle: float | None = None  # seconds without a new file, then exit
    checks: bool = True
    max_files: int = 64
    reporting_currency: str = "USD"
    fiscal_year_start_month: int = 1


@dataclass(frozen=True)
class LandingFile:
    path: Path
    size: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> LandingFile:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return cls(path, path.stat().st_size, digest.hexdigest())


@dataclass
class BatchOutcome:
    """What one poll did: files applied or quarantined, the run summaries."""

    applied: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    runs: list[RunSummary] = field(default_factory=list)
    seconds: float = 0.0


def ready_files(landing: Path) -> list[Path]:
    """Complete files in the landing directory (not ``*.tmp``), oldest name first."""
    return sorted(
        p for p in landing.iterdir() if p.is_file() and p.name.endswith(EVENT_SUFFIXES)
    )


def _reference_signature(folder: Path) -> tuple | None:
    """(name, mtime, size) of each entry of the reference folder; None if it cannot be listed."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    signature = []
    for p in entries:
        try:
            stat = p.stat()
        except OSError:  # gone since listed (a rename), or a dangling link (an editor's lock)
            continue
        signature.append((p.name, stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(signature))


class Follower:
    """Polls the landing directory and applies what lands; see the module docstring."""

    def __init__(
        self, settings: FollowSettings, say: Callable[[str], None] | None = None
    ) -> None:
        self.s = settings
        self.say = say or (lambda _message: None)
        self.publication = Publication(settings.db, settings.fiscal_year_start_month)
        self.staging_root = self.publication.layout.root / "staging"
        self.applied_dir = settings.landing / "applied"
        self.quarantine_dir = settings.landing / "quarantine"
        self.reference: dict[str, pa.Table] | None = None
        self.timelines: EnrichmentTimelines | None = None
        self.reference_results: pa.Table | None = None  # its checks, run once per snapshot
        self._reference_signature: tuple | None = None
        self._stop = False

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if not self.s.landing.is_dir():
            raise UserError("the landing directory does not exist", where=str(self.s.landing),
                            hint="create it, or pass the folder producers write to")
        for folder in (self.applied_dir, self.quarantine_dir):
            folder.mkdir(exist_ok=True)
        self.publication.prepare()
        recovered = self.publication.export_pending()
        if recovered:
            self.say(f"exported version(s) {recovered} left by an interrupted run")
        self.refresh_reference()
        if self.reference is None:
            raise UserError("the reference data could not be loaded", where=str(self.s.reference))
        shutil.rmtree(self.staging_root, ignore_errors=True)

    def stop(self, *_: object) -> None:
        """Finish the current batch, then return from ``run`` (SIGTERM, SIGINT)."""
        self._stop = True

    def run(self) -> int:
        """Follow until stopped or idle for ``stop_when_idle`` seconds; returns files applied."""
        self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, self.stop)
            except ValueError:  # not the main thread (tests)
                pass
        applied = 0
        last_activity = time.monotonic()
        while not self._stop:
            outcome = self.poll()
            if outcome.applied or outcome.quarantined:
                self._report(outcome)
                applied += len(outcome.applied)
                last_activity = time.monotonic()
                continue  # more may be waiting: poll again at once
            idle = time.monotonic() - last_activity
            if self.s.stop_when_idle is not None and idle >= self.s.stop_when_idle:
                self.say(f"idle for {idle:.1f} s: stopping")
                break
            time.sleep(self.s.poll_seconds)
        return applied

    def _report(self, outcome: BatchOutcome) -> None:
        for run in outcome.runs:
            self.say(
                f"{run.status}: {run.input_records:,} records, {run.accepted:,} accepted, "
                f"{run.duplicates:,} duplicates, {run.quarantined:,} quarantined "
                f"(run {run.run_id})"
            )
        if outcome.applied:
            self.say(f"applied {len(outcome.applied)} file(s) in {outcome.seconds:.2f} s")
        for name, reason in outcome.quarantined.items():
            self.say(f"quarantined file {name}: {reason}")

    # -- one poll ----------------------------------------------------------
    def refresh_reference(self) -> None:
        signature = _reference_signature(self.s.reference)
        if self.reference is not None and signature == self._reference_signature:
            return
        try:
            resolved = resolve_reference(self.s.reference, self.say)
            reference, timelines = resolved.tables, resolved.timelines
            results = self._check_reference(resolved)
        except UserError as error:
            if self.reference is None:
                raise
            self.say(f"reference not reloaded, previous one kept: {error}")
            self._reference_signature = signature  # retried when the files change again
            return
        self.reference, self.timelines, self.reference_results = reference, timelines, results
        self._reference_signature = signature
        self.say("reference loaded")

    def _check_reference(self, resolved: ResolvedReference) -> pa.Table | None:
        """The reference suite's results, once per snapshot; a critical failure rejects it."""
        if not self.s.checks:
            return None
        from pipelines.quality.reference_results import reference_suite_results

        results = reference_suite_results(resolved)
        failed = [
            row["expectation"]
            for row in results.to_pylist()
            if row["severity"] == "critical" and not row["success"]
        ]
        if failed:
            raise UserError(
                f"the reference fails critical check(s) {', '.join(failed)}",
                where=str(self.s.reference),
                hint="fix the reference files; see `revattr check --reference DIR`",
            )
        return results

    def poll(self) -> BatchOutcome:
        """Apply the files that are ready now; returns what was done."""
        started = time.perf_counter()
        self.refresh_reference()
        outcome = BatchOutcome()
        files = ready_files(self.s.landing)[: self.s.max_files]
        if not files:
            return outcome
        landed = [LandingFile.of(p) for p in files]
        ledger = self._ledger(landed)
        fresh = []
        for file in landed:
            decided = ledger.get((file.path.name, file.sha256))
            if decided is None:
                fresh.append(file)
            else:  # decided before a crash, not yet moved (or the same file landed again)
                status, reason = decided
                self._move(file, APPLIED if status == APPLIED else QUARANTINED, reason)
        if fresh:
            self._apply(fresh, outcome)
        outcome.seconds = time.perf_counter() - started
        return outcome

    def _apply(self, files: list[LandingFile], outcome: BatchOutcome) -> None:
        try:
            summary = self._run(files)
        except UserError as error:
            if not _about_files(error, files):
                raise  # e.g. another writer holds the store: not the file's fault
            if len(files) == 1:
                self._quarantine_unreadable(files[0], str(error), outcome)
                return
            summary = None
        if summary is not None and summary.status == "succeeded":
            self._done(files, summary, outcome)
            return
        if summary is not None and len(files) == 1:
            reason = f"{summary.status}: " + (", ".join(summary.critical_failures) or "unbalanced")
            self._move(files[0], QUARANTINED, reason)
            outcome.quarantined[files[0].path.name] = reason
            outcome.runs.append(summary)
            return
        for file in files:  # find the file that fails on its own
            self._apply([file], outcome)

    def _done(self, files: list[LandingFile], summary: RunSummary, outcome: BatchOutcome) -> None:
        for file in files:
            self._move(file, APPLIED)
            outcome.applied.append(file.path.name)
        outcome.runs.append(summary)

    def _run(self, files: list[LandingFile]) -> RunSummary:
        now = dt.datetime.now(dt.UTC)
        run = RunInfo(f"follow-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}", "follow", now)
        staging = self.staging_root / run.run_id
        try:
            stage_embedded(
                [str(f.path) for f in files],
                self.reference,
                self.timelines,
                staging,
                run.run_id,
                reporting_currency=self.s.reporting_currency,
                history=PublishedEvents(self.publication.layout.catalog),
                checks=self.s.checks,
                known_results=(
                    {"reference": self.reference_results}
                    if self.reference_results is not None
                    else None
                ),
            )

            def record(con: duckdb.DuckDBPyConnection, summary: RunSummary) -> None:
                status = APPLIED if summary.status == "succeeded" else None
                if status is None and len(files) > 1:
                    return  # retried file by file: nothing is decided for these files yet
                reason = None if status else ", ".join(summary.critical_failures) or summary.status
                for file in files:
                    _record_file(con, file, run.run_id, status or QUARANTINED, reason)

            return self.publication.publish(staging, run, self.reference, record=record,
                                            timelines=self.timelines)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _quarantine_unreadable(self, file: LandingFile, reason: str, outcome: BatchOutcome) -> None:
        con = connect(self.publication.store)  # the folders exist: start() prepared them
        try:
            self.publication.publisher().ensure_schema(con)
            _record_file(con, file, "", QUARANTINED, reason)
        finally:
            con.close()
        self._move(file, QUARANTINED, reason)
        outcome.quarantined[file.path.name] = reason

    # -- ledger and files --------------------------------------------------
    def _ledger(self, files: list[LandingFile]) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(status, reason) of the files already in the ledger, by (name, sha256)."""
        if not self.publication.store.exists():
            return {}
        con = connect(self.publication.store, read_only=True)
        try:
            if "landing_files" not in table_names(con):
                return {}
            wanted = pa.table(  # noqa: F841 (scanned by DuckDB)
                {"file_name": [f.path.name for f in files], "sha256": [f.sha256 for f in files]}
            )
            rows = con.execute(
                "SELECT l.file_name, l.sha256, l.status, l.reason FROM landing_files l "
                "SEMI JOIN wanted w ON l.file_name = w.file_name AND l.sha256 = w.sha256"
            ).fetchall()
        finally:
            con.close()
        return {(name, sha): (status, reason) for name, sha, status, reason in rows}

    def _move(self, file: LandingFile, status: str, reason: str | None = None) -> None:
        folder = self.applied_dir if status == APPLIED else self.quarantine_dir
        target = folder / file.path.name
        if target.exists():  # the same name landed again: keep both
            target = folder / f"{file.path.stem}.{file.sha256[:12]}{file.path.suffix}"
        if reason is not None:
            target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
        try:
            os.replace(file.path, target)
        except FileNotFoundError:  # moved by an earlier attempt
            pass


def _about_files(error: UserError, files: list[LandingFile]) -> bool:
    """Whether the error names one of the files (``where`` is ``path`` or ``path:line``)."""
    where = error.where or ""
    return any(where == str(f.path) or where.startswith(f"{f.path}:") for f in files)


def _record_file(
    con: duckdb.DuckDBPyConnection,
    file: LandingFile,
    run_id: str,
    status: str,
    reason: str | None,
) -> None:
    fetch_all(
        con,
        "INSERT INTO landing_files VALUES (?, ?, ?, ?, ?, ?, now()) "
        "ON CONFLICT (file_name, sha256) DO NOTHING",
        [file.path.name, file.size, file.sha256, run_id, status, reason],
    )
