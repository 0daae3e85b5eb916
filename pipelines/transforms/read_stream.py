"""ReadStream: the event source of the streaming pipeline, and its reference versions.

Sources (``--source``):

* ``pubsub://projects/P/subscriptions/S``: Beam's native ``ReadFromPubSub``
  (``with_attributes=True`` for the message id; ``timestamp_attribute`` when
  producers set one, so the watermark follows event time instead of publish time).
* ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC``: Beam's cross-language
  ``ReadFromKafka`` (Java, expanded by an expansion service: ``--expansion_service
  HOST:PORT``, or the default one, which downloads Beam's IO expansion jar and needs
  Java); ``with_metadata=True`` for partition and offset; record timestamps by
  ``CreateTime`` (producers set them to ``event_time``).
* a ``PTransform`` (a stand-in, e.g. ``TestStream``) producing messages: tuples
  ``(source, position, payload)`` from ``pipelines.io.messages.message``, or bare
  ``bytes``/``str`` payloads.

Every source is normalised to message tuples, then micro-batched with
``BatchElements`` (batches never span a bundle, so they add no latency beyond the
runner's bundling) and parsed into ``RAW_EVENT_SCHEMA`` tables by
``pipelines.io.messages``. The ``counts`` output holds the number of messages of
each batch (for ``input_records``).

``ReadReference`` yields the reference tables: once (``refresh_seconds == 0``), or
re-read every ``refresh_seconds`` by a ``PeriodicImpulse`` into a global-window
side input with a per-element trigger (the "slowly updating side input"
pattern), emitting a new version only when the files changed and keeping the
last good version when a refresh fails to load.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms import trigger as triggers
from apache_beam.transforms.window import GlobalWindows

from pipelines.errors import UserError
from pipelines.io.files import local_folder
from pipelines.io.messages import Message, messages_to_raw_batch, stable_position
from pipelines.io.reference_loader import (
    load_reference,
    load_reference_from,
    reference_file_names,
    reference_fingerprint,
)
from pipelines.transforms._tables import non_empty, tagged

COUNTS = "counts"
STAND_IN = "stand-in"

_LOG = logging.getLogger(__name__)
_PUBSUB = re.compile(r"^pubsub://(projects/[^/]+/subscriptions/[^/]+)$")
_KAFKA = re.compile(r"^kafka://([^/]+)/([^/]+)$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


@dataclass(frozen=True)
class StreamSource:
    """A parsed ``--source``."""

    kind: str  # "pubsub" or "kafka"
    uri: str
    subscription: str | None = None  # projects/P/subscriptions/S
    bootstrap_servers: str | None = None  # host:port[,host:port]
    topic: str | None = None


def parse_source(uri: str) -> StreamSource:
    """``pubsub://projects/P/subscriptions/S`` or ``kafka://HOST:PORT/TOPIC``."""
    hint = "use pubsub://projects/P/subscriptions/S or kafka://HOST:PORT/TOPIC"
    match = _PUBSUB.match(uri)
    if match:
        from apache_beam.io.gcp.pubsub import parse_subscription

        try:
            parse_subscription(match.group(1))
        except ValueError as exc:
            raise UserError(f"bad Pub/Sub subscription: {exc}", where=uri, hint=hint) from None
        return StreamSource("pubsub", uri, subscription=match.group(1))
    match = _KAFKA.match(uri)
    if match:
        servers, topic = match.groups()
        if not all(_HOST_PORT.match(s) for s in servers.split(",")):
            raise UserError("bad Kafka bootstrap servers", where=uri, hint=hint)
        return StreamSource("kafka", uri, bootstrap_servers=servers, topic=topic)
    raise UserError("unknown stream source", where=uri, hint=hint)


def pubsub_to_message(source: str, message) -> Message:  # noqa: ANN001 (PubsubMessage)
    """A ``PubsubMessage`` -> message tuple; position from the message id."""
    identity = message.message_id or f"{message.publish_time}:{hash(message.data)}"
    return (source, stable_position(str(identity)), bytes(message.data or b""))


def kafka_to_message(uri: str, record) -> Message:  # noqa: ANN001 (beam.Row of KafkaIO)
    """A ``ReadFromKafka(with_metadata=True)`` row -> message tuple (offset as position)."""
    source = f"{uri}/{record.partition}"
    return (source, int(record.offset), bytes(record.value or b""))


def normalise(element: object, default_source: str = STAND_IN) -> Message:
    """A stand-in element (message tuple, bytes or str) -> message tuple."""
    if isinstance(element, tuple) and len(element) == 3:
        source, position, payload = element
    else:
        source, position, payload = default_source, 0, element
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return (str(source), int(position), bytes(payload))


