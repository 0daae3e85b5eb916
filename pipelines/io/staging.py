"""Per-run staging area: the pipeline writes Parquet parts, the publisher applies them.

This is the write-then-finalise pattern of Beam's file sinks: workers write
uniquely named part files in parallel; only the finaliser (the publisher) makes
them visible, in one transaction.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# What the pipeline stages, by name.
STAGED_OUTPUTS: tuple[str, ...] = (
    "inputs",  # INPUT_COUNT_SCHEMA: records read per file
    "attributed_events",
    "duplicates",
    "quarantine",  # schemas.rejects.REJECT_SCHEMA
    "territory_revenue",
    "account_manager_revenue",
    "dq_results",  # pipelines.quality.gx_runner.CHECK_RESULT_SCHEMA
)

INPUT_COUNT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
    ]
)


def write_part(root: str | Path, name: str, table: pa.Table | pa.RecordBatch) -> Path | None:
    """Write one part file of a staged output; empty tables write nothing."""
    if table.num_rows == 0:
        return None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{uuid.uuid4().hex}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)  # a reader of the folder never sees a half-written part
    return path


def part_files(root: str | Path, name: str) -> list[str]:
    """The part files of one staged output, sorted."""
    return sorted(str(p) for p in (Path(root) / name).glob("part-*.parquet"))


def read_staged(root: str | Path, name: str, schema: pa.Schema) -> pa.Table:
    """All parts of one staged output as one table (for tests and small outputs)."""
    files = part_files(root, name)
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(f) for f in files]).cast(schema)
