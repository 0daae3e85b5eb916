"""Wiring of each composite step with TestPipeline + assert_that.

The rules themselves are tested without Beam in tests/rules.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from pipelines.transforms._tables import QUARANTINE
from pipelines.transforms.aggregate_views import AggregateViews
from pipelines.transforms.deduplicate import DUPLICATES, Deduplicate
from pipelines.transforms.parse_events import ParseEvents
from schemas.events import RAW_EVENT_SCHEMA
from tests.transforms.matchers import rows_equal
from tests.utils import events_table


def raw_batch(rows: list[dict]) -> pa.Table:
    full = [{"source": "f.jsonl", "position": i, **r} for i, r in enumerate(rows, start=1)]
    return pa.Table.from_pylist(full, schema=RAW_EVENT_SCHEMA)


GOOD = {
    "event_id": "e1",
    "event_type": "deal_won",
    "event_time": "2026-03-01T10:00:00Z",
    "deal_id": "D1",
    "account_id": "A1",
    "amount": "10.00",
    "currency": "USD",
}


def test_parse_events_sends_each_bad_record_to_quarantine_with_its_reason():
    batch = raw_batch(
        [
            GOOD,
            {**GOOD, "event_id": "e2", "event_type": "deal_teleported"},
            {**GOOD, "event_id": "e3", "currency": "usd"},
        ]
    )
    with TestPipeline() as p:
        out = p | beam.Create([batch]) | ParseEvents()
        assert_that(out.events, rows_equal(["event_id"], [("e1",)]), label="Events")
        assert_that(
            out[QUARANTINE],
            rows_equal(["position", "reason"], [(2, "unknown_event_type"), (3, "bad_currency")]),
            label="Quarantine",
        )


@pytest.mark.parametrize("spill", [False, True], ids=["rows_shuffled", "shard_files_shuffled"])
def test_deduplicate_finds_repeats_that_arrive_in_different_batches(spill, tmp_path):
    first = events_table([{"event_id": "e1"}, {"event_id": "e2"}])
    second = events_table(
        [{"event_id": "e1", "position": 10}, {"event_id": "e2", "amount": "99.00", "position": 11}]
    )
    with TestPipeline() as p:
        spill_dir = str(tmp_path / "spill") if spill else None
        out = p | beam.Create([first, second]) | Deduplicate(None, shards=4, spill_dir=spill_dir)
        assert_that(
            out.unique, rows_equal(["event_id", "position"], [("e1", 1), ("e2", 2)]), label="Unique"
        )
        assert_that(
            out[DUPLICATES], rows_equal(["event_id", "position"], [("e1", 10)]), label="Duplicates"
        )
        assert_that(
            out[QUARANTINE],
            rows_equal(["position", "reason"], [(11, "conflicting_duplicate")]),
            label="Conflicts",
        )


def test_aggregate_views_combines_batches_into_one_row_per_key_and_day():
    def attributed(territory: str, manager: str, booked: str) -> dict:
        return {
            "territory_id": territory,
            "account_manager_id": manager,
            "day": dt.date(2026, 3, 1),
            "booked_revenue": Decimal(booked),
            "won_deals": 1,
            "lost_deals": 0,
            "created_deals": 0,
            "pipeline_created": Decimal(0),
            "refunds": Decimal(0),
        }

    schema = pa.schema(
        [
            ("territory_id", pa.string()),
            ("account_manager_id", pa.string()),
            ("day", pa.date32()),
            ("booked_revenue", pa.decimal128(18, 2)),
            ("won_deals", pa.int64()),
            ("lost_deals", pa.int64()),
            ("created_deals", pa.int64()),
            ("pipeline_created", pa.decimal128(18, 2)),
            ("refunds", pa.decimal128(18, 2)),
        ]
    )
    a = pa.Table.from_pylist(
        [attributed("T1", "M1", "1.10"), attributed("T2", "M1", "2.00")], schema
    )
    b = pa.Table.from_pylist([attributed("T1", "M2", "0.05")], schema)
    with TestPipeline() as p:
        views = p | beam.Create([a, b]) | AggregateViews()
        assert_that(
            views["territory_revenue"],
            rows_equal(
                ["territory_id", "booked_revenue", "won_deals"],
                [("T1", Decimal("1.15"), 2), ("T2", Decimal("2.00"), 1)],
            ),
            label="Territory",
        )
        assert_that(
            views["account_manager_revenue"],
            rows_equal(
                ["account_manager_id", "booked_revenue"],
                [("M1", Decimal("3.10")), ("M2", Decimal("0.05"))],
            ),
            label="Manager",
        )
