"""The batch pipeline: read -> parse -> deduplicate -> convert -> enrich -> attribute
-> aggregate -> stage, then publish. Wiring only: the work is in transforms/ and rules/.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import RunInfo, RunSummary
from pipelines.io.events_reader import expand_event_paths
from pipelines.io.publication import Publication, PublishedEvents
from pipelines.io.reference_loader import load_reference
from pipelines.options import AttributionOptions
from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from pipelines.quality.stage_frames import INPUTS
from pipelines.quality.stages import STAGE_CHECKS
from pipelines.rules.enrich import EnrichmentIndex
from pipelines.run_options import new_run_id
from pipelines.transforms._tables import QUARANTINE
from pipelines.transforms.aggregate_views import AggregateViews
from pipelines.transforms.attribute import Attribute
from pipelines.transforms.check_stage import CheckStage
from pipelines.transforms.convert_currency import ConvertCurrency
from pipelines.transforms.deduplicate import DUPLICATES, Deduplicate, History
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

    paths: list[str]
    reference_dir: str  # read inside the pipeline: a path ships cheaply, tables would be pickled
    staging: str
    run_id: str
    reporting_currency: str = "USD"
    batch_rows: int = 65536
    shards: int = 16
    history: History | None = None
    checks: bool = True


def build_graph(p: beam.Pipeline, s: GraphSettings) -> dict[str, beam.PCollection]:
    """Wire the steps; returns the staged PCollections by name (for tests)."""
    reference = (
        p
        | "ReferenceDir" >> beam.Create([s.reference_dir])
        | "LoadReference" >> beam.Map(load_reference)
    )
    reference_side = beam.pvalue.AsSingleton(reference)
    index_side = beam.pvalue.AsSingleton(
        reference | "BuildIndex" >> beam.Map(EnrichmentIndex.build)
    )

    read = p | "ReadEvents" >> ReadEvents(s.paths, s.batch_rows)
    parsed = read.records | "ParseEvents" >> ParseEvents()
    spill = str(Path(s.staging) / "_shuffle")
    deduped = parsed.events | "Deduplicate" >> Deduplicate(s.history, s.shards, spill, s.batch_rows)
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
    for name, pcoll in staged.items():
        pcoll | f"Stage_{name}" >> StageOutput(s.staging, name, schemas.get(name))
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
    """Run the batch pipeline and publish its outputs; returns the run summary."""
    say = progress or (lambda _message: None)
    options = PipelineOptions(argv)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:  # not the DirectRunner: it tries to download Prism first
        standard.runner = "FnApiRunner"
    opts = options.view_as(AttributionOptions)
    started = dt.datetime.now(dt.UTC)
    run_info = RunInfo(opts.run_id or new_run_id(started), "batch", started)

    if not opts.events or not opts.reference:
        raise UserError(
            "both --events and --reference are required", hint="see 'revattr run --help'"
        )
    say("Listing event files")
    paths = expand_event_paths(opts.events)
    say("Loading reference data")  # up front: a bad file fails fast, with file and line
    reference = load_reference(opts.reference)
    db = Path(opts.db)
    publication = Publication(db, opts.fiscal_year_start_month)
    publication.prepare()  # fails fast on a database of an older layout
    staging = Path(opts.staging_dir or db.parent / ".staging") / run_info.run_id
    settings = GraphSettings(
        paths=paths,
        reference_dir=str(opts.reference),
        staging=str(staging),
        run_id=run_info.run_id,
        reporting_currency=opts.reporting_currency,
        batch_rows=opts.batch_rows,
        shards=opts.shards,
        history=PublishedEvents(publication.layout.catalog),
        checks=opts.checks,
    )
    try:
        say(f"Running the pipeline on {len(paths)} file(s)")
        with beam.Pipeline(options=options) as p:
            build_graph(p, settings)
        say("Publishing")
        return publication.publish_run(staging, run_info, reference, opts.quality_page)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
