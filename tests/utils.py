"""Shared test helpers: small typed event tables written by hand."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from schemas.events import EVENT_SCHEMA
from schemas.money import REPORTING_MONEY_TYPE

UTC = dt.UTC


def ts(text: str) -> dt.datetime:
    """'2026-03-01T14:05:00Z' -> aware datetime."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def events_table(rows: list[dict]) -> pa.Table:
    """Typed events (EVENT_SCHEMA) from partial dicts; unspecified fields get defaults."""
    defaults = {
        "event_type": "deal_won",
        "event_time": "2026-03-01T12:00:00Z",
        "deal_id": "D1",
        "account_id": "A1",
        "amount": "100.00",
        "currency": "USD",
        "stage": None,
        "product": None,
        "opportunity_owner_id": None,
        "source": "events.jsonl",
    }
    full = []
    for position, row in enumerate(rows, start=1):
        merged = {**defaults, "position": position, **row}
        merged["event_time"] = ts(merged["event_time"])
        merged["amount"] = Decimal(merged["amount"])
        full.append(merged)
    return pa.Table.from_pylist(full, schema=EVENT_SCHEMA)


def fact_row(event_id: str, booked: str, day: str = "2026-03-01", **fields: object) -> dict:
    """One attributed_events row: a deal_won of ``booked`` USD on ``day``; ``fields`` override."""
    return {
        "event_id": event_id,
        "event_type": "deal_won",
        "event_time": ts(f"{day}T10:00:00Z"),
        "day": dt.date.fromisoformat(day),
        "deal_id": f"D-{event_id}",
        "account_id": "A1",
        "currency": "USD",
        "amount": Decimal(booked),
        "booked_revenue": Decimal(booked),
        "pipeline_created": Decimal(0),
        "account_manager_id": "M1",
        "territory_id": "T1",
        "territory_manager_id": "TM1",
        "attribution_status": "attributed",
        "run_id": "r",
        "stage": None,
        "product": None,
        "opportunity_owner_id": None,
        "amount_reporting": Decimal(booked),
        "refunds": Decimal(0),
        "won_deals": 1,
        "lost_deals": 0,
        "created_deals": 0,
        **fields,
    }


def money(value: str) -> pa.Scalar:
    return pa.scalar(Decimal(value), REPORTING_MONEY_TYPE)


def copy_database(source, target):
    """Copy a published database (catalog + its ``.d`` folder); the copy's views read the copy."""
    import shutil
    from pathlib import Path

    from pipelines.io.publication import Publication

    source, target = Path(source), Path(target)
    shutil.copytree(source.with_name(source.name + ".d"), target.with_name(target.name + ".d"))
    shutil.copy(source, target)
    Publication(target).prepare()  # the catalog's paths now point into the copy
    return target


def edit_published(db, relation: str, *statements: tuple[str, list] | str) -> None:
    """Tamper with a published relation: run UPDATEs on its rows, write them back in place.

    The rows of the relation's live parts are loaded into a table named like the
    relation, edited, and written over the newest part (older live parts are emptied).
    """
    import os

    import duckdb

    from pipelines.io.publication import Publication

    parts = Publication(db).live_parts(relation)
    files = ", ".join(f"'{p.path}'" for p in parts)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {relation} AS SELECT * FROM read_parquet([{files}])").fetchall()
    for statement in statements:
        sql, params = (statement, None) if isinstance(statement, str) else statement
        con.execute(sql, params).fetchall()
    for i, part in enumerate(parts):
        tmp = part.path.with_name("_tmp-edit.parquet")
        rows = relation if i == len(parts) - 1 else f"(SELECT * FROM {relation} LIMIT 0)"
        con.execute(f"COPY {rows} TO '{tmp}' (FORMAT parquet)").fetchall()
        os.replace(tmp, part.path)
    con.close()
