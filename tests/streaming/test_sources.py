"""Sources: URI parsing, the Pub/Sub graph (built offline, not run), Kafka through a stand-in
for Beam's cross-language ReadFromKafka (whose expansion needs Java and a download)."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines.errors import UserError
from pipelines.io.messages import stable_position
from pipelines.io.streaming_sink import close_connections
from pipelines.streaming import build_streaming_graph
from pipelines.transforms.read_stream import (
    kafka_to_message,
    parse_source,
    pubsub_to_message,
)
from tests.streaming.helpers import event, query, settings

PUBSUB = "pubsub://projects/revattr-demo/subscriptions/deal-events"


def test_source_uris_are_parsed_and_bad_ones_refused_with_the_accepted_forms():
    pubsub = parse_source(PUBSUB)
    assert (pubsub.kind, pubsub.subscription) == (
        "pubsub", "projects/revattr-demo/subscriptions/deal-events"
    )
    kafka = parse_source("kafka://broker-1:9092,broker-2:9092/deal-events")
    assert (kafka.kind, kafka.bootstrap_servers, kafka.topic) == (
        "kafka", "broker-1:9092,broker-2:9092", "deal-events"
    )
    for bad in ["pubsub://projects/p/subscriptions/s",  # project ids are 6-30 chars
                "pubsub://topics/t", "kafka://broker/deals", "file:///tmp/x.jsonl"]:
        with pytest.raises(UserError, match="pubsub://projects/P/subscriptions/S"):
            parse_source(bad)


def test_pubsub_and_kafka_records_become_messages_with_stable_positions():
    message = PubsubMessage(b'{"event_id": "e1"}', {"event_time": "x"}, message_id="42")
    assert pubsub_to_message(PUBSUB, message) == (PUBSUB, stable_position("42"),
                                                  b'{"event_id": "e1"}')
    record = beam.Row(topic="deals", partition=3, offset=1234, timestamp=0, key=b"",
                      value=b"{}")
    assert kafka_to_message("kafka://b:9092/deals", record) == (
        "kafka://b:9092/deals/3", 1234, b"{}"
    )


def test_pubsub_streaming_graph_builds_offline_with_its_windowing_and_refreshing_reference(
    tmp_path,
):
    s = settings(tmp_path, reference_refresh_seconds=600, pubsub_timestamp_attribute="event_time")
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    build_streaming_graph(p, s, PUBSUB)  # built, never run: Pub/Sub is not reachable here
    proto = p.to_runner_api()
    transforms = {t.unique_name: t for t in proto.components.transforms.values()}
    assert "ReadStream/ReadFromPubSub/Read" in transforms
    assert "Reference/RefreshTicks" in transforms  # PeriodicImpulse
    assert "WriteToDuckDB/ApplyInOneTransaction" in transforms

    def windowing(transform: str):
        (output,) = transforms[transform].outputs.values()
        pcollection = proto.components.pcollections[output]
        return proto.components.windowing_strategies[pcollection.windowing_strategy_id]

    for view in ("territory_revenue", "account_manager_revenue"):
        ws = windowing(f"WindowedViews/DailyWindows_{view}")
        assert ws.window_fn.urn == "beam:window_fn:fixed_windows:v1"
        assert ws.accumulation_mode == beam_runner_api_pb2.AccumulationMode.ACCUMULATING
        assert ws.allowed_lateness == 3 * 86_400 * 1000
        trigger = ws.trigger.after_end_of_window
        assert trigger.early_firings.after_processing_time.timestamp_transforms[0] \
            .delay.delay_millis == 10_000
        assert trigger.late_firings.element_count.element_count == 1
    refresh = windowing("Reference/LatestVersion")
    assert refresh.accumulation_mode == beam_runner_api_pb2.AccumulationMode.DISCARDING
    assert refresh.trigger.HasField("repeat")
    # Facts and sink records are never windowed: too-late events cannot be dropped there.
    assert windowing("Attribute/ApplyRevenueEffects").window_fn.urn == \
        "beam:window_fn:global_windows:v1"


class _FakeReadFromKafka(beam.PTransform):
    """Stands in for apache_beam.io.kafka.ReadFromKafka: records its arguments and
    emits ReadFromKafka(with_metadata=True) rows."""

    calls: list[dict] = []
    records: list[beam.Row] = []

    def __init__(self, **kwargs) -> None:
        super().__init__()
        _FakeReadFromKafka.calls.append(kwargs)

    def expand(self, pbegin):
        return pbegin | beam.Create(_FakeReadFromKafka.records)


def test_kafka_source_reads_through_the_expansion_service_and_keeps_partition_and_offset(
    tmp_path, monkeypatch,
):
    import json

    import apache_beam.io.kafka as kafka

    monkeypatch.setattr(kafka, "ReadFromKafka", _FakeReadFromKafka)
    _FakeReadFromKafka.calls = []
    _FakeReadFromKafka.records = [
        beam.Row(topic="deals", partition=0, offset=7, timestamp=0, key=b"",
                 value=json.dumps(event("k1", "2026-03-01T10:00:00Z", "80.00")).encode()),
        beam.Row(topic="deals", partition=1, offset=3, timestamp=0, key=b"", value=b"{oops"),
    ]
    s = settings(tmp_path, expansion_service="localhost:8097")
    try:
        # A bounded stand-in would send the DirectRunner to its batch FnApiRunner, which
        # has no processing-time triggers: run it on the streaming BundleBased runner.
        options = PipelineOptions(["--streaming", "--runner=BundleBasedDirectRunner"])
        with TestPipeline(options=options) as p:
            build_streaming_graph(p, s, "kafka://broker:9092/deals")
    finally:
        close_connections()
    (call,) = _FakeReadFromKafka.calls
    assert call["expansion_service"] == "localhost:8097"
    assert call["topics"] == ["deals"]
    assert call["with_metadata"] is True
    assert call["timestamp_policy"] == "CreateTime"
    assert call["consumer_config"]["bootstrap.servers"] == "broker:9092"
    assert query(s.db, "SELECT territory_id, booked_revenue FROM territory_revenue") == [
        ("T-US-CA", "80.00")
    ]
    assert query(s.db, "SELECT source, position, reason FROM quarantine") == [
        ("kafka://broker:9092/deals/1", 3, "malformed")
    ]


def test_reference_refresh_emits_a_version_only_when_the_files_change_and_keeps_the_last_good(
    tmp_path,
):
    from pipelines.transforms.read_stream import _LoadChangedReference
    from tests.streaming.helpers import write_reference

    directory = write_reference(tmp_path / "reference")
    load = _LoadChangedReference(str(directory))
    first = list(load.process(0))
    assert len(first) == 1 and first[0]["account_assignments"].num_rows == 3
    assert list(load.process(1)) == []  # unchanged files: no new version
    with (directory / "account_assignments.csv").open("a") as f:
        f.write("A2,M1,2026-04-01,\n")  # a reassignment recorded while the job runs
    (second,) = list(load.process(2))
    assert second["account_assignments"].num_rows == 4
    (directory / "accounts.csv").write_text("account_id,country\nA1\n")  # broken file
    assert list(load.process(3)) == []  # skipped: the pipeline keeps the last good version


def test_known_local_failures_become_one_line_errors_saying_what_to_do():
    from pipelines.streaming import _explain

    refresh = RuntimeError(
        "Transform node AppliedPTransform(Reference/RefreshTicks/GenSequence/...) "
        "was not replaced as expected."
    )
    assert "--reference-refresh 0" in str(_explain(refresh, None))
    wrapped = RuntimeError("bundle failed")
    wrapped.__cause__ = ModuleNotFoundError("No module named 'google.cloud'")
    assert "apache-beam[gcp]" in str(_explain(wrapped, None))
    unreachable = RuntimeError("failed to connect to all addresses; last error: UNKNOWN")
    assert "localhost:8097" in str(_explain(unreachable, "localhost:8097"))
    assert _explain(ValueError("something else"), None) is None
