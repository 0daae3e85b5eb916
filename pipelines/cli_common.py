"""What every ``revattr`` verb shares: consoles, exit codes, the error line, the spinner,
the counts table. Light imports only (rich, typer): ``--help`` stays instant."""

from __future__ import annotations

import enum
import logging
import threading
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipelines.errors import UserError
from schemas.fiscal import KINDS, WEEKDAYS

EXIT_OK, EXIT_CHECKS, EXIT_USAGE = 0, 1, 2

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# The option every verb that writes or reads the quarterly views takes.
FiscalYearStartMonth = Annotated[
    int, typer.Option(min=1, max=12, help="First month of the fiscal year (quarterly views).")
]
CalendarKind = enum.Enum("CalendarKind", {k: k for k in KINDS}, type=str)
WeekEnd = enum.Enum("WeekEnd", {k: k for k in WEEKDAYS}, type=str)
MONTHS, SATURDAY = CalendarKind("months"), WeekEnd("saturday")  # the defaults
FiscalCalendarKind = Annotated[
    CalendarKind, typer.Option(help="Fiscal periods (fiscal_calendar, "
                      "*_fiscal views): calendar months, or a 4-4-5/4-5-4/5-4-4 retail year "
                      "ending on the --fiscal-week-end nearest the end of the month before "
                      "--fiscal-year-start-month.")]
FiscalWeekEnd = Annotated[
    WeekEnd, typer.Option(help="Retail calendars: the weekday a fiscal week ends on.")]


def quiet_libraries() -> None:
    """Keep Beam's and GX's log chatter out of the CLI output."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    for name in ("apache_beam", "great_expectations", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(error: UserError) -> None:
    """Print the one-line error (file:line, what, what to do) and exit 2."""
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


class Progress:
    """A spinner naming the current step, with the elapsed time ticking every second."""

    def __init__(self, first_step: str) -> None:
        self.step = first_step
        self.started = time.perf_counter()
        self._stop = threading.Event()

    def __call__(self, step: str) -> None:
        self.step = step
        self._refresh()

    def _refresh(self) -> None:
        self._status.update(f"{self.step} … {time.perf_counter() - self.started:.0f}s")

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def __enter__(self) -> Progress:
        self._status = console.status(self.step, spinner="dots")
        self._status.__enter__()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._status.__exit__(*exc)


def counts_table(title: str, summary, records_label: str) -> Table:  # noqa: ANN001
    """A run's summary table, up to its counts (``summary``: a batch or stream run summary)."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row(records_label, f"{summary.input_records:,}")
    table.add_row("accepted", f"{summary.accepted:,}")
    table.add_row("duplicates", f"{summary.duplicates:,}")
    table.add_row("quarantined", f"{summary.quarantined:,}")
    for reason, count in sorted(summary.quarantined_by_reason.items()):
        table.add_row(f"  {reason}", f"{count:,}")
    return table


def balanced_text(summary) -> str:  # noqa: ANN001
    """'yes', or how many days do not reconcile and the first one."""
    if summary.balanced:
        return "yes"
    return f"NO: {len(summary.unbalanced_days)} day(s), first {summary.unbalanced_days[0]}"
