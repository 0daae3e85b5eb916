"""The DuckDB sink without Beam: pane upserts, idempotent facts, repair of unbalanced days."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import DuckDBPublisher
from pipelines.io.streaming_sink import StreamingSink, repair_days
from pipelines.rules.aggregate import VIEW_SCHEMAS, aggregate_view
from pipelines.transforms.windowed_views import Pane
from tests.streaming.helpers import epoch, fact, facts_table, query

DAY = "2026-03-01"
WINDOW = (int(epoch("2026-03-01T00:00:00Z") * 1e6), int(epoch("2026-03-02T00:00:00Z") * 1e6))


def pane(booked: str, index: int, timing: str = "EARLY", key: str = "T-US-CA") -> Pane:
    table = aggregate_view(facts_table([fact("x", booked, territory=key)]), "territory_revenue")
    return Pane("territory_revenue", *WINDOW, index, timing, False, table)


@pytest.fixture
def sink(tmp_path):
    s = StreamingSink(str(tmp_path / "r.duckdb"), "stream-1", source_label="pubsub://x")
    con = duckdb.connect(s.db_path)
    yield s, con
    con.close()


def territory_rows(con) -> list[tuple]:
    return [
        (k, str(d), str(b), w)
        for k, d, b, w in con.execute(
            "SELECT territory_id, day, booked_revenue, won_deals FROM territory_revenue ORDER BY 1"
        ).fetchall()
    ]


def test_a_refired_pane_replaces_its_windows_value_and_a_retry_or_stale_pane_changes_nothing(sink):
    s, con = sink
    s.write(con, [("pane", pane("100.00", 0))])
    assert territory_rows(con) == [("T-US-CA", DAY, "100.00", 1)]
    s.write(con, [("pane", pane("120.00", 1))])  # accumulating: the window's new total
    assert territory_rows(con) == [("T-US-CA", DAY, "120.00", 1)]
    s.write(con, [("pane", pane("120.00", 1))])  # the same pane again (a retried bundle)
    s.write(con, [("pane", pane("100.00", 0))])  # an older pane delivered late
    assert territory_rows(con) == [("T-US-CA", DAY, "120.00", 1)]
    s.write(con, [("pane", pane("150.00", 2, "ON_TIME"))])
    assert territory_rows(con) == [("T-US-CA", DAY, "150.00", 1)]


def test_panes_move_rows_published_by_another_run_by_their_difference_only(sink):
    s, con = sink
    s.prepare(con)
    con.execute(
        "INSERT INTO territory_revenue VALUES ('T-US-CA', DATE '2026-03-01', 1000, 3, 0, 0, 0, 0)"
    ).fetchall()
    s.write(con, [("pane", pane("100.00", 0))])
    s.write(con, [("pane", pane("150.00", 1))])
    assert territory_rows(con) == [("T-US-CA", DAY, "1150.00", 4)]


def test_facts_are_inserted_once_and_a_different_payload_for_a_published_id_is_quarantined(sink):
    s, con = sink
    first = s.write(con, [("facts", facts_table([fact("e1", "10.00"), fact("e2", "20.00")]))])
    assert (first.inserted_facts, first.duplicates, first.quarantined) == (2, 0, 0)
    again = s.write(con, [("facts", facts_table([fact("e1", "10.00"), fact("e2", "99.00")]))])
    assert (again.inserted_facts, again.duplicates, again.quarantined) == (0, 1, 1)
    assert [(e, str(b)) for e, b in con.execute(
        "SELECT event_id, booked_revenue FROM attributed_events ORDER BY 1").fetchall()] == [
        ("e1", "10.00"), ("e2", "20.00"),
    ]
    assert con.execute("SELECT source, position, reason FROM quarantine").fetchall() == [
        ("pubsub://x", 0, "conflicting_duplicate")
    ]
    assert con.execute("SELECT accepted, duplicates, quarantined FROM pipeline_runs").fetchall() \
        == [(2, 1, 1)]


def test_facts_of_a_closed_day_are_repaired_into_the_views_in_the_same_write(sink):
    s, con = sink
    s.write(con, [("facts", facts_table([fact("e1", "100.00")])), ("pane", pane("100.00", 0))])
    s.write(con, [("closed", dt.date(2026, 3, 1))])
    result = s.write(con, [("facts", facts_table([fact("late", "25.00", manager="M2")]))])
    assert result.repaired_days == [dt.date(2026, 3, 1)]
    assert territory_rows(con) == [("T-US-CA", DAY, "125.00", 2)]
    assert [(k, str(b)) for k, b in con.execute(
        "SELECT account_manager_id, booked_revenue FROM account_manager_revenue ORDER BY 1"
    ).fetchall()] == [("M1", "100.00"), ("M2", "25.00")]


def planted_database(path) -> None:
    """Facts of two days; 2 March reconciles, 1 March does not:
    the territory view misses a 50.00 event and the manager view books it to the wrong key."""
    con = duckdb.connect(str(path))
    try:
        con.execute("BEGIN").fetchall()
        DuckDBPublisher(path).ensure_schema(con)
        facts = facts_table([
            fact("a", "100.00", manager="M1"),
            fact("b", "50.00", manager="M2"),
            fact("c", "70.00", day="2026-03-02", manager="M1"),
        ])
        con.register("f", facts)
        con.execute("INSERT INTO attributed_events BY NAME SELECT * FROM f").fetchall()
        views = {
            "territory_revenue": [fact("a", "100.00"), fact("c", "70.00", day="2026-03-02")],
            "account_manager_revenue": [
                fact("a", "100.00", manager="M1"), fact("b", "50.00", manager="M1"),
                fact("c", "70.00", day="2026-03-02", manager="M1"),
            ],
        }
        for view, rows in views.items():
            con.register("v", aggregate_view(facts_table(rows), view))
            con.execute(f"INSERT INTO {view} SELECT * FROM v").fetchall()
            con.unregister("v")
        con.execute("COMMIT").fetchall()
    finally:
        con.close()


def test_repair_days_recomputes_only_the_unbalanced_day_from_the_facts(tmp_path):
    db = tmp_path / "planted.duckdb"
    planted_database(db)
    assert query(db, "SELECT day, balanced FROM reconciliation ORDER BY day") == [
        ("2026-03-01", False), ("2026-03-02", True),
    ]
    assert repair_days(db) == [dt.date(2026, 3, 1)]
    assert query(db, "SELECT territory_id, day, booked_revenue, won_deals FROM territory_revenue "
                     "ORDER BY day") == [
        ("T-US-CA", "2026-03-01", "150.00", 2), ("T-US-CA", "2026-03-02", "70.00", 1),
    ]
    assert query(db, "SELECT account_manager_id, day, booked_revenue FROM account_manager_revenue "
                     "ORDER BY day, 1") == [
        ("M1", "2026-03-01", "100.00"), ("M2", "2026-03-01", "50.00"),
        ("M1", "2026-03-02", "70.00"),
    ]
    assert query(db, "SELECT count(*) FILTER (WHERE NOT balanced) FROM reconciliation") == [(0,)]
    assert query(db, "SELECT day, repaired_by FROM view_repairs") == [
        ("2026-03-01", "revattr repair")
    ]
    assert repair_days(db) == []  # idempotent


def test_repair_finds_a_day_whose_total_balances_but_whose_keys_do_not(tmp_path):
    db = tmp_path / "keys.duckdb"
    planted_database(db)
    con = duckdb.connect(str(db))
    # Fix the territory total only: the day now "balances", the manager rows are still wrong.
    con.execute("UPDATE territory_revenue SET booked_revenue = 150, won_deals = 2 "
                "WHERE day = DATE '2026-03-01'").fetchall()
    con.close()
    assert query(db, "SELECT bool_and(balanced) FROM reconciliation") == [(True,)]
    assert repair_days(db) == [dt.date(2026, 3, 1)]
    assert query(db, "SELECT account_manager_id, booked_revenue FROM account_manager_revenue "
                     "WHERE day = DATE '2026-03-01' ORDER BY 1") == [
        ("M1", "100.00"), ("M2", "50.00"),
    ]


def test_repair_days_refuses_a_missing_or_foreign_database(tmp_path):
    with pytest.raises(UserError, match="database not found"):
        repair_days(tmp_path / "missing.duckdb")
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    with pytest.raises(UserError, match="not a revattr database"):
        repair_days(other)


def test_view_schemas_are_the_panes_shape():
    # A pane's table is a view table: the sink relies on that.
    assert set(VIEW_SCHEMAS) == {"territory_revenue", "account_manager_revenue"}
    assert pane("1.00", 0).table.schema == VIEW_SCHEMAS["territory_revenue"]



def test_the_sink_refuses_a_catalog_written_by_run_or_follow(tmp_path):
    from pipelines.errors import UserError
    from pipelines.io.publication import Publication
    from pipelines.io.streaming_sink import repair_days

    db = tmp_path / "revenue.duckdb"
    Publication(db).prepare()  # what `revattr run` leaves: views over Parquet parts
    with pytest.raises(UserError, match="catalog written by `revattr run`"):
        repair_days(db)
