"""Publish runs to readers without ever locking the ``--db`` file they open.

``Publication.publish`` applies a run's staged outputs to the writer's private
store (``DuckDBPublisher``: one transaction, checks, rollback on failure), which
also assigns the run the next *version*. ``export_pending`` then writes what
that version changed as immutable Parquet parts and commits it with a marker
file (see ``pipelines/io/catalog.py`` for how readers see it):

* ``append`` relations: the run's rows (the facts: the run's staged facts part,
  moved into place before the store commits; the store keeps no facts, only
  their per-day totals, so the published parts of ``attributed_events`` are the
  record of every fact, written once; the facts' account-team split credit,
  ``split_credit``, is computed from that part and placed beside it);
* ``upsert`` relations (the revenue views, reconciliation): the store's current
  rows of every (key, day) the run touched;
* ``snapshot`` relations (reference tables and what is derived from them): all rows,
  only when they changed, written from the run's Arrow tables and placed like the
  facts before the store commits (the store keeps no copy of them).

So the cost of a publication follows the size of the run, not of the history.
Parts are merged in the background of each publication, size-tiered: when the
newest ``FANOUT`` parts of a relation have the same size tier they are merged
into one, so a relation keeps O(FANOUT x log(rows)) parts. Replaced parts are
deleted ``grace_seconds`` later (a query that already listed them can still
open them).

Crash safety: every file is written under a temporary name and renamed; a
version's parts are written before its marker; names are deterministic, so a
restart simply exports again every version the store has and no marker shows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.errors import UserError, naming_the_file
from pipelines.io.catalog import (
    COMMIT_PATTERN,
    PART_PATTERN,
    Layout,
    commit_name,
    part_name,
    write_catalog,
)
from pipelines.io.duckdb_publisher import DuckDBPublisher, RunInfo, RunSummary, connect
from pipelines.io.duckdb_sql import fetch_all, literal, table_names
from pipelines.io.parallel import ordered_map
from pipelines.io.reference_loader import with_optional_tables
from pipelines.io.staging import part_files
from pipelines.rules.dedupe import PUBLISHED_COLUMNS
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.rules.fiscal_calendar import FiscalCalendar
from pipelines.rules.restate import restate_moment, restated_attribution
from pipelines.rules.splits import FACT_COLUMNS as SPLIT_FACT_COLUMNS
from pipelines.rules.splits import SplitIndex, restated_teams, split_credit, split_mismatches
from schemas.outputs import DERIVED_SNAPSHOTS, SPLIT_MISMATCH_SCHEMA
from schemas.publication import APPEND, PUBLISHED_RELATIONS, SNAPSHOT, UPSERT, PublishedRelation

FACTS = "attributed_events"
SPLITS = "split_credit"
# Relations whose parts the publication places itself (not exported from the store).
PLACED = (FACTS, SPLITS)
SPLIT_BATCH_ROWS = 500_000
SPLIT_WORKERS = min(2, os.cpu_count() or 1)  # batches split at once (numpy, pyarrow: no GIL)
FANOUT = 8
GRACE_SECONDS = 120.0
KEEP_COMMIT_MARKERS = 16
STORE_MEMORY_LIMIT = "256MB"

Recorder = Callable[[duckdb.DuckDBPyConnection, RunSummary], None]


@dataclass(frozen=True)
class Part:
    path: Path
    lo: int
    hi: int

    @classmethod
    def parse(cls, path: Path) -> Part | None:
        match = re.search(PART_PATTERN, path.name)
        return cls(path, int(match[1]), int(match[2])) if match else None

    def covers(self, other: Part) -> bool:
        return (
            self.lo <= other.lo
            and self.hi >= other.hi
            and self.hi - self.lo > other.hi - other.lo
        )


def reference_hash(reference: dict[str, pa.Table], restated_at: dt.datetime | None = None,
                   calendar: str = "") -> str:
    """sha256 of the reference snapshot's content (and of the moment its restated basis
    is taken at, and of the fiscal calendar), to export it only when it changes."""
    digest = hashlib.sha256()
    if restated_at is not None:
        digest.update(restated_at.isoformat().encode())
    digest.update(calendar.encode())
    for name in sorted(reference):
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, reference[name].schema) as writer:
            writer.write_table(reference[name])
        digest.update(name.encode())
        digest.update(sink.getvalue())
    return digest.hexdigest()


@dataclass(frozen=True)
class SnapshotDraft:
    """A reference snapshot and what derives from it, typed as published, with its hash."""

    digest: str
    restated_at: dt.datetime
    tables: dict[str, pa.Table]  # every snapshot relation, by name

    def write(self, folder: Path) -> dict[str, Path]:
        """One Parquet file per snapshot relation in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for name, table in self.tables.items():
            files[name] = folder / f"{name}.parquet"
            with naming_the_file(files[name]):
                pq.write_table(table, files[name])
        return files


