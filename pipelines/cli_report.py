"""``revattr report``: manager reports from a published database, optionally mailed.

Registered on the ``revattr`` app in ``pipelines/cli.py``. Exit codes as for the
other verbs: 0 done; 1 finished, but a manager got no report or a mail was not
sent (each one named); 2 bad usage, an unusable database, an unknown manager or
an SMTP server that cannot be used. Heavy imports happen inside the command.
"""

from __future__ import annotations

import enum
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipelines.cli_common import EXIT_OK, Progress, console, fail
from pipelines.errors import UserError
from pipelines.reports.inert import header_text

EXIT_INCOMPLETE = 1  # a report or a mail could not be delivered
# docs/contract.md "Two bases" (as pipelines.reports.data.BASES; no heavy import here).
Basis = enum.Enum("Basis", {b: b for b in ("as_booked", "restated")}, type=str)
AS_BOOKED = Basis("as_booked")  # the default


def report_command(
    db: Annotated[Path, typer.Option(help="DuckDB file written by `revattr run`.")] = Path(
        "out/revenue.duckdb"
    ),
    out: Annotated[
        Path, typer.Option(help="Directory for index.html and the report folders.")
    ] = Path("out/reports"),
    period: Annotated[
        str | None,
        typer.Option(
            help="2026 (year), 2026-Q1 (calendar quarter) or 2026-03 (month), or FY2027 "
            "(fiscal year), FY2027-Q1 (fiscal quarter) or FY2027-P03 (fiscal period) of the "
            "published fiscal_calendar; default: the latest month with events."
        ),
    ] = None,
    basis: Annotated[
        Basis,
        typer.Option(
            help="as_booked: each event credited as of its own time; restated: credited "
            "under the assignments at the restated basis's as-of date (`revattr restate`), "
            "with what moved in and out."
        ),
    ] = AS_BOOKED,
    manager: Annotated[
        str | None, typer.Option(help="Only this person_id (territory and/or account manager).")
    ] = None,
    send: Annotated[
        bool, typer.Option("--send", help="Mail each report to the manager's email in people.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="List who would get which mail; send nothing."),
    ] = False,
    smtp_host: Annotated[str, typer.Option(help="SMTP server.")] = "localhost",
    smtp_port: Annotated[int, typer.Option(min=1, max=65535, help="SMTP port.")] = 25,
    starttls: Annotated[
        bool,
        typer.Option(
            "--starttls/--no-starttls",
            help="Upgrade the SMTP connection with STARTTLS (required to log in with "
            "REVATTR_SMTP_USER / REVATTR_SMTP_PASSWORD).",
        ),
    ] = False,
    mail_from: Annotated[
        str | None,
        typer.Option(
            help="Sender address (default: $REVATTR_SMTP_FROM or revattr-reports@localhost)."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML report and a CSV for every manager active in the period.

    Territory managers: the territories they manage and everything below them.
    Account managers: the events on accounts assigned to them. Plus index.html.
    """
    from pipelines.reports import mail
    from pipelines.reports.periods import parse_label
    from pipelines.reports.render import TITLES, write_reports

    try:
        chosen = parse_label(period) if period else None
    except ValueError as error:
        fail(UserError(str(error)))
    started = time.perf_counter()
    try:
        with Progress("Opening the database") as progress:
            result = write_reports(db, out, chosen, manager, progress=progress, basis=basis.value)
    except UserError as error:
        fail(error)
    seconds = time.perf_counter() - started

    table = Table(
        title=f"revattr report {result.period.label}", show_header=False, title_justify="left"
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("period", f"{result.period.label} ({result.period.span})")
    if result.period.calendar:
        table.add_row("fiscal calendar", escape(result.period.calendar))
    table.add_row("basis", result.basis_text)
    for kind in ("territory_manager", "account_manager"):
        n = sum(1 for r in result.written if r.kind == kind)
        table.add_row(f"{TITLES[kind].lower()} reports", f"{n:,}")
    for r in result.skipped:
        table.add_row(f"  [yellow]skipped[/] {escape(header_text(r.person_id))}", r.skipped or "")
    table.add_row("index", escape(str(result.index)))
    table.add_row("time", f"{seconds:.1f}s")
    console.print(table)
    incomplete = bool(result.skipped)

    if send or dry_run:
        deliveries = mail.plan(result)
        sender = mail_from or os.environ.get("REVATTR_SMTP_FROM") or mail.DEFAULT_SENDER
        if not dry_run:
            try:
                with console.status(
                    f"Mailing {len(deliveries)} report(s) via {smtp_host}:{smtp_port}",
                    spinner="dots",
                ):
                    mail.send(deliveries, result, smtp_host, smtp_port, starttls, sender)
            except UserError as error:
                _print_deliveries(console, deliveries, dry_run=False, only_sent=True)
                fail(error)
        _print_deliveries(console, deliveries, dry_run)
        incomplete = incomplete or any(d.problem for d in deliveries)
    raise typer.Exit(EXIT_INCOMPLETE if incomplete else EXIT_OK)


def _print_deliveries(console, deliveries, dry_run: bool, only_sent: bool = False) -> None:  # noqa: ANN001
    """One line per mail (soft-wrapped, so scripts can grep it)."""
    for d in deliveries:
        if only_sent and not d.sent:
            continue
        if d.problem:
            status = "[red]not sent[/]"
        elif d.sent:
            status = "[green]sent[/]"
        else:
            status = "would send" if dry_run else "not sent"
        what = (
            f"{d.report.kind.replace('_', ' ')} report of {header_text(d.report.display)} "
            f"({header_text(d.report.person_id)}): {', '.join(d.files)} "
            f"({d.size / 1024:,.0f} KiB)"
        )
        line = f"{status} to {escape(header_text(d.to or '(no address)'))}: {escape(what)}"
        if d.problem:
            line += f" [red]({escape(header_text(d.problem, 300))})[/]"
        console.print(line, soft_wrap=True)
