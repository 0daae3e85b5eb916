"""Per (key, day) sums, and merging partials of several batches."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from pipelines.rules.aggregate import VIEW_SCHEMAS, aggregate_view, merge_partials
from schemas.outputs import MEASURES


def _rows(rows: list[tuple[str, str, str, int]]) -> pa.Table:
    data = []
    for key, day, booked, won in rows:
        row = {m: 0 for m in MEASURES}
        row.update(
            territory_id=key,
            account_manager_id="AM",
            day=dt.date.fromisoformat(day),
            booked_revenue=Decimal(booked),
            won_deals=won,
            pipeline_created=Decimal(0),
            refunds=Decimal(0),
        )
        data.append(row)
    return pa.Table.from_pylist(data).cast(
        pa.schema(
            [
                VIEW_SCHEMAS["territory_revenue"].field(n)
                if n in VIEW_SCHEMAS["territory_revenue"].names
                else pa.field(n, pa.string())
                for n in data[0]
            ]
        )
    )


def test_sums_per_key_and_day_exactly():
    out = aggregate_view(
        _rows(
            [
                ("T1", "2026-01-01", "0.10", 1),
                ("T1", "2026-01-01", "0.20", 1),
                ("T2", "2026-01-01", "5.00", 0),
                ("T1", "2026-01-02", "1.00", 1),
            ]
        ),
        "territory_revenue",
    )
    got = {
        (r["territory_id"], str(r["day"])): (r["booked_revenue"], r["won_deals"])
        for r in out.to_pylist()
    }
    assert got == {
        ("T1", "2026-01-01"): (Decimal("0.30"), 2),
        ("T2", "2026-01-01"): (Decimal("5.00"), 0),
        ("T1", "2026-01-02"): (Decimal("1.00"), 1),
    }
    assert out.schema == VIEW_SCHEMAS["territory_revenue"]


def test_merging_partials_of_two_batches_equals_aggregating_all_rows():
    a = _rows([("T1", "2026-01-01", "1.01", 1), ("T2", "2026-01-01", "2.00", 1)])
    b = _rows([("T1", "2026-01-01", "-0.01", 0), ("T3", "2026-01-03", "3.00", 1)])
    merged = merge_partials(
        [aggregate_view(a, "territory_revenue"), aggregate_view(b, "territory_revenue")],
        "territory_revenue",
    )
    direct = aggregate_view(pa.concat_tables([a, b]), "territory_revenue")
    key = ["territory_id", "day"]
    assert merged.sort_by([(k, "ascending") for k in key]).equals(
        direct.sort_by([(k, "ascending") for k in key])
    )
    assert merged.num_rows == 3


def test_account_manager_view_groups_by_manager():
    out = aggregate_view(
        _rows([("T1", "2026-01-01", "1.00", 1), ("T2", "2026-01-01", "2.00", 1)]),
        "account_manager_revenue",
    )
    assert out.to_pylist()[0]["booked_revenue"] == Decimal("3.00")
    assert out.num_rows == 1


def test_no_partials_give_an_empty_table_of_the_view_schema():
    assert merge_partials([], "territory_revenue").schema == VIEW_SCHEMAS["territory_revenue"]
