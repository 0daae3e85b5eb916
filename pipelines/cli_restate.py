"""``revattr restate``: a new reference snapshot and the restated basis, no event read.

Registered on the ``revattr`` app in ``pipelines/cli.py``. Exit codes: 0 published; 2 bad
usage, an unreadable reference folder or database.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    MONTHS,
    SATURDAY,
    FiscalCalendarKind,
    FiscalWeekEnd,
    FiscalYearStartMonth,
    Progress,
    console,
    fail,
    quiet_libraries,
)
from pipelines.errors import UserError

RestateAsOf = Annotated[
    dt.datetime | None,
    typer.Option(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"],
                 help="Date (UTC midnight) or time the restated basis takes the assignments "
                      "and territory model at (default: today)."),
]


def restate_command(
    reference: Annotated[str, typer.Option(help="Directory with the new reference tables.")],
    db: Annotated[Path, typer.Option(help="DuckDB output file of earlier runs.")] = Path(
        "out/revenue.duckdb"),
    as_of: RestateAsOf = None,
    fiscal_year_start_month: FiscalYearStartMonth = 1,
    fiscal_calendar: FiscalCalendarKind = MONTHS,
    fiscal_week_end: FiscalWeekEnd = SATURDAY,
) -> None:
    """Restate every published event under a reference snapshot (e.g. after a territory
    realignment), without reading the events: the *_restated views change, the booked
    ones do not. Give the fiscal options of your runs."""
    from pipelines.restate import restate
    from pipelines.rules.fiscal_calendar import FiscalCalendar

    quiet_libraries()
    if not db.exists():
        fail(UserError("no published database here", where=str(db),
                       hint="run `revattr run` first, or pass the --db of your runs"))
    try:
        with Progress("Starting") as progress:
            calendar = FiscalCalendar(fiscal_calendar.value, fiscal_year_start_month,
                                      fiscal_week_end.value)
            done = restate(db, reference, as_of, calendar, say=progress)
    except UserError as error:
        fail(error)
    if done.summary.status != "succeeded":
        console.print(f"[bold red]restatement {done.summary.status}[/]")
        raise typer.Exit(EXIT_USAGE)
    console.print(f"Restated as of {done.as_of:%Y-%m-%d %H:%M} UTC in {done.seconds:.1f}s "
                  f"(run {done.summary.run_id}); query the *_restated views and "
                  "restatement_moves in {db}.".replace("{db}", str(db)))
    raise typer.Exit(EXIT_OK)
