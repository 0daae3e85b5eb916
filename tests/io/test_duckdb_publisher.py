"""Publishing staged outputs: atomic, additive for late data, checked before commit."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import duckdb
import pyarrow as pa
import pytest

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import DuckDBPublisher, RunInfo
from pipelines.io.staging import INPUT_COUNT_SCHEMA, write_part
from pipelines.rules.aggregate import aggregate_view
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from schemas.reference import REFERENCE_SCHEMAS
from schemas.rejects import REJECT_SCHEMA
from tests.utils import fact_row

REFERENCE = {name: schema.empty_table() for name, schema in REFERENCE_SCHEMAS.items()}


def fact(event_id: str, booked: str, day: str = "2026-03-01", territory: str = "T1") -> dict:
    return fact_row(event_id, booked, day, deal_id="D", account_id="A",
                    account_manager_id="AM1", territory_id=territory)


def stage(
    root,
    facts: list[dict],
    inputs: int | None = None,
    rejects: list[dict] = (),
    view_facts: list[dict] | None = None,
) -> None:
    table = pa.Table.from_pylist(facts, schema=ATTRIBUTED_EVENTS_SCHEMA)
    write_part(root, "attributed_events", table.select(ATTRIBUTED_EVENTS_SCHEMA.names))
    source = table if view_facts is None else pa.Table.from_pylist(view_facts, schema=table.schema)
    for view in ("territory_revenue", "account_manager_revenue"):
        write_part(root, view, aggregate_view(source, view))
    write_part(root, "quarantine", pa.Table.from_pylist(list(rejects), schema=REJECT_SCHEMA))
    count = len(facts) + len(rejects) if inputs is None else inputs
    write_part(
        root, "inputs", pa.table({"source": ["f"], "records": [count]}, schema=INPUT_COUNT_SCHEMA)
    )


def publish(db, staging, run_id="r1"):
    info = RunInfo(run_id, "batch", dt.datetime(2026, 3, 5, tzinfo=dt.UTC))
    return DuckDBPublisher(db).publish(staging, info, REFERENCE)


def query(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_publish_writes_facts_views_run_and_checks(tmp_path):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "10.00"), fact("e2", "5.25", territory="T2")])
    summary = publish(db, tmp_path / "s1")
    assert summary.status == "succeeded" and summary.accepted == 2
    assert summary.booked_revenue == Decimal("15.25")
    assert query(db, "SELECT territory_id, booked_revenue FROM territory_revenue ORDER BY 1") == [
        ("T1", Decimal("10.00")),
        ("T2", Decimal("5.25")),
    ]
    assert query(db, "SELECT balanced FROM reconciliation") == [(True,)]
    assert query(db, "SELECT status, input_records, accepted FROM pipeline_runs") == [
        ("succeeded", 2, 2)
    ]
    assert query(db, "SELECT count(*) FROM dq_results WHERE success") == [(2,)]


def test_late_event_for_a_published_day_adds_to_that_day(tmp_path):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "10.00")])
    publish(db, tmp_path / "s1")
    stage(tmp_path / "s2", [fact("late", "2.50")])
    publish(db, tmp_path / "s2", run_id="r2")
    assert query(db, "SELECT booked_revenue, won_deals FROM territory_revenue") == [
        (Decimal("12.50"), 2)
    ]
    assert query(db, "SELECT count(*) FROM reconciliation WHERE NOT balanced") == [(0,)]


def test_unbalanced_run_is_rolled_back_and_recorded(tmp_path):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "10.00")])
    publish(db, tmp_path / "s1")
    # the views of this run disagree with its facts by one cent
    stage(tmp_path / "s2", [fact("e2", "1.00")], view_facts=[fact("e2", "1.01")])
    summary = publish(db, tmp_path / "s2", run_id="r2")
    assert summary.status == "unbalanced" and summary.unbalanced_days == [dt.date(2026, 3, 1)]
    assert query(db, "SELECT event_id FROM attributed_events") == [("e1",)]
    assert query(db, "SELECT booked_revenue FROM territory_revenue") == [(Decimal("10.00"),)]
    assert query(db, "SELECT run_id, status FROM pipeline_runs ORDER BY run_id") == [
        ("r1", "succeeded"),
        ("r2", "unbalanced"),
    ]
    assert query(db, "SELECT expectation FROM dq_results WHERE NOT success") == [
        ("touched_days_balanced",)
    ]


def test_records_not_accounted_for_fail_the_run(tmp_path):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "10.00")], inputs=3)
    summary = publish(db, tmp_path / "s1")
    assert summary.status == "failed_checks"
    assert query(db, "SELECT count(*) FROM attributed_events") == [(0,)]


def test_quarantining_the_same_record_twice_keeps_one_row(tmp_path):
    db = tmp_path / "out.duckdb"
    bad = {"source": "f.jsonl", "position": 7, "raw": "{", "reason": "malformed", "detail": "x"}
    for run in ("r1", "r2"):
        stage(tmp_path / run, [], rejects=[bad])
        assert publish(db, tmp_path / run, run_id=run).quarantined == 1
    assert query(db, "SELECT run_id, reason FROM quarantine") == [("r1", "malformed")]


@pytest.mark.parametrize(
    "month, day, fiscal_year, quarter",
    [
        (1, "2026-01-15", 2026, 1),
        (2, "2026-01-15", 2026, 4),
        (2, "2026-02-01", 2027, 1),
        (4, "2026-03-31", 2026, 4),
        (4, "2026-04-01", 2027, 1),
    ],
)
def test_quarterly_view_uses_the_fiscal_year_start_month(
    tmp_path, month, day, fiscal_year, quarter
):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "1.00", day=day)])
    info = RunInfo("r1", "batch", dt.datetime(2026, 3, 5, tzinfo=dt.UTC))
    DuckDBPublisher(db, fiscal_year_start_month=month).publish(tmp_path / "s1", info, REFERENCE)
    assert query(db, "SELECT fiscal_year, fiscal_quarter FROM territory_revenue_quarterly") == [
        (fiscal_year, quarter)
    ]


def test_an_event_id_published_meanwhile_by_another_run_is_refused(tmp_path):
    db = tmp_path / "out.duckdb"
    stage(tmp_path / "s1", [fact("e1", "10.00")])
    publish(db, tmp_path / "s1")
    stage(tmp_path / "s2", [fact("e1", "10.00")])  # deduplication would have caught it
    with pytest.raises(UserError, match="published concurrently"):
        publish(db, tmp_path / "s2", run_id="r2")
    assert query(db, "SELECT count(*) FROM attributed_events") == [(1,)]
    assert query(db, "SELECT booked_revenue FROM territory_revenue") == [(Decimal("10.00"),)]
