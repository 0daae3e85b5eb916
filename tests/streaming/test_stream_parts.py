"""The parts sink (``--sink parts``): bundles written as Parquet parts through Beam's
FileSystems, applied to DuckDB by the finaliser exactly once, ending in the same
published tables as the DuckDB sink on the same stream."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from typer.testing import CliRunner

from pipelines.cli_stream import stream_finalise_command
from pipelines.errors import UserError
from pipelines.io import stream_parts
from pipelines.io.reference_loader import load_reference
from pipelines.io.stream_parts import (
    committed_parts,
    counted_messages,
    decode_part,
    encode_part,
    finalise_parts,
    read_part,
    write_part,
)
from pipelines.io.streaming_sink import StreamingSink, finish_run
from pipelines.rules.aggregate import VIEW_SCHEMAS
from pipelines.streaming import build_streaming_graph, run, settings_from
from pipelines.transforms.windowed_views import Pane
from schemas.rejects import REJECT_SCHEMA
from tests.streaming.helpers import (
    Stream,
    every_record_kind,
    fact,
    facts_table,
    query,
    settings,
    write_reference,
)

ROOT = Path(__file__).resolve().parents[2]
RUN = "parts-run"

# What both sinks publish; compared row for row.
PUBLISHED = {
    "facts": "SELECT * FROM attributed_events",
    "territory_revenue": "SELECT * FROM territory_revenue",
    "account_manager_revenue": "SELECT * FROM account_manager_revenue",
    "reconciliation": "SELECT * FROM reconciliation",
    "quarantine": "SELECT run_id, source, position, raw, reason, detail FROM quarantine",
    "pipeline_runs": "SELECT run_id, mode, input_records, accepted, duplicates, quarantined, "
                     "status FROM pipeline_runs",
    "stream_view_panes": "SELECT * EXCLUDE (updated_at) FROM stream_view_panes",
    "closed_days": "SELECT run_id, day FROM stream_closed_days",
    "repaired_days": "SELECT DISTINCT day, repaired_by FROM view_repairs",
    "accounts": "SELECT * FROM accounts",
}


def published(db: Path) -> dict[str, list[tuple]]:
    return {name: sorted(query(db, sql), key=repr) for name, sql in PUBLISHED.items()}


def scenario() -> Stream:
    """Every kind of sink record, with a refund on a second day."""
    return every_record_kind(refund_time="2026-03-02T12:00:00Z")


def stream_run(tmp: Path, sink: str) -> Path:
    db = tmp / f"{sink}.duckdb"
    summary = run(
        [f"--reference={write_reference(tmp / 'reference')}", f"--db={db}", f"--run_id={RUN}",
         "--reference_refresh=0", f"--sink={sink}", f"--parts_dir={tmp / 'parts'}",
         "--finalise_interval=1"],
        source=scenario().end(),
    )
    assert summary.status == "succeeded"
    return db


@pytest.fixture(scope="module")
def both_sinks(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(DuckDB sink's db, parts sink's db, parts dir) of the same stream."""
    tmp = tmp_path_factory.mktemp("sinks")
    return stream_run(tmp, "duckdb"), stream_run(tmp, "parts"), tmp / "parts"


def test_parts_sink_and_finaliser_publish_the_same_tables_as_the_duckdb_sink(both_sinks):
    duckdb_db, parts_db, parts_dir = both_sinks
    expected = published(duckdb_db)
    assert published(parts_db) == expected
    # The scenario exercised what matters: a repair, both quarantine reasons, a duplicate.
    assert expected["repaired_days"] == [("2026-03-01", f"stream {RUN}")]
    assert expected["pipeline_runs"] == [(RUN, "stream", 8, 5, 1, 2, "succeeded")]
    assert {row[4] for row in expected["quarantine"]} == {"malformed", "no_fx_rate"}
    parts = committed_parts(str(parts_dir))
    assert parts and {run_id for run_id, _, _ in parts} == {RUN}
    assert query(parts_db, "SELECT count(*), bool_and(status = 'applied') "
                           "FROM stream_applied_parts") == [(len(parts), True)]


