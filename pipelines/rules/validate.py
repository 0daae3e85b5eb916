"""Raw string records -> typed events and rejects (CONTRACT.md section 1).

Pure and vectorised: one boolean mask per check over the whole batch
(pyarrow.compute), no Python loop per row. A record failing several checks is
rejected with the first, in ``REASON_ORDER``:

    malformed / bad_type set by the reader, then
    missing_field, bad_type, unknown_event_type, bad_timestamp,
    bad_currency, bad_amount

``bad_currency`` is checked before ``bad_amount`` (the reverse of
``schemas.events.QUARANTINE_REASONS``) because an amount's allowed digits
depend on its currency: ``10.5`` in an unknown currency is a currency problem.

Rules, beyond the contract's wording:

* ``missing_field``: a required field null, empty or only whitespace. Nothing
  is trimmed otherwise: `` USD`` is a bad currency, `` deal_won`` an unknown
  event type. Empty optional fields (``stage``, ``product``,
  ``opportunity_owner_id``) become null.
* ``bad_type``: an id field longer than 128 characters, or holding a control character
  (U+0000-U+001F, U+007F-U+009F: they break CSV exports, terminals and mail).
* ``bad_timestamp``: RFC 3339 with a seconds field and an offset (``Z`` or
  ``±HH:MM``; ``T``, ``t`` or a space between date and time); a real calendar
  date and time (no Feb 30, no hour 24, no leap second 60); representable as a
  timestamp between years 1 and 9999 in UTC. Up to 9 fractional digits;
  beyond microseconds they are truncated (``.1234567`` -> ``.123456``).
* ``bad_amount``: a plain decimal ``[+-]digits[.digits]`` (no exponent, no
  thousands separator, no spaces); no non-zero digit beyond the currency's
  minor units (``10.50`` JPY is bad, ``10.00`` JPY and ``1.230`` USD are fine);
  absolute value < 10^13; the event type's sign rule
  (``schemas.events.AMOUNT_SIGN_RULES``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.events import (
    AMOUNT_SIGN_RULES,
    EVENT_SCHEMA,
    EVENT_TIME_TYPE,
    EVENT_TYPES,
    ID_FIELDS,
    MAX_ID_LENGTH,
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
)
from schemas.money import AMOUNT_MAX_ABS_EXCLUSIVE, AMOUNT_TYPE, CURRENCY_MINOR_UNITS
from schemas.rejects import REJECT_SCHEMA

# A control character (C0, DEL, C1), in RE2 syntax (Arrow and DuckDB alike).
CONTROL_CHARACTER = r"[\x{0}-\x{1f}\x{7f}-\x{9f}]"

# The order in which this step's checks are applied (first failure wins).
REASON_ORDER: tuple[str, ...] = (
    "malformed",
    "missing_field",
    "bad_type",
    "unknown_event_type",
    "bad_timestamp",
    "bad_currency",
    "bad_amount",
)

_TIMESTAMP = (
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_NO_OFFSET = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$"
_DECIMAL = r"^[+-]?\d+(\.\d+)?$"
_EXPONENT = r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$"
_MAX_INT_DIGITS = len(str(AMOUNT_MAX_ABS_EXCLUSIVE)) - 1  # 13: |amount| < 10^13
_SHOWN = 60  # characters of an offending value quoted in a detail

_CURRENCIES = pa.array(sorted(CURRENCY_MINOR_UNITS), pa.string())
_MINOR_UNITS = pa.array([CURRENCY_MINOR_UNITS[c] for c in _CURRENCIES.to_pylist()], pa.int32())
_SIGN_TEXT = {">0": "> 0", ">=0": ">= 0", "!=0": "non-zero"}
_EVENT_TYPE_ARRAY = pa.array(EVENT_TYPES, pa.string())
_RULES = pa.array([AMOUNT_SIGN_RULES[t] for t in EVENT_TYPES], pa.string())
_RULE_TEXT = pa.array([_SIGN_TEXT[AMOUNT_SIGN_RULES[t]] for t in EVENT_TYPES], pa.string())
_MIN_TIME = pa.scalar(-62135596800000000, EVENT_TIME_TYPE)  # 0001-01-01T00:00:00Z
_MAX_TIME = pa.scalar(253402300799999999, EVENT_TIME_TYPE)  # 9999-12-31T23:59:59.999999Z
_NULL = pa.scalar(None, pa.string())


# --------------------------------------------------------------------------- helpers


def _mask(values: pa.Array) -> pa.Array:
    """A boolean array with nulls as False."""
    return pc.fill_null(values, False)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _where(keep: pa.Array, values: pa.Array) -> pa.Array:
    """``values`` where ``keep`` (no nulls) is true, null elsewhere; no copy if all kept."""
    if bool(pc.all(keep).as_py()):
        return values
    return pc.if_else(keep, values, pa.scalar(None, values.type))


def _shown(values: pa.Array) -> pa.Array:
    """``'value'`` for a detail, cut to a readable length."""
    cut = pc.utf8_slice_codeunits(values, 0, _SHOWN)
    long = pc.greater(pc.utf8_length(values), _SHOWN)
    body = pc.if_else(long, pc.binary_join_element_wise(cut, "...", ""), cut)
    return pc.binary_join_element_wise("'", body, "'", "")


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _first(conditions: list[tuple[pa.Array, pa.Array | str]], n: int) -> pa.Array:
    """Per row, the value of the first true condition; null when none is."""
    if not conditions:
        return pa.nulls(n, pa.string())
    if len(conditions) == 1:
        mask, value = conditions[0]
        return pc.if_else(mask, value, _NULL)
    masks = pc.make_struct(*[mask for mask, _ in conditions],
                           field_names=[str(i) for i in range(len(conditions))])
    values = [pa.scalar(v, pa.string()) if isinstance(v, str) else v for _, v in conditions]
    return pc.case_when(masks, *values)


def rejects_from(
    rows: pa.Table | pa.RecordBatch, reason: str, detail: pa.Array | pa.ChunkedArray | str | None
) -> pa.Table:
    """``REJECT_SCHEMA`` rows for every row of ``rows`` with one ``reason``.

    ``rows`` needs ``source`` and ``position``; its ``raw`` column is kept when
    present (null otherwise). ``detail`` is one text for all rows, a per-row
    array aligned with ``rows``, or None.
    """
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    n = rows.num_rows
    raw = rows.column("raw") if "raw" in rows.column_names else pa.nulls(n, pa.string())
    if detail is None:
        detail = pa.nulls(n, pa.string())
    elif isinstance(detail, str):
        detail = pa.repeat(pa.scalar(detail, pa.string()), n)
    elif len(detail) != n:
        raise ValueError(f"detail has {len(detail)} values for {n} rows")
    columns = [
        rows.column("source"),
        rows.column("position"),
        raw,
        pa.repeat(pa.scalar(reason, pa.string()), n),
        detail,
    ]
    columns = [c if isinstance(c, pa.ChunkedArray) else pa.chunked_array([c]) for c in columns]
    columns = [c.cast(f.type) for c, f in zip(columns, REJECT_SCHEMA, strict=True)]
    return pa.Table.from_arrays(columns, schema=REJECT_SCHEMA)


# --------------------------------------------------------------------------- checks
# Each check returns (mask, detail) pairs; details are built only when asked
# (``details=True``), i.e. on the few rejected rows, never on the whole batch.

Check = tuple[pa.Array, "pa.Array | str | None"]


def _check_missing(cols: dict[str, pa.Array], details: bool) -> list[Check]:
    out: list[Check] = []
    for name in REQUIRED_FIELDS:
        values = cols[name]
        out.append((pc.is_null(values), f"missing required field {name}"))
        blank = pc.or_(pc.equal(pc.binary_length(values), 0), pc.utf8_is_space(values))
        out.append((_mask(blank), f"required field {name} is empty"))
    return out


def _check_ids(cols: dict[str, pa.Array], details: bool) -> list[Check]:
    out: list[Check] = []
    for name in ID_FIELDS:
        control = _mask(pc.match_substring_regex(cols[name], CONTROL_CHARACTER))
        if _any(control):
            out.append((control, f"field {name} holds a control character" if details else None))
    for name in ID_FIELDS:
        # Bytes >= characters: only values long in bytes need a character count.
        if not _any(_mask(pc.greater(pc.binary_length(cols[name]), MAX_ID_LENGTH))):
            continue
        length = pc.utf8_length(cols[name])
        too_long = _mask(pc.greater(length, MAX_ID_LENGTH))
        detail = _join(f"field {name} is ", pc.cast(length, pa.string()),
                       f" characters long (max {MAX_ID_LENGTH})") if details else None
        out.append((too_long, detail))
    return out


def _check_event_type(event_type: pa.Array, details: bool) -> list[Check]:
    unknown = pc.invert(_mask(pc.is_in(event_type, value_set=_EVENT_TYPE_ARRAY)))
    detail = _join("unknown event_type ", _shown(event_type), " (expected one of ",
                   ", ".join(EVENT_TYPES), ")") if details else None
    return [(unknown, detail)]


def _cast_isolating(values: pa.Array, to: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast, isolating rows whose cast fails (bisection): (result, failed mask)."""
    failed = np.zeros(len(values), dtype=bool)

    def attempt(lo: int, hi: int) -> list[pa.Array]:
        piece = values.slice(lo, hi - lo)
        try:
            return [piece.cast(to)]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                failed[lo] = True
                return [pa.nulls(1, to)]
            mid = (lo + hi) // 2
            return attempt(lo, mid) + attempt(mid, hi)

    if len(values) == 0:
        return pa.array([], to), failed
    return pa.concat_arrays(attempt(0, len(values))), failed


