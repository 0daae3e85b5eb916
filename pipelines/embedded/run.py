"""``revattr run`` on the embedded engine: read -> steps -> publish, in this process."""

from __future__ import annotations

from collections.abc import Callable

from pipelines.embedded.engine import stage_embedded
from pipelines.errors import UserError
from pipelines.io import files
from pipelines.io.duckdb_publisher import RunSummary
from pipelines.io.publication import PublishedEvents
from pipelines.io.staging import claimed
from pipelines.run_options import parse_run_arguments
from pipelines.run_start import start_run


def run(argv: list[str] | None = None, progress: Callable[[str], None] | None = None) -> RunSummary:
    """Run the batch pipeline on the embedded engine and publish; returns the run summary.

    ``argv``: the flags of ``pipelines.run_options`` (those of the Beam graph's
    ``AttributionOptions``, without runner flags).
    """
    say = progress or (lambda _message: None)
    opts = parse_run_arguments(argv)
    remote = [p for p in (opts.events, opts.staging_dir or "") if files.has_scheme(p)]
    if remote:
        raise UserError(
            f"the embedded engine reads and writes local files only, not {remote[0]}",
            hint="run the Beam graph for remote paths: revattr run --executor beam "
                 "--runner DataflowRunner ... (docs/deploy.md)")
    start = start_run(opts, say)
    publication, staging = start.publication, start.staging
    publication.catch_up()  # before the history is read: a killed run's version is history
    publication.prefetch_snapshot(start.reference, start.timelines)  # while the run stages
    try:
        known = None
        if opts.checks:  # the reference suite's results, once per snapshot (cached)
            from pipelines.quality.reference_results import reference_suite_results

            known = {"reference": reference_suite_results(start.resolved)}
        with claimed(staging):  # removed after the run (or by the next, if this one is killed)
            say(f"Running the pipeline on {len(start.paths)} file(s)")
            stage_embedded(
                start.paths, start.reference, start.timelines, staging,
                start.run.run_id,
                reporting_currency=opts.reporting_currency,
                history=PublishedEvents(publication.layout.catalog),
                checks=opts.checks,
                batch_rows=opts.batch_rows,
                known_results=known,
            )
            say("Publishing")
            return publication.publish_run(staging, start.run, start.reference,
                                           opts.quality_page, timelines=start.timelines)
    finally:  # a failed run, too, leaves a whole catalog (started by start_run), no draft
        publication.wait_for_catalog(raise_error=False)
        publication.discard_prefetched()
