"""The streamed sample data set ends in the same tables as the batch run over its files."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from apache_beam.testing import test_stream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from pipelines.batch import run as run_batch
from pipelines.generate import generate_dataset
from pipelines.io.messages import message
from pipelines.streaming import run as run_stream
from tests.streaming.helpers import epoch

CHUNK = 500


def arrival_stream(files: list[Path]) -> tuple[test_stream.TestStream, int]:
    """The files' lines in arrival order, in chunks; after each chunk processing time
    passes (early panes) and the watermark follows the newest event time minus 2 hours,
    so events that arrive days late are late, some later than the allowed lateness."""
    stream = test_stream.TestStream().advance_watermark_to(Timestamp(0))
    newest = watermark = 0.0
    pending: list[TimestampedValue] = []
    count = 0

    def flush() -> None:
        nonlocal watermark
        stream.add_elements(list(pending))
        pending.clear()
        stream.advance_processing_time(61)
        if newest - 7200 > watermark:
            watermark = newest - 7200
            stream.advance_watermark_to(Timestamp(watermark))

    for path in files:
        for number, line in enumerate(path.read_text().split("\n"), start=1):
            if not line.strip():
                continue
            try:
                stamp = epoch(json.loads(line)["event_time"])
            except Exception:  # bad lines: quarantined; the stamp does not matter
                stamp = watermark
            newest = max(newest, stamp)
            pending.append(TimestampedValue(message(str(path), number, line), stamp))
            count += 1
            if len(pending) == CHUNK:
                flush()
    flush()
    return stream.advance_watermark_to_infinity(), count


def rows(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return sorted(con.execute(sql).fetchall(), key=repr)
    finally:
        con.close()


@pytest.mark.slow
def test_streamed_sample_ends_in_the_same_facts_views_and_quarantine_as_the_batch_run(tmp_path):
    generate_dataset(tmp_path / "sample", events=2000, seed=11, bad_rate=0.02)
    files = sorted((tmp_path / "sample" / "events").glob("*.jsonl"))
    reference = tmp_path / "sample" / "reference"
    batch_db, stream_db = tmp_path / "batch.duckdb", tmp_path / "stream.duckdb"
    run_batch([f"--events={tmp_path / 'sample' / 'events'}", f"--reference={reference}",
               f"--db={batch_db}", "--checks=false"])
    stream, messages = arrival_stream(files)
    summary = run_stream([f"--reference={reference}", f"--db={stream_db}",
                          "--reference_refresh=0", "--early_firing_seconds=60"], source=stream)

    assert summary.status == "succeeded"
    assert summary.input_records == messages
    assert summary.repaired_days  # some events came later than the allowed lateness
    for sql in (
        "SELECT * EXCLUDE (run_id) FROM attributed_events",
        "SELECT * FROM territory_revenue",
        "SELECT * FROM account_manager_revenue",
        "SELECT * FROM reconciliation",
        "SELECT reason, count(*) FROM quarantine GROUP BY reason",
    ):
        assert rows(stream_db, sql) == rows(batch_db, sql), sql
    assert rows(stream_db, "SELECT accepted, duplicates, quarantined FROM pipeline_runs") == \
        rows(batch_db, "SELECT accepted, duplicates, quarantined FROM pipeline_runs")
    # Same quarantined records, except for conflicting repeats that arrived after their
    # event_id had left the dedupe state: the sink quarantines those, without the
    # message's lineage (the documented trade-off of the state's expiry).
    lineage = "SELECT source, position, reason FROM quarantine"
    by_sink = rows(stream_db, lineage + " WHERE source = 'stand-in'")
    assert all(r == ("stand-in", 0, "conflicting_duplicate") for r in by_sink)
    missing = set(rows(batch_db, lineage)) - set(rows(stream_db, lineage))
    assert set(rows(stream_db, lineage)) - set(by_sink) <= set(rows(batch_db, lineage))
    assert len(missing) == len(by_sink)
    assert {r[2] for r in missing} <= {"conflicting_duplicate"}
