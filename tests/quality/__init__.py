"""Tests of the data-quality layer.

This package also holds their shared data: a small, consistent data set that
passes every suite, and helpers to plant defects (``from tests import quality
as c``). Every function returns fresh tables, so a test may change them freely.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from pipelines.rules.aggregate import aggregate_view
from pipelines.rules.effects import apply_effects, to_attributed_events
from schemas.money import REPORTING_MONEY_TYPE
from schemas.reference import REFERENCE_SCHEMAS, UNASSIGNED
from tests.utils import events_table, ts

RUN_ID = "20260301T000000Z-test"


def _validity(text: str | None) -> dt.datetime | None:
    return ts(text) if text else None


def reference() -> dict[str, pa.Table]:
    """Seven reference tables: a GLOBAL > NA/EMEA > ... tree, dated rules and owners."""
    accounts = [
        ("A1", "Acme", "US", "CA", "San Francisco", "94105", "software"),
        ("A2", "Bolt", "US", "NY", "New York", "10001", "retail"),
        ("A3", "Cogs", "DE", "BY", "Munich", "80331", "industry"),
        ("A4", "Dyne", "FR", "IDF", "Paris", "75001", "energy"),  # no rule: no_territory
    ]
    territories = [
        ("GLOBAL", "Global", None, "global"),
        ("NA", "North America", "GLOBAL", "region"),
        ("US", "United States", "NA", "country"),
        ("US-CA", "California", "US", "state"),
        ("US-NY", "New York", "US", "state"),
        ("EMEA", "EMEA", "GLOBAL", "region"),
        ("DE", "Germany", "EMEA", "country"),
    ]
    rules = [
        ("US", "US", None, None, None, None, None),
        ("US-CA", "US", "CA", None, None, None, None),
        ("US-NY", "US", "NY", None, None, "2020-01-01T00:00:00Z", None),
        # More specific than the state rule for A1 from 2026: no tie, a winner.
        ("US-CA", "us", None, None, "941", "2026-01-01T00:00:00Z", None),
        ("DE", "DE", None, None, None, None, None),
    ]
    managers = [
        ("GLOBAL", "P1", None, None),
        ("NA", "P2", None, "2026-01-01T00:00:00Z"),
        ("NA", "P3", "2026-01-01T00:00:00Z", None),
        ("DE", "P4", None, None),
    ]
    assignments = [
        ("A1", "P5", None, "2026-02-01T00:00:00Z"),
        ("A1", "P6", "2026-02-01T00:00:00Z", None),
        ("A2", "P5", None, None),
        ("A3", "P6", "2025-01-01T00:00:00Z", None),
    ]
    people = [(f"P{i}", f"Person {i}", f"p{i}@example.com",
               "territory_manager" if i <= 4 else "account_manager", None) for i in range(1, 7)]
    fx = [("USD", "2025-01-01", "1"), ("EUR", "2025-01-01", "1.1"), ("EUR", "2026-01-01", "1.08")]
    # A1's team: P5 60% / P6 40% until March, then P6 alone; P4 10% overlay throughout.
    splits = [("A1", "P5", "ae", "primary", "60", None, "2026-03-01T00:00:00Z"),
              ("A1", "P6", "ae", "primary", "40", None, "2026-03-01T00:00:00Z"),
              ("A1", "P4", "specialist", "overlay", "10", None, None),
              ("A1", "P6", "ae", "primary", "100", "2026-03-01T00:00:00Z", None)]

    def table(name: str, rows: list[tuple]) -> pa.Table:
        schema = REFERENCE_SCHEMAS[name]
        dicts = []
        for row in rows:
            record = dict(zip(schema.names, row, strict=True))
            for column in ("valid_from", "valid_to"):
                if column in record:
                    record[column] = _validity(record[column])
            if name == "fx_rates":
                record["rate_date"] = dt.date.fromisoformat(record["rate_date"])
                record["rate_to_reporting"] = Decimal(record["rate_to_reporting"])
            if name == "account_splits":
                record["percent"] = Decimal(record["percent"])
            dicts.append(record)
        return pa.Table.from_pylist(dicts, schema=schema)

    return {
        "accounts": table("accounts", accounts),
        "account_assignments": table("account_assignments", assignments),
        "territories": table("territories", territories),
        "territory_rules": table("territory_rules", rules),
        "territory_managers": table("territory_managers", managers),
        "people": table("people", people),
        "fx_rates": table("fx_rates", fx),
        "account_splits": table("account_splits", splits),
    }


# (event_id, type, time, account, amount, territory, account manager, territory manager, status)
OK = "attributed"
_EVENTS = [
    ("e01", "deal_created", "2026-03-01T09:00:00Z", "A1", "500.00", "US-CA", "P6", "P3", OK),
    ("e02", "deal_won", "2026-03-01T10:00:00Z", "A1", "400.00", "US-CA", "P6", "P3", OK),
    ("e03", "deal_created", "2026-03-01T11:00:00Z", "A2", "250.00", "US-NY", "P5", "P3", OK),
    ("e04", "deal_lost", "2026-03-01T12:00:00Z", "A2", "250.00", "US-NY", "P5", "P3", OK),
    ("e05", "deal_stage_changed", "2026-03-01T13:00:00Z", "A3", "90.00", "DE", "P6", "P4", OK),
    ("e06", "deal_won", "2026-03-02T09:00:00Z", "A3", "90.00", "DE", "P6", "P4", OK),
    ("e07", "deal_amended", "2026-03-02T10:00:00Z", "A1", "-25.50", "US-CA", "P6", "P3", OK),
    ("e08", "deal_refunded", "2026-03-02T11:00:00Z", "A3", "10.00", "DE", "P6", "P4", OK),
    ("e09", "deal_reopened", "2026-03-02T12:00:00Z", "A1", "400.00", "US-CA", "P6", "P3", OK),
    ("e10", "deal_won", "2026-03-02T13:00:00Z", "A4", "70.00", UNASSIGNED, UNASSIGNED, UNASSIGNED,
     "no_territory"),
]


def events() -> pa.Table:
    """Parsed events (EVENT_SCHEMA) before deduplication."""
    return events_table([
        {"event_id": e, "event_type": t, "event_time": when, "deal_id": f"D-{account}",
         "account_id": account, "amount": amount, "currency": "USD"}
        for e, t, when, account, amount, *_ in _EVENTS
    ])


def with_effects() -> pa.Table:
    """The same events converted (USD 1:1), enriched, with ``day`` and the six measures."""
    typed = events()
    enrichment = {e: rest for e, _t, _w, _a, _m, *rest in _EVENTS}
    ids = typed["event_id"].to_pylist()
    table = typed.append_column("amount_reporting", typed["amount"].cast(REPORTING_MONEY_TYPE))
    for position, column in enumerate(("territory_id", "account_manager_id",
                                       "territory_manager_id", "attribution_status")):
        table = table.append_column(column, pa.array([enrichment[i][position] for i in ids]))
    return apply_effects(table)


def attributed_events() -> pa.Table:
    """The published fact shape (ATTRIBUTED_EVENTS_SCHEMA)."""
    return to_attributed_events(with_effects(), RUN_ID)


def view(name: str) -> pa.Table:
    return aggregate_view(with_effects(), name)


def view_inputs(name: str) -> dict[str, pa.Table]:
    return {name: view(name), "attributed_events": attributed_events()}


def reconciliation_inputs() -> dict[str, pa.Table]:
    return {
        "attributed_events": attributed_events(),
        "territory_revenue": view("territory_revenue"),
        "account_manager_revenue": view("account_manager_revenue"),
    }


# ------------------------------------------------------------------ planting


def set_value(table: pa.Table, column: str, row: int, value) -> pa.Table:
    """``table`` with one cell replaced (types kept)."""
    values = table[column].to_pylist()
    values[row] = value
    field = table.schema.field(column)
    position = table.schema.get_field_index(column)
    return table.set_column(position, field.with_nullable(True),
                            pa.array(values, field.type))


def add_rows(table: pa.Table, rows: list[dict]) -> pa.Table:
    """``table`` with rows appended (missing columns null)."""
    schema = pa.schema([f.with_nullable(True) for f in table.schema])
    extra = pa.Table.from_pylist([{n: r.get(n) for n in schema.names} for r in rows],
                                 schema=schema)
    return pa.concat_tables([table.cast(schema), extra])


def row(table: pa.Table, index: int) -> dict:
    return table.slice(index, 1).to_pylist()[0]


def move_measure(view_table: pa.Table, measure: str) -> pa.Table:
    """Make row 0's ``measure`` negative and add the difference to row 1: totals unchanged."""
    values = view_table[measure].to_pylist()
    delta = values[0] + (1 if isinstance(values[0], int) else Decimal("1.00"))
    values[0] -= delta
    values[1] += delta
    position = view_table.schema.get_field_index(measure)
    return view_table.set_column(position, view_table.schema.field(measure),
                                 pa.array(values, view_table.schema.field(measure).type))


