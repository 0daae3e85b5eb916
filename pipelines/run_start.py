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
from pipelines.io.reference_cache import resolve_reference
from pipelines.io.reference_loader import reference_file_names
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.run_options import new_run_id


@dataclass(frozen=True)
class RunStart:
    run: RunInfo
    paths: list[str]
    reference: dict[str, pa.Table]
    timelines: EnrichmentTimelines  # the reference resolved (cached per snapshot)
    publication: Publication
    staging: Path  # the run's own staging folder


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
    paths = remote_event_paths(opts.events) if files.has_scheme(opts.events) else (
        expand_event_paths(opts.events))
    say("Loading reference data")
    with files.local_folder(str(opts.reference), reference_file_names()) as folder:
        resolved = resolve_reference(folder, say)
    db = Path(opts.db)
    publication = Publication(db, opts.fiscal_year_start_month)
    publication.prepare()
    local_staging = opts.staging_dir and not files.has_scheme(opts.staging_dir)
    staging = Path(opts.staging_dir if local_staging else db.parent / ".staging") / run.run_id
    return RunStart(run, paths, resolved.tables, resolved.timelines, publication, staging)


def remote_event_paths(pattern: str) -> list[str]:
    """The event files of a ``gs://``/``s3://`` glob (Beam's FileSystems), sorted."""
    from pipelines.io.events_reader import FORMATS, SUPPORTED

    try:
        matched = files.match(pattern)
    except Exception as error:  # noqa: BLE001 - BeamIOError, missing filesystem extra...
        raise UserError(f"cannot list the event files: {str(error).splitlines()[0]}",
                        where=pattern,
                        hint="check the URL and that Beam's extra for it is installed "
                             "(e.g. apache-beam[gcp])") from None
    paths = [p for p in matched if Path(p).suffix.lower() in FORMATS]
    if not paths:
        raise UserError(f"no event files match {pattern!r}",
                        hint=f"give a glob of {SUPPORTED} files")
    return paths
