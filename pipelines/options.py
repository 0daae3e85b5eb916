"""AttributionOptions: the flags of a revattr pipeline run, as Beam PipelineOptions."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.run_options import add_run_arguments


class AttributionOptions(PipelineOptions):
    """Inputs, outputs and business settings (``run_options``); runner flags are Beam's own."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 (Beam's signature)
        add_run_arguments(parser)
