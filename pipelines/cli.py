"""``revattr``: flags, summaries and exit codes — nothing else.

Exit codes: 0 done; 1 finished but unbalanced or a check failed; 2 bad usage or
unreadable input (one line naming the file and what is wrong).
Heavy imports (Beam, DuckDB) happen inside the verbs, so ``--help`` is instant.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from pipelines.cli_common import (
    EXIT_CHECKS,
    EXIT_OK,
    EXIT_USAGE,
    MONTHS,
    SATURDAY,
    FiscalCalendarKind,
    FiscalWeekEnd,
    FiscalYearStartMonth,
    Progress,
    balanced_text,
    console,
    counts_table,
    err_console,
    fail,
    quiet_libraries,
)
from pipelines.cli_restate import RestateAsOf
from pipelines.errors import UserError, storage_error
from pipelines.pandas_probe import defer_pandas_import

app = typer.Typer(
    name="revattr",
    help="Revenue attribution: CRM deal events -> territory and account-manager views in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Directory to write events/ and reference/ into.")],
    events: Annotated[int, typer.Option(min=1, help="Number of events to generate.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same files.")] = 42,
    bad_rate: Annotated[
        float,
        typer.Option(
            min=0.0, max=0.5, help="Share of deliberately bad records (every quarantine reason)."
        ),
    ] = 0.0,
    event_format: Annotated[
        str, typer.Option("--format", help="Event file format: jsonl or parquet.")
    ] = "jsonl",
) -> None:
    """Write a deterministic sample data set that exercises every hard case."""
    from pipelines.generate import generate_dataset

    if event_format not in ("jsonl", "parquet"):
        fail(UserError(f"unknown format {event_format!r}", hint="use jsonl or parquet"))
    started = time.perf_counter()
    summary = generate_dataset(
        out, events=events, seed=seed, bad_rate=bad_rate, event_format=event_format
    )
    console.print(
        f"Wrote {summary.events_written:,} event records in {len(summary.files)} file(s) "
        f"and the reference tables to {out} in {time.perf_counter() - started:.1f}s"
    )


# Runners Beam does not know by their short name.
RUNNER_ALIASES = {"DaskRunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


@app.command("run")
def run_batch(
    events: Annotated[str, typer.Option(help="Glob or directory of .jsonl/.csv/.parquet files.")],
    reference: Annotated[
        str, typer.Option(help="Directory with the seven reference tables (gs://... with "
                          "--executor beam).")],
    db: Annotated[Path, typer.Option(help="DuckDB output file.")] = Path("out/revenue.duckdb"),
    reporting_currency: Annotated[str, typer.Option(help="ISO 4217 reporting currency.")] = "USD",
    fiscal_year_start_month: FiscalYearStartMonth = 1,
    fiscal_calendar: FiscalCalendarKind = MONTHS,
    fiscal_week_end: FiscalWeekEnd = SATURDAY,
    restate_as_of: RestateAsOf = None,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per Arrow batch.")] = 65536,
    checks: Annotated[
        bool,
        typer.Option("--checks/--no-checks", help="Run the data-quality suites at every stage."),
    ] = True,
    quality_page: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the data-quality page (default: quality.html next to --db)."
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="embedded: the steps as DuckDB SQL in this process, on every core (fast, "
            "local). beam: the Beam graph, on --runner (Dataflow, Flink, Dask...). Same rules, "
            "same outputs."
        ),
    ] = "embedded",
    runner: Annotated[
        str,
        typer.Option(
            help="Beam runner (with --executor beam). FnApiRunner is the DirectRunner's batch "
            "engine, used directly: the DirectRunner first tries to download and start Prism. "
            "DaskRunner: a dask.distributed cluster (-- --dask_client_address=tcp://host:8786)."
        ),
    ] = "FnApiRunner",
    beam_args: Annotated[
        list[str] | None,
        typer.Argument(help="Extra Beam pipeline options after --, e.g. -- --direct_num_workers=2"),
    ] = None,
) -> None:
    """Run the batch pipeline over event files and publish into DuckDB."""
    if executor not in ("embedded", "beam"):
        fail(UserError(f"unknown executor {executor!r}", hint="use embedded or beam"))
    if executor == "embedded" and beam_args:
        fail(UserError("Beam options need the Beam graph", hint="add --executor beam"))
    quiet_libraries()
    if executor == "beam":
        from pipelines.batch import run
    else:
        from pipelines.embedded.run import run

    argv = [
        f"--events={events}",
        f"--reference={reference}",
        f"--db={db}",
        f"--reporting_currency={reporting_currency}",
        f"--fiscal_year_start_month={fiscal_year_start_month}",
        f"--fiscal_calendar={fiscal_calendar.value}",
        f"--fiscal_week_end={fiscal_week_end.value}",
        *([f"--restate_as_of={restate_as_of.isoformat()}"] if restate_as_of else []),
        f"--batch_rows={batch_rows}",
        *([f"--runner={RUNNER_ALIASES.get(runner, runner)}"] if executor == "beam" else []),
        f"--checks={checks}",
        *([f"--quality_page={quality_page or db.parent / 'quality.html'}"] if checks else []),
        *(beam_args or []),
    ]
    started = time.perf_counter()
    try:
        with Progress("Starting") as progress:
            summary = run(argv, progress=progress)
    except UserError as error:
        fail(error)
    _print_summary(summary, db, time.perf_counter() - started)
    raise typer.Exit(EXIT_OK if summary.status == "succeeded" else EXIT_CHECKS)


@app.command()
def check(
    db: Annotated[Path, typer.Option(help="DuckDB file written by `revattr run`.")] = Path(
        "out/revenue.duckdb"
    ),
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Reference directory to check (default: the snapshot published in --db)."
        ),
    ] = None,
    quality_page: Annotated[
        Path | None, typer.Option(help="Also write the results as a self-contained HTML page.")
    ] = None,
) -> None:
    """Re-run the output and reference suites on a published database.

    Exit 1 on a critical failure.
    """
    quiet_libraries()
    from pipelines.quality.check import check_database

    try:
        with console.status("Running the data-quality suites", spinner="dots"):
            results = check_database(db, str(reference) if reference else None)
    except UserError as error:
        fail(error)
    rows = sorted(results.to_pylist(), key=lambda r: (r["success"], r["severity"] != "critical"))
    table = Table(title=f"revattr check {db}", title_justify="left")
    for column in ("suite", "expectation", "severity", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("observed", overflow="fold")
    for r in rows:
        verdict = (
            "ok"
            if r["success"]
            else ("[red]FAILED[/]" if r["severity"] == "critical" else "[yellow]failed[/]")
        )
        table.add_row(
            r["suite"], r["expectation"], r["severity"], verdict, (r["observed"] or "")[:80]
        )
    console.print(table)
    critical = [r for r in rows if not r["success"] and r["severity"] == "critical"]
    console.print(
        f"{len(rows)} checks, {len(critical)} critical failure(s), "
        f"{sum(1 for r in rows if not r['success']) - len(critical)} warning(s)"
    )
    if quality_page:
        from pipelines.quality.page import render_quality_page

        render_quality_page(results, "check", quality_page)
        console.print(f"quality page: {quality_page}")
    raise typer.Exit(EXIT_CHECKS if critical else EXIT_OK)


def _print_summary(summary, db: Path, seconds: float) -> None:  # noqa: ANN001 (RunSummary)
    table = counts_table(f"revattr run {summary.run_id}", summary, "events in")
    table.add_row("booked revenue (this run)", f"{summary.booked_revenue:,.2f}")
    table.add_row("balanced", balanced_text(summary))
    checks_run = len(summary.checks) + len(summary.quality)
    critical, warnings = summary.critical_failures, summary.warnings
    table.add_row(
        "checks", f"{checks_run} run, {len(critical)} critical failed, {len(warnings)} warning(s)"
    )
    for name in critical:
        table.add_row(f"  [red]critical[/] {name}", "FAILED")
    for name in warnings:
        table.add_row(f"  [yellow]warning[/] {name}", "failed")
    if summary.quality_page:
        table.add_row("quality page", str(summary.quality_page))
    table.add_row("status", summary.status)
    table.add_row("time", f"{seconds:.1f}s")
    table.add_row("output", str(db))
    console.print(table)


# Verbs defined in their own modules (their heavy imports stay inside the functions).
from pipelines.cli_follow import follow_command  # noqa: E402
from pipelines.cli_import import import_app  # noqa: E402
from pipelines.cli_report import report_command  # noqa: E402
from pipelines.cli_restate import restate_command  # noqa: E402
from pipelines.cli_stream import (  # noqa: E402
    repair_command,
    stream_command,
    stream_finalise_command,
)

app.command("report")(report_command)
app.command("stream")(stream_command)
app.command("repair")(repair_command)
app.command("stream-finalise")(stream_finalise_command)
app.command("follow")(follow_command)
app.add_typer(import_app)
app.command("restate")(restate_command)


def main() -> None:
    defer_pandas_import()
    try:
        app()
    except UserError as error:  # raised outside a verb's own handling
        err_console.print(f"error: {error}")
        sys.exit(EXIT_USAGE)
    except Exception as error:
        storage = storage_error(error)  # a full disk, a read-only folder: one line, no traceback
        if storage is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(storage))}", soft_wrap=True)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
