"""``revattr restate``: publish a new reference snapshot and the restated basis it gives,
without reading any event (a territory realignment, a new account plan).

A restatement is a publication of its own (``pipeline_runs.mode = 'restate'``, no
records): the reference tables are replaced, ``restated_attribution`` is rebuilt at the
chosen date, and the ``*_restated`` views, which join it to the published facts, show
every event re-attributed. The booked basis (each event's credit at its own time) is
never changed by it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines.io.duckdb_publisher import RunInfo, RunSummary
from pipelines.io.publication import Publication
from pipelines.io.reference_cache import resolve_reference
from pipelines.rules.fiscal_calendar import FiscalCalendar
from pipelines.rules.restate import restate_moment
from pipelines.run_options import new_run_id


@dataclass
class Restatement:
    summary: RunSummary
    as_of: dt.datetime
    seconds: float  # the whole restatement: reference load, restated basis, publication


def restate(db: str | Path, reference: str, as_of: dt.date | dt.datetime | None = None,
            calendar: FiscalCalendar | None = None, say: Callable[[str], None] | None = None,
            ) -> Restatement:
    """Publish ``reference`` (a folder) and the restated basis at ``as_of`` into ``db``
    (``calendar``: the runs' fiscal calendar, default calendar months)."""
    say = say or (lambda _message: None)
    started = time.perf_counter()
    say("Loading reference data")
    resolved = resolve_reference(reference, say)
    tables = resolved.tables
    calendar = calendar or FiscalCalendar()
    publication = Publication(db, calendar.start_month, restate_as_of=as_of, calendar=calendar)
    now = dt.datetime.now(dt.UTC)
    run = RunInfo(new_run_id(now), "restate", now)
    say("Publishing the restated basis")
    with tempfile.TemporaryDirectory(prefix="revattr-restate-") as staging:  # no records
        summary = publication.publish(staging, run, tables, timelines=resolved.timelines)
    return Restatement(summary, restate_moment(as_of), time.perf_counter() - started)
