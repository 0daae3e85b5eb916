"""The flags of a batch run, shared by both executors (no Beam import here).

``AttributionOptions`` (the Beam graph's PipelineOptions) adds these same flags;
the embedded engine parses them with plain ``argparse``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid

from schemas.fiscal import KINDS, WEEKDAYS
from schemas.money import DEFAULT_REPORTING_CURRENCY


def add_run_arguments(parser) -> None:  # noqa: ANN001 (argparse or Beam's parser)
    parser.add_argument("--events",
                        help="Glob or directory of event files (.jsonl, .csv, .parquet).")
    parser.add_argument("--reference", help="Directory holding the seven reference tables.")
    parser.add_argument("--db", default="out/revenue.duckdb", help="DuckDB output file.")
    parser.add_argument("--reporting_currency", default=DEFAULT_REPORTING_CURRENCY,
                        help="ISO 4217 code every amount is converted to.")
    parser.add_argument("--fiscal_year_start_month", type=int, default=1,
                        help="First month (1-12) of the fiscal year, for the quarterly views.")
    parser.add_argument("--fiscal_calendar", default="months", choices=KINDS,
                        help="Fiscal periods: calendar months, or a 4-4-5/4-5-4/5-4-4 retail "
                             "year (fiscal_calendar and the *_fiscal views).")
    parser.add_argument("--fiscal_week_end", default="saturday", choices=WEEKDAYS,
                        help="Retail calendars: the weekday a fiscal week ends on.")
    parser.add_argument("--restate_as_of", type=moment, default=None,
                        help="Date or time (ISO 8601) of the restated basis (default: today).")
    parser.add_argument("--batch_rows", type=int, default=65536,
                        help="Rows per Arrow batch on the hot path.")
    parser.add_argument("--shards", type=int, default=16,
                        help="Deduplication shards (parallelism of the event_id shuffle).")
    parser.add_argument("--staging_dir", default=None,
                        help="Where the run stages its outputs (default: next to --db).")
    parser.add_argument("--run_id", default=None, help="Run identifier (default: generated).")
    parser.add_argument("--checks", default=True, type=flag,
                        help="Run the data-quality suites at every stage (true/false).")
    parser.add_argument("--quality_page", default=None,
                        help="Write the run's data-quality page (HTML) to this path.")


def flag(text: str) -> bool:
    """'true'/'false' (and yes/no, 1/0) for boolean pipeline options."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def moment(text: str) -> dt.datetime:
    """An ISO 8601 date (midnight UTC) or time (UTC when it has no offset)."""
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def parse_run_arguments(argv: list[str] | None) -> argparse.Namespace:
    """The run flags of ``argv`` (unknown flags, e.g. Beam's, are an error here)."""
    parser = argparse.ArgumentParser(prog="revattr run", add_help=False)
    add_run_arguments(parser)
    return parser.parse_args(argv or [])


def fiscal_calendar(opts):  # noqa: ANN001, ANN201 (argparse or Beam options)
    """The ``FiscalCalendar`` the run flags describe."""
    from pipelines.rules.fiscal_calendar import FiscalCalendar

    return FiscalCalendar(getattr(opts, "fiscal_calendar", None) or "months",
                          opts.fiscal_year_start_month,
                          getattr(opts, "fiscal_week_end", None) or "saturday")


def new_run_id(now: dt.datetime) -> str:
    """A run identifier: UTC start time and a random suffix."""
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
