"""StageOutput: write a PCollection of tables as Parquet parts for the publisher."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from pipelines.io.files import write_parquet_part


class StageOutput(beam.PTransform):
    """Each table becomes one part file under ``<staging>/<name>/`` (any FileSystems path:
    the publisher fetches the parts it applies)."""

    def __init__(self, staging: str, name: str, schema: pa.Schema | None = None) -> None:
        super().__init__()
        self.staging = staging
        self.name = name
        self.schema = schema

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | f"WriteParts_{self.name}" >> beam.Map(self._write)

    def _write(self, table: pa.Table) -> str | None:
        if self.schema is not None:
            table = table.select(self.schema.names).cast(self.schema)
        return write_parquet_part(self.staging, self.name, table)
