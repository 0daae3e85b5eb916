"""Runner glue: run a pipeline to completion and release what its runner holds."""

from __future__ import annotations

import apache_beam as beam


def run_to_completion(pipeline: beam.Pipeline) -> None:
    """``pipeline.run().wait_until_finish()`` (a worker's exception is raised here), then
    close the Dask client the DaskRunner opened (Beam 2.77 leaves it open: it keeps
    reconnecting to a cluster that has gone away)."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None:
            client.close()
