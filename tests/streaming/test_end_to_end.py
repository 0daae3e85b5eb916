"""The whole streaming run (``pipelines.streaming.run``) on a stand-in source into a temp
DuckDB, and the deduplication trade-off once an event_id's state has expired."""

from __future__ import annotations

import datetime as dt

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines.io.streaming_sink import close_connections
from pipelines.streaming import build_streaming_graph, run
from tests.streaming.helpers import (
    Stream,
    event,
    every_record_kind,
    matches,
    pane_rows,
    query,
    settings,
    write_reference,
)


def test_stand_in_stream_runs_end_to_end_into_duckdb_and_closes_its_run(tmp_path):
    stream = every_record_kind()
    db = tmp_path / "out" / "revenue.duckdb"
    reference = write_reference(tmp_path / "reference")
    summary = run(
        [f"--reference={reference}", f"--db={db}", "--run_id=stream-e2e",
         "--reference_refresh=0", "--allowed_lateness=3d", "--max_batch_messages=50"],
        source=stream.end(),
    )
    assert (summary.status, summary.input_records, summary.accepted, summary.duplicates,
            summary.quarantined) == ("succeeded", 8, 5, 1, 2)
    assert summary.quarantined_by_reason == {"malformed": 1, "no_fx_rate": 1}
    assert summary.repaired_days == [dt.date(2026, 3, 1)]
    assert summary.unbalanced_days == []

    measures = "booked_revenue, won_deals, created_deals, pipeline_created, refunds"
    assert query(db, f"SELECT territory_id, day, {measures} FROM territory_revenue "
                     "ORDER BY 1") == [
        ("T-US-CA", "2026-03-01", "587.00", 3, 1, "1000.00", "0.00"),
        ("T-US-NY", "2026-03-01", "-50.00", 0, 0, "0.00", "50.00"),
    ]
    assert query(db, f"SELECT account_manager_id, {measures} FROM account_manager_revenue "
                     "ORDER BY 1") == [
        ("M1", "37.00", 2, 1, "1000.00", "0.00"),
        ("M2", "550.00", 1, 0, "0.00", "0.00"),
        ("M3", "-50.00", 0, 0, "0.00", "50.00"),
    ]
    assert query(db, "SELECT territory_id, booked_revenue FROM territory_revenue_rollup "
                     "ORDER BY 1") == [
        ("T-GLOBAL", "537.00"), ("T-US", "537.00"), ("T-US-CA", "587.00"),
        ("T-US-NY", "-50.00"),
    ]
    assert query(db, "SELECT * FROM reconciliation") == [
        ("2026-03-01", "537.00", "537.00", "537.00", True)
    ]
    assert query(db, "SELECT event_id, run_id, territory_manager_id FROM attributed_events "
                     "ORDER BY 1") == [
        ("e1", "stream-e2e", "TM-US"), ("e2", "stream-e2e", "TM-US"),
        ("e4", "stream-e2e", "TM-US"), ("e5", "stream-e2e", "TM-US"),
        ("e6", "stream-e2e", "TM-US"),
    ]
    assert query(db, "SELECT source, position, reason FROM quarantine ORDER BY position") == [
        ("test-stream", 3, "malformed"), ("test-stream", 4, "no_fx_rate"),
    ]
    assert query(db, "SELECT mode, input_records, accepted, duplicates, quarantined, status, "
                     "finished_at IS NOT NULL FROM pipeline_runs") == [
        ("stream", 8, 5, 1, 2, "succeeded", True)
    ]
    assert query(db, "SELECT count(*) FROM accounts") == [(2,)]  # the reference snapshot


def test_repeats_after_the_dedupe_state_expired_are_settled_by_the_sink_not_counted_twice(
    tmp_path,
):
    # Lateness 1 day, margin 0: e1's id is forgotten once the watermark passes 3 March.
    s = settings(tmp_path, allowed_lateness_seconds=86_400, dedupe_margin_seconds=0)
    stream = (
        Stream()
        .send(event("e1", "2026-03-01T10:00:00Z", "100.00"))
        .watermark("2026-03-02T00:00:01Z")
        .watermark("2026-03-03T00:00:02Z")
        .send(event("e1", "2026-03-01T10:00:00Z", "999.00"))  # different payload
        .watermark("2026-03-03T00:00:03Z")
        .send(event("e1", "2026-03-01T10:00:00Z", "100.00"))  # same payload
    )
    try:
        with TestPipeline(options=PipelineOptions(["--streaming"])) as p:
            out = build_streaming_graph(p, s, stream.end())
            assert_that(out["pane"], matches(pane_rows("territory_revenue"), [
                ("2026-03-01", "ON_TIME", 0, "T-US-CA", "2026-03-01", "100.00"),
            ]))
    finally:
        close_connections()
    assert query(s.db, "SELECT event_id, booked_revenue FROM attributed_events") == [
        ("e1", "100.00")
    ]
    assert query(s.db, "SELECT source, position, reason FROM quarantine") == [
        ("stand-in", 0, "conflicting_duplicate")
    ]
    assert query(s.db, "SELECT input_records, accepted, duplicates, quarantined "
                       "FROM pipeline_runs") == [(3, 1, 1, 1)]
    assert query(s.db, "SELECT booked_revenue FROM territory_revenue") == [("100.00",)]


def test_an_empty_stream_still_creates_the_tables_and_closes_its_run(tmp_path):
    db = tmp_path / "empty.duckdb"
    reference = write_reference(tmp_path / "reference")
    summary = run(
        [f"--reference={reference}", f"--db={db}", "--run_id=empty", "--reference_refresh=0"],
        source=Stream().end(),
    )
    assert (summary.status, summary.input_records, summary.accepted) == ("succeeded", 0, 0)
    assert query(db, "SELECT run_id, mode, status FROM pipeline_runs") == [
        ("empty", "stream", "succeeded")
    ]
    assert query(db, "SELECT count(*) FROM territory_revenue") == [(0,)]
