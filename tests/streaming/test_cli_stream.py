"""``revattr stream`` and ``revattr repair`` on the command line."""

from __future__ import annotations

from typer.testing import CliRunner

from pipelines.cli import app
from tests.streaming.helpers import query, write_reference
from tests.streaming.test_streaming_sink import planted_database

runner = CliRunner()


def test_stream_help_documents_the_windowing_flags():
    result = runner.invoke(app, ["stream", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--source", "--allowed-lateness", "--early-firing-seconds",
                 "--reference-refresh", "--expansion-service", "--reporting-timezone"):
        assert flag in result.output


def test_stream_with_an_unknown_source_exits_2_with_the_accepted_forms(tmp_path):
    reference = write_reference(tmp_path / "reference")
    result = runner.invoke(
        app, ["stream", "--source", "file:///tmp/events.jsonl", "--reference", str(reference)]
    )
    assert result.exit_code == 2
    assert "unknown stream source" in result.output
    assert "kafka://HOST:PORT/TOPIC" in result.output


def test_stream_with_a_bad_lateness_exits_2(tmp_path):
    reference = write_reference(tmp_path / "reference")
    result = runner.invoke(app, [
        "stream", "--source", "pubsub://projects/revattr-demo/subscriptions/deals",
        "--reference", str(reference), "--allowed-lateness", "three days",
    ])
    assert result.exit_code == 2
    assert "expected a duration" in result.output


def test_repair_fixes_the_planted_day_then_finds_nothing_to_do(tmp_path):
    db = tmp_path / "planted.duckdb"
    planted_database(db)
    first = runner.invoke(app, ["repair", "--db", str(db)])
    assert first.exit_code == 0
    assert "repaired 1 day(s)" in first.output and "2026-03-01" in first.output
    assert query(db, "SELECT bool_and(balanced) FROM reconciliation") == [(True,)]
    second = runner.invoke(app, ["repair", "--db", str(db)])
    assert second.exit_code == 0
    assert "every day reconciles" in second.output
