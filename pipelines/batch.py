"""The batch pipeline: read -> parse -> deduplicate -> convert -> enrich -> attribute
-> aggregate -> stage, then publish. Wiring only: the work is in transforms/ and rules/.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.io import files
from pipelines.io.duckdb_publisher import RunSummary
from pipelines.io.publication import FACTS, Publication
from pipelines.io.reference_loader import load_reference_from
from pipelines.io.staging import claimed
from pipelines.options import AttributionOptions
from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from pipelines.quality.stage_frames import INPUTS
from pipelines.quality.stages import STAGE_CHECKS
from pipelines.rules.enrich import EnrichmentIndex
from pipelines.run_start import start_run
from pipelines.transforms._runner import run_to_completion
from pipelines.transforms._tables import QUARANTINE
from pipelines.transforms.aggregate_views import AggregateViews
from pipelines.transforms.attribute import Attribute
from pipelines.transforms.check_stage import CheckStage
from pipelines.transforms.convert_currency import ConvertCurrency
from pipelines.transforms.deduplicate import DUPLICATES, Deduplicate
from pipelines.transforms.enrich_as_of import EnrichAsOf
from pipelines.transforms.parse_events import ParseEvents
from pipelines.transforms.read_events import COUNTS, ReadEvents
from pipelines.transforms.stage_output import StageOutput
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from schemas.reference import REFERENCE_TABLES
from schemas.rejects import REJECT_SCHEMA


@dataclass(frozen=True)
class GraphSettings:
    """What the graph needs besides the pipeline object."""

    paths: list[str]  # event files, any FileSystems path
    reference_dir: str  # read inside the pipeline: a path ships cheaply, tables would be pickled
    staging: str  # where the graph writes its parts (any FileSystems path)
    run_id: str
    reporting_currency: str = "USD"
    batch_rows: int = 65536
    shards: int = 16
    history_parts: tuple[str, ...] = ()  # published facts parts the workers can read
    checks: bool = True


def build_graph(p: beam.Pipeline, s: GraphSettings) -> dict[str, beam.PCollection]:
    """Wire the steps; returns the staged PCollections by name (for tests)."""
    reference = (
        p
        | "ReferenceDir" >> beam.Create([s.reference_dir])
        | "LoadReference" >> beam.Map(load_reference_from)
    )
    reference_side = beam.pvalue.AsSingleton(reference)
    index_side = beam.pvalue.AsSingleton(
        reference | "BuildIndex" >> beam.Map(EnrichmentIndex.build)
    )

    read = p | "ReadEvents" >> ReadEvents(s.paths, s.batch_rows)
    parsed = read.records | "ParseEvents" >> ParseEvents()
    spill = files.join(s.staging, "_shuffle")
    deduped = parsed.events | "Deduplicate" >> Deduplicate(
        list(s.history_parts), s.shards, spill, s.batch_rows)
    converted = deduped.unique | "ConvertCurrency" >> ConvertCurrency(
        reference_side, s.reporting_currency
    )
    attributed = (
        converted.converted
        | "EnrichAsOf" >> EnrichAsOf(index_side)
        | "Attribute" >> Attribute(s.run_id)
    )
    views = attributed | "AggregateViews" >> AggregateViews()
    quarantine = (
        parsed[QUARANTINE],
        deduped[QUARANTINE],
        converted[QUARANTINE],
    ) | "GatherQuarantine" >> beam.Flatten()

    staged = {
        "inputs": read[COUNTS],
        **(
            {"dq_results": check_stages(reference, parsed.events, attributed, views)}
            if s.checks
            else {}
        ),
        "attributed_events": attributed,
        "duplicates": deduped[DUPLICATES],
        "quarantine": quarantine,
        **views,
    }
    schemas = {
        "attributed_events": ATTRIBUTED_EVENTS_SCHEMA,
        "quarantine": REJECT_SCHEMA,
        "dq_results": CHECK_RESULT_SCHEMA,
    }
    written = [pcoll | f"Stage_{name}" >> StageOutput(s.staging, name, schemas.get(name))
               for name, pcoll in staged.items()]
    # One leaf, applied last: Beam 2.77's DaskRunner computes only the last transform's
    # collection (and what it depends on); every staged part then depends on it.
    written | "StagedParts" >> beam.Flatten()
    return staged


def check_stages(
    reference: beam.PCollection,
    events: beam.PCollection,
    attributed: beam.PCollection,
    views: dict[str, beam.PCollection],
) -> beam.PCollection:
    """One CheckStage per stage (``STAGE_CHECKS``); their result tables flattened."""
    tables = {
        name: reference | f"Table_{name}" >> beam.Map(lambda r, n=name: r[n])
        for name in REFERENCE_TABLES
    }
    inputs = {"events": events, "attributed_events": attributed, **views, **tables}
    results = [
        {name: inputs[name] for name in INPUTS[c.suite]}
        | c.label >> CheckStage(c.stage, c.suite, c.sample_rows_per_batch)
        for c in STAGE_CHECKS
    ]
    return results | "GatherCheckResults" >> beam.Flatten()


def run(argv: list[str] | None = None, progress: Callable[[str], None] | None = None) -> RunSummary:
    """Run the batch pipeline and publish its outputs; returns the run summary.

    With a remote ``--staging_dir`` (``gs://...``) the workers write the run's parts
    there and read the published history from a copy there; this process (the
    finaliser, the only writer of the store) then fetches the parts and publishes.
    """
    say = progress or (lambda _message: None)
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:  # not the DirectRunner: it tries to download Prism first
        standard.runner = "FnApiRunner"
    opts = options.view_as(AttributionOptions)
    start = start_run(opts, say)
    publication, staging = start.publication, start.staging
    publication.catch_up()  # before the history is read: a killed run's version is history
    remote = opts.staging_dir if files.has_scheme(opts.staging_dir or "") else None
    graph_staging = files.join(remote, start.run.run_id) if remote else str(staging)
    settings = GraphSettings(
        paths=start.paths,
        reference_dir=str(opts.reference),
        staging=graph_staging,
        run_id=start.run.run_id,
        reporting_currency=opts.reporting_currency,
        batch_rows=opts.batch_rows,
        shards=opts.shards,
        history_parts=tuple(history_parts(publication, remote)),
        checks=opts.checks,
    )
    try:
        with claimed(staging):  # removed after the run (or by the next, if this one is killed)
            say(f"Running the pipeline on {len(start.paths)} file(s)")
            pipeline = beam.Pipeline(options=options)
            build_graph(pipeline, settings)
            run_to_completion(pipeline)
            if remote:
                say(f"Fetching the staged parts from {graph_staging}")
                files.fetch_folder(graph_staging, staging)
            say("Publishing")
            return publication.publish_run(staging, start.run, start.reference,
                                           opts.quality_page, timelines=start.timelines)
    finally:
        publication.wait_for_catalog(raise_error=False)  # started by start_run
        if remote:
            files.delete_folder(graph_staging)


def history_parts(publication: Publication, remote_staging: str | None) -> list[str]:
    """The published facts parts for cross-run dedupe, as paths the workers read: the
    store's own parts, or (remote staging) their copies under ``<staging>/_history``
    (parts are immutable and uniquely named: each is copied once)."""
    parts = [str(p.path) for p in publication.live_parts(FACTS)]
    if remote_staging is None or not parts:
        return parts
    return files.copy_missing(parts, files.join(remote_staging, "_history"))