def test_finalising_all_parts_afterwards_into_a_fresh_store_gives_the_same_tables(
    both_sinks, tmp_path,
):
    duckdb_db, _, parts_dir = both_sinks
    db = tmp_path / "fresh.duckdb"
    result = finalise_parts(str(parts_dir), db)
    assert result.runs == [RUN] and not result.duplicates
    finish_run(db, RUN)
    assert published(db) == published(duckdb_db)


def test_running_the_finaliser_again_changes_nothing(both_sinks, tmp_path):
    _, parts_db, parts_dir = both_sinks
    db = tmp_path / "again.duckdb"
    shutil.copy(parts_db, db)
    before = published(db)
    ledger = query(db, "SELECT * FROM stream_applied_parts")
    for _ in range(2):
        result = finalise_parts(str(parts_dir), db)
        assert result.applied == [] and result.duplicates == []
    assert published(db) == before
    assert query(db, "SELECT * FROM stream_applied_parts") == ledger


# --------------------------------------------------------------------------- parts, directly


def messages(*positions: int) -> pa.Table:
    """The parts graph's message count of a micro-batch of these positions."""
    raw = pa.table({"source": ["test-stream"] * len(positions), "position": list(positions)})
    return counted_messages(raw.cast(pa.schema([("source", pa.string()),
                                                ("position", pa.int64())])))


def records(*event_ids: str, first: int = 1) -> list[tuple[str, object]]:
    """One micro-batch's records: its message count and its facts."""
    facts = facts_table([fact(e, "10.00") for e in event_ids])
    return [("inputs", messages(*range(first, first + len(event_ids)))), ("facts", facts)]


def counts(db: Path) -> list[tuple]:
    return query(db, "SELECT input_records, accepted, duplicates, quarantined FROM pipeline_runs")


def test_every_kind_of_sink_record_reads_back_from_its_part_exactly(tmp_path):
    reference = load_reference(str(write_reference(tmp_path / "reference")))
    schema = VIEW_SCHEMAS["territory_revenue"]
    row = {f.name: Decimal("12.50") if pa.types.is_decimal(f.type) else 1 for f in schema}
    row.update(territory_id="T-US-CA", day=dt.date(2026, 3, 1))
    pane = Pane("territory_revenue", 1_000, 2_000, 3, "LATE", False,
                pa.Table.from_pylist([row], schema=schema))
    empty_pane = pane._replace(view="account_manager_revenue", index=0,
                               table=VIEW_SCHEMAS["account_manager_revenue"].empty_table())
    sent = [
        *records("e1", "e2"),
        ("quarantine", REJECT_SCHEMA.empty_table()),
        ("closed", dt.date(2026, 3, 1)),
        ("pane", pane),
        ("pane", empty_pane),
        ("reference", reference),
    ]
    path = write_part(str(tmp_path / "parts"), RUN, "src", sent)
    part, _ = read_part(path)
    assert (part.run_id, part.source_label) == (RUN, "src")
    assert [kind for kind, _ in part.records] == [kind for kind, _ in sent]
    for (kind, value), (_, back) in zip(sent, part.records, strict=True):
        if isinstance(value, Pane):
            assert back[:6] == value[:6] and back.table.equals(value.table), kind
        elif isinstance(value, dict):
            assert back.keys() == value.keys()
            assert all(back[name].equals(table) for name, table in value.items())
        elif isinstance(value, pa.Table):
            assert back.equals(value), kind
        else:
            assert back == value
    # Plain Parquet: any engine reads the payloads.
    facts = pq.read_table(path).filter(pa.compute.equal(pa.compute.field("kind"), "facts"))
    assert sorted(facts["facts"].combine_chunks().field("event_id").to_pylist()) == ["e1", "e2"]