def _calendar_ok(text: pa.Array) -> np.ndarray:
    """Date/time fields in range, for strings already matching ``_TIMESTAMP``."""
    zulu = _mask(pc.ends_with(text, "Z"))

    def number(start: int, stop: int, offset: bool = False) -> np.ndarray:
        part = pc.utf8_slice_codeunits(text, start, stop)
        if offset:
            part = pc.if_else(zulu, "0", part)
        return pc.fill_null(pc.cast(part, pa.int32()), 0).to_numpy(zero_copy_only=False)

    year, month, day = number(0, 4), number(5, 7), number(8, 10)
    hour, minute, second = number(11, 13), number(14, 16), number(17, 19)
    off_hour, off_minute = number(-5, -3, True), number(-2, 1 << 30, True)
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    days = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(month, 0, 12)]
    days = days + ((month == 2) & leap)
    return (
        (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)
        & (hour <= 23) & (minute <= 59) & (second <= 59)
        & (off_hour <= 23) & (off_minute <= 59)
    )


def _check_timestamp(event_time: pa.Array, details: bool) -> tuple[list[Check], pa.Array]:
    """([(bad mask, detail)], timestamps with nulls where bad)."""
    shaped = _mask(pc.match_substring_regex(event_time, _TIMESTAMP))
    text = _where(shaped, event_time)
    calendar = np.ones(len(event_time), dtype=bool)
    try:  # the common case: Arrow's ISO 8601 cast takes every RFC 3339 string as is
        parsed = text.cast(EVENT_TIME_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # Lower-case t/z, more than 6 decimals (truncated), impossible dates.
        text = pc.utf8_upper(text)
        if _any(_mask(pc.match_substring_regex(text, r"\.\d{7}"))):
            text = pc.replace_substring_regex(text, r"(\.\d{6})\d+", r"\1")
        calendar = _calendar_ok(text)
        parsed, failed = _cast_isolating(_where(pa.array(calendar), text), EVENT_TIME_TYPE)
        calendar &= ~failed
    calendar_ok = pa.array(calendar)
    in_range = _mask(pc.and_(pc.greater_equal(parsed, _MIN_TIME),
                             pc.less_equal(parsed, _MAX_TIME)))
    good = pc.and_(pc.and_(shaped, calendar_ok), in_range)
    detail = None
    if details:
        no_offset = _mask(pc.match_substring_regex(event_time, _NO_OFFSET))
        shown = _shown(event_time)
        detail = _first([
            (pc.invert(shaped), pc.if_else(
                no_offset,
                _join("event_time ", shown, " has no UTC offset (add Z or +HH:MM)"),
                _join("event_time ", shown, " is not an RFC 3339 timestamp "
                      "(e.g. 2026-03-01T14:05:00Z)"))),
            (pc.invert(calendar_ok), _join("event_time ", shown, " is not a valid date and time")),
            (pc.invert(in_range), _join("event_time ", shown, " is out of range")),
        ], len(event_time))
    return [(pc.invert(good), detail)], _where(good, parsed)


def _check_currency(currency: pa.Array, details: bool) -> tuple[list[Check], pa.Array]:
    """([(bad mask, detail)], index into _CURRENCIES or null)."""
    index = pc.index_in(currency, value_set=_CURRENCIES)
    detail = None
    if details:
        shown = _shown(currency)
        detail = pc.if_else(
            _mask(pc.match_substring_regex(currency, r"^[A-Z]{3}$")),
            _join("currency ", shown, " is not a known ISO 4217 code"),
            _join("currency ", shown, " is not an ISO 4217 code (3 upper-case letters)"),
        )
    return [(pc.is_null(index), detail)], index


def _check_amount(amount: pa.Array, event_type: pa.Array, currency: pa.Array,
                  currency_index: pa.Array, details: bool) -> tuple[list[Check], pa.Array]:
    """([(bad mask, detail)], AMOUNT_TYPE values with nulls where bad).

    Rows with an unknown currency are not judged here (they fail bad_currency);
    the sign rule applies to known event types only.
    """
    n = len(amount)
    shaped = _mask(pc.match_substring_regex(amount, _DECIMAL))
    text = _where(shaped, amount)
    # "+12" -> "12", "-007.5" -> "-7.5": digits before the point are then the magnitude.
    odd = _mask(pc.or_(pc.or_(pc.starts_with(text, "+"), pc.starts_with(text, "0")),
                       pc.starts_with(text, "-0")))
    if _any(odd):
        fixed = pc.replace_substring_regex(text.filter(odd), r"^\+?(-?)0*(\d)", r"\1\2")
        text = pc.replace_with_mask(text, odd, fixed)
    length = pc.binary_length(text)
    point = pc.find_substring(text, ".")
    has_point = _mask(pc.greater_equal(point, 0))
    negative = _mask(pc.starts_with(text, "-"))
    int_digits = pc.subtract(pc.if_else(has_point, point, length), pc.if_else(negative, 1, 0))
    too_big = _mask(pc.greater(int_digits, _MAX_INT_DIGITS))
    frac_digits = pc.if_else(has_point, pc.subtract(pc.subtract(length, point), 1), 0)
    minor = pc.take(_MINOR_UNITS, currency_index)
    beyond = _mask(pc.greater(frac_digits, minor))
    too_precise = beyond
    if _any(beyond):
        # Digits beyond the currency's minor units must all be zero.
        fraction = pc.replace_substring_regex(text, r"^[^.]*\.?", "")
        nonzero = pa.array(np.zeros(n, dtype=bool))
        for units in sorted(set(CURRENCY_MINOR_UNITS.values())):
            tail = pc.utf8_slice_codeunits(fraction, units, 1 << 30)
            nonzero = pc.or_(nonzero, _mask(pc.and_(
                pc.equal(minor, units), pc.match_substring_regex(tail, r"[1-9]"))))
        too_precise = pc.and_(beyond, nonzero)
        # Zeros beyond 3 decimals do not fit AMOUNT_TYPE's scale: drop them.
        text = pc.replace_substring_regex(text, r"(\.\d{3})0+$", r"\1")
    ok_text = pc.and_(pc.and_(shaped, pc.invert(too_big)), pc.invert(too_precise))
    value = _where(ok_text, text).cast(AMOUNT_TYPE)

    zero = pa.scalar(0, AMOUNT_TYPE)
    rule_index = pc.index_in(event_type, value_set=_EVENT_TYPE_ARRAY)
    rule = pc.take(_RULES, rule_index)
    sign_bad = _mask(pc.or_(
        pc.or_(
            pc.and_(pc.equal(rule, ">0"), pc.less_equal(value, zero)),
            pc.and_(pc.equal(rule, ">=0"), pc.less(value, zero)),
        ),
        pc.and_(pc.equal(rule, "!=0"), pc.equal(value, zero)),
    ))
    bad = pc.and_(pc.or_(pc.invert(ok_text), sign_bad), pc.is_valid(currency_index))
    detail = None
    if details:
        shown = _shown(amount)
        detail = _first([
            (_mask(pc.match_substring_regex(amount, _EXPONENT)),
             _join("amount ", shown, " uses an exponent; write a plain decimal such as 1234.50")),
            (pc.invert(shaped), _join("amount ", shown, " is not a plain decimal number "
                                      "(digits, an optional sign and decimal point)")),
            (too_big, _join("amount ", shown, " is too large (absolute value must be < 10^13)")),
            (too_precise, _join("amount ", shown, " has more decimals than ", currency,
                                " allows (", pc.cast(minor, pa.string()), ")")),
            (sign_bad, _join(event_type, " amount must be ", pc.take(_RULE_TEXT, rule_index),
                             ", got ", amount)),
        ], n)
    return [(bad, detail)], _where(pc.invert(bad), value)


def _run_checks(cols: dict[str, pa.Array], details: bool,
                ) -> tuple[list[tuple[str, list[Check]]], pa.Array, pa.Array]:
    """Every check in REASON_ORDER, plus the typed event_time and amount."""
    time_checks, event_time = _check_timestamp(cols["event_time"], details)
    currency_checks, currency_index = _check_currency(cols["currency"], details)
    amount_checks, amount = _check_amount(cols["amount"], cols["event_type"], cols["currency"],
                                          currency_index,
                                          details)
    steps = [
        ("reader", [(pc.is_valid(cols["reason"]), cols["detail"])]),  # malformed, bad_type
        ("missing_field", _check_missing(cols, details)),
        ("bad_type", _check_ids(cols, details)),
        ("unknown_event_type", _check_event_type(cols["event_type"], details)),
        ("bad_timestamp", time_checks),
        ("bad_currency", currency_checks),
        ("bad_amount", amount_checks),
    ]
    return steps, event_time, amount


# --------------------------------------------------------------------------- entry point


def validate_events(raw: pa.RecordBatch | pa.Table) -> tuple[pa.Table, pa.Table]:
    """-> (events in ``schemas.events.EVENT_SCHEMA``, rejects in ``REJECT_SCHEMA``).

    ``raw`` is in ``RAW_EVENT_SCHEMA``. Rows the reader already marked (a
    ``reason``) are rejected with that reason and detail. Events keep ``source``
    and ``position``; rejects keep ``source``, ``position`` and ``raw``.
    """
    if isinstance(raw, pa.RecordBatch):
        raw = pa.Table.from_batches([raw])
    if raw.num_rows == 0:
        return EVENT_SCHEMA.empty_table(), REJECT_SCHEMA.empty_table()
    cols = {name: _one_chunk(raw.column(name)) for name in raw.column_names}

    # Pass 1, whole batch: masks only.
    steps, event_time, amount = _run_checks(cols, details=False)
    rejected = np.zeros(raw.num_rows, dtype=bool)
    for _, checks in steps:
        for mask, _ in checks:
            rejected |= _mask(mask).to_numpy(zero_copy_only=False)
    events = _events(cols, event_time, amount)
    if not rejected.any():
        return events, REJECT_SCHEMA.empty_table()
    events = events.filter(pa.array(~rejected))

    # Pass 2, rejected rows only: the first failing check and its detail.
    bad = pa.array(rejected)
    subset = {name: values.filter(bad) for name, values in cols.items()}
    steps, _, _ = _run_checks(subset, details=True)
    reasons: list[Check] = []
    details: list[Check] = []
    for reason, checks in steps:
        for mask, detail in checks:
            mask = _mask(mask)
            if _any(mask):
                reasons.append((mask, subset["reason"] if reason == "reader" else reason))
                details.append((mask, detail))
    n = len(subset["source"])
    rejects = pa.Table.from_arrays(
        [subset["source"], subset["position"], subset["raw"],
         _first(reasons, n), _first(details, n)],
        schema=REJECT_SCHEMA,
    )
    return events, rejects


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _events(cols: dict[str, pa.Array], event_time: pa.Array, amount: pa.Array) -> pa.Table:
    arrays: list[pa.Array] = []
    for field in EVENT_SCHEMA:
        name = field.name
        if name == "event_time":
            arrays.append(event_time)
        elif name == "amount":
            arrays.append(amount)
        elif name in OPTIONAL_FIELDS:
            values = cols[name]
            arrays.append(pc.if_else(_mask(pc.equal(values, "")), _NULL, values))
        else:
            arrays.append(cols[name].cast(field.type))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)