class _ParseMessages(beam.DoFn):
    def process(self, messages: list[Message]) -> Iterator[pa.Table]:
        yield from non_empty(messages_to_raw_batch(messages))
        yield from tagged(COUNTS, pa.table({"records": [len(messages)]}))


class ReadStream(beam.PTransform):
    """Source -> ``records`` (RAW_EVENT_SCHEMA micro-batches) and ``counts``."""

    def __init__(
        self,
        source: str | beam.PTransform,
        batch_rows: int = 1000,
        expansion_service: str | None = None,
        pubsub_timestamp_attribute: str | None = None,
        kafka_timestamp_policy: str = "CreateTime",
        kafka_consumer_config: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.batch_rows = batch_rows
        self.expansion_service = expansion_service
        self.pubsub_timestamp_attribute = pubsub_timestamp_attribute
        self.kafka_timestamp_policy = kafka_timestamp_policy
        self.kafka_consumer_config = dict(kafka_consumer_config or {})

    def read_messages(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if isinstance(self.source, beam.PTransform):
            return (
                pbegin
                | "StandInSource" >> self.source
                | "AsMessages" >> beam.Map(normalise)
            )
        spec = parse_source(self.source)
        if spec.kind == "pubsub":
            return (
                pbegin
                | "ReadFromPubSub"
                >> beam.io.ReadFromPubSub(
                    subscription=spec.subscription,
                    with_attributes=True,
                    timestamp_attribute=self.pubsub_timestamp_attribute,
                )
                | "AsMessages" >> beam.Map(lambda m, uri=spec.uri: pubsub_to_message(uri, m))
            )
        from apache_beam.io.kafka import ReadFromKafka

        config = {
            "bootstrap.servers": spec.bootstrap_servers,
            "group.id": "revattr-stream",
            "auto.offset.reset": "earliest",
            **self.kafka_consumer_config,
        }
        return (
            pbegin
            | "ReadFromKafka"
            >> ReadFromKafka(
                consumer_config=config,
                topics=[spec.topic],
                with_metadata=True,
                timestamp_policy=self.kafka_timestamp_policy,
                commit_offset_in_finalize=True,
                expansion_service=self.expansion_service,
            )
            | "AsMessages" >> beam.Map(lambda r, uri=spec.uri: kafka_to_message(uri, r))
        )

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return (
            self.read_messages(pbegin)
            | "MicroBatch"
            >> beam.BatchElements(min_batch_size=self.batch_rows, max_batch_size=self.batch_rows)
            | "ParseMessages" >> beam.ParDo(_ParseMessages()).with_outputs(COUNTS, main="records")
        )


# --------------------------------------------------------------------------- reference


class _LoadChangedReference(beam.DoFn):
    """On each tick: the reference tables, if the files changed since the last version.

    A refresh that fails to load (a half-copied file, a bad row) is logged and
    skipped: the pipeline keeps enriching with the last good version.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._fingerprint: str | None = None

    def process(self, _tick: object) -> Iterator[dict[str, pa.Table]]:
        try:
            with local_folder(self.directory, reference_file_names()) as folder:  # gs://: fetched
                fingerprint = reference_fingerprint(folder)
                if fingerprint == self._fingerprint:
                    return
                reference = load_reference(folder)
        except Exception as error:  # noqa: BLE001 (a refresh must never stop the stream)
            _LOG.error("reference refresh skipped, keeping the last version: %s", error)
            return
        self._fingerprint = fingerprint
        yield reference


class ReadReference(beam.PTransform):
    """Reference directory -> a PCollection of reference versions (dict of tables)."""

    def __init__(self, directory: str, refresh_seconds: float = 0) -> None:
        super().__init__()
        self.directory = directory
        self.refresh_seconds = refresh_seconds

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if not self.refresh_seconds:
            return (
                pbegin
                | "ReferenceDir" >> beam.Create([self.directory])
                | "LoadReference" >> beam.Map(load_reference_from)
            )
        from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode

        return (
            pbegin
            | "RefreshTicks"
            >> PeriodicImpulse(
                fire_interval=self.refresh_seconds,
                rebase=RebaseMode.REBASE_START,  # first tick when the job starts
            )
            | "LoadIfChanged" >> beam.ParDo(_LoadChangedReference(self.directory))
            | "LatestVersion"
            >> beam.WindowInto(
                GlobalWindows(),
                trigger=triggers.Repeatedly(triggers.AfterCount(1)),
                accumulation_mode=triggers.AccumulationMode.DISCARDING,
            )
        )
