"""Dated FX conversion: rate choice, exact half-even rounding, no_fx_rate rejects."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from pipelines.errors import UserError
from pipelines.rules.fx import convert_to_reporting
from schemas.money import REPORTING_MONEY_TYPE
from schemas.reference import REFERENCE_SCHEMAS
from schemas.rejects import REJECT_SCHEMA
from tests.utils import events_table


def fx(rows: list[tuple[str, str, str]]) -> pa.Table:
    return pa.table(
        {
            "currency": [r[0] for r in rows],
            "rate_date": [dt.date.fromisoformat(r[1]) for r in rows],
            "rate_to_reporting": [Decimal(r[2]) for r in rows],
        },
        schema=REFERENCE_SCHEMAS["fx_rates"],
    )


RATES = fx([
    ("EUR", "2026-01-01", "1.10"),
    # no row on 2026-01-02: the 1st's rate still applies
    ("EUR", "2026-01-03", "1.20"),
    ("EUR", "2026-01-04", "1.30"),
    ("JPY", "2026-01-01", "0.0066666667"),
])


def converted(events: pa.Table, rates: pa.Table = RATES, currency: str = "USD") -> list:
    out, rejects = convert_to_reporting(events, rates, currency)
    assert rejects.num_rows == 0, rejects.to_pylist()
    return [str(v) for v in out["amount_reporting"].to_pylist()]


def test_half_even_rounding_of_exact_products():
    events = events_table([
        {"amount": "0.125"}, {"amount": "0.135"}, {"amount": "-0.125"}, {"amount": "2.675"},
        {"amount": "0.005"}, {"amount": "0.015"},
    ])
    assert converted(events) == ["0.12", "0.14", "-0.12", "2.68", "0.00", "0.02"]


def test_half_even_after_a_rate_multiply():
    # 1.15 EUR * 1.10 = 1.265 exactly -> 1.26 (even); 1.25 * 1.10 = 1.375 -> 1.38
    events = events_table([
        {"amount": "1.15", "currency": "EUR", "event_time": "2026-01-01T12:00:00Z"},
        {"amount": "1.25", "currency": "EUR", "event_time": "2026-01-01T12:00:00Z"},
    ])
    assert converted(events) == ["1.26", "1.38"]


def test_latest_rate_on_or_before_the_utc_date_with_a_gap_day():
    events = events_table([
        {"amount": "100", "currency": "EUR", "event_time": "2026-01-01T00:00:00Z"},
        {"amount": "100", "currency": "EUR", "event_time": "2026-01-02T23:59:59Z"},  # gap day
        {"amount": "100", "currency": "EUR", "event_time": "2026-01-03T00:00:00Z"},
        {"amount": "100", "currency": "EUR", "event_time": "2026-02-01T00:00:00Z"},  # latest
    ])
    assert converted(events) == ["110.00", "110.00", "120.00", "130.00"]


def test_an_evening_event_west_of_utc_uses_the_next_utc_days_rate():
    events = events_table([
        # 23:30-05:00 on the 2nd is 04:30Z on the 3rd
        {"amount": "100", "currency": "EUR", "event_time": "2026-01-02T23:30:00-05:00"},
        # 00:30+02:00 on the 3rd is 22:30Z on the 2nd
        {"amount": "100", "currency": "EUR", "event_time": "2026-01-03T00:30:00+02:00"},
    ])
    assert converted(events) == ["120.00", "110.00"]


def test_reporting_currency_needs_no_rows_and_always_uses_rate_one():
    events = events_table([{"amount": "12.34", "currency": "USD"}])
    assert converted(events, fx([])) == ["12.34"]
    assert converted(events, fx([("USD", "2026-01-01", "0.5")])) == ["12.34"]


def test_jpy_to_usd_and_usd_to_eur_reporting():
    events = events_table([
        {"amount": "1000000", "currency": "JPY", "event_time": "2026-02-01T00:00:00Z"},
        {"amount": "1", "currency": "JPY", "event_time": "2026-02-01T00:00:00Z"},
    ])
    # 1,000,000 * 0.0066666667 = 6666.6667 -> 6666.67; 1 * ... = 0.0066666667 -> 0.01
    assert converted(events) == ["6666.67", "0.01"]
    to_eur = fx([("USD", "2026-01-01", "0.9")])
    usd = events_table([{"amount": "10.01", "currency": "USD"},
                        {"amount": "5", "currency": "EUR"}])
    assert converted(usd, to_eur, "EUR") == ["9.01", "5.00"]  # 9.009 -> 9.01


def test_no_rate_is_rejected_with_a_detail():
    events = events_table([
        {"event_id": "e1", "amount": "1", "currency": "EUR",
         "event_time": "2025-12-31T23:00:00Z"},  # too early
        {"event_id": "e2", "amount": "2", "currency": "GBP",
         "event_time": "2026-01-03T10:00:00Z"},  # no rows
        {"event_id": "e3", "amount": "3", "currency": "EUR",
         "event_time": "2026-01-03T10:00:00Z"},  # fine
    ])
    out, rejects = convert_to_reporting(events, RATES)
    ids = events["event_id"].to_pylist()
    assert out["position"].to_pylist() == [3]
    assert out.schema.field("amount_reporting").type == REPORTING_MONEY_TYPE
    assert rejects.schema == REJECT_SCHEMA
    assert rejects.to_pylist() == [
        {"source": "events.jsonl", "position": 1, "raw": None, "reason": "no_fx_rate",
         "detail": f"no EUR rate on or before 2025-12-31 for event {ids[0]}"},
        {"source": "events.jsonl", "position": 2, "raw": None, "reason": "no_fx_rate",
         "detail": f"no GBP rate on or before 2026-01-03 for event {ids[1]} "
                   "(fx_rates has no GBP rows)"},
    ]


def test_raw_is_carried_into_rejects_when_events_have_it():
    events = events_table([{"amount": "1", "currency": "CHF"}])
    events = events.append_column("raw", pa.array(['{"event_id": "E1"}']))
    _, rejects = convert_to_reporting(events, RATES)
    assert rejects["raw"].to_pylist() == ['{"event_id": "E1"}']


def test_a_result_beyond_decimal_18_2_is_rejected_not_wrapped():
    huge = fx([("JPY", "2026-01-01", "99999999")])
    events = events_table([{"amount": "9999999999999", "currency": "JPY"}])
    out, rejects = convert_to_reporting(events, huge)
    assert out.num_rows == 0
    assert rejects["reason"].to_pylist() == ["bad_amount"]


def test_empty_batch():
    out, rejects = convert_to_reporting(events_table([]), RATES)
    assert out.num_rows == 0 and rejects.num_rows == 0
    assert "amount_reporting" in out.column_names


@pytest.mark.parametrize("currency", ["XYZ", "KWD"])
def test_unusable_reporting_currency_is_a_user_error(currency):
    with pytest.raises(UserError):
        convert_to_reporting(events_table([{}]), RATES, currency)
