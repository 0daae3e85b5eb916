"""Publishing to readers: catalog views over committed Parquet parts (pipelines/io/publication.py).

Runs are staged in-process (``stage_embedded``) from a small generated data set
split into several event files, so that each file is one run, one version, and
every run brings late events for days an earlier run already published.
"""

from __future__ import annotations

import csv
import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipelines.io.publication as publication_module
from pipelines.embedded.engine import stage_embedded
from pipelines.errors import UserError
from pipelines.generate import generate_dataset
from pipelines.io.catalog import Layout, commit_name, part_name
from pipelines.io.duckdb_publisher import RunInfo, RunSummary
from pipelines.io.duckdb_sql import literal
from pipelines.io.publication import Part, Publication, PublishedEvents
from pipelines.io.reference_loader import load_reference, with_optional_tables
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.rules.fiscal_calendar import FiscalCalendar
from pipelines.rules.restate import restate_moment, restated_attribution
from schemas.publication import APPEND, PUBLISHED_RELATIONS, SNAPSHOT, UPSERT
from schemas.reference import REFERENCE_TABLES
from tests.utils import copy_database

slow = pytest.mark.slow

CHUNKS = 8  # event files, i.e. runs available
PUBLISHED_RUNS = 6  # runs in the shared ``published`` database (versions 1..6)
DERIVED_VIEWS = (
    "territory_revenue_rollup",
    "territory_revenue_monthly",
    "territory_revenue_quarterly",
    "account_manager_revenue_monthly",
    "account_manager_revenue_quarterly",
)
UPSERTS = [r for r in PUBLISHED_RELATIONS.values() if r.kind == UPSERT]


