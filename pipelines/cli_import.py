"""``revattr import ...``: turn a CRM's own export into event files and a reference folder.

Registered on the ``revattr`` app in ``pipelines/cli.py`` as the ``import`` group.
Exit codes: 0 done (rows that could not be mapped are listed in
``<out>/import_rejects.csv`` and counted); 2 bad usage or an unreadable export.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from pipelines.cli_common import EXIT_OK, console, fail
from pipelines.errors import UserError

import_app = typer.Typer(
    name="import",
    help="Import a CRM export as event files and a reference folder for `revattr run`.",
    no_args_is_help=True,
)


@import_app.command("salesforce")
def salesforce_command(
    export: Annotated[
        Path, typer.Option(help="Folder of the export's CSVs: Opportunity.csv, "
                           "OpportunityHistory.csv, Account.csv, User.csv, Territory2.csv, ...")],
    out: Annotated[Path, typer.Option(help="Folder to write events/, reference/ and "
                                      "import_rejects.csv into.")],
    reporting_currency: Annotated[
        str, typer.Option(help="The currency `revattr run --reporting-currency` will use.")
    ] = "USD",
    corporate_currency: Annotated[
        str | None, typer.Option(help="The org's corporate currency (default: CurrencyType.csv's "
                                 "IsCorporate one, else the reporting currency).")
    ] = None,
    manager_role: Annotated[
        list[str] | None,
        typer.Option(help="RoleInTerritory2 value(s) that make a user a territory manager "
                     "(repeatable; * for any). Default: Owner."),
    ] = None,
) -> None:
    """Map a Salesforce data export (docs/import-salesforce.md)."""
    from pipelines.importers.salesforce import import_salesforce
    from pipelines.importers.sf_reference import DEFAULT_MANAGER_ROLES

    started = time.perf_counter()
    try:
        summary = import_salesforce(
            export, out, reporting_currency=reporting_currency,
            corporate_currency=corporate_currency,
            manager_roles=tuple(manager_role or DEFAULT_MANAGER_ROLES),
        )
    except UserError as error:
        fail(error)
    table = Table(title=f"revattr import salesforce {export}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("opportunities", f"{summary.opportunities:,}")
    table.add_row("history rows", f"{summary.history_rows:,}")
    table.add_row("events", f"{sum(summary.events.values()):,}")
    for event_type, count in sorted(summary.events.items()):
        table.add_row(f"  {event_type}", f"{count:,}")
    if summary.current_state_events:
        table.add_row("  from the Opportunity row only", f"{summary.current_state_events:,}")
    for name, count in summary.reference_rows.items():
        table.add_row(f"reference {name}", f"{count:,}")
    table.add_row("rejected rows", f"{sum(summary.rejects.values()):,}")
    for reason, count in sorted(summary.rejects.items()):
        table.add_row(f"  {reason}", f"{count:,}")
    table.add_row("currencies", f"corporate {summary.corporate_currency}, "
                  f"reporting {summary.reporting_currency}")
    table.add_row("time", f"{time.perf_counter() - started:.1f}s")
    console.print(table)
    console.print(f"events: {summary.events_file}\nreference: {summary.reference_dir}\n"
                  f"rejects: {summary.rejects_file}\n"
                  f"next: revattr run --events {summary.events_file} --reference "
                  f"{summary.reference_dir} --reporting-currency {summary.reporting_currency}")
    raise typer.Exit(EXIT_OK)
