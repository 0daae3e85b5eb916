"""Signed revenue effects per event type (the contract's table)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from pipelines.rules.effects import apply_effects
from schemas.money import REPORTING_MONEY_TYPE
from tests.utils import ts

CASES = [
    # type, amount, booked, won, lost, created, pipeline, refunds
    ("deal_created", "50.00", "0.00", 0, 0, 1, "50.00", "0.00"),
    ("deal_stage_changed", "50.00", "0.00", 0, 0, 0, "0.00", "0.00"),
    ("deal_won", "120.50", "120.50", 1, 0, 0, "0.00", "0.00"),
    ("deal_lost", "80.00", "0.00", 0, 1, 0, "0.00", "0.00"),
    ("deal_amended", "-20.25", "-20.25", 0, 0, 0, "0.00", "0.00"),
    ("deal_amended", "15.00", "15.00", 0, 0, 0, "0.00", "0.00"),
    ("deal_refunded", "30.00", "-30.00", 0, 0, 0, "0.00", "30.00"),
    ("deal_reopened", "120.50", "-120.50", -1, 0, 0, "0.00", "0.00"),
]


@pytest.mark.parametrize("event_type, amount, booked, won, lost, created, pipeline, refunds", CASES)
def test_effect_of_each_event_type(
    event_type, amount, booked, won, lost, created, pipeline, refunds
):
    events = pa.table(
        {
            "event_type": [event_type],
            "event_time": pa.array([ts("2026-03-01T23:30:00-05:00")], pa.timestamp("us", tz="UTC")),
            "amount_reporting": pa.array([Decimal(amount)], REPORTING_MONEY_TYPE),
        }
    )
    [row] = apply_effects(events).to_pylist()
    assert row["booked_revenue"] == Decimal(booked)
    assert (row["won_deals"], row["lost_deals"], row["created_deals"]) == (won, lost, created)
    assert row["pipeline_created"] == Decimal(pipeline)
    assert row["refunds"] == Decimal(refunds)
    assert row["day"] == dt.date(2026, 3, 2)  # UTC date, not the local one
