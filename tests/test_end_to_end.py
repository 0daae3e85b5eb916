"""The whole batch pipeline on a generated data set with every hard case,
checked against an independent DuckDB SQL computation written from the contract."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from pipelines.batch import run
from pipelines.generate import generate_dataset
from pipelines.reference_sql import compute_reference
from tests.utils import copy_database

pytestmark = pytest.mark.slow

FACT_COLUMNS = (
    "event_id, event_type, event_time, day, deal_id, account_id, currency, amount, "
    "booked_revenue, pipeline_created, account_manager_id, territory_id, "
    "territory_manager_id, attribution_status"
)
VIEWS = ("territory_revenue", "account_manager_revenue")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    # Every hard case, the equally specific rule tie included: the reference checks
    # rightly refuse to publish that, so these runs have the checks off
    # (tests/test_quality_gate.py covers the checks).
    generate_dataset(root, events=6000, seed=11, bad_rate=0.02, rule_tie=True)
    return root


def run_pipeline(data: Path, db: Path, events: str = "events/*.jsonl") -> object:
    return run(
        [
            f"--events={data / events}",
            f"--reference={data / 'reference'}",
            f"--db={db}",
            "--checks=false",
        ]
    )


def snapshot(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            "facts": con.execute(
                f"SELECT {FACT_COLUMNS} FROM attributed_events ORDER BY event_id"
            ).fetchall(),
            **{v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall() for v in VIEWS},
            "rollup": con.execute("SELECT * FROM territory_revenue_rollup ORDER BY ALL").fetchall(),
            "reconciliation": con.execute("SELECT * FROM reconciliation ORDER BY day").fetchall(),
        }


@pytest.fixture(scope="module")
def published(dataset, tmp_path_factory):
    db = tmp_path_factory.mktemp("out") / "revenue.duckdb"
    summary = run_pipeline(dataset, db)
    return db, summary


def test_counts_match_what_the_generator_planted(dataset, published):
    _, summary = published
    expected = json.loads((dataset / "manifest.json").read_text())["expected"]
    assert summary.status == "succeeded"
    assert summary.input_records == expected["input_records"]
    assert summary.accepted == expected["accepted"]
    assert summary.duplicates == expected["duplicates"]
    assert summary.quarantined_by_reason == expected["quarantined_by_reason"]
    assert summary.input_records == summary.accepted + summary.duplicates + summary.quarantined


def test_pipeline_equals_the_independent_sql_reference(dataset, published):
    db, _ = published
    con = duckdb.connect()
    compute_reference(con, str(dataset / "events" / "*.jsonl"), str(dataset / "reference"))
    con.execute(f"ATTACH '{db}' AS p (READ_ONLY)")
    for pipeline, reference in [("p.attributed_events", "ref_attributed_events")]:
        for a, b in ((pipeline, reference), (reference, pipeline)):
            diff = con.execute(
                f"SELECT {FACT_COLUMNS} FROM {a} EXCEPT SELECT {FACT_COLUMNS} FROM {b} LIMIT 5"
            ).fetchall()
            assert diff == [], f"rows of {a} not in {b}: {diff}"
    for view in VIEWS:
        for a, b in ((f"p.{view}", f"ref_{view}"), (f"ref_{view}", f"p.{view}")):
            diff = con.execute(f"SELECT * FROM {a} EXCEPT SELECT * FROM {b} LIMIT 5").fetchall()
            assert diff == [], f"rows of {a} not in {b}: {diff}"
    ref_counts = con.execute("SELECT reason, n FROM ref_quarantine_counts").fetchall()
    got = con.execute("SELECT reason, count(*) FROM p.quarantine GROUP BY reason").fetchall()
    assert sorted(ref_counts) == sorted(got)


def test_every_day_balances_and_both_views_tie_to_the_facts_to_the_cent(published):
    db, summary = published
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reconciliation WHERE NOT balanced").fetchall() == [
            (0,)
        ]
        facts, territory, manager = con.execute(
            "SELECT (SELECT sum(booked_revenue) FROM attributed_events),"
            " (SELECT sum(booked_revenue) FROM territory_revenue),"
            " (SELECT sum(booked_revenue) FROM account_manager_revenue)"
        ).fetchall()[0]
        statuses = dict(
            con.execute(
                "SELECT attribution_status, count(*) FROM attributed_events GROUP BY ALL"
            ).fetchall()
        )
    assert facts == territory == manager == summary.booked_revenue
    assert {"attributed", "unknown_account", "no_account_manager", "no_territory"} <= set(statuses)


def test_rerunning_the_same_input_changes_nothing(dataset, published, tmp_path):
    db = copy_database(published[0], tmp_path / "revenue.duckdb")
    before = snapshot(db)
    second = run_pipeline(dataset, db)
    assert second.status == "succeeded"
    assert second.accepted == 0
    assert second.duplicates == published[1].accepted + published[1].duplicates
    assert snapshot(db) == before
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM quarantine").fetchall() == [
            (published[1].quarantined,)
        ]
        assert con.execute("SELECT count(*) FROM pipeline_runs").fetchall() == [(2,)]


def test_late_events_for_published_days_are_added(dataset, tmp_path):
    db = tmp_path / "revenue.duckdb"
    first_file = sorted((dataset / "events").glob("*.jsonl"))[0]
    run_pipeline(dataset, db, events=f"events/{first_file.name}")
    late = run_pipeline(dataset, db)  # all files: the first one's events are duplicates now
    assert late.status == "succeeded" and late.accepted > 0
    together = tmp_path / "together.duckdb"
    run_pipeline(dataset, together)
    assert snapshot(db) == snapshot(together)


def test_parquet_input_gives_the_same_answer_as_the_sql_reference(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, events=3000, seed=5, bad_rate=0.02, event_format="parquet")
    db = tmp_path / "revenue.duckdb"
    summary = run_pipeline(data, db, events="events/*.parquet")
    assert summary.status == "succeeded"
    con = duckdb.connect()
    compute_reference(con, str(data / "events" / "*.parquet"), str(data / "reference"))
    con.execute(f"ATTACH '{db}' AS p (READ_ONLY)")
    for view in VIEWS:
        for a, b in ((f"p.{view}", f"ref_{view}"), (f"ref_{view}", f"p.{view}")):
            assert con.execute(f"SELECT * FROM {a} EXCEPT SELECT * FROM {b}").fetchall() == []
    assert con.execute("SELECT accepted, duplicates, quarantined FROM ref_counts").fetchall() == [
        (summary.accepted, summary.duplicates, summary.quarantined)
    ]


def test_rollup_at_the_root_plus_unassigned_equals_all_revenue_every_day(published):
    db, _ = published
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            """
            WITH roots AS (SELECT territory_id FROM territories
                           WHERE parent_territory_id IS NULL OR parent_territory_id = ''),
                 top AS (SELECT day, sum(booked_revenue) AS total FROM territory_revenue_rollup
                         WHERE territory_id IN (SELECT territory_id FROM roots)
                            OR territory_id = 'UNASSIGNED' GROUP BY day),
                 facts AS (SELECT day, sum(booked_revenue) AS total
                           FROM attributed_events GROUP BY day)
            SELECT count(*), count(*) FILTER (WHERE top.total IS DISTINCT FROM facts.total)
            FROM facts FULL JOIN top USING (day)
            """
        ).fetchall()
        [(days, mismatched)] = rows
        # every territory's rollup = its own revenue + its children's rollups
        not_additive = con.execute(
            """
            WITH own AS (SELECT territory_id, day, booked_revenue FROM territory_revenue),
                 children AS (
                     SELECT t.parent_territory_id AS territory_id, r.day,
                            sum(r.booked_revenue) AS total
                     FROM territory_revenue_rollup r JOIN territories t USING (territory_id)
                     WHERE t.parent_territory_id IS NOT NULL GROUP BY ALL)
            SELECT count(*) FROM territory_revenue_rollup r
            LEFT JOIN own o USING (territory_id, day)
            LEFT JOIN children c USING (territory_id, day)
            WHERE r.booked_revenue <> coalesce(o.booked_revenue, 0) + coalesce(c.total, 0)
            """
        ).fetchall()
    assert days > 0 and mismatched == 0
    assert not_additive == [(0,)]


def test_a_bi_connection_held_open_during_runs_neither_blocks_them_nor_misses_them(
    dataset, tmp_path
):
    """A read-only connection opened before the first run (Metabase keeps one for hours)
    stays open while two runs publish: no lock error either way, and it sees each run."""
    db = tmp_path / "revenue.duckdb"
    first_file = sorted((dataset / "events").glob("*.jsonl"))[0]
    first = run_pipeline(dataset, db, events=f"events/{first_file.name}")
    bi = duckdb.connect(str(db), read_only=True)
    try:
        def facts() -> int:
            return bi.execute("SELECT count(*) FROM attributed_events").fetchall()[0][0]

        assert facts() == first.accepted
        second = run_pipeline(dataset, db)  # all files: the first one's are duplicates
        assert second.status == "succeeded" and second.accepted > 0
        assert facts() == first.accepted + second.accepted
        unbalanced = bi.execute(
            "SELECT count(*) FROM reconciliation WHERE NOT balanced").fetchall()
        assert unbalanced == [(0,)]
        other = duckdb.connect(str(db), read_only=True)  # a second reader meanwhile
        assert other.execute("SELECT count(*) FROM attributed_events").fetchall() == [(facts(),)]
        other.close()
    finally:
        bi.close()