class Publication:
    """The ``--db`` of a run or of follow mode: store, published parts and catalog."""

    def __init__(
        self,
        db: str | Path,
        fiscal_year_start_month: int = 1,
        grace_seconds: float = GRACE_SECONDS,
        restate_as_of: dt.date | dt.datetime | None = None,
        calendar: FiscalCalendar | None = None,
    ) -> None:
        self.layout = Layout.of(db)
        self.fiscal_year_start_month = fiscal_year_start_month
        # The restated basis is taken at this date (None: the start of each day, UTC).
        self.restate_as_of = restate_as_of
        # The fiscal calendar of the published fiscal_calendar (default: months from the
        # fiscal year start month).
        self.calendar = calendar or FiscalCalendar("months", fiscal_year_start_month)
        self.grace_seconds = grace_seconds
        # Seconds spent by the last publish: applying to the store, exporting to readers.
        self.timings: dict[str, float] = {}
        self._prepared = False  # prepare() and the crash catch-up ran in this process
        self._layout_ready = False  # prepare() ran in this process
        self._catalog: _InThread | None = None  # prepare(wait=False): being written
        # prefetch_snapshot: (the reference it drafts, the draft being made)
        self._prefetch: tuple[dict[str, pa.Table], _InThread] | None = None

    @property
    def store(self) -> Path:
        return self.layout.store

    # -- set-up ------------------------------------------------------------
    def prepare(self, wait: bool = True) -> None:
        """Create the folders, an empty committed version 0 and the catalog (idempotent;
        once per process). ``wait=False``: the catalog is written in a thread (binding its
        views takes ~0.3 s, mostly in DuckDB, which releases the GIL) while the run goes
        on; ``publish`` waits for it (``wait_for_catalog``)."""
        if self._layout_ready:
            if wait:
                self.wait_for_catalog()
            return
        layout = self.layout
        if layout.catalog.exists() and not layout.root.exists():
            raise UserError(
                "this database was written by revattr 0.1 (tables inside the file); "
                "readers now open a catalog of views",
                where=str(layout.catalog),
                hint="remove it (or choose another --db) and run again",
            )
        layout.commits.mkdir(parents=True, exist_ok=True)
        for relation in PUBLISHED_RELATIONS.values():
            folder = layout.relation_dir(relation.name)
            folder.mkdir(parents=True, exist_ok=True)
            if not any(folder.glob("p*.parquet")):
                tmp = folder / f"_tmp-{uuid.uuid4().hex}.parquet"
                with naming_the_file(tmp):
                    pq.write_table(relation.schema.empty_table(), tmp)
                os.replace(tmp, folder / part_name(0, 0))
        if not any(layout.commits.glob("v*.json")):
            self._write_marker(0, {"version": 0, "run_id": None})
        self._layout_ready = True
        if wait:
            write_catalog(layout, self.fiscal_year_start_month)
        else:
            self._catalog = _InThread("revattr-catalog", write_catalog, layout,
                                      self.fiscal_year_start_month)

    def wait_for_catalog(self, raise_error: bool = True) -> None:
        """Wait for a catalog being written by ``prepare(wait=False)``; raise its error
        (``raise_error=False``: a run that already failed keeps its own error)."""
        catalog, self._catalog = self._catalog, None
        if catalog is not None and catalog.error() is not None and raise_error:
            catalog.result()

    def catch_up(self) -> list[int]:
        """``prepare``, then export the versions a crash left committed in the store but not
        on disk (once per process; returns them).

        A run calls it before it reads the published history for its deduplication: a
        run killed between its store commit and its marker is published, and a re-run
        must count its events as duplicates, not stage them again.
        """
        if self._prepared:
            return []
        self.prepare(wait=False)  # the export needs the parts, not the catalog
        exported = self.export_pending()
        self._prepared = True
        return exported

    # -- publishing --------------------------------------------------------
    def publish(
        self,
        staging: str | Path,
        run: RunInfo,
        reference: dict[str, pa.Table],
        record: Recorder | None = None,
        timelines: EnrichmentTimelines | None = None,
    ) -> RunSummary:
        """Apply the run to the store (with ``record`` in its transaction), then export it.

        One store connection serves the whole publication; the first publication of
        this object also prepares the layout and exports what a crash left behind.
        """
        self.catch_up()  # a version a crash left unexported goes first
        prefetched = self._take_prefetched(reference)
        restated_at = prefetched.restated_at if prefetched else restate_moment(self.restate_as_of)
        digest = (prefetched.digest if prefetched else
                  reference_hash(reference, restated_at, self.calendar.label))

        def record_version(con: duckdb.DuckDBPyConnection, summary: RunSummary) -> None:
            version = fetch_all(con, "SELECT coalesce(max(version), 0) + 1 FROM publications")[0][0]
            fetch_all(
                con,
                "INSERT INTO publications VALUES (?, ?, ?, now())",
                [version, run.run_id, digest if summary.status == "succeeded" else None],
            )
            if record is not None:
                record(con, summary)
            if summary.status == "succeeded":  # before the commit: a crash after it finds it
                self._place_facts(staging, version)
                self._place_splits(staged_splits, version)
                self._place_snapshot(staged_snapshot, version)

        publisher = self.publisher()
        started = time.perf_counter()
        staged_splits: Path | None = None
        account_splits = with_optional_tables(reference)["account_splits"]
        split_index = SplitIndex.build(account_splits, _run_accounts(staging, account_splits))
        con = self._store_connection()
        try:
            draft = None
            if digest != _reference_hash_before(con):  # the snapshot changed: publish it
                draft = prefetched or self._draft_snapshot(reference, timelines, restated_at,
                                                           digest)
            snapshot = draft.tables if draft else None
            staged_snapshot = (draft.write(Path(staging) / "_publication" / "snapshot")
                               if draft else {})
            staged_splits, mismatches = self._stage_splits(staging, split_index)
            if part_files(staging, "dq_results"):  # checks on
                self._stage_published_checks(staging, snapshot, mismatches)
            # The store keeps no snapshot: its parts, placed like the facts', are the record.
            summary = publisher.publish(
                staging, run, None, record=record_version, con=con
            )
            applied = time.perf_counter()
            exported = self._export_pending(con)
        finally:
            con.close()
        self._maintain(exported)
        self.wait_for_catalog()
        self.timings = {"store": applied - started, "export": time.perf_counter() - applied}
        return summary

    def publish_run(self, staging: str | Path, run: RunInfo, reference: dict[str, pa.Table],
                    quality_page: str | Path | None = None,
                    timelines: EnrichmentTimelines | None = None) -> RunSummary:
        """``publish`` a batch run, then write its data-quality page if asked (both executors)."""
        summary = self.publish(staging, run, reference, timelines=timelines)
        if quality_page:
            from pipelines.quality.page import render_quality_page

            results = self.publisher().run_results(run.run_id)
            summary.quality_page = render_quality_page(results, run.run_id, Path(quality_page))
        return summary

    def publisher(self) -> DuckDBPublisher:
        """The store's publisher: facts checked against, and published as, Parquet parts."""
        return DuckDBPublisher(self.layout.store, self.fiscal_year_start_month,
                               published_facts=self.published_facts_sql)

    def published_facts_sql(self, parts: list[Part] | None = None) -> str:
        """SQL: the facts readers see now (the live ``parts`` of ``attributed_events``)."""
        parts = self.live_parts(FACTS) if parts is None else parts
        files = ", ".join(literal(p.path) for p in parts)
        if not files:
            return "SELECT NULL::VARCHAR AS event_id WHERE false"
        return f"SELECT * FROM read_parquet([{files}])"

    def _place_facts(self, staging: str | Path, version: int) -> None:
        """The run's staged facts as the version's part (invisible until its marker)."""
        files = part_files(staging, FACTS)
        target = self.layout.relation_dir(FACTS) / part_name(version, version)
        if len(files) == 1:
            os.replace(files[0], target)
        elif files:
            con = duckdb.connect()
            try:
                columns = ", ".join(PUBLISHED_RELATIONS[FACTS].schema.names)
                sources = "[" + ", ".join(literal(f) for f in files) + "]"
                self._write(con, f"SELECT {columns} FROM read_parquet({sources})", target)
            finally:
                con.close()

    def _stage_splits(self, staging: str | Path, index: SplitIndex,
                      ) -> tuple[Path | None, pa.Table]:
        """The split credit of the run's staged facts, written beside them (None: no fact's
        account had a team then), and the events whose primary shares do not sum to their
        measures (``SPLIT_MISMATCH_SCHEMA``: none, unless the rule is wrong). Read and split
        in batches, so memory follows the batch, not the run."""
        target = Path(staging) / "_publication" / "split_credit.parquet"
        target.unlink(missing_ok=True)
        facts = part_files(staging, FACTS)
        mismatches = [SPLIT_MISMATCH_SCHEMA.empty_table()]
        if not facts or index.empty:
            return None, mismatches[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"_tmp-{uuid.uuid4().hex}.parquet")
        rows = 0
        writer = None
        def split(batch: pa.RecordBatch) -> tuple[pa.Table, pa.Table]:
            table = pa.Table.from_batches([batch])
            credit = split_credit(table, index)
            return credit, split_mismatches(table, credit)

        batches = (batch for path in facts for batch in pq.ParquetFile(path).iter_batches(
            batch_size=SPLIT_BATCH_ROWS, columns=list(SPLIT_FACT_COLUMNS)))
        try:
            for credit, mismatched in ordered_map(split, batches, SPLIT_WORKERS):
                if not credit.num_rows:
                    continue
                if writer is None:
                    writer = pq.ParquetWriter(tmp, credit.schema)
                writer.write_table(credit)
                rows += credit.num_rows
                mismatches.append(mismatched)
        finally:
            if writer is not None:
                writer.close()
        if not rows:
            return None, mismatches[0]
        os.replace(tmp, target)
        return target, pa.concat_tables(mismatches)

    def _draft_snapshot(self, reference: dict[str, pa.Table],
                        timelines: EnrichmentTimelines | None, restated_at: dt.datetime,
                        digest: str) -> SnapshotDraft:
        """The reference snapshot and what derives from it (the restated basis, teams and
        fiscal calendar at ``restated_at``)."""
        tables = with_optional_tables(reference)
        tables |= {
            "restated_attribution": restated_attribution(reference, restated_at, timelines),
            "restated_splits": restated_teams(tables["account_splits"], restated_at),
            "fiscal_calendar": self.calendar.days()}
        typed = {r.name: tables[r.name].select(r.schema.names).cast(r.schema)
                 for r in PUBLISHED_RELATIONS.values() if r.kind == SNAPSHOT}
        return SnapshotDraft(digest, restated_at, typed)

    def prefetch_snapshot(self, reference: dict[str, pa.Table],
                          timelines: EnrichmentTimelines | None = None) -> None:
        """Hash and draft the snapshot of ``reference`` in a thread while the run stages its
        events (~0.15 s for a 50k-account reference, mostly in pyarrow and numpy, which
        release the GIL); ``publish`` of the same ``reference`` object takes the draft
        (and writes it only if the snapshot changed). Nothing is written: a run that never
        publishes just drops it (``discard_prefetched`` waits for the thread)."""
        self.discard_prefetched()
        restated_at = restate_moment(self.restate_as_of)

        def draft() -> SnapshotDraft:
            digest = reference_hash(reference, restated_at, self.calendar.label)
            return self._draft_snapshot(reference, timelines, restated_at, digest)

        self._prefetch = (reference, _InThread("revattr-snapshot", draft))

    def _take_prefetched(self, reference: dict[str, pa.Table]) -> SnapshotDraft | None:
        """The prefetched draft of this very ``reference`` (None: none, or of another)."""
        if self._prefetch is None or self._prefetch[0] is not reference:
            self.discard_prefetched()
            return None
        _, drafting = self._prefetch
        self._prefetch = None
        return drafting.result()

    def discard_prefetched(self) -> None:
        """Drop an unused prefetched draft, once its thread is done."""
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:
            prefetch[1].error()  # wait; a draft that failed is not used

    def _place_snapshot(self, staged: dict[str, Path], version: int) -> None:
        """The staged snapshot as the version's parts; with none staged (unchanged), a part
        of that number left by a publication that never committed is removed."""
        for relation in PUBLISHED_RELATIONS.values():
            if relation.kind != SNAPSHOT:
                continue
            target = self.layout.relation_dir(relation.name) / part_name(version, version)
            if relation.name in staged:
                os.replace(staged[relation.name], target)
            else:
                target.unlink(missing_ok=True)

    def _place_splits(self, staged: Path | None, version: int) -> None:
        """The staged split credit as the version's part (invisible until its marker)."""
        target = self.layout.relation_dir(SPLITS) / part_name(version, version)
        if staged is None:
            target.unlink(missing_ok=True)  # a part left by a publication that never committed
        else:
            os.replace(staged, target)

    @staticmethod
    def _stage_published_checks(staging: str | Path, snapshot: dict[str, pa.Table] | None,
                                mismatches: pa.Table) -> None:
        """Run the ``published`` suite on what this publication derives (the restated basis
        and fiscal calendar only when they are recomputed) into the staged check results,
        where the store's publisher finds them with the stages' results."""
        from pipelines.quality.results import runner_module
        from pipelines.quality.stage_frames import frames_from_tables
        from pipelines.quality.suites import load_suite

        derived = {name: (snapshot[name] if snapshot else schema.empty_table())
                   for name, schema in DERIVED_SNAPSHOTS.items()}
        frames = frames_from_tables("published", {**derived, "split_mismatches": mismatches})
        results = runner_module("native").run_suite("publish", "published", frames)
        if snapshot is None:  # the snapshot was checked when it was published
            batches = {e.name: e.batch for e in load_suite("published").expectations}
            keep = [batches[name] == "split_mismatches"
                    for name in results["expectation"].to_pylist()]
            results = results.filter(pa.array(keep))
        target = Path(staging) / "dq_results" / "part-published.parquet"
        tmp = target.with_name(f"_tmp-{uuid.uuid4().hex}.parquet")
        pq.write_table(results, tmp)
        os.replace(tmp, target)

    def _store_connection(self) -> duckdb.DuckDBPyConnection:
        """The store, read-write, with memory bounded: publication runs after the pipeline
        (whose memory is still held), so DuckDB spills to disk rather than add its own."""
        con = connect(self.layout.store)
        fetch_all(con, f"SET memory_limit = '{STORE_MEMORY_LIMIT}'")
        fetch_all(con, "SET preserve_insertion_order = false")
        return con

    def committed_version(self) -> int:
        versions = [
            int(m[1])
            for p in self.layout.commits.glob("v*.json")
            if (m := re.search(COMMIT_PATTERN, p.name))
        ]
        return max(versions, default=0)

    def export_pending(self) -> list[int]:
        """Export every version recorded in the store but not yet committed on disk."""
        if not self.layout.store.exists():
            return []
        con = self._store_connection()
        try:
            exported = self._export_pending(con)
        finally:
            con.close()
        self._maintain(exported)
        return exported

    def _maintain(self, exported: list[int]) -> None:
        """After new versions: merge small parts, delete what was replaced long enough ago."""
        if exported:
            self.compact()
            self.collect_garbage()

    def _export_pending(self, con: duckdb.DuckDBPyConnection) -> list[int]:
        committed = self.committed_version()
        if "publications" not in table_names(con):
            return []
        pending = fetch_all(
            con,
            "SELECT version, run_id, reference_hash FROM publications "
            "WHERE version > ? ORDER BY version",
            [committed],
        )
        for version, run_id, digest in pending:
            self._export_version(con, version, run_id, digest)
        return [p[0] for p in pending]

    def _export_version(
        self, con: duckdb.DuckDBPyConnection, version: int, run_id: str, digest: str | None
    ) -> None:
        reference_changed = digest is not None and digest != _reference_hash_before(con, version)
        facts = self._version_facts(con, version, run_id)
        touched = (f"SELECT DISTINCT territory_id, account_manager_id, day "
                   f"FROM read_parquet({literal(facts)})" if facts else
                   "SELECT NULL::VARCHAR AS territory_id, NULL::VARCHAR AS account_manager_id, "
                   "NULL::DATE AS day WHERE false")
        fetch_all(con, f"CREATE OR REPLACE TEMP TABLE touched AS {touched}")
        written = {}
        if facts:
            written[FACTS] = pq.read_metadata(facts).num_rows
            splits = self.layout.relation_dir(SPLITS) / part_name(version, version)
            if splits.exists():
                written[SPLITS] = pq.read_metadata(splits).num_rows
        for relation in PUBLISHED_RELATIONS.values():
            target = self.layout.relation_dir(relation.name) / part_name(version, version)
            if relation.kind == SNAPSHOT:  # placed by the publication when it changed
                if target.exists():
                    written[relation.name] = pq.read_metadata(target).num_rows
                    continue
                if not reference_changed:
                    continue
                # else: a store written before 0.4 kept the snapshot: export it from there
            if relation.name in PLACED:  # placed by the publication itself
                continue
            rows = self._write(con, self._version_sql(relation, run_id), target)
            if rows:
                written[relation.name] = rows
        self._write_marker(
            version, {"version": version, "run_id": run_id, "rows": written}
        )

    def _version_facts(self, con: duckdb.DuckDBPyConnection, version: int,
                       run_id: str) -> Path | None:
        """The facts part of ``version`` (None: the run published no facts); a stale part
        of that number (left by a publication that never committed) is removed. Parts are
        merged only once committed, so a version being exported still has its own part."""
        target = self.layout.relation_dir(FACTS) / part_name(version, version)
        accepted = fetch_all(
            con, "SELECT accepted FROM pipeline_runs WHERE run_id = ? AND status = 'succeeded'",
            [run_id])
        expected = accepted[0][0] if accepted else 0
        if not expected:
            target.unlink(missing_ok=True)
            (self.layout.relation_dir(SPLITS) / part_name(version, version)).unlink(
                missing_ok=True)
            return None
        if not target.exists() or pq.read_metadata(target).num_rows != expected:
            raise UserError(
                f"the published facts of version {version} (run {run_id}) are missing: "
                "the published folder was changed or removed",
                where=str(target),
                hint="remove this --db and its .d folder and run the inputs again",
            )
        return target

    @staticmethod
    def _version_sql(relation: PublishedRelation, run_id: str) -> str:
        columns = ", ".join(relation.schema.names)
        quoted = literal(run_id)
        if relation.kind == APPEND:
            return f"SELECT {columns} FROM {relation.name} WHERE run_id = {quoted}"
        if relation.kind == SNAPSHOT:
            return f"SELECT {columns} FROM {relation.name}"
        if relation.kind == UPSERT:
            keys = ", ".join(relation.key)
            return (
                f"SELECT {columns} FROM {relation.name} "
                f"WHERE ({keys}) IN (SELECT DISTINCT {keys} FROM touched)"
            )
        raise ValueError(f"unknown relation kind {relation.kind!r}")

    def _write(
        self, con: duckdb.DuckDBPyConnection, sql: str, target: Path, keep_empty: bool = False
    ) -> int:
        """COPY a query to ``target`` atomically; returns its rows (0: nothing written)."""
        tmp = target.with_name(f"_tmp-{uuid.uuid4().hex}.parquet")
        rows = fetch_all(con, f"COPY ({sql}) TO {literal(tmp)} (FORMAT parquet)")[0][0]
        if rows or keep_empty:
            os.replace(tmp, target)
        else:
            tmp.unlink(missing_ok=True)
        return rows

    def _write_marker(self, version: int, content: dict) -> None:
        tmp = self.layout.commits / f"_tmp-{uuid.uuid4().hex}"
        content = {**content, "committed_at": time.time()}
        tmp.write_text(json.dumps(content, default=str))
        os.replace(tmp, self.layout.commits / commit_name(version))

    # -- maintenance -------------------------------------------------------
    def live_parts(self, name: str, committed: int | None = None) -> list[Part]:
        """The parts readers of ``name`` use at the committed version, oldest first."""
        committed = self.committed_version() if committed is None else committed
        parts = [
            p
            for path in self.layout.relation_dir(name).glob("p*.parquet")
            if (p := Part.parse(path)) and p.hi <= committed
        ]
        if PUBLISHED_RELATIONS[name].kind == SNAPSHOT:
            return sorted(parts, key=lambda p: (p.hi, -p.lo))[-1:]
        live = [p for p in parts if not any(q.covers(p) for q in parts)]
        return sorted(live, key=lambda p: p.lo)

    def compact(self) -> int:
        """Merge the newest parts of each relation while FANOUT of them share a size tier."""
        merges = 0
        committed = self.committed_version()
        for relation in PUBLISHED_RELATIONS.values():
            if relation.kind == SNAPSHOT:
                continue
            while True:
                parts = self.live_parts(relation.name, committed)
                tiers = [_tier(pq.read_metadata(p.path).num_rows) for p in parts]
                run = 0
                while run < len(parts) and tiers[-1 - run] == tiers[-1]:
                    run += 1
                if run < FANOUT:
                    break
                self._merge(relation, parts[-run:])
                merges += 1
        return merges

    def _merge(self, relation: PublishedRelation, parts: list[Part]) -> None:
        target = self.layout.relation_dir(relation.name) / part_name(parts[0].lo, parts[-1].hi)
        files = "[" + ", ".join(literal(p.path) for p in parts) + "]"
        columns = ", ".join(relation.schema.names)
        if relation.kind == APPEND:
            sql = f"SELECT {columns} FROM read_parquet({files})"
        else:
            versions = " UNION ALL ".join(
                f"SELECT {literal(p.path)} AS file, {p.hi} AS hi" for p in parts
            )
            sql = (
                f"SELECT {columns} FROM read_parquet({files}, filename = true) r "
                f"JOIN ({versions}) v ON r.filename = v.file "
                f"QUALIFY row_number() OVER (PARTITION BY {', '.join(relation.key)} "
                "ORDER BY v.hi DESC) = 1"
            )
        con = duckdb.connect()
        try:
            self._write(con, sql, target, keep_empty=True)
        finally:
            con.close()

    def collect_garbage(self, now: float | None = None) -> int:
        """Delete parts replaced more than ``grace_seconds`` ago, stale temp files, old markers."""
        now = time.time() if now is None else now
        removed = 0

        def old(path: Path) -> bool:
            try:
                return now - path.stat().st_mtime > self.grace_seconds
            except FileNotFoundError:
                return False

        committed = self.committed_version()
        for relation in PUBLISHED_RELATIONS.values():
            folder = self.layout.relation_dir(relation.name)
            parts = [p for path in folder.glob("p*.parquet") if (p := Part.parse(path))]
            live = self.live_parts(relation.name, committed)
            snapshot = relation.kind == SNAPSHOT
            doomed = [
                p
                for p in parts
                if p.hi <= committed
                and p not in live
                and any((q.hi > p.hi if snapshot else q.covers(p)) and old(q.path) for q in live)
            ]
            doomed += [Part(t, -1, -1) for t in folder.glob("_tmp-*") if old(t)]
            for part in doomed:
                part.path.unlink(missing_ok=True)
                removed += 1
        # Temporary files of a writer killed while writing a marker or the catalog.
        strays = [*self.layout.commits.glob("_tmp-*"),
                  *self.layout.catalog.parent.glob(f".{self.layout.catalog.name}.tmp-*")]
        for stray in strays:
            if old(stray):
                stray.unlink(missing_ok=True)
                removed += 1
        markers = sorted(self.layout.commits.glob("v*.json"))
        for marker in markers[:-KEEP_COMMIT_MARKERS]:
            if old(marker):
                marker.unlink(missing_ok=True)
                removed += 1
        return removed


