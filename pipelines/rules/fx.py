"""Dated FX conversion into the reporting currency, exact and rounded once.

The rate of an event is the ``fx_rates`` row of its currency with the latest
``rate_date`` on or before the event's UTC date (CONTRACT.md section 2); an
event already in the reporting currency uses rate 1, whatever the table holds.
``amount x rate`` is computed exactly in decimal (decimal128(16,3) x
decimal128(18,10) -> decimal128(35,13)), rounded half-even once to the reporting
currency's minor units and stored as ``REPORTING_MONEY_TYPE`` (decimal(18,2)).

Events without a rate are rejected as ``no_fx_rate``; an amount whose converted
value does not fit decimal(18,2) is rejected as ``bad_amount``.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import UserError
from pipelines.rules.asof import MAX_TIME, encode, sorted_unique, to_micros
from pipelines.rules.validate import rejects_from
from schemas.money import (
    CURRENCY_MINOR_UNITS,
    DEFAULT_REPORTING_CURRENCY,
    FX_RATE_TYPE,
    REPORTING_MONEY_TYPE,
)
from schemas.rejects import REJECT_SCHEMA

_US_PER_DAY = 86_400_000_000
_DAY_BIAS = 2**31  # makes int32 day numbers non-negative before packing
_REPORTING_LIMIT = Decimal(10) ** (REPORTING_MONEY_TYPE.precision - REPORTING_MONEY_TYPE.scale)


def reporting_minor_units(reporting_currency: str) -> int:
    """Minor units of the reporting currency; UserError if it cannot be reported."""
    if reporting_currency not in CURRENCY_MINOR_UNITS:
        raise UserError(
            f"reporting currency {reporting_currency!r} is not an ISO 4217 code we know",
            hint="use e.g. USD or EUR",
        )
    digits = CURRENCY_MINOR_UNITS[reporting_currency]
    if digits > REPORTING_MONEY_TYPE.scale:
        raise UserError(
            f"reporting currency {reporting_currency} has {digits} minor digits; "
            f"reporting amounts keep {REPORTING_MONEY_TYPE.scale}",
            hint="choose a reporting currency with at most 2 minor digits",
        )
    return digits


def _day_numbers(times: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """UTC calendar day (days since 1970-01-01) of each timestamp; floor division."""
    return to_micros(times, MAX_TIME) // _US_PER_DAY


def rate_positions(
    currencies: pa.Array | pa.ChunkedArray,
    days: np.ndarray,
    fx_rates: pa.Table,
) -> np.ndarray:
    """Row of ``fx_rates`` giving each (currency, UTC day) its rate: the latest
    ``rate_date`` <= day for that currency; -1 where there is none.

    (currency code, day) is packed into one int64: ``code << 32 | (day + 2**31)``,
    exact for any date32 and fewer than 2**31 currencies, then searched with
    ``numpy.searchsorted``. Identical duplicate rows are harmless; conflicting
    ones are refused by the loader.
    """
    n = days.shape[0]
    if fx_rates.num_rows == 0 or n == 0:
        return np.full(n, -1, dtype=np.int64)
    dictionary = sorted_unique(fx_rates["currency"])
    rate_code = encode(fx_rates["currency"], dictionary)
    rate_day = fx_rates["rate_date"].combine_chunks().cast(pa.int32())
    rate_day = pc.fill_null(rate_day, np.iinfo(np.int32).max).to_numpy(zero_copy_only=False)
    packed = (rate_code << 32) | (rate_day.astype(np.int64) + _DAY_BIAS)
    valid = rate_code >= 0
    order = np.flatnonzero(valid)[np.argsort(packed[valid], kind="stable")]
    packed_sorted = packed[order]

    code = encode(currencies, dictionary)
    clamped = np.clip(days, np.iinfo(np.int32).min, np.iinfo(np.int32).max)
    query = (np.maximum(code, 0) << 32) | (clamped + _DAY_BIAS)
    at = np.searchsorted(packed_sorted, query, side="right") - 1
    safe = np.maximum(at, 0)
    found = (code >= 0) & (at >= 0) & ((packed_sorted[safe] >> 32) == code)
    found &= days != MAX_TIME // _US_PER_DAY
    return np.where(found, order[safe], -1)


def convert_to_reporting(
    events: pa.Table,
    fx_rates: pa.Table,
    reporting_currency: str = DEFAULT_REPORTING_CURRENCY,
) -> tuple[pa.Table, pa.Table]:
    """(events with ``amount_reporting``, rejects in ``REJECT_SCHEMA``).

    ``events`` needs ``event_time``, ``amount``, ``currency``, ``source`` and
    ``position`` (``raw`` is used when present). Rejects: ``no_fx_rate`` with a
    detail like ``no EUR rate on or before 2026-01-03 for event evt-1``, and ``bad_amount`` when
    the converted amount does not fit decimal(18,2).
    """
    digits = reporting_minor_units(reporting_currency)
    n = events.num_rows
    currency = events["currency"].combine_chunks()
    days = _day_numbers(events["event_time"])
    position = rate_positions(currency, days, fx_rates)
    is_reporting = pc.fill_null(pc.equal(currency, reporting_currency), False).to_numpy(
        zero_copy_only=False)
    has_rate = is_reporting | (position >= 0)

    if fx_rates.num_rows:
        rates = pc.take(fx_rates["rate_to_reporting"].cast(FX_RATE_TYPE),
                        pa.array(np.maximum(position, 0), pa.int64())).combine_chunks()
    else:
        rates = pa.nulls(n, FX_RATE_TYPE)
    one = pa.scalar(Decimal(1), FX_RATE_TYPE)
    rates = pc.if_else(pa.array(is_reporting), one, rates)
    product = pc.multiply(events["amount"].combine_chunks(), rates)  # exact
    rounded = pc.round(product, ndigits=digits, round_mode="half_to_even")
    limit = pa.scalar(_REPORTING_LIMIT, rounded.type)
    fits = pc.fill_null(pc.less(pc.abs(rounded), limit), False).to_numpy(zero_copy_only=False)
    accepted = has_rate & fits

    keep = pa.array(accepted)
    converted = events.filter(keep)
    amount_reporting = rounded.filter(keep).cast(REPORTING_MONEY_TYPE)
    if "amount_reporting" in converted.column_names:
        converted = converted.drop_columns(["amount_reporting"])
    converted = converted.append_column(
        pa.field("amount_reporting", REPORTING_MONEY_TYPE, nullable=False), amount_reporting)

    if accepted.all():
        return converted, REJECT_SCHEMA.empty_table()
    no_rate = ~has_rate
    too_large = has_rate & ~fits
    parts = []
    if no_rate.any():
        mask = pa.array(no_rate)
        missing = events.filter(mask)
        day_text = pa.array(days[no_rate].astype(np.int32), pa.int32()).cast(pa.date32()).cast(
            pa.string())
        absent = pc.invert(pc.is_in(missing["currency"], value_set=fx_rates["currency"]
                                    .combine_chunks()))
        suffix = pc.if_else(
            absent,
            pc.binary_join_element_wise(" (fx_rates has no ", missing["currency"], " rows)", ""),
            "",
        )
        detail = pc.binary_join_element_wise(
            "no ", missing["currency"], " rate on or before ", day_text, " for event ",
            missing["event_id"], suffix, "")
        parts.append(rejects_from(missing, "no_fx_rate", detail))
    if too_large.any():
        mask = pa.array(too_large)
        large = events.filter(mask)
        detail = pc.binary_join_element_wise(
            "amount ", large["amount"].cast(pa.string()), " ", large["currency"],
            f" is {reporting_currency} ",
            rounded.filter(mask).cast(pa.decimal128(38, 2)).cast(pa.string()),
            ", beyond decimal(18,2)", "")
        parts.append(rejects_from(large, "bad_amount", detail))
    rejects = pa.concat_tables(parts)
    order = pc.sort_indices(rejects, [("source", "ascending"), ("position", "ascending")])
    return converted, rejects.take(order)

