"""The two parallel views: sums of the measures per (key, day).

Partial aggregates of separate batches merge by summing again, so the same
functions serve a per-batch pre-aggregation and the final combine.
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from schemas.outputs import (
    ACCOUNT_MANAGER_REVENUE_SCHEMA,
    MEASURES,
    REVENUE_VIEWS,
    TERRITORY_REVENUE_SCHEMA,
)

VIEW_SCHEMAS: dict[str, pa.Schema] = {
    "territory_revenue": TERRITORY_REVENUE_SCHEMA,
    "account_manager_revenue": ACCOUNT_MANAGER_REVENUE_SCHEMA,
}


def aggregate_view(rows: pa.Table, view: str) -> pa.Table:
    """Sum the measures of ``rows`` per (view key, day); rows may be events or partials."""
    key = REVENUE_VIEWS[view]
    schema = VIEW_SCHEMAS[view]
    if rows.num_rows == 0:
        return schema.empty_table()
    grouped = rows.group_by([key, "day"], use_threads=False).aggregate(
        [(m, "sum") for m in MEASURES]
    )
    grouped = grouped.rename_columns({f"{m}_sum": m for m in MEASURES})
    return grouped.select(schema.names).cast(schema)


def merge_partials(partials: Iterable[pa.Table], view: str) -> pa.Table:
    """Merge partial aggregates of one view into one table with unique keys."""
    tables = [t for t in partials if t.num_rows]
    if not tables:
        return VIEW_SCHEMAS[view].empty_table()
    return aggregate_view(pa.concat_tables(tables), view)