@dataclass(frozen=True)
class Dataset:
    chunks: list[Path]
    reference_dir: Path
    reference: dict[str, pa.Table]
    timelines: EnrichmentTimelines


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, events=3000, seed=5, bad_rate=0.02)
    lines = [
        line
        for path in sorted((root / "events").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
    ]
    chunks = []
    for i in range(CHUNKS):  # interleaved: every chunk spans the whole period
        chunk = root / "chunks" / f"events-{i}.jsonl"
        chunk.parent.mkdir(exist_ok=True)
        chunk.write_text("".join(lines[i::CHUNKS]), encoding="utf-8")
        chunks.append(chunk)
    reference = load_reference(root / "reference")
    return Dataset(chunks, root / "reference", reference, EnrichmentTimelines.build(reference))


def publish_chunk(
    publication: Publication,
    data: Dataset,
    chunk: int,
    reference: dict[str, pa.Table] | None = None,
    timelines: EnrichmentTimelines | None = None,
) -> RunSummary:
    """Stage one event file in-process and publish it; the run must succeed."""
    reference = data.reference if reference is None else reference
    timelines = data.timelines if timelines is None else timelines
    run_id = f"run-{chunk}-{time.monotonic_ns()}"
    staging = publication.layout.root.parent / ".staging" / run_id
    stage_embedded(
        [str(data.chunks[chunk])],
        reference,
        timelines,
        staging,
        run_id,
        checks=False,
        history=PublishedEvents(publication.layout.catalog),
    )
    summary = publication.publish(staging, RunInfo(run_id, "batch", datetime.now(UTC)), reference)
    shutil.rmtree(staging, ignore_errors=True)
    assert summary.status == "succeeded", summary
    assert summary.accepted > 0
    return summary


from pipelines.rules.splits import FACT_COLUMNS as SPLIT_FACT_COLUMNS  # noqa: E402
from pipelines.rules.splits import SplitIndex, restated_teams, split_credit  # noqa: E402
from schemas.outputs import duckdb_type, view_sql  # noqa: E402


def columns(name: str) -> str:
    return ", ".join(PUBLISHED_RELATIONS[name].schema.names)


def read_all(db: Path, names: list[str] | tuple[str, ...] | None = None) -> dict[str, list]:
    """Every published relation (and derived view) as the catalog shows it, sorted."""
    names = names or [*PUBLISHED_RELATIONS, *DERIVED_VIEWS]
    with duckdb.connect(str(db), read_only=True) as con:
        return {n: rows(con, n) for n in names}


def rows(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple]:
    select = columns(name) if name in PUBLISHED_RELATIONS else "*"
    return con.execute(f"SELECT {select} FROM {name} ORDER BY ALL").fetchall()


def expected_snapshot(reference: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """What the snapshot relations must hold after a run with ``reference`` (default
    restated moment and fiscal calendar), derived here from the rules."""
    tables = with_optional_tables(reference)
    moment = restate_moment(None)
    return {**tables,
            "restated_attribution": restated_attribution(tables, moment),
            "restated_splits": restated_teams(tables["account_splits"], moment),
            "fiscal_calendar": FiscalCalendar().days()}


def store_oracle(store: Path, reference: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
    """An in-memory copy of the writer's store with the expected snapshot in place of the
    one it does not keep, and the store's views over them."""
    oracle = duckdb.connect()
    oracle.execute(f"ATTACH {literal(store)} AS s (READ_ONLY)").fetchall()
    snapshot = expected_snapshot(reference)
    stored = [r[0] for r in oracle.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 's'").fetchall()]
    for name in stored:
        if name not in snapshot:
            oracle.execute(f"CREATE TABLE {name} AS SELECT * FROM s.{name}").fetchall()
    for name, table in snapshot.items():
        oracle.register("_expected", table)
        oracle.execute(f"CREATE TABLE {name} AS SELECT * FROM _expected").fetchall()
        oracle.unregister("_expected")
    for statement in view_sql(1, daily_facts="daily_facts"):
        oracle.execute(statement).fetchall()
    oracle.execute("DETACH s").fetchall()
    return oracle


def assert_catalog_equals_store(db: Path, reference: dict[str, pa.Table], names=None) -> None:
    """Every relation readers see equals the writer's store (its snapshot, which it does
    not keep, being the one ``reference`` gives); the facts, which the store does not keep
    either, tie out to its per-day totals (and are unique by event_id)."""
    names = names or [*PUBLISHED_RELATIONS, *DERIVED_VIEWS]
    layout = Layout.of(db)
    with (
        duckdb.connect(str(layout.catalog), read_only=True) as catalog,
        store_oracle(layout.store, reference) as store,
    ):
        for name in names:
            if name == "attributed_events":
                published = catalog.execute(
                    "SELECT day, sum(booked_revenue), count(*) FROM attributed_events "
                    "GROUP BY day ORDER BY day").fetchall()
                stored = store.execute(
                    "SELECT day, booked_revenue, events FROM daily_facts ORDER BY day").fetchall()
                unique = catalog.execute(
                    "SELECT count(*) = count(DISTINCT event_id) FROM attributed_events"
                ).fetchall()[0][0]
                assert unique, "attributed_events: an event_id published twice"
            elif name == "split_credit":  # not in the store: the rule over the published facts
                published = rows(catalog, name)
                facts = catalog.sql(
                    f"SELECT {', '.join(SPLIT_FACT_COLUMNS)} FROM attributed_events"
                ).to_arrow_table()
                splits = store.sql("SELECT * FROM account_splits").to_arrow_table()
                expected = split_credit(facts, SplitIndex.build(splits))  # noqa: F841
                with duckdb.connect() as scratch:
                    stored = scratch.execute("SELECT * FROM expected ORDER BY ALL").fetchall()
                assert published, "split_credit: the dataset has account teams"
            else:
                published, stored = rows(catalog, name), rows(store, name)
            assert published == stored, f"{name}: catalog and store differ"


def assert_relation_types_are_the_schemas(db: Path) -> None:
    """Every published relation has its schema's DuckDB column types, whichever writer
    (DuckDB or pyarrow) wrote its parts."""
    with duckdb.connect(str(db), read_only=True) as con:
        for name, relation in PUBLISHED_RELATIONS.items():
            described = [r[1].replace("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ")
                         for r in con.execute(f"DESCRIBE {name}").fetchall()]
            assert described == [duckdb_type(f.type) for f in relation.schema], name


def count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]


def part_files(db: Path, name: str) -> set[str]:
    return {p.name for p in Layout.of(db).relation_dir(name).glob("p*.parquet")}


@pytest.fixture(scope="module")
def published(dataset, tmp_path_factory) -> Path:
    """A database after PUBLISHED_RUNS runs (versions 1..PUBLISHED_RUNS). Do not modify."""
    db = tmp_path_factory.mktemp("published") / "revenue.duckdb"
    publication = Publication(db)
    for chunk in range(PUBLISHED_RUNS):
        publish_chunk(publication, dataset, chunk)
    assert publication.committed_version() == PUBLISHED_RUNS
    return db


@pytest.fixture
def copy(published, tmp_path) -> Path:
    """A private copy of ``published`` (catalog repointed at the copy's parts)."""
    return copy_database(published, tmp_path / "copy" / "revenue.duckdb")


# ----------------------------------------------------------------- 1. content


@slow
def test_every_catalog_relation_equals_the_store_table_after_several_runs(published, dataset):
    assert set(REFERENCE_TABLES) <= set(PUBLISHED_RELATIONS)
    assert_catalog_equals_store(published, dataset.reference, list(PUBLISHED_RELATIONS))
    assert_relation_types_are_the_schemas(published)
    with duckdb.connect(str(published), read_only=True) as con:
        assert count(con, "pipeline_runs") == PUBLISHED_RUNS
        for name in ("attributed_events", "quarantine", "dq_results", *REFERENCE_TABLES):
            assert count(con, name) > 0, f"{name} is empty: the comparison proves nothing"
        runs = con.execute("SELECT count(DISTINCT run_id) FROM attributed_events").fetchall()
        assert runs == [(PUBLISHED_RUNS,)]


@slow
def test_derived_views_exist_and_equal_the_store_and_the_rollup_root_ties_to_the_facts(
    published, dataset
):
    assert_catalog_equals_store(published, dataset.reference, DERIVED_VIEWS)
    with duckdb.connect(str(published), read_only=True) as con:
        for view in DERIVED_VIEWS:
            assert count(con, view) > 0, view
        # Roots of the tree, plus leaves outside it (UNASSIGNED), roll up everything.
        roots_total, facts_total, unassigned = con.execute(
            """SELECT
                 (SELECT sum(booked_revenue) FROM territory_revenue_rollup
                  WHERE territory_id IN (SELECT territory_id FROM territories
                                         WHERE coalesce(parent_territory_id, '') = '')
                     OR territory_id NOT IN (SELECT territory_id FROM territories)),
                 (SELECT sum(booked_revenue) FROM attributed_events),
                 (SELECT count(*) FROM territory_revenue
                  WHERE territory_id NOT IN (SELECT territory_id FROM territories))"""
        ).fetchall()[0]
        monthly = con.execute("SELECT sum(booked_revenue) FROM territory_revenue_monthly")
        monthly_total = monthly.fetchall()[0][0]
        unbalanced = count(con, "reconciliation WHERE NOT balanced")
    assert facts_total > 0
    assert roots_total == facts_total == monthly_total
    assert unassigned > 0  # the leaves-outside-the-tree branch of the rollup is exercised
    assert unbalanced == 0


# ------------------------------------------------------- 2. commit markers


@slow
def test_parts_of_a_version_without_its_commit_marker_are_invisible_until_it_is_written(copy):
    publication = Publication(copy)
    version = publication.committed_version()
    newest = publication.live_parts("attributed_events")[-1]
    extra = pq.read_metadata(newest.path).num_rows
    assert extra > 0
    next_version = version + 1
    shutil.copy(newest.path, newest.path.with_name(part_name(next_version, next_version)))
    # also an upsert relation: its newest part, with every value doubled, as the next version
    territory = publication.live_parts("territory_revenue")[-1]
    target = territory.path.with_name(part_name(next_version, next_version))
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE (booked_revenue * 2 AS booked_revenue) "
            f"FROM read_parquet('{territory.path}')) TO '{target}' (FORMAT parquet)"
        ).fetchall()
    before = read_all(copy, ["attributed_events", "territory_revenue"])

    with duckdb.connect(str(copy), read_only=True) as con:
        assert count(con, "attributed_events") == len(before["attributed_events"])
    assert read_all(copy, ["attributed_events", "territory_revenue"]) == before
    assert publication.committed_version() == version

    marker = publication.layout.commits / commit_name(next_version)
    marker.write_text(json.dumps({"version": next_version, "run_id": "copied"}))

    after = read_all(copy, ["attributed_events", "territory_revenue"])
    assert len(after["attributed_events"]) == len(before["attributed_events"]) + extra
    assert after["territory_revenue"] != before["territory_revenue"]
    assert len(after["territory_revenue"]) == len(before["territory_revenue"])  # one per key
    with duckdb.connect(str(copy), read_only=True) as con:
        doubled = con.execute(
            f"SELECT count(*) FROM territory_revenue t JOIN read_parquet('{territory.path}') p "
            "USING (territory_id, day) WHERE t.booked_revenue = p.booked_revenue * 2"
        ).fetchall()[0][0]
    assert doubled == pq.read_metadata(territory.path).num_rows


@slow
def test_parts_above_the_committed_version_are_invisible_even_when_covering(copy):
    """A merged part p1-N whose N is not committed must not hide the parts it covers."""
    publication = Publication(copy)
    before = read_all(copy, ["attributed_events"])
    live = publication.live_parts("attributed_events")
    version = publication.committed_version()
    merged = live[-1].path.with_name(part_name(1, version + 1))
    with duckdb.connect() as con:  # a half-done merge: its range ends past the commit
        con.execute(
            f"COPY (SELECT * FROM read_parquet('{live[-1].path}')) TO '{merged}' (FORMAT parquet)"
        ).fetchall()
    assert read_all(copy, ["attributed_events"]) == before
    assert publication.live_parts("attributed_events") == live


# ------------------------------------------------------------ 3. compaction


@slow
def test_compaction_bounds_live_parts_keeps_contents_and_deletes_covered_parts_after_grace(
    copy, monkeypatch, dataset
):
    publication = Publication(copy)
    versions = publication.committed_version()
    uncompacted = publication.live_parts("attributed_events")
    assert len(uncompacted) == versions + 1  # the default FANOUT did not merge yet (+ p0-0)
    before = read_all(copy)
    on_disk = {name: part_files(copy, name) for name in PUBLISHED_RELATIONS}

    monkeypatch.setattr(publication_module, "FANOUT", 3)
    merges = publication.compact()

    assert merges > 0
    live = publication.live_parts("attributed_events")
    assert len(live) < versions
    assert sorted((p.lo, p.hi) for p in live) == [(p.lo, p.hi) for p in live]
    covered = [p for p in uncompacted if p not in live]
    assert covered and all(any(q.covers(p) for q in live) for p in covered)
    assert read_all(copy) == before
    for name, files in on_disk.items():  # nothing deleted yet: readers may still open them
        assert files <= part_files(copy, name), name
    assert publication.compact() == 0  # nothing left to merge

    assert publication.collect_garbage(now=time.time()) == 0
    assert all(p.path.exists() for p in covered)

    removed = publication.collect_garbage(now=time.time() + publication.grace_seconds + 1)
    replaced = sum(
        len(files - {p.path.name for p in publication.live_parts(name)})
        for name, files in on_disk.items()
    )
    assert removed == replaced > 0
    assert not any(p.path.exists() for p in covered)
    assert all(p.path.exists() for p in live)
    for name in PUBLISHED_RELATIONS:  # only live parts are left
        assert part_files(copy, name) == {p.path.name for p in publication.live_parts(name)}
    assert publication.collect_garbage(now=time.time()) == 0
    assert publication.collect_garbage(now=time.time() + publication.grace_seconds + 1) == 0
    assert read_all(copy) == before
    assert_catalog_equals_store(copy, dataset.reference)


@slow
def test_publishing_with_a_small_fanout_keeps_few_live_parts_and_the_same_contents(
    dataset, tmp_path, monkeypatch
):
    fanout, runs = 3, 6
    monkeypatch.setattr(publication_module, "FANOUT", fanout)
    db = tmp_path / "revenue.duckdb"
    publication = Publication(db)
    for chunk in range(runs):
        publish_chunk(publication, dataset, chunk)
        for relation in PUBLISHED_RELATIONS.values():
            if relation.kind == SNAPSHOT:
                continue
            live = publication.live_parts(relation.name)
            tiers = [publication_module._tier(pq.read_metadata(p.path).num_rows) for p in live]
            newest_run = len(list(itertools.takewhile(tiers[-1].__eq__, reversed(tiers))))
            assert newest_run < fanout, (relation.name, tiers)  # else compaction was due
    versions = publication.committed_version()
    assert versions == runs
    assert len(publication.live_parts("attributed_events")) < versions
    assert len(publication.live_parts("pipeline_runs")) < versions
    assert any(p.hi > p.lo for p in publication.live_parts("territory_revenue"))
    assert_catalog_equals_store(db, dataset.reference)
    with duckdb.connect(str(db), read_only=True) as con:
        assert count(con, "pipeline_runs") == runs


# --------------------------------------------------------------- 4. crashes


def newest_version_files(publication: Publication, version: int) -> list[Path]:
    """The marker of ``version`` and every part whose range ends at it."""
    parts = [
        path
        for relation in PUBLISHED_RELATIONS
        for path in publication.layout.relation_dir(relation).glob("p*.parquet")
        if (part := Part.parse(path)) and part.hi == version
    ]
    return [publication.layout.commits / commit_name(version), *parts]


@slow
def test_a_crash_between_store_commit_and_export_is_repaired_by_export_pending(copy, dataset):
    publication = Publication(copy)
    before = read_all(copy)
    publish_chunk(publication, dataset, PUBLISHED_RUNS)
    version = publication.committed_version()
    assert version == PUBLISHED_RUNS + 1
    assert len(read_all(copy, ["pipeline_runs"])["pipeline_runs"]) == PUBLISHED_RUNS + 1

    # kill -9 right after the store transaction: nothing of the version exported but its
    # facts and their split credit, which the publication places before the store commits
    doomed = [p for p in newest_version_files(publication, version)
              if p.parent.name not in ("attributed_events", "split_credit")]
    assert len(doomed) > 2
    for path in doomed:
        path.unlink()
    assert publication.committed_version() == version - 1
    assert read_all(copy) == before  # readers see the previous version, whole

    assert publication.export_pending() == [version]
    assert publication.committed_version() == version
    assert_catalog_equals_store(copy, dataset.reference)
    assert publication.export_pending() == []
    assert publication.committed_version() == version


@slow
def test_a_crash_before_the_commit_marker_leaves_readers_on_the_previous_version(
    copy, dataset, monkeypatch
):
    publication = Publication(copy)
    before = read_all(copy)
    version = publication.committed_version() + 1
    write_marker = Publication._write_marker

    def crash(self, number, content):
        if number == version:
            raise RuntimeError("killed before the marker")
        write_marker(self, number, content)

    monkeypatch.setattr(Publication, "_write_marker", crash)
    with pytest.raises(RuntimeError, match="killed before the marker"):
        publish_chunk(publication, dataset, PUBLISHED_RUNS)
    # every part of the version is on disk, yet no reader sees any of it
    assert part_name(version, version) in part_files(copy, "attributed_events")
    assert publication.committed_version() == version - 1
    assert read_all(copy) == before

    monkeypatch.setattr(Publication, "_write_marker", write_marker)
    assert publication.export_pending() == [version]
    assert_catalog_equals_store(copy, dataset.reference)
    assert publication.export_pending() == []
    # and the next run publishes on top of it as usual
    publish_chunk(publication, dataset, PUBLISHED_RUNS + 1)
    assert publication.committed_version() == version + 1
    assert_catalog_equals_store(
        copy, dataset.reference, ["attributed_events", "territory_revenue", "pipeline_runs"]
    )


# ---------------------------------------------------------------- 5. readers

READER = """
import sys
import duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
for sql in sys.stdin:
    print(con.execute(sql).fetchall()[0][0], flush=True)
"""


class ReaderProcess:
    """Another process holding ONE read-only connection on the catalog, queried line by line."""

    def __init__(self, db: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", READER, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def scalar(self, sql: str) -> str:
        self.process.stdin.write(" ".join(sql.split()) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the reader died: {self.process.stderr.read()}")
        return line.strip()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()
        self.process.stderr.close()


@slow
def test_a_reader_holding_one_connection_open_sees_every_publication_without_locking(
    dataset, tmp_path
):
    db = tmp_path / "revenue.duckdb"
    publication = Publication(db)
    publication.prepare()
    reader = duckdb.connect(str(db), read_only=True)
    process = ReaderProcess(db)  # a BI tool: holds a shared lock on the catalog file
    try:
        assert count(reader, "attributed_events") == 0
        assert count(reader, "territory_revenue_rollup") == 0
        assert process.scalar("SELECT count(*) FROM attributed_events") == "0"
        seen = [0]
        for chunk in range(3):
            summary = publish_chunk(publication, dataset, chunk)  # no lock error
            events = count(reader, "attributed_events")
            assert events == seen[-1] + summary.accepted
            assert count(reader, "pipeline_runs") == chunk + 1
            assert process.scalar("SELECT count(*) FROM attributed_events") == str(events)
            assert process.scalar("SELECT count(*) FROM pipeline_runs") == str(chunk + 1)
            seen.append(events)
            other = duckdb.connect(str(db), read_only=True)  # opened meanwhile
            try:
                assert count(other, "attributed_events") == events
                assert rows(other, "territory_revenue") == rows(reader, "territory_revenue")
            finally:
                other.close()
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        total = reader.execute(
            "SELECT (SELECT sum(booked_revenue) FROM attributed_events) "
            "= (SELECT sum(booked_revenue) FROM territory_revenue)"
        ).fetchall()
        assert total == [(True,)]
    finally:
        reader.close()
        process.close()
    assert_catalog_equals_store(db, dataset.reference)


@slow
def test_a_changed_catalog_replaces_the_file_while_a_reader_keeps_the_old_one_open(copy):
    quarters = (
        "SELECT string_agg(DISTINCT quarter_start::VARCHAR, ',' ORDER BY quarter_start::VARCHAR) "
        "FROM territory_revenue_quarterly"
    )
    process = ReaderProcess(copy)
    try:
        calendar = process.scalar(quarters)
        assert calendar == "2026-01-01"
        # the fiscal year now starts in February: the catalog's SQL changes
        Publication(copy, fiscal_year_start_month=2).prepare()
        assert process.scalar(quarters) == calendar  # the open catalog still answers
        assert process.scalar("SELECT count(*) FROM attributed_events") != "0"
    finally:
        process.close()
    with duckdb.connect(str(copy), read_only=True) as con:
        fiscal = con.execute(quarters).fetchall()[0][0]
    assert fiscal == "2025-11-01,2026-02-01"
    assert not list(copy.parent.glob(".*tmp*"))  # no temporary catalog left behind


# ---------------------------------------------------------- 6. reference


@slow
def test_a_snapshot_part_left_by_a_publication_that_never_committed_is_not_published(
    copy, dataset
):
    # A publication places its changed snapshot before the store commits; if that commit
    # never happens, the next publication reuses the version number. With the reference
    # unchanged, it must remove the stray part rather than publish it under its marker.
    publication = Publication(copy)
    stray_version = publication.committed_version() + 1
    stray = publication.layout.relation_dir("accounts") / part_name(stray_version, stray_version)
    live = publication.live_parts("accounts")[-1].path
    with duckdb.connect() as con:
        con.execute(
            f"COPY (SELECT * REPLACE ('Stray Ltd.' AS account_name) FROM read_parquet("
            f"{literal(live)})) TO {literal(stray)} (FORMAT parquet)"
        ).fetchall()

    publish_chunk(publication, dataset, PUBLISHED_RUNS)  # same reference

    assert publication.committed_version() == stray_version
    assert not stray.exists()
    with duckdb.connect(str(copy), read_only=True) as con:
        assert count(con, "accounts WHERE account_name = 'Stray Ltd.'") == 0
    assert_catalog_equals_store(copy, dataset.reference, list(REFERENCE_TABLES))


@slow
def test_a_prefetched_snapshot_is_published_when_changed_and_not_when_unchanged(
    copy, dataset, monkeypatch
):
    drafted = []
    draft = Publication._draft_snapshot

    def spy(self, reference, *args):  # noqa: ANN001, ANN202
        drafted.append(threading.current_thread().name)
        return draft(self, reference, *args)

    monkeypatch.setattr(Publication, "_draft_snapshot", spy)
    changed = dict(dataset.reference)
    changed["people"] = dataset.reference["people"].slice(1)  # one person fewer
    publication = Publication(copy)
    publication.prefetch_snapshot(changed)
    publish_chunk(publication, dataset, PUBLISHED_RUNS, changed,
                  EnrichmentTimelines.build(changed))
    assert [name.startswith("revattr-snapshot") for name in drafted] == [True]  # not redone
    assert_catalog_equals_store(copy, changed, [*REFERENCE_TABLES, "restated_attribution",
                                                "restated_splits", "fiscal_calendar"])

    parts = {name: part_files(copy, name) for name in REFERENCE_TABLES}
    publication.prefetch_snapshot(changed)  # unchanged since the last run: not published
    publish_chunk(publication, dataset, PUBLISHED_RUNS + 1, changed,
                  EnrichmentTimelines.build(changed))
    assert {name: part_files(copy, name) for name in REFERENCE_TABLES} == parts


def test_a_prefetched_snapshot_of_another_reference_is_not_used(tmp_path, monkeypatch):
    publication = Publication(tmp_path / "revenue.duckdb")
    reference = {"people": pa.table({"person_id": ["P1"]})}
    made = []
    monkeypatch.setattr(Publication, "_draft_snapshot",
                        lambda self, ref, *args: made.append(ref) or "draft")
    publication.prefetch_snapshot(reference)
    assert publication._take_prefetched(dict(reference)) is None  # an equal, other object
    assert made == [reference]  # the prefetch ran, and was waited for and dropped
    publication.prefetch_snapshot(reference)
    assert publication._take_prefetched(reference) == "draft"
    assert publication._take_prefetched(reference) is None  # taken once


@slow
def test_a_run_that_fails_before_publishing_still_leaves_a_whole_catalog(
    dataset, tmp_path, monkeypatch
):
    import pipelines.embedded.run as embedded_run

    def failing(*_args, **_kwargs):
        raise RuntimeError("staging failed")

    monkeypatch.setattr(embedded_run, "stage_embedded", failing)
    db = tmp_path / "revenue.duckdb"
    with pytest.raises(RuntimeError, match="staging failed"):
        embedded_run.run([f"--events={dataset.chunks[0]}",
                          f"--reference={dataset.reference_dir}", f"--db={db}"])
    assert Layout.of(db).catalog.exists()  # written by the thread start_run started
    assert not list(tmp_path.glob(".revenue.duckdb.tmp-*"))
    assert not [t for t in threading.enumerate() if t.name.startswith("revattr-")]


@slow
def test_reference_tables_are_exported_only_when_the_reference_changes(copy, dataset, tmp_path):
    publication = Publication(copy)
    reference_parts = {name: part_files(copy, name) for name in REFERENCE_TABLES}
    assert all(len(files) >= 1 for files in reference_parts.values())

    publish_chunk(publication, dataset, PUBLISHED_RUNS)  # same reference
    same = publication.committed_version()
    assert {name: part_files(copy, name) for name in REFERENCE_TABLES} == reference_parts
    marker = json.loads((publication.layout.commits / commit_name(same)).read_text())
    assert not set(marker["rows"]) & set(REFERENCE_TABLES)

    changed_dir = tmp_path / "reference"
    shutil.copytree(dataset.reference_dir, changed_dir)
    accounts_csv = changed_dir / "accounts.csv"
    with accounts_csv.open(encoding="utf-8", newline="") as handle:
        table = list(csv.reader(handle))
    header, first = table[0], table[1]
    account_id = first[header.index("account_id")]
    first[header.index("account_name")] = "Renamed Holdings Ltd."
    with accounts_csv.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(table)
    changed = load_reference(changed_dir)
    publish_chunk(publication, dataset, PUBLISHED_RUNS + 1, changed,
                  EnrichmentTimelines.build(changed))

    version = publication.committed_version()
    assert version == same + 1
    new_parts = part_files(copy, "accounts") - reference_parts["accounts"]
    assert new_parts == {part_name(version, version)}
    assert [p.path.name for p in publication.live_parts("accounts")] == [
        part_name(version, version)
    ]
    with duckdb.connect(str(copy), read_only=True) as con:
        names = con.execute(
            "SELECT account_name FROM accounts WHERE account_id = ?", [account_id]
        ).fetchall()
        assert names == [("Renamed Holdings Ltd.",)]
        assert count(con, "accounts") == changed["accounts"].num_rows
    assert_catalog_equals_store(copy, changed, list(REFERENCE_TABLES))


# --------------------------------------------------------------- 7. layout


def test_an_old_layout_database_is_refused_with_a_message_saying_what_to_do(tmp_path):
    db = tmp_path / "revenue.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE attributed_events (event_id VARCHAR)").fetchall()
        con.execute("INSERT INTO attributed_events VALUES ('E1')").fetchall()

    with pytest.raises(UserError) as raised:
        Publication(db).prepare()

    error = raised.value
    assert error.where == str(db.absolute())
    assert "remove it" in str(error) and "--db" in str(error)
    assert not Layout.of(db).root.exists()  # nothing created next to it
    with duckdb.connect(str(db), read_only=True) as con:  # and the old file is untouched
        assert con.execute("SELECT * FROM attributed_events").fetchall() == [("E1",)]


def test_prepare_on_a_new_database_commits_an_empty_version_zero(tmp_path):
    db = tmp_path / "new" / "revenue.duckdb"
    db.parent.mkdir()
    publication = Publication(db)
    publication.prepare()
    publication.prepare()  # idempotent
    assert publication.committed_version() == 0
    assert publication.export_pending() == []  # no store yet
    with duckdb.connect(str(db), read_only=True) as con:
        for name, relation in PUBLISHED_RELATIONS.items():
            assert count(con, name) == 0, name
            described = [r[0] for r in con.execute(f"DESCRIBE {name}").fetchall()]
            assert described == relation.schema.names, name
        for view in DERIVED_VIEWS:
            assert count(con, view) == 0, view
    assert_relation_types_are_the_schemas(db)


def test_a_catalog_written_in_the_background_is_complete_once_waited_for(tmp_path):
    db = tmp_path / "revenue.duckdb"
    publication = Publication(db)
    publication.prepare(wait=False)
    publication.wait_for_catalog()
    with duckdb.connect(str(db), read_only=True) as con:
        for name in PUBLISHED_RELATIONS:
            assert count(con, name) == 0, name
    assert not list(tmp_path.glob(".revenue.duckdb.tmp-*"))


def test_an_error_of_the_background_catalog_is_raised_by_the_wait(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(publication_module, "write_catalog", broken)
    publication = Publication(tmp_path / "revenue.duckdb")
    publication.prepare(wait=False)
    with pytest.raises(OSError, match="disk full"):
        publication.wait_for_catalog()
    publication.prepare(wait=False)  # prepared: nothing is started again
    publication.wait_for_catalog()


@slow
@pytest.mark.parametrize("folder", ["a[1]", "it's here"])
def test_a_database_under_a_folder_with_glob_or_quote_characters_publishes_its_own_parts(
    published, tmp_path, folder, dataset
):
    db = copy_database(published, tmp_path / folder / "revenue.duckdb")
    assert_catalog_equals_store(db, dataset.reference)


@slow
def test_a_database_under_a_folder_with_a_star_does_not_read_a_sibling_database(
    published, tmp_path, dataset
):
    star = copy_database(published, tmp_path / "db*" / "revenue.duckdb")
    sibling = copy_database(published, tmp_path / "db-sibling" / "revenue.duckdb")
    # unescaped, "db*" also globs db-sibling's parts
    assert_catalog_equals_store(star, dataset.reference)
    assert_catalog_equals_store(sibling, dataset.reference, ["attributed_events"])


@slow
def test_a_deleted_published_folder_is_refused_with_what_to_do(copy):
    # The published facts are the record of every fact (the store keeps their totals
    # only): a removed published folder cannot be rebuilt, and is not half rebuilt.
    publication = Publication(copy)
    shutil.rmtree(publication.layout.published)
    publication.prepare()
    assert publication.committed_version() == 0
    with pytest.raises(UserError, match="published facts of version 1 .* are missing") as error:
        publication.export_pending()
    assert "run the inputs again" in error.value.hint
    assert publication.committed_version() == 0


@slow
def test_a_failed_run_publishes_its_run_row_but_neither_its_facts_nor_its_reference(
    copy, dataset, tmp_path
):
    publication = Publication(copy)
    before = read_all(copy)
    changed_dir = tmp_path / "reference"
    shutil.copytree(dataset.reference_dir, changed_dir)
    people = changed_dir / "people.csv"
    lines = people.read_text(encoding="utf-8").splitlines(keepends=True)
    people.write_text("".join(lines[:-1]), encoding="utf-8")  # one person fewer
    changed = load_reference(changed_dir)
    assert changed["people"].num_rows == dataset.reference["people"].num_rows - 1

    run_id = "run-failing"
    staging = tmp_path / "staging"
    stage_embedded(
        [str(dataset.chunks[PUBLISHED_RUNS])],
        changed,
        EnrichmentTimelines.build(changed),
        staging,
        run_id,
        checks=False,
        history=PublishedEvents(publication.layout.catalog),
    )
    shutil.rmtree(staging / "quarantine")  # records no longer accounted for
    summary = publication.publish(staging, RunInfo(run_id, "batch", datetime.now(UTC)), changed)

    assert summary.status == "failed_checks"
    assert publication.committed_version() == PUBLISHED_RUNS + 1
    after = read_all(copy)
    assert after["pipeline_runs"] != before["pipeline_runs"]
    with duckdb.connect(str(copy), read_only=True) as con:
        status = con.execute(
            "SELECT status FROM pipeline_runs WHERE run_id = ?", [run_id]
        ).fetchall()
        assert status == [("failed_checks",)]
    for name in ("attributed_events", "territory_revenue", "reconciliation", *REFERENCE_TABLES):
        assert after[name] == before[name], name
    assert_catalog_equals_store(copy, dataset.reference)

    # the next successful run with that reference does export it
    publish_chunk(publication, dataset, PUBLISHED_RUNS, changed, EnrichmentTimelines.build(changed))
    with duckdb.connect(str(copy), read_only=True) as con:
        assert count(con, "people") == changed["people"].num_rows
    assert_catalog_equals_store(copy, changed, [*REFERENCE_TABLES, "pipeline_runs"])


# ----------------------------------------------------------------- 8. upserts


@slow
def test_each_upsert_relation_has_one_row_per_key_after_late_events_for_published_days(
    published, dataset
):
    publication = Publication(published)
    with duckdb.connect(str(published), read_only=True) as con:
        # the runs did publish late events for days an earlier run had published
        revisited = con.execute(
            "SELECT count(*) FROM (SELECT territory_id, day FROM attributed_events "
            "GROUP BY ALL HAVING count(DISTINCT run_id) > 1)"
        ).fetchall()[0][0]
        assert revisited > 0
        for relation in UPSERTS:
            keys = ", ".join(relation.key)
            duplicates = con.execute(
                f"SELECT {keys}, count(*) FROM {relation.name} GROUP BY ALL HAVING count(*) > 1"
            ).fetchall()
            assert duplicates == [], relation.name
            # the parts do hold a key several times: the view picks one
            files = ", ".join(f"'{p.path}'" for p in publication.live_parts(relation.name))
            on_disk = con.execute(
                f"SELECT count(*) - count(DISTINCT ({keys})) FROM read_parquet([{files}])"
            ).fetchall()[0][0]
            assert on_disk > 0, relation.name
        # ... the newest one: each (territory, day) row is the sum of all its facts
        mismatched = con.execute(
            """SELECT count(*) FROM territory_revenue t FULL JOIN (
                   SELECT territory_id, day, sum(booked_revenue) AS booked_revenue
                   FROM attributed_events GROUP BY ALL) f USING (territory_id, day)
               WHERE t.booked_revenue IS DISTINCT FROM f.booked_revenue"""
        ).fetchall()[0][0]
        assert mismatched == 0
    assert_catalog_equals_store(published, dataset.reference, [r.name for r in UPSERTS])


def test_published_relations_cover_every_kind():
    kinds = {r.kind for r in PUBLISHED_RELATIONS.values()}
    assert kinds == {APPEND, UPSERT, SNAPSHOT}
