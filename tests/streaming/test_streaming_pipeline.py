"""The streaming graph on a TestStream stand-in source, event time under the test's control.

Each test sends JSON messages stamped with their event_time, moves the watermark
and processing time, and asserts the exact panes the views fired (window day,
timing, pane index, key, row day, booked revenue) and/or the final DuckDB rows.
Defaults: UTC days, early panes every 10 s of processing time, allowed lateness 3 days.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines.io.streaming_sink import close_connections
from pipelines.streaming import StreamSettings, build_streaming_graph
from tests.streaming.helpers import (
    Stream,
    event,
    fact_rows,
    matches,
    pane_rows,
    query,
    settings,
)

TERRITORY = pane_rows("territory_revenue")
MANAGER = pane_rows("account_manager_revenue")


def run_graph(
    s: StreamSettings, stream: Stream, checks: Callable[[dict], None] | None = None
) -> None:
    try:
        with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
            outputs = build_streaming_graph(p, s, stream.end())
            if checks:
                checks(outputs)
    finally:
        close_connections()


def test_on_time_events_fire_one_on_time_pane_per_view_with_the_day_total(tmp_path):
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("e1", "2026-03-01T10:00:00Z", "100.00"))
        .send(event("e2", "2026-03-01T11:00:00Z", "50.00", account_id="A2"))
        .watermark("2026-03-02T00:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "100.00"),
            ("2026-03-01", "ON_TIME", 0, "T-US-NY", "2026-03-01", "50.00"),
        ]), label="TerritoryPanes")
        assert_that(out["pane"], matches(MANAGER, [
            ("2026-03-01", "ON_TIME", 0, "M1", "2026-03-01", "100.00"),
            ("2026-03-01", "ON_TIME", 0, "M3", "2026-03-01", "50.00"),
        ]), label="ManagerPanes")

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT territory_id, day, booked_revenue, won_deals "
                       "FROM territory_revenue ORDER BY ALL") == [
        ("T-US-CA", "2026-03-01", "100.00", 1),
        ("T-US-NY", "2026-03-01", "50.00", 1),
    ]
    assert query(s.db, "SELECT * FROM reconciliation") == [
        ("2026-03-01", "150.00", "150.00", "150.00", True)
    ]


def test_early_panes_fire_every_n_seconds_of_processing_time_and_accumulate(tmp_path):
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("e1", "2026-03-01T09:00:00Z", "100.00"))
        .wait(11)
        .send(event("e2", "2026-03-01T10:00:00Z", "20.00"))
        .wait(11)
        .watermark("2026-03-02T00:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "EARLY", 0, "T-US-CA", "2026-03-01", "100.00"),
            ("2026-03-01", "EARLY", 1, "T-US-CA", "2026-03-01", "120.00"),
            ("2026-03-01", "ON_TIME", 2, "T-US-CA", "2026-03-01", "120.00"),
        ]))

    run_graph(s, stream, checks)
    # Re-fired panes replace their window's value: 120, not 100 + 120 + 120.
    assert query(s.db, "SELECT territory_id, booked_revenue, won_deals FROM territory_revenue") == [
        ("T-US-CA", "120.00", 2)
    ]
    assert query(s.db, "SELECT view, view_key, pane_index, pane_timing, booked_revenue "
                       "FROM stream_view_panes ORDER BY view") == [
        ("account_manager_revenue", "M1", 2, "ON_TIME", "120.00"),
        ("territory_revenue", "T-US-CA", 2, "ON_TIME", "120.00"),
    ]


def test_late_event_within_allowed_lateness_fires_a_late_pane_with_the_accumulated_total(
    tmp_path,
):
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("e1", "2026-03-01T10:00:00Z", "100.00"))
        .watermark("2026-03-02T01:00:00Z")
        .send(event("e3", "2026-03-01T15:00:00Z", "7.00"))
        .send(event("e4", "2026-03-01T16:00:00Z", "3.00"))
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "100.00"),
            ("2026-03-01", "LATE", 1, "T-US-CA", "2026-03-01", "107.00"),
            ("2026-03-01", "LATE", 2, "T-US-CA", "2026-03-01", "110.00"),
        ]))

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT territory_id, booked_revenue, won_deals FROM territory_revenue") == [
        ("T-US-CA", "110.00", 3)
    ]
    assert query(s.db, "SELECT count(*) FROM view_repairs") == [(0,)]  # panes sufficed


def test_event_later_than_allowed_lateness_fires_no_pane_but_is_written_and_repaired_into_views(
    tmp_path,
):
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("e1", "2026-03-01T10:00:00Z", "100.00"))
        .watermark("2026-03-02T01:00:00Z")
        # The window [1 Mar, 2 Mar) accepts data until the watermark passes 5 Mar 00:00.
        .watermark("2026-03-05T00:00:01Z")
        .send(event("e5", "2026-03-01T17:00:00Z", "25.00"))
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "100.00"),
        ]), label="NoPaneForTheTooLateEvent")
        assert_that(out["facts"], matches(fact_rows, [
            ("e1", "M1", "100.00"), ("e5", "M2", "25.00"),
        ]), label="TooLateEventIsAFact")

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT event_id FROM attributed_events ORDER BY 1") == [("e1",), ("e5",)]
    assert query(s.db, "SELECT territory_id, booked_revenue, won_deals FROM territory_revenue") == [
        ("T-US-CA", "125.00", 2)
    ]
    assert query(s.db, "SELECT account_manager_id, booked_revenue FROM account_manager_revenue "
                       "ORDER BY 1") == [("M1", "100.00"), ("M2", "25.00")]
    assert query(s.db, "SELECT DISTINCT day FROM view_repairs") == [("2026-03-01",)]
    assert query(s.db, "SELECT balanced FROM reconciliation") == [(True,)]


def test_out_of_order_events_land_in_their_own_days_windows(tmp_path):
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("c", "2026-03-03T08:00:00Z", "30.00"))
        .send(event("a", "2026-03-01T08:00:00Z", "10.00"))
        .send(event("b", "2026-03-02T08:00:00Z", "20.00"))
        .watermark("2026-03-03T12:00:00Z")  # 1 and 2 March close, 3 March still open
        .send(event("b2", "2026-03-02T09:00:00Z", "4.00"))
        .watermark("2026-03-04T00:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "10.00"),
            ("2026-03-02", "ON_TIME", 0, "T-US-CA", "2026-03-02", "20.00"),
            ("2026-03-02", "LATE", 1, "T-US-CA", "2026-03-02", "24.00"),
            ("2026-03-03", "ON_TIME", 0, "T-US-CA", "2026-03-03", "30.00"),
        ]))

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT day, booked_revenue FROM territory_revenue ORDER BY day") == [
        ("2026-03-01", "10.00"), ("2026-03-02", "24.00"), ("2026-03-03", "30.00"),
    ]


def test_duplicate_arriving_after_an_early_pane_is_counted_once_and_a_conflict_quarantined(
    tmp_path,
):
    s = settings(tmp_path)
    first = event("e1", "2026-03-01T09:00:00Z", "100.00")
    stream = (
        Stream()
        .send(first)
        .wait(11)
        .send(first, event("e1", "2026-03-01T09:00:00Z", "999.00"),
              event("e2", "2026-03-01T10:00:00Z", "5.00"))
        .wait(11)
        .watermark("2026-03-02T00:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "EARLY", 0, "T-US-CA", "2026-03-01", "100.00"),
            ("2026-03-01", "EARLY", 1, "T-US-CA", "2026-03-01", "105.00"),
            ("2026-03-01", "ON_TIME", 2, "T-US-CA", "2026-03-01", "105.00"),
        ]))

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT event_id, booked_revenue FROM attributed_events ORDER BY 1") == [
        ("e1", "100.00"), ("e2", "5.00"),
    ]
    assert query(s.db, "SELECT source, position, reason FROM quarantine") == [
        ("test-stream", 3, "conflicting_duplicate")
    ]
    assert query(s.db, "SELECT input_records, accepted, duplicates, quarantined "
                       "FROM pipeline_runs") == [(4, 2, 1, 1)]


def test_reassignment_between_two_events_of_one_day_splits_the_manager_view_only(tmp_path):
    # A1 is M1's until 12:00 on 1 March, M2's from then on (valid_from inclusive).
    s = settings(tmp_path)
    stream = (
        Stream()
        .send(event("before", "2026-03-01T11:59:59Z", "100.00"))
        .send(event("after", "2026-03-01T12:00:00Z", "40.00"))
        .watermark("2026-03-02T00:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(MANAGER, [
            ("2026-03-01", "ON_TIME", 0, "M1", "2026-03-01", "100.00"),
            ("2026-03-01", "ON_TIME", 0, "M2", "2026-03-01", "40.00"),
        ]), label="Managers")
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "140.00"),
        ]), label="Territory")
        assert_that(out["facts"], matches(fact_rows, [
            ("after", "M2", "40.00"), ("before", "M1", "100.00"),
        ]), label="Facts")

    run_graph(s, stream, checks)


@pytest.mark.parametrize("timezone", ["America/New_York"])
def test_reporting_timezone_windows_are_local_days_and_rows_keep_utc_days(tmp_path, timezone):
    s = settings(tmp_path, reporting_timezone=timezone)
    stream = (
        Stream()
        .send(event("morning", "2026-03-01T12:00:00Z", "50.00", account_id="A2"))  # 07:00 EST
        .send(event("night", "2026-03-02T03:00:00Z", "100.00", account_id="A2"))  # 22:00 EST
        # The local day 1 March ends at 2 March 05:00 UTC.
        .watermark("2026-03-02T04:00:00Z")
        .wait(1)
        .watermark("2026-03-02T05:00:01Z")
    )

    def checks(out):
        assert_that(out["pane"], matches(TERRITORY, [
            ("2026-03-01", "ON_TIME", 0, "T-US-NY", "2026-03-01", "50.00"),
            ("2026-03-01", "ON_TIME", 0, "T-US-NY", "2026-03-02", "100.00"),
        ]))

    run_graph(s, stream, checks)
    assert query(s.db, "SELECT territory_id, day, booked_revenue FROM territory_revenue "
                       "ORDER BY day") == [
        ("T-US-NY", "2026-03-01", "50.00"), ("T-US-NY", "2026-03-02", "100.00"),
    ]