def test_a_retried_bundle_writes_the_same_part_and_is_counted_once(tmp_path):
    parts_dir, db = str(tmp_path / "parts"), tmp_path / "store.duckdb"
    write = stream_parts._WriteParts(parts_dir, RUN, "src")
    for _attempt in range(2):  # the runner retries the bundle with the same input
        write.start_bundle()
        for record in records("e1", "e2"):
            write.process(record)
        write.finish_bundle()
    assert len(committed_parts(parts_dir)) == 1
    assert len(finalise_parts(parts_dir, db).applied) == 1
    assert counts(db) == [(2, 2, 0, 0)]
    # A retry after the finaliser applied the part: replaced by the same bytes, skipped.
    write.start_bundle()
    for record in records("e1", "e2"):
        write.process(record)
    write.finish_bundle()
    assert finalise_parts(parts_dir, db).applied == []
    assert counts(db) == [(2, 2, 0, 0)]


def test_a_part_left_in_tmp_by_a_crash_before_its_rename_is_never_applied(tmp_path):
    parts_dir, db = tmp_path / "parts", tmp_path / "store.duckdb"
    write_part(str(parts_dir), RUN, "src", records("e1"))
    orphan = parts_dir / f"run={RUN}" / "_tmp" / "0123-crashed.parquet"
    orphan.write_bytes(stream_parts.part_bytes(records("e2", first=2), RUN, "src"))
    assert len(finalise_parts(str(parts_dir), db).applied) == 1
    assert query(db, "SELECT event_id FROM attributed_events") == [("e1",)]


def test_a_copied_part_is_recorded_as_a_duplicate_and_not_applied(tmp_path):
    parts_dir, db = tmp_path / "parts", tmp_path / "store.duckdb"
    part = Path(write_part(str(parts_dir), RUN, "src", records("e1", "e2")))
    shutil.copy(part, part.with_name("99990101T000000000000Z-copy.parquet"))
    result = finalise_parts(str(parts_dir), db)
    assert (len(result.applied), len(result.duplicates)) == (1, 1)
    assert counts(db) == [(2, 2, 0, 0)]
    assert query(db, "SELECT status, count(*) FROM stream_applied_parts GROUP BY 1 "
                     "ORDER BY 1") == [("applied", 1), ("duplicate", 1)]


def test_two_micro_batches_with_the_same_count_are_two_parts_and_both_count(tmp_path):
    parts_dir, db = str(tmp_path / "parts"), tmp_path / "store.duckdb"
    # 100 clean messages each, nothing else yet: the counts name their messages.
    write_part(parts_dir, RUN, "src", [("inputs", messages(*range(1, 101)))])
    write_part(parts_dir, RUN, "src", [("inputs", messages(*range(101, 201)))])
    assert len(finalise_parts(parts_dir, db).applied) == 2
    assert counts(db) == [(200, 0, 0, 0)]


def test_a_crash_between_parts_applies_each_part_exactly_once_on_the_next_pass(
    tmp_path, monkeypatch,
):
    parts_dir, db = str(tmp_path / "parts"), tmp_path / "store.duckdb"
    for first, event_id in enumerate(("e1", "e2", "e3"), start=1):
        write_part(parts_dir, RUN, "src", records(event_id, first=first))
    real_apply, calls = StreamingSink.apply, []

    def crash_on_the_second_part(self, con, sink_records):
        calls.append(1)
        applied = real_apply(self, con, sink_records)  # its writes are then rolled back
        if len(calls) == 2:
            raise RuntimeError("worker lost")
        return applied

    monkeypatch.setattr(StreamingSink, "apply", crash_on_the_second_part)
    with pytest.raises(RuntimeError, match="worker lost"):
        finalise_parts(parts_dir, db)
    assert counts(db) == [(1, 1, 0, 0)]
    assert query(db, "SELECT count(*) FROM stream_applied_parts") == [(1,)]
    monkeypatch.setattr(StreamingSink, "apply", real_apply)
    assert len(finalise_parts(parts_dir, db).applied) == 2
    assert counts(db) == [(3, 3, 0, 0)]
    assert query(db, "SELECT event_id FROM attributed_events ORDER BY 1") == [
        ("e1",), ("e2",), ("e3",)
    ]


WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from pipelines.io.stream_parts import _WriteParts, counted_messages
    from tests.streaming.helpers import fact, facts_table

    parts_dir, run_id, *event_ids = sys.argv[1:]
    write = _WriteParts(parts_dir, run_id, "worker")
    for event_id in event_ids:  # one bundle per event, as a worker would
        raw = pa.table({"source": [event_id], "position": pa.array([1], pa.int64())})
        write.start_bundle()
        write.process(("inputs", counted_messages(raw)))
        write.process(("facts", facts_table([fact(event_id, "10.00")])))
        write.finish_bundle()
    """
)


def test_parts_written_by_two_processes_are_merged_by_the_finaliser(tmp_path):
    parts_dir, db = str(tmp_path / "parts"), tmp_path / "store.duckdb"
    workers = [
        subprocess.Popen([sys.executable, "-c", WRITER, parts_dir, RUN, *ids], cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        for ids in (("w1-a", "w1-b"), ("w2-a", "w2-b", "w2-c"))
    ]
    assert [worker.wait(timeout=60) for worker in workers] == [0, 0]
    result = finalise_parts(parts_dir, db)
    assert len(result.applied) == 5
    assert counts(db) == [(5, 5, 0, 0)]
    assert query(db, "SELECT event_id FROM attributed_events ORDER BY 1") == [
        ("w1-a",), ("w1-b",), ("w2-a",), ("w2-b",), ("w2-c",)
    ]


# --------------------------------------------------------------------------- wiring, CLI


def test_sink_parts_without_a_parts_dir_is_refused_saying_what_to_do(tmp_path):
    reference = write_reference(tmp_path / "reference")
    options = PipelineOptions([f"--reference={reference}", "--sink=parts"])
    with pytest.raises(UserError, match="--sink parts needs --parts_dir"):
        settings_from(options, "r", stand_in=True)


def _transform_names(p: beam.Pipeline) -> set[str]:
    return {t.unique_name for t in p.to_runner_api().components.transforms.values()}


def test_pubsub_and_kafka_graphs_build_with_the_parts_sink(tmp_path, monkeypatch):
    import apache_beam.io.kafka as kafka

    from tests.streaming.test_sources import PUBSUB, _FakeReadFromKafka

    monkeypatch.setattr(kafka, "ReadFromKafka", _FakeReadFromKafka)
    s = settings(tmp_path, sink="parts", parts_dir=str(tmp_path / "parts"),
                 pubsub_timestamp_attribute="event_time")
    for source in (PUBSUB, "kafka://broker:9092/deals"):
        p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
        build_streaming_graph(p, s, source)  # built, never run
        names = _transform_names(p)
        assert {"WriteStreamParts/WriteParts", "CountMessages"} <= names
        assert not any(name.startswith("WriteToDuckDB") for name in names)
    default = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build_streaming_graph(default, settings(tmp_path), PUBSUB)
    assert "WriteToDuckDB/ApplyInOneTransaction" in _transform_names(default)


def test_stream_finalise_command_applies_new_parts_once_and_closes_the_run(tmp_path):
    import typer

    app = typer.Typer()
    app.command("stream-finalise")(stream_finalise_command)
    app.command("unused")(lambda: None)  # two commands: typer keeps the verb's name
    parts_dir, db = str(tmp_path / "parts"), tmp_path / "store.duckdb"
    write_part(parts_dir, RUN, "src", records("e1", "e2"))
    cli = CliRunner()
    args = ["stream-finalise", "--parts-dir", parts_dir, "--db", str(db)]
    first = cli.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "applied 1 part(s)" in first.output
    again = cli.invoke(app, [*args, "--finish"])
    assert again.exit_code == 0, again.output
    assert "no new parts" in again.output and f"run {RUN}: succeeded" in again.output
    assert query(db, "SELECT status, input_records, accepted FROM pipeline_runs") == [
        ("succeeded", 2, 2)
    ]


def test_a_part_that_is_not_a_stream_part_is_refused():
    with pytest.raises(ValueError, match="not a revattr stream part"):
        decode_part(pa.table({"x": [1]}))
    assert decode_part(encode_part(records("e1"), RUN, "src")).source_label == "src"
