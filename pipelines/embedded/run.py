"""``revattr run`` on the embedded engine: read -> steps -> publish, in this process."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

from pipelines.embedded.engine import stage_embedded
from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import RunInfo, RunSummary
from pipelines.io.events_reader import expand_event_paths
from pipelines.io.publication import Publication, PublishedEvents
from pipelines.io.reference_loader import load_reference
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.run_options import new_run_id, parse_run_arguments


def run(argv: list[str] | None = None, progress: Callable[[str], None] | None = None) -> RunSummary:
    """Run the batch pipeline on the embedded engine and publish; returns the run summary.

    ``argv``: the flags of ``pipelines.run_options`` (those of the Beam graph's
    ``AttributionOptions``, without runner flags).
    """
    say = progress or (lambda _message: None)
    opts = parse_run_arguments(argv)
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
    publication = Publication(Path(opts.db), opts.fiscal_year_start_month)
    publication.prepare()  # fails fast on a database of an older layout
    staging = Path(opts.staging_dir or Path(opts.db).parent / ".staging") / run_info.run_id
    try:
        say(f"Running the pipeline on {len(paths)} file(s)")
        stage_embedded(
            paths, reference, EnrichmentTimelines.build(reference), staging, run_info.run_id,
            reporting_currency=opts.reporting_currency,
            history=PublishedEvents(publication.layout.catalog),
            checks=opts.checks,
            batch_rows=opts.batch_rows,
        )
        say("Publishing")
        return publication.publish_run(staging, run_info, reference, opts.quality_page)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
