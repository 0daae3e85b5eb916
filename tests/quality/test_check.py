"""``check_database``: the suites re-run on a published DuckDB file (read-only)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import DuckDBPublisher, RunInfo
from pipelines.io.staging import INPUT_COUNT_SCHEMA, write_part
from pipelines.quality.check import check_database
from pipelines.quality.suites import load_suite
from tests import quality as c


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A database with the clean data set published by the real publisher."""
    root = tmp_path_factory.mktemp("published")
    staging = root / "staging"
    facts = c.attributed_events()
    write_part(staging, "attributed_events", facts)
    write_part(staging, "inputs", pa.table({"source": ["events.jsonl"], "records": [10]},
                                           schema=INPUT_COUNT_SCHEMA))
    for view in ("territory_revenue", "account_manager_revenue"):
        write_part(staging, view, c.view(view))
    db = root / "revenue.duckdb"
    run = RunInfo(c.RUN_ID, "batch", dt.datetime(2026, 3, 3, tzinfo=dt.UTC))
    summary = DuckDBPublisher(db).publish(staging, run, c.reference())
    assert summary.status == "succeeded"
    return db


def failures(results: pa.Table) -> set[tuple[str, str]]:
    return {(r["stage"], r["expectation"]) for r in results.to_pylist() if not r["success"]}


def expected_rows() -> int:
    suites = ("enriched_events", "territory_revenue", "account_manager_revenue",
              "reconciliation", "reference")
    return sum(len(load_suite(s).expectations) for s in suites)


def test_a_clean_database_passes_every_suite(published):
    results = check_database(published)
    assert failures(results) == set()
    assert results.num_rows == expected_rows()
    assert set(results["stage"].to_pylist()) == {
        "attributed_events", "territory_revenue", "account_manager_revenue", "reconciliation",
        "reference"}


def test_a_tampered_view_fails_its_totals_and_the_reconciliation(published, tmp_path):
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(published.read_bytes())
    con = duckdb.connect(str(copy))
    con.execute("UPDATE territory_revenue SET booked_revenue = booked_revenue + 0.01 "
                "WHERE territory_id = 'DE' AND day = DATE '2026-03-02'").fetchall()
    con.close()
    assert failures(check_database(copy)) == {("territory_revenue", "totals_match_facts"),
                                              ("reconciliation", "every_day_balanced")}


def test_reference_dir_is_checked_instead_of_the_snapshot(published, tmp_path):
    reference = c.reference()
    reference["account_assignments"] = c.add_rows(reference["account_assignments"], [
        {"account_id": "A2", "account_manager_id": "P6",
         "valid_from": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)}])
    for name, table in reference.items():
        pq.write_table(table, tmp_path / f"{name}.parquet")
    assert failures(check_database(published, str(tmp_path))) == {
        ("reference", "account_assignments_no_overlap")}


def test_parameters_reach_their_suite(published):
    results = check_database(published, parameters={"enriched_events": {
        "unassigned_share_max": 0.05}})
    assert failures(results) == {("attributed_events", "unassigned_territory_share"),
                                 ("attributed_events", "unassigned_account_manager_share")}


def test_the_database_stays_usable_by_a_writer_afterwards(published):
    check_database(published)
    con = duckdb.connect(str(published))  # no lock left behind
    assert con.execute("SELECT count(*) FROM attributed_events").fetchall() == [(10,)]
    con.close()


def test_missing_database_or_tables_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_database(tmp_path / "nope.duckdb")
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(UserError, match="has no"):
        check_database(empty)


def test_money_stays_exact_when_read_back(published):
    con = duckdb.connect(str(published), read_only=True)
    total = con.execute("SELECT sum(booked_revenue) FROM attributed_events").fetchall()[0][0]
    con.close()
    assert Decimal(total) == Decimal("124.50")
