"""What both executors do before their steps run: the run's identity, its files, the
reference data and the publication it goes to (no Beam import here)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.errors import UserError
from pipelines.io import files
from pipelines.io.duckdb_publisher import RunInfo
from pipelines.io.events_reader import expand_event_paths
from pipelines.io.publication import Publication
from pipelines.io.reference_cache import ResolvedReference, resolve_reference
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.run_options import fiscal_calendar, new_run_id


@dataclass(frozen=True)
class RunStart:
    run: RunInfo
    paths: list[str]
    resolved: ResolvedReference  # the reference, resolved (cached per snapshot)
    publication: Publication
    staging: Path  # the run's own staging folder

    @property
    def reference(self) -> dict[str, pa.Table]:
        return self.resolved.tables

    @property
    def timelines(self) -> EnrichmentTimelines:
        return self.resolved.timelines


def start_run(opts: Any, say: Callable[[str], None]) -> RunStart:  # noqa: ANN401
    """``opts``: the ``run_options`` flags (argparse namespace or ``AttributionOptions``).

    Fails fast, with file and line, on missing flags, no event files, a bad reference
    file or a database of an older layout, before any step runs.
    """
    started = dt.datetime.now(dt.UTC)
    run = RunInfo(opts.run_id or new_run_id(started), "batch", started)
    if not opts.events or not opts.reference:
        raise UserError(
            "both --events and --reference are required", hint="see 'revattr run --help'"
        )
    say("Listing event files")
    paths = expand_event_paths(opts.events)
    say("Loading reference data")
    resolved = resolve_reference(opts.reference, say)
    db = Path(opts.db)
    publication = Publication(db, opts.fiscal_year_start_month,
                              restate_as_of=getattr(opts, "restate_as_of", None),
                              calendar=fiscal_calendar(opts))
    publication.prepare(wait=False)  # the catalog is written while the run goes on
    local_staging = opts.staging_dir and not files.has_scheme(opts.staging_dir)
    staging = Path(opts.staging_dir if local_staging else db.parent / ".staging") / run.run_id
    return RunStart(run, paths, resolved, publication, staging)

