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


def money(value: str) -> pa.Scalar:
    return pa.scalar(Decimal(value), REPORTING_MONEY_TYPE)