class PublishedEvents:
    """Already published events by id, for cross-run deduplication: read as data from
    the published facts parts (picklable: holds the ``--db`` path only)."""

    def __init__(self, db: str | Path) -> None:
        self.db = str(db)

    def lookup(self, event_ids: pa.Array) -> pa.Table | None:
        """Published ``event_id`` + payload fields of these ids; None if nothing is published."""
        publication = Publication(self.db)
        parts = publication.live_parts(FACTS)
        if not parts:
            return None
        wanted = pa.table({"event_id": event_ids})  # noqa: F841 (scanned by DuckDB)
        columns = ", ".join(PUBLISHED_COLUMNS)
        con = duckdb.connect()
        try:
            return con.sql(
                f"SELECT {columns} FROM ({publication.published_facts_sql(parts)}) "
                "WHERE event_id IN (SELECT event_id FROM wanted)"
            ).to_arrow_table()
        finally:
            con.close()


class _InThread:
    """``work(*args)`` in a thread of its own, started at once; ``error`` and ``result``
    wait for the thread to end."""

    def __init__(self, name: str, work: Callable[..., object], *args: object) -> None:
        self._result: object = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._result = work(*args)
            except BaseException as error:  # the waiter's to raise
                self._error = error

        self._thread = threading.Thread(target=run, name=name)
        self._thread.start()

    def error(self) -> BaseException | None:
        self._thread.join()
        return self._error

    def result(self) -> object:
        if self.error() is not None:
            raise self._error
        return self._result


