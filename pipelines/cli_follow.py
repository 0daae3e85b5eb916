"""``revattr follow``: apply each file dropped in a landing directory, publish it at once.

Registered on the ``revattr`` app by ``pipelines.cli``; heavy imports stay inside
the verb so ``--help`` is instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.cli_common import EXIT_OK, FiscalYearStartMonth, console, fail, quiet_libraries
from pipelines.errors import UserError


def follow_command(
    landing: Annotated[
        Path,
        typer.Option(help="Folder producers drop files into (write name.jsonl.tmp, then rename)."),
    ],
    reference: Annotated[Path, typer.Option(help="Directory with the seven reference tables.")],
    db: Annotated[Path, typer.Option(help="DuckDB catalog readers open.")] = Path(
        "out/revenue.duckdb"
    ),
    poll_seconds: Annotated[
        float, typer.Option(min=0.01, help="Seconds between looks at the landing folder.")
    ] = 0.5,
    stop_when_idle: Annotated[
        float | None,
        typer.Option(min=0.0, help="Exit after this many seconds without a new file."),
    ] = None,
    checks: Annotated[
        bool,
        typer.Option("--checks/--no-checks", help="Run the data-quality suites on every file."),
    ] = True,
    max_files: Annotated[
        int, typer.Option(min=1, help="Most files applied together in one version.")
    ] = 64,
    reporting_currency: Annotated[str, typer.Option(help="ISO 4217 reporting currency.")] = "USD",
    fiscal_year_start_month: FiscalYearStartMonth = 1,
) -> None:
    """Follow a landing folder: apply every new file exactly once; readers see it at once."""
    quiet_libraries()
    from pipelines.follow import Follower, FollowSettings

    settings = FollowSettings(
        landing=landing,
        reference=reference,
        db=db,
        poll_seconds=poll_seconds,
        stop_when_idle=stop_when_idle,
        checks=checks,
        max_files=max_files,
        reporting_currency=reporting_currency,
        fiscal_year_start_month=fiscal_year_start_month,
    )

    def say(message: str) -> None:
        console.print(f"{time.strftime('%H:%M:%S')} {escape(message)}")

    follower = Follower(settings, say=say)
    say(f"following {landing} into {db} (Ctrl-C to stop)")
    try:
        applied = follower.run()
    except UserError as error:
        fail(error)
    say(f"stopped after applying {applied} file(s)")
    raise typer.Exit(EXIT_OK)
