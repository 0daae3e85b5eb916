"""StreamingOptions: the flags of ``revattr stream`` (Beam's runner flags are its own)."""

from __future__ import annotations

import re

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.options import AttributionOptions  # noqa: F401 (registers the shared flags)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str | int | float) -> int:
    """``'3d'``, ``'72h'``, ``'90m'``, ``'30s'`` or a number of seconds -> whole seconds."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(f"expected a duration such as 3d, 12h, 30m, 45s or 90, got {text!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {text!r}")
    return int(round(seconds))


class StreamingOptions(PipelineOptions):
    """Source and windowing of the streaming pipeline.

    The flags it shares with the batch pipeline (``--reference``, ``--db``,
    ``--reporting_currency``, ``--fiscal_year_start_month``, ``--shards``,
    ``--run_id``) are ``AttributionOptions``' own: Beam refuses a flag defined twice.
    """

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 (Beam's signature)
        parser.add_argument(
            "--source",
            help="pubsub://projects/P/subscriptions/S or kafka://HOST:PORT/TOPIC.",
        )
        parser.add_argument("--reporting_timezone", default="UTC",
                            help="IANA timezone whose calendar days are the windows.")
        parser.add_argument("--early_firing_seconds", type=int, default=60,
                            help="Early (speculative) pane every N seconds of processing time; "
                                 "0: no early panes.")
        parser.add_argument("--allowed_lateness", default="3d",
                            help="How far behind the watermark an event may be and still "
                                 "update its window's pane: 3d, 12h, 3600s...")
        parser.add_argument("--dedupe_margin", default="1d",
                            help="Deduplication keeps an event_id for its window + the allowed "
                                 "lateness + this margin of event time.")
        parser.add_argument("--reference_refresh", default="10m",
                            help="Re-read the reference directory this often (0: load once).")
        parser.add_argument("--max_batch_messages", type=int, default=1000,
                            help="Most messages per micro-batch.")
        parser.add_argument("--expansion_service", default=None,
                            help="HOST:PORT of a Java expansion service for Kafka "
                                 "(default: Beam's, which downloads a jar and needs Java).")
        parser.add_argument("--pubsub_timestamp_attribute", default=None,
                            help="Pub/Sub attribute holding each message's event time "
                                 "(RFC 3339 or epoch millis); the watermark then follows it.")
        parser.add_argument("--sink", choices=("duckdb", "parts"), default="duckdb",
                            help="duckdb: the workers write --db (one machine); parts: Parquet "
                                 "parts under --parts_dir, applied to --db by the launcher's "
                                 "finaliser (Dataflow, Flink).")
        parser.add_argument("--parts_dir", default=None,
                            help="Where --sink parts writes (local path, gs://, s3://): shared "
                                 "by the workers and the finaliser.")
        parser.add_argument("--finalise_interval", default="10s",
                            help="How often the launcher applies new parts to --db (--sink parts).")
