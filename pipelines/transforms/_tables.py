"""Small helpers shared by the transforms: element type is a ``pa.Table`` batch."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
from apache_beam import pvalue

QUARANTINE = "quarantine"


def non_empty(table: pa.Table) -> Iterator[pa.Table]:
    """Yield the table only when it has rows (empty batches are not shipped)."""
    if table.num_rows:
        yield table


def tagged(tag: str, table: pa.Table) -> Iterator[pvalue.TaggedOutput]:
    """Yield the table to a tagged output when it has rows."""
    if table.num_rows:
        yield pvalue.TaggedOutput(tag, table)
