"""The streaming pipeline: messages -> parse -> deduplicate -> convert -> enrich ->
attribute -> facts and windowed view panes -> DuckDB (or Parquet parts a finaliser
applies to DuckDB: ``--sink parts``). Wiring only: the work is in transforms/, rules/
and io/. See docs/streaming.md.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.errors import UserError
from pipelines.io.reference_loader import load_reference_from
from pipelines.io.stream_parts import (
    PartsFinaliser,
    WriteStreamParts,
    counted_messages,
    finalise_parts,
)
from pipelines.io.streaming_sink import (
    StreamingSink,
    StreamRunSummary,
    WriteToDuckDB,
    close_connections,
    finish_run,
)
from pipelines.options import AttributionOptions
from pipelines.rules.enrich import EnrichmentIndex
from pipelines.run_options import new_run_id
from pipelines.streaming_options import StreamingOptions, parse_duration
from pipelines.transforms._tables import QUARANTINE
from pipelines.transforms.attribute import Attribute
from pipelines.transforms.convert_currency import ConvertCurrency
from pipelines.transforms.deduplicate import DUPLICATES
from pipelines.transforms.enrich_as_of import EnrichAsOf
from pipelines.transforms.parse_events import ParseEvents
from pipelines.transforms.read_stream import COUNTS, ReadReference, ReadStream, parse_source
from pipelines.transforms.stream_dedupe import StreamDeduplicate
from pipelines.transforms.windowed_views import (
    TrackClosedDays,
    WindowedViews,
    check_timezone,
    stamp_with_event_time,
)

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    """What the streaming graph needs besides the pipeline and the source."""

    reference_dir: str
    db: str
    run_id: str
    reporting_currency: str = "USD"
    reporting_timezone: str = "UTC"
    fiscal_year_start_month: int = 1
    early_firing_seconds: int = 60
    allowed_lateness_seconds: int = 3 * 86_400
    dedupe_margin_seconds: int = 86_400
    reference_refresh_seconds: int = 600
    batch_rows: int = 1000
    shards: int = 16
    expansion_service: str | None = None
    pubsub_timestamp_attribute: str | None = None
    sink: str = "duckdb"  # or "parts": Parquet parts under parts_dir, see io/stream_parts.py
    parts_dir: str | None = None
    finalise_interval_seconds: int = 10


def build_streaming_graph(
    p: beam.Pipeline, s: StreamSettings, source: str | beam.PTransform
) -> dict[str, beam.PCollection]:
    """Wire the streaming steps; returns the main PCollections by name (for tests).

    ``source`` is a ``--source`` URI or a stand-in ``PTransform`` producing messages.
    """
    read = p | "ReadStream" >> ReadStream(
        source,
        batch_rows=s.batch_rows,
        expansion_service=s.expansion_service,
        pubsub_timestamp_attribute=s.pubsub_timestamp_attribute,
    )
    reference = p | "Reference" >> ReadReference(s.reference_dir, s.reference_refresh_seconds)
    reference_side = beam.pvalue.AsSingleton(reference)
    # Each version is the whole effective-dated history: lookups stay as of event_time.
    index_side = beam.pvalue.AsSingleton(
        reference | "BuildIndex" >> beam.Map(EnrichmentIndex.build)
    )

    parsed = read.records | "ParseEvents" >> ParseEvents()
    events = parsed.events | "EventTimestamps" >> beam.Map(stamp_with_event_time)
    deduped = events | "StreamDeduplicate" >> StreamDeduplicate(
        s.reporting_timezone, s.allowed_lateness_seconds, s.dedupe_margin_seconds, s.shards
    )
    converted = deduped.unique | "ConvertCurrency" >> ConvertCurrency(
        reference_side, s.reporting_currency
    )
    attributed = (
        converted.converted
        | "EnrichAsOf" >> EnrichAsOf(index_side)
        | "Attribute" >> Attribute(s.run_id)
    )
    panes = attributed | "WindowedViews" >> WindowedViews(
        s.reporting_timezone, s.early_firing_seconds, s.allowed_lateness_seconds
    )
    closed = attributed | "TrackClosedDays" >> TrackClosedDays(
        s.reporting_timezone, s.allowed_lateness_seconds
    )
    quarantine = (
        parsed[QUARANTINE],
        deduped[QUARANTINE],
        converted[QUARANTINE],
    ) | "GatherQuarantine" >> beam.Flatten()

    inputs = read[COUNTS]
    if s.sink == "parts":  # content-addressed parts: each count names its messages
        inputs = read.records | "CountMessages" >> beam.Map(counted_messages)
    outputs = {
        "inputs": inputs,
        "reference": reference | "ReferenceToGlobal" >> beam.WindowInto(
            beam.window.GlobalWindows()
        ),
        "facts": attributed,  # never windowed: too-late events are written too
        "duplicates": deduped[DUPLICATES],
        "quarantine": quarantine,
        "pane": panes,
        "closed": closed,
    }
    records = [
        pcoll | f"Tag_{kind}" >> beam.Map(lambda value, k=kind: (k, value))
        for kind, pcoll in outputs.items()
    ]
    sink = StreamingSink(
        s.db,
        s.run_id,
        source_label=source if isinstance(source, str) else "stand-in",
        fiscal_year_start_month=s.fiscal_year_start_month,
    )
    gathered = records | "GatherSinkRecords" >> beam.Flatten()
    if s.sink == "parts":
        gathered | "WriteStreamParts" >> WriteStreamParts(
            s.parts_dir, s.run_id, sink.source_label
        )
    else:
        gathered | "WriteToDuckDB" >> WriteToDuckDB(sink)
    return {**outputs, "attributed_events": attributed}


def settings_from(
    options: PipelineOptions, run_id: str, stand_in: bool = False
) -> StreamSettings:
    """Validated settings from the parsed options (UserError on a bad flag)."""
    opts = options.view_as(StreamingOptions)
    shared = options.view_as(AttributionOptions)
    if not (opts.source or stand_in) or not shared.reference:
        raise UserError(
            "both --source and --reference are required", hint="see 'revattr stream --help'"
        )
    if opts.source:
        parse_source(opts.source)
    try:
        timezone = check_timezone(opts.reporting_timezone)
        allowed_lateness = parse_duration(opts.allowed_lateness)
        margin = parse_duration(opts.dedupe_margin)
        refresh = parse_duration(opts.reference_refresh)
        finalise_interval = parse_duration(opts.finalise_interval)
    except ValueError as error:
        raise UserError(str(error), hint="see 'revattr stream --help'") from None
    if opts.early_firing_seconds < 0 or opts.max_batch_messages < 1 or shared.shards < 1:
        raise UserError(
            "--early_firing_seconds must be >= 0, --max_batch_messages and --shards >= 1",
            hint="see 'revattr stream --help'",
        )
    if opts.sink == "parts" and not opts.parts_dir:
        raise UserError(
            "--sink parts needs --parts_dir (a directory every worker and the launcher can "
            "reach: a local path, gs:// or s3://)",
            hint="see docs/streaming.md, 'The parts sink'",
        )
    return StreamSettings(
        reference_dir=str(shared.reference),
        db=str(shared.db),
        run_id=run_id,
        reporting_currency=shared.reporting_currency,
        reporting_timezone=timezone,
        fiscal_year_start_month=shared.fiscal_year_start_month,
        early_firing_seconds=opts.early_firing_seconds,
        allowed_lateness_seconds=allowed_lateness,
        dedupe_margin_seconds=margin,
        reference_refresh_seconds=refresh,
        batch_rows=opts.max_batch_messages,
        shards=shared.shards,
        expansion_service=opts.expansion_service,
        pubsub_timestamp_attribute=opts.pubsub_timestamp_attribute,
        sink=opts.sink,
        parts_dir=opts.parts_dir,
        finalise_interval_seconds=max(finalise_interval, 1),
    )


def run(
    argv: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
    source: beam.PTransform | None = None,
) -> StreamRunSummary:
    """Run the streaming pipeline until its source ends (or the job is drained/cancelled).

    ``source`` replaces ``--source`` with a stand-in transform (tests, demos).
    """
    say = progress or (lambda _message: None)
    options = PipelineOptions(argv)
    options.view_as(StandardOptions).streaming = True
    opts = options.view_as(StreamingOptions)
    run_id = options.view_as(AttributionOptions).run_id or new_run_id(dt.datetime.now(dt.UTC))
    settings = settings_from(options, run_id, stand_in=source is not None)
    say("Loading reference data")  # up front: a bad file fails fast, with file and line
    load_reference_from(settings.reference_dir)  # gs:// too (fetched)
    say(f"Streaming from {opts.source if source is None else 'a stand-in source'}")
    finaliser = None
    if settings.sink == "parts":  # the launcher is the store's only writer
        finaliser = PartsFinaliser(
            settings.parts_dir, settings.db, run_id, settings.fiscal_year_start_month,
            settings.finalise_interval_seconds,
        ).start()
    try:
        with beam.Pipeline(options=options) as p:
            build_streaming_graph(p, settings, source if source is not None else opts.source)
    except KeyboardInterrupt:
        _LOG.warning("stream stopped by the user; what was committed stays published")
    except Exception as error:
        explained = _explain(error, settings.expansion_service)
        if explained is None:
            raise
        raise explained from error
    finally:
        close_connections()
        if finaliser is not None:
            finaliser.stop()
    if settings.sink == "parts":
        say("Applying the last parts")
        finalise_parts(settings.parts_dir, settings.db, run_id, settings.fiscal_year_start_month)
    say("Closing the run")
    return finish_run(settings.db, run_id, settings.fiscal_year_start_month)


def _explain(error: BaseException, expansion_service: str | None) -> UserError | None:
    """Known ways a local streaming run fails, as one-line errors saying what to do."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        if "was not replaced as expected" in text and "RefreshTicks" in text:
            return UserError(
                "the DirectRunner's local fallback cannot run the periodic reference refresh "
                "(PeriodicImpulse)",
                hint="pass --reference-refresh 0, or run on Prism, Flink or Dataflow",
            )
        if isinstance(error, ImportError) and "google" in text:
            return UserError(
                "reading Pub/Sub needs Beam's GCP extras",
                hint="pip install 'apache-beam[gcp]==2.77.0'; see docs/streaming.md",
            )
        if expansion_service and "failed to connect to all addresses" in text:
            return UserError(
                "cannot reach the Kafka expansion service",
                where=expansion_service,
                hint="start it, e.g. Flink's job server serves one on port 8097, and retry",
            )
        if "expansion" in text.lower() and ("kafka" in text.lower() or "jar" in text.lower()):
            return UserError(
                f"the Kafka source could not be expanded: {text.splitlines()[0][:200]}",
                hint="start a Java expansion service and pass --expansion-service HOST:PORT",
            )
        error = error.__cause__ or error.__context__
    return None
