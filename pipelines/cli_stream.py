"""``revattr stream``, ``revattr stream-finalise`` and ``revattr repair``: flags, summaries
and exit codes.

Registered on the ``revattr`` app by ``pipelines.cli``. Heavy imports (Beam,
DuckDB) happen inside the verbs, so ``--help`` stays instant. What all verbs share
is in ``pipelines.cli_common``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from pipelines.cli_common import (
    EXIT_CHECKS,
    EXIT_OK,
    FiscalYearStartMonth,
    balanced_text,
    console,
    counts_table,
    err_console,
    fail,
    quiet_libraries,
)
from pipelines.errors import UserError


def stream_command(
    source: Annotated[
        str,
        typer.Option(
            help="pubsub://projects/P/subscriptions/S or kafka://HOST:PORT/TOPIC "
            "(see docs/streaming.md for the runner options each needs)."
        ),
    ],
    reference: Annotated[Path, typer.Option(help="Directory with the seven reference tables.")],
    db: Annotated[Path, typer.Option(help="DuckDB output file.")] = Path("out/revenue.duckdb"),
    reporting_currency: Annotated[str, typer.Option(help="ISO 4217 reporting currency.")] = "USD",
    reporting_timezone: Annotated[
        str, typer.Option(help="IANA timezone whose calendar days are the daily windows.")
    ] = "UTC",
    fiscal_year_start_month: FiscalYearStartMonth = 1,
    early_firing_seconds: Annotated[
        int,
        typer.Option(min=0, help="Early pane every N seconds of processing time (0: none)."),
    ] = 60,
    allowed_lateness: Annotated[
        str,
        typer.Option(help="How late an event may be and still update its day's pane (3d, 12h)."),
    ] = "3d",
    dedupe_margin: Annotated[
        str, typer.Option(help="Keep event ids for the window + lateness + this margin.")
    ] = "1d",
    reference_refresh: Annotated[
        str,
        typer.Option(help="Re-read the reference directory this often, e.g. 10m (0: once)."),
    ] = "10m",
    max_batch_messages: Annotated[
        int, typer.Option(min=1, help="Most messages per micro-batch.")
    ] = 1000,
    shards: Annotated[int, typer.Option(min=1, help="Deduplication state shards.")] = 16,
    expansion_service: Annotated[
        str | None,
        typer.Option(help="HOST:PORT of the Java expansion service for Kafka."),
    ] = None,
    pubsub_timestamp_attribute: Annotated[
        str | None,
        typer.Option(help="Pub/Sub attribute carrying the event time (drives the watermark)."),
    ] = None,
    sink: Annotated[
        str,
        typer.Option(
            help="duckdb: the workers write --db (one machine); parts: Parquet parts under "
            "--parts-dir, applied to --db by this process (Dataflow, Flink)."
        ),
    ] = "duckdb",
    parts_dir: Annotated[
        str | None,
        typer.Option(help="Shared directory of the parts (local path, gs://, s3://)."),
    ] = None,
    finalise_interval: Annotated[
        str, typer.Option(help="How often new parts are applied to --db (--sink parts).")
    ] = "10s",
    runner: Annotated[str, typer.Option(help="Beam runner.")] = "DirectRunner",
    beam_args: Annotated[
        list[str] | None,
        typer.Argument(
            help="Extra Beam pipeline options after --, e.g. -- --project=P --region=R "
            "--temp_location=gs://B/tmp"
        ),
    ] = None,
) -> None:
    """Run the streaming pipeline from Pub/Sub or Kafka into DuckDB (Beam --streaming).

    Daily event-time windows with early, on-time and late panes, upserted per
    (view, key, day); too-late events are still written and their days repaired.
    """
    quiet_libraries()
    from pipelines.streaming import run

    argv = [
        f"--source={source}",
        f"--reference={reference}",
        f"--db={db}",
        f"--reporting_currency={reporting_currency}",
        f"--reporting_timezone={reporting_timezone}",
        f"--fiscal_year_start_month={fiscal_year_start_month}",
        f"--early_firing_seconds={early_firing_seconds}",
        f"--allowed_lateness={allowed_lateness}",
        f"--dedupe_margin={dedupe_margin}",
        f"--reference_refresh={reference_refresh}",
        f"--max_batch_messages={max_batch_messages}",
        f"--shards={shards}",
        *([f"--expansion_service={expansion_service}"] if expansion_service else []),
        *(
            [f"--pubsub_timestamp_attribute={pubsub_timestamp_attribute}"]
            if pubsub_timestamp_attribute
            else []
        ),
        f"--sink={sink}",
        *([f"--parts_dir={parts_dir}"] if parts_dir else []),
        f"--finalise_interval={finalise_interval}",
        f"--runner={runner}",
        "--streaming",
        *(beam_args or []),
    ]
    if sink not in ("duckdb", "parts"):
        fail(UserError(f"unknown --sink {sink!r}", hint="use --sink duckdb or --sink parts"))
    if "dataflow" in runner.lower() and sink == "duckdb":
        err_console.print(
            f"[yellow]warning:[/] the DuckDB sink writes {escape(str(db))} on each Dataflow "
            "worker's local disk; use --sink parts --parts-dir gs://... (docs/streaming.md)",
            soft_wrap=True,
        )
    started = time.perf_counter()
    try:
        with console.status("Streaming (Ctrl-C to stop)", spinner="dots") as status:
            summary = run(argv, progress=lambda step: status.update(step))
    except UserError as error:
        fail(error)
    table = counts_table(f"revattr stream {summary.run_id}", summary, "messages in")
    table.add_row("days repaired from facts", f"{len(summary.repaired_days):,}")
    table.add_row("balanced", balanced_text(summary))
    table.add_row("status", summary.status)
    table.add_row("time", f"{time.perf_counter() - started:.1f}s")
    table.add_row("output", str(db))
    console.print(table)
    raise typer.Exit(EXIT_OK if summary.status == "succeeded" else EXIT_CHECKS)


def stream_finalise_command(
    parts_dir: Annotated[
        str, typer.Option(help="Directory of a `revattr stream --sink parts` job's parts.")
    ],
    db: Annotated[Path, typer.Option(help="DuckDB store the parts are applied to.")] = Path(
        "out/revenue.duckdb"
    ),
    run_id: Annotated[
        str | None, typer.Option(help="Only this run's parts (default: every run found).")
    ] = None,
    fiscal_year_start_month: FiscalYearStartMonth = 1,
    watch: Annotated[
        str,
        typer.Option(help="Keep applying new parts this often, e.g. 30s, until Ctrl-C (0: once)."),
    ] = "0",
    finish: Annotated[
        bool,
        typer.Option(help="Then close the runs' pipeline_runs rows (after the job drained)."),
    ] = False,
) -> None:
    """Apply the committed parts of a stream job to the DuckDB store, each exactly once.

    The only writer of --db: run it while the job streams (--watch) and once after it
    was drained (--finish). Parts already applied are skipped.
    """
    quiet_libraries()
    from pipelines.io.stream_parts import committed_parts, finalise_parts
    from pipelines.io.streaming_sink import finish_run
    from pipelines.streaming_options import parse_duration

    try:
        every = parse_duration(watch)
    except ValueError as error:
        fail(UserError(str(error), hint="see 'revattr stream-finalise --help'"))
    applied = duplicates = 0
    try:
        while True:
            result = finalise_parts(parts_dir, db, run_id, fiscal_year_start_month)
            applied += len(result.applied)
            duplicates += len(result.duplicates)
            if result.applied or result.duplicates:
                console.print(
                    f"applied {len(result.applied)} part(s) to {db}"
                    + (f", {len(result.duplicates)} duplicate(s) skipped"
                       if result.duplicates else "")
                )
            if not every:
                break
            time.sleep(every)
    except KeyboardInterrupt:
        pass
    except UserError as error:
        fail(error)
    except (OSError, ValueError) as error:
        fail(UserError(f"cannot apply the parts: {error}", where=parts_dir))
    if not applied and not duplicates:
        console.print(f"no new parts under {parts_dir}")
    status = "succeeded"
    if finish:
        runs = sorted({run for run, _, _ in committed_parts(parts_dir, run_id)})
        for run in runs:
            summary = finish_run(db, run, fiscal_year_start_month)
            console.print(f"run {run}: {summary.status} ({summary.input_records:,} messages in, "
                          f"{summary.accepted:,} accepted)")
            status = status if summary.status == "succeeded" else summary.status
    raise typer.Exit(EXIT_OK if status == "succeeded" else EXIT_CHECKS)


def repair_command(
    db: Annotated[Path, typer.Option(help="DuckDB file written by `revattr run` or `stream`.")] = (
        Path("out/revenue.duckdb")
    ),
) -> None:
    """Recompute from the facts the view rows of every day that does not reconcile.

    One transaction. Stop the stream job first: DuckDB allows one writer.
    """
    quiet_libraries()
    from pipelines.io.streaming_sink import repair_days

    try:
        repaired = repair_days(db)
    except UserError as error:
        fail(error)
    if not repaired:
        console.print(f"every day reconciles: nothing to repair in {db}")
    else:
        days = ", ".join(str(d) for d in repaired[:10]) + (" ..." if len(repaired) > 10 else "")
        console.print(f"repaired {len(repaired)} day(s) in {db}: {days}")
    raise typer.Exit(EXIT_OK)
