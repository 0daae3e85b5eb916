"""Matchers over PCollections of ``pa.Table`` batches, with readable diffs."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from apache_beam.testing.util import BeamAssertException


def rows_of(tables: list[pa.Table], columns: list[str]) -> list[tuple]:
    """All rows of all batches, projected on ``columns``, sorted."""
    rows = []
    for table in tables:
        rows.extend(tuple(r[c] for c in columns) for r in table.select(columns).to_pylist())
    return sorted(rows, key=repr)


def rows_equal(columns: list[str], expected: list[tuple]) -> Callable[[list[pa.Table]], None]:
    """Assert the batches hold exactly ``expected`` rows (order-insensitive)."""
    want = sorted(expected, key=repr)

    def _match(tables: list[pa.Table]) -> None:
        got = rows_of(tables, columns)
        if got != want:
            missing = [r for r in want if r not in got]
            extra = [r for r in got if r not in want]
            raise BeamAssertException(f"rows differ: missing {missing}, unexpected {extra}")

    return _match
