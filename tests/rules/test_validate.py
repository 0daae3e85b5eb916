"""validate_events: raw string records -> typed events + rejects (reason, detail)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from pipelines.rules.validate import REASON_ORDER, rejects_from, validate_events
from schemas.events import EVENT_SCHEMA, EVENT_TYPES, QUARANTINE_REASONS, RAW_EVENT_SCHEMA
from schemas.rejects import REJECT_SCHEMA

UTC = dt.UTC

GOOD = {
    "event_id": "evt-1",
    "event_type": "deal_won",
    "event_time": "2026-03-01T14:05:00Z",
    "deal_id": "D-1",
    "account_id": "A-1",
    "amount": "1234.56",
    "currency": "USD",
    "stage": "Closed Won",
    "product": "Pro",
    "opportunity_owner_id": "U-1",
}


def raw_batch(*rows: dict) -> pa.RecordBatch:
    """RAW_EVENT_SCHEMA rows: GOOD overridden by each dict; lineage filled in."""
    full = []
    for position, row in enumerate(rows, start=1):
        record = {**GOOD, "source": "events.jsonl", "position": position,
                  "raw": f"line {position}", "reason": None, "detail": None, **row}
        full.append(record)
    return pa.RecordBatch.from_pylist(full, schema=RAW_EVENT_SCHEMA)


def one(**row) -> tuple[pa.Table, pa.Table]:
    return validate_events(raw_batch(row))


def rejected(**row) -> dict:
    events, rejects = one(**row)
    assert events.num_rows == 0, f"expected a reject, got {events.to_pylist()}"
    assert rejects.num_rows == 1
    return rejects.to_pylist()[0]


def accepted(**row) -> dict:
    events, rejects = one(**row)
    assert rejects.num_rows == 0, rejects.to_pylist()
    assert events.num_rows == 1
    return events.to_pylist()[0]


# --------------------------------------------------------------------------- basics


def test_clean_row_is_typed_and_keeps_lineage():
    events, rejects = validate_events(raw_batch({}))
    assert events.schema == EVENT_SCHEMA
    assert rejects.schema == REJECT_SCHEMA
    assert rejects.num_rows == 0
    row = events.to_pylist()[0]
    assert row["event_time"] == dt.datetime(2026, 3, 1, 14, 5, tzinfo=UTC)
    assert row["amount"] == Decimal("1234.56")
    assert (row["source"], row["position"]) == ("events.jsonl", 1)
    assert row["stage"] == "Closed Won"


def test_empty_input():
    events, rejects = validate_events(RAW_EVENT_SCHEMA.empty_table())
    assert events.num_rows == 0 and events.schema == EVENT_SCHEMA
    assert rejects.num_rows == 0 and rejects.schema == REJECT_SCHEMA


def test_accepts_a_table_with_several_chunks():
    table = pa.Table.from_batches([raw_batch({}), raw_batch({"event_id": "evt-2"})])
    events, rejects = validate_events(table)
    assert events.column("event_id").to_pylist() == ["evt-1", "evt-2"]
    assert rejects.num_rows == 0


def test_reason_order_follows_the_contract_except_currency_before_amount():
    assert set(REASON_ORDER) <= set(QUARANTINE_REASONS)
    assert REASON_ORDER.index("bad_currency") < REASON_ORDER.index("bad_amount")
    others = [r for r in REASON_ORDER if r not in ("bad_currency", "bad_amount")]
    assert others == [r for r in QUARANTINE_REASONS if r in others]


# --------------------------------------------------------------------------- every reason


@pytest.mark.parametrize(
    ("row", "reason", "detail"),
    [
        ({"reason": "malformed", "detail": "not valid JSON: Expecting value at column 1",
          "event_id": None}, "malformed", "not valid JSON"),
        ({"reason": "bad_type", "detail": "field deal_id is a number, expected a string",
          "deal_id": None}, "bad_type", "field deal_id is a number"),
        ({"event_id": None}, "missing_field", "missing required field event_id"),
        ({"account_id": None}, "missing_field", "missing required field account_id"),
        ({"deal_id": "  "}, "missing_field", "required field deal_id is empty"),
        ({"amount": ""}, "missing_field", "required field amount is empty"),
        ({"currency": None}, "missing_field", "missing required field currency"),
        ({"deal_id": "d" * 129}, "bad_type", "field deal_id is 129 characters long (max 128)"),
        ({"event_id": "e\x07"}, "bad_type", "field event_id holds a control character"),
        ({"account_id": "A\u0085"}, "bad_type", "field account_id holds a control character"),
        ({"deal_id": "D\x7f1"}, "bad_type", "field deal_id holds a control character"),
        ({"event_id": "é" * 129}, "bad_type", "field event_id is 129 characters"),
        ({"event_type": "deal_closed"}, "unknown_event_type", "unknown event_type 'deal_closed'"),
        ({"event_type": "Deal_Won"}, "unknown_event_type", "'Deal_Won'"),
        ({"event_time": "2026-03-01T14:05:00"}, "bad_timestamp",
         "event_time '2026-03-01T14:05:00' has no UTC offset"),
        ({"event_time": "2026-03-01"}, "bad_timestamp", "is not an RFC 3339 timestamp"),
        ({"event_time": "2026-03-01T14:05Z"}, "bad_timestamp", "is not an RFC 3339 timestamp"),
        ({"event_time": "2026-03-01T14:05:00+0500"}, "bad_timestamp", "not an RFC 3339"),
        ({"event_time": "yesterday"}, "bad_timestamp", "event_time 'yesterday'"),
        ({"event_time": "2026-02-30T14:05:00Z"}, "bad_timestamp", "not a valid date and time"),
        ({"event_time": "2026-03-01T25:05:00Z"}, "bad_timestamp", "not a valid date and time"),
        ({"event_time": "2026-03-01T23:59:60Z"}, "bad_timestamp", "not a valid date and time"),
        ({"event_time": "2026-03-01T10:00:00+24:00"}, "bad_timestamp", "not a valid date"),
        ({"event_time": "2026-13-01T10:00:00Z"}, "bad_timestamp", "not a valid date"),
        ({"event_time": "9999-12-31T23:00:00-05:00"}, "bad_timestamp", "is out of range"),
        ({"currency": "usd"}, "bad_currency", "currency 'usd' is not an ISO 4217 code"),
        ({"currency": " USD"}, "bad_currency", "3 upper-case letters"),
        ({"currency": "XYZ"}, "bad_currency", "currency 'XYZ' is not a known ISO 4217 code"),
        ({"amount": "1e3"}, "bad_amount", "amount '1e3' uses an exponent"),
        ({"amount": "1.5E+2"}, "bad_amount", "uses an exponent"),
        ({"amount": "1,000.00"}, "bad_amount", "amount '1,000.00' is not a plain decimal"),
        ({"amount": " 10"}, "bad_amount", "is not a plain decimal"),
        ({"amount": "10."}, "bad_amount", "is not a plain decimal"),
        ({"amount": "NaN"}, "bad_amount", "is not a plain decimal"),
        ({"amount": "10000000000000"}, "bad_amount", "is too large"),
        ({"amount": "12.345"}, "bad_amount",
         "amount '12.345' has more decimals than USD allows (2)"),
        ({"amount": "-5.00"}, "bad_amount", "deal_won amount must be > 0, got -5.00"),
    ],
)
def test_each_reason_with_its_detail(row, reason, detail):
    reject = rejected(**row)
    assert reject["reason"] == reason
    assert detail in reject["detail"]
    assert (reject["source"], reject["position"]) == ("events.jsonl", 1)
    assert reject["raw"] == "line 1"


def test_long_values_are_cut_in_details():
    reject = rejected(event_type="x" * 500)
    assert reject["reason"] == "unknown_event_type"
    assert "x" * 60 + "..." in reject["detail"]
    assert len(reject["detail"]) < 250


def test_first_failing_check_wins():
    # missing_field before unknown_event_type and bad_amount
    assert rejected(event_id=None, event_type="nope", amount="x")["reason"] == "missing_field"
    # bad_type before bad_timestamp
    assert rejected(account_id="a" * 200, event_time="nope")["reason"] == "bad_type"
    # unknown_event_type before bad_timestamp
    assert rejected(event_type="nope", event_time="nope")["reason"] == "unknown_event_type"
    # bad_timestamp before bad_currency
    assert rejected(event_time="nope", currency="nope")["reason"] == "bad_timestamp"
    # bad_currency before bad_amount: the amount's digits depend on the currency
    assert rejected(currency="XYZ", amount="1,5")["reason"] == "bad_currency"
    # the reader's reason first of all
    reject = rejected(reason="malformed", detail="not valid JSON", event_id=None, amount=None)
    assert (reject["reason"], reject["detail"]) == ("malformed", "not valid JSON")


def test_first_missing_field_is_named():
    reject = rejected(event_time=None, currency=None)
    assert reject["detail"] == "missing required field event_time"


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("event_type", "amount", "ok"),
    [
        ("deal_created", "0", True),
        ("deal_created", "0.00", True),
        ("deal_created", "-0.01", False),
        ("deal_stage_changed", "0", True),
        ("deal_stage_changed", "-1", False),
        ("deal_won", "0", False),
        ("deal_won", "0.01", True),
        ("deal_won", "-0.01", False),
        ("deal_lost", "0", True),
        ("deal_lost", "-1", False),
        ("deal_amended", "0", False),
        ("deal_amended", "-0.00", False),
        ("deal_amended", "-250.00", True),
        ("deal_amended", "250.00", True),
        ("deal_refunded", "0", False),
        ("deal_refunded", "10", True),
        ("deal_refunded", "-10", False),
        ("deal_reopened", "0", False),
        ("deal_reopened", "10", True),
        ("deal_reopened", "-10", False),
    ],
)
def test_sign_rule_per_event_type(event_type, amount, ok):
    events, rejects = one(event_type=event_type, amount=amount)
    if ok:
        assert events.num_rows == 1 and rejects.num_rows == 0
        assert events["amount"][0].as_py() == Decimal(amount)
    else:
        assert events.num_rows == 0
        reject = rejects.to_pylist()[0]
        assert reject["reason"] == "bad_amount"
        assert reject["detail"].startswith(f"{event_type} amount must be ")
        assert reject["detail"].endswith(f", got {amount}")


def test_every_event_type_has_a_sign_rule_case():
    assert len(EVENT_TYPES) == 7


@pytest.mark.parametrize(
    ("currency", "amount", "value"),
    [
        ("JPY", "1500", Decimal("1500")),
        ("JPY", "1500.00", Decimal("1500")),  # zeros beyond the minor units are fine
        ("KWD", "1.234", Decimal("1.234")),
        ("KWD", "1.2340", Decimal("1.234")),
        ("USD", "10.5", Decimal("10.5")),
        ("USD", "10.500000", Decimal("10.5")),
        ("USD", "+12.00", Decimal("12")),
        ("USD", "0012.50", Decimal("12.5")),
        ("USD", "0.10", Decimal("0.1")),
        ("USD", "9999999999999.99", Decimal("9999999999999.99")),
        ("USD", "00009999999999999.99", Decimal("9999999999999.99")),
        ("KWD", "9999999999999.999", Decimal("9999999999999.999")),
    ],
)
def test_amounts_accepted_exactly(currency, amount, value):
    row = accepted(currency=currency, amount=amount)
    assert row["amount"] == value


@pytest.mark.parametrize(
    ("currency", "amount", "detail"),
    [
        ("JPY", "10.5", "has more decimals than JPY allows (0)"),
        ("JPY", "10.50", "has more decimals than JPY allows (0)"),
        ("USD", "10.001", "has more decimals than USD allows (2)"),
        ("KWD", "1.2345", "has more decimals than KWD allows (3)"),
        ("USD", "10000000000000", "too large"),
        ("USD", "10000000000000.00", "too large"),
        ("USD", "-10000000000000", "too large"),
        ("USD", "123456789012345678901234567890", "too large"),
    ],
)
def test_amounts_rejected(currency, amount, detail):
    reject = rejected(currency=currency, amount=amount, event_type="deal_amended")
    assert reject["reason"] == "bad_amount"
    assert detail in reject["detail"]


def test_amount_just_below_the_limit_and_negative_amendment():
    events, rejects = validate_events(raw_batch(
        {"amount": "9999999999999.99"},
        {"amount": "-9999999999999.99", "event_type": "deal_amended"},
        {"amount": "10000000000000"},
    ))
    assert events["amount"].to_pylist() == [Decimal("9999999999999.99"),
                                           Decimal("-9999999999999.99")]
    assert rejects["position"].to_pylist() == [3]


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-03-01T14:05:00Z", dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01T09:05:00-05:00", dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01T19:35:00+05:30", dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01T22:30:00-05:00", dt.datetime(2026, 3, 2, 3, 30)),  # crosses midnight
        ("2026-03-01 14:05:00Z", dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01t14:05:00z", dt.datetime(2026, 3, 1, 14, 5)),
        ("2026-03-01T14:05:00.5Z", dt.datetime(2026, 3, 1, 14, 5, 0, 500000)),
        ("2026-03-01T14:05:00.123456789Z", dt.datetime(2026, 3, 1, 14, 5, 0, 123456)),
        ("2024-02-29T00:00:00+14:00", dt.datetime(2024, 2, 28, 10, 0)),
    ],
)
def test_timestamps_converted_to_utc(text, utc):
    assert accepted(event_time=text)["event_time"] == utc.replace(tzinfo=UTC)


def test_impossible_date_rejected_without_failing_the_batch():
    events, rejects = validate_events(raw_batch(
        {"event_id": "a", "event_time": "2026-03-01T14:05:00Z"},
        {"event_id": "b", "event_time": "2026-02-30T14:05:00Z"},
        {"event_id": "c", "event_time": "2024-02-29T14:05:00-01:00"},
        {"event_id": "d", "event_time": "2026-02-29T14:05:00Z"},  # not a leap year
        {"event_id": "e", "event_time": "2026-03-01t14:05:00.1234567z"},
    ))
    assert events["event_id"].to_pylist() == ["a", "c", "e"]
    assert events["event_time"].to_pylist()[1] == dt.datetime(2024, 2, 29, 15, 5, tzinfo=UTC)
    assert rejects["position"].to_pylist() == [2, 4]
    assert set(rejects["reason"].to_pylist()) == {"bad_timestamp"}


# --------------------------------------------------------------------------- other fields


def test_optional_fields_empty_become_null_and_nothing_is_trimmed():
    row = accepted(stage="", product=None, opportunity_owner_id="", event_id=" evt ")
    assert row["stage"] is None and row["product"] is None
    assert row["opportunity_owner_id"] is None
    assert row["event_id"] == " evt "


def test_mixed_batch_keeps_order_and_positions():
    events, rejects = validate_events(raw_batch(
        {"event_id": "a"},
        {"event_id": "b", "currency": "???"},
        {"event_id": "c"},
        {"event_id": "d", "amount": "abc"},
        {"event_id": "e", "event_type": "deal_lost", "amount": "0"},
    ))
    assert events["event_id"].to_pylist() == ["a", "c", "e"]
    assert events["position"].to_pylist() == [1, 3, 5]
    assert rejects.to_pydict()["position"] == [2, 4]
    assert rejects.to_pydict()["reason"] == ["bad_currency", "bad_amount"]
    assert rejects.to_pydict()["raw"] == ["line 2", "line 4"]


# --------------------------------------------------------------------------- rejects_from


def test_rejects_from_variants():
    rows = pa.table({"source": ["f", "f"], "position": pa.array([3, 7], pa.int64()),
                     "event_id": ["x", "y"]})
    out = rejects_from(rows, "conflicting_duplicate", None)
    assert out.schema == REJECT_SCHEMA
    assert out.to_pydict() == {"source": ["f", "f"], "position": [3, 7], "raw": [None, None],
                               "reason": ["conflicting_duplicate"] * 2, "detail": [None, None]}
    out = rejects_from(rows, "no_fx_rate", "no rate for EUR")
    assert out["detail"].to_pylist() == ["no rate for EUR"] * 2
    out = rejects_from(rows.append_column("raw", pa.array(["r1", "r2"])), "no_fx_rate",
                       pa.chunked_array([["d1"], ["d2"]]))
    assert out["raw"].to_pylist() == ["r1", "r2"]
    assert out["detail"].to_pylist() == ["d1", "d2"]
    assert rejects_from(rows.slice(0, 0), "x", None).num_rows == 0
    with pytest.raises(ValueError):
        rejects_from(rows, "x", pa.array(["only one"]))