def _run_accounts(staging: str | Path, account_splits: pa.Table) -> pa.Array | None:
    """The accounts of the run's staged facts, when the run has fewer facts than
    ``account_splits`` has rows (its split index need not cover every account then);
    None: index them all."""
    files = part_files(staging, FACTS)
    if sum(pq.read_metadata(f).num_rows for f in files) >= account_splits.num_rows:
        return None
    if not files:
        return pa.array([], pa.string())
    facts = pa.concat_tables(pq.read_table(f, columns=["account_id"]) for f in files)
    return pc.unique(facts["account_id"])


def _reference_hash_before(
    con: duckdb.DuckDBPyConnection, version: int | None = None
) -> str | None:
    """The hash of the reference the store held before ``version`` (default: now), i.e. that
    of the last succeeded run before it; failed runs record none (their reference was
    rolled back)."""
    if "publications" not in table_names(con):
        return None
    rows = fetch_all(
        con,
        "SELECT reference_hash FROM publications WHERE reference_hash IS NOT NULL "
        "AND version < coalesce(?, 9223372036854775807) ORDER BY version DESC LIMIT 1",
        [version],
    )
    return rows[0][0] if rows else None


def _tier(rows: int) -> int:
    return 0 if rows < FANOUT else int(math.log(rows, FANOUT))
