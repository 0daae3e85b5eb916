"""AttributionOptions: the flags of a revattr pipeline run."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from schemas.money import DEFAULT_REPORTING_CURRENCY


class AttributionOptions(PipelineOptions):
    """Inputs, outputs and business settings; runner flags are Beam's own."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 (Beam's signature)
        parser.add_argument("--events",
                            help="Glob or directory of event files (.jsonl, .csv, .parquet).")
        parser.add_argument("--reference",
                            help="Directory holding the seven reference tables.")
        parser.add_argument("--db", default="out/revenue.duckdb", help="DuckDB output file.")
        parser.add_argument("--reporting_currency", default=DEFAULT_REPORTING_CURRENCY,
                            help="ISO 4217 code every amount is converted to.")
        parser.add_argument("--fiscal_year_start_month", type=int, default=1,
                            help="First month (1-12) of the fiscal year, for the quarterly views.")
        parser.add_argument("--batch_rows", type=int, default=65536,
                            help="Rows per Arrow batch on the hot path.")
        parser.add_argument("--shards", type=int, default=16,
                            help="Deduplication shards (parallelism of the event_id shuffle).")
        parser.add_argument("--staging_dir", default=None,
                            help="Where the run stages its outputs (default: next to --db).")
        parser.add_argument("--run_id", default=None, help="Run identifier (default: generated).")
        parser.add_argument("--checks", default=True, type=_flag,
                            help="Run the data-quality suites at every stage (true/false).")
        parser.add_argument("--quality_page", default=None,
                            help="Write the run's data-quality page (HTML) to this path.")


def _flag(text: str) -> bool:
    """'true'/'false' (and yes/no, 1/0) for boolean pipeline options."""
    value = text.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")
