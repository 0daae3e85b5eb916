"""Run one expectation suite natively: pyarrow.compute and numpy, no Great Expectations.

``run_suite`` has ``gx_runner.run_suite``'s signature and output: the same suite
files, parameters, sampling, ``observed`` text and ``examples`` (all shared in
``pipelines.quality.results``); only the evaluation differs. It reproduces what
GX 1.x computes on the pandas frame ``gx_runner`` builds:

* map expectations: the domain is the frame's rows that pass ``row_condition``
  (pandas ``DataFrame.query`` semantics: a null fails ``==``, ``<``, ``IN``...
  and passes ``!=`` and ``NOT_IN``); nulls (and float NaN) are ignored except
  by ``..._to_not_be_null``; ``element_count`` is the domain's size;
  ``mostly`` is GX's ratio over the non-null rows (over all rows for
  not-null; vacuously true without rows); unexpected rows are reported in row
  order;
* ``expect_compound_columns_to_be_unique`` / ``expect_column_pair_values_to_be_equal``
  honour ``ignore_row_if`` (GX's defaults: all / both values missing), nulls
  are equal to each other in compound keys and unequal in pairs;
* comparisons are exact: a decimal column against a float bound compares the
  decimal values with the float's exact value, like Python does on pandas'
  ``Decimal`` objects;
* ``expect_column_values_to_match_regex`` follows Python's ``re.search`` on
  ``str(value)`` (what pandas' ``str.contains`` does); RE2 (Arrow) evaluates
  the rows where both engines provably agree (printable ASCII), ``re`` the rest;
* ``expect_column_mean_to_be_between``: pandas' mean (NaN-free sum over the
  count, decimals as floats); no value -> ``observed`` None, failed.

An expectation type, kwarg or row condition it cannot evaluate is refused when
the suite is loaded (``UserError`` naming the file and the expectation), never
skipped. An error while evaluating one expectation (a type mismatch, min above
max, a bad regex...) fails it with ``observed`` "failed", as gx_runner records
GX's metric errors (the message is logged at debug level).

Known differences, both GX 1.24 bugs: the mean of a decimal column with a null
in its domain (GX fails the expectation: ``float(None)``), or filtered by a
``row_condition`` (GX writes the converted values back by label, averaging
misplaced values): the native runner gives the true mean. A row condition on a
row-count expectation is refused (gx_runner counts those on no columns).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.errors import UserError
from pipelines.quality.results import (
    DEFAULT_MAX_ROWS,
    EXAMPLES,
    Result,
    parameter_value,
    run_suite_with,
)
from pipelines.quality.suites import Expectation, Suite
from schemas.outputs import CHECK_RESULT_SCHEMA  # re-exported for callers

__all__ = ["CHECK_RESULT_SCHEMA", "DEFAULT_MAX_ROWS", "SUPPORTED", "check_suite_definitions",
           "run_suite"]

_LOG = logging.getLogger(__name__)
_COMMON = frozenset({"catch_exceptions", "result_format", "description"})
_MAP = _COMMON | {"mostly", "row_condition", "condition_parser"}
_BETWEEN = frozenset({"min_value", "max_value", "strict_min", "strict_max"})

# type -> (required kwargs, allowed kwargs)
SUPPORTED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "expect_column_values_to_not_be_null": (frozenset({"column"}), _MAP | {"column"}),
    "expect_column_values_to_be_in_set": (frozenset({"column", "value_set"}),
                                          _MAP | {"column", "value_set"}),
    "expect_column_values_to_not_be_in_set": (frozenset({"column", "value_set"}),
                                              _MAP | {"column", "value_set"}),
    "expect_column_values_to_match_regex": (frozenset({"column", "regex"}),
                                            _MAP | {"column", "regex"}),
    "expect_column_values_to_not_match_regex": (frozenset({"column", "regex"}),
                                                _MAP | {"column", "regex"}),
    "expect_column_values_to_be_between": (frozenset({"column"}), _MAP | _BETWEEN | {"column"}),
    "expect_column_values_to_be_unique": (frozenset({"column"}), _MAP | {"column"}),
    "expect_column_value_lengths_to_be_between": (frozenset({"column"}),
                                                  _MAP | _BETWEEN | {"column"}),
    "expect_compound_columns_to_be_unique": (frozenset({"column_list"}),
                                             _MAP | {"column_list", "ignore_row_if"}),
    "expect_column_pair_values_to_be_equal": (
        frozenset({"column_A", "column_B"}),
        _MAP | {"column_A", "column_B", "ignore_row_if"}),
    "expect_column_mean_to_be_between": (
        frozenset({"column"}),
        _COMMON | _BETWEEN | {"column", "row_condition", "condition_parser"}),
    "expect_table_row_count_to_equal": (frozenset({"value"}), _COMMON | {"value"}),
    "expect_table_row_count_to_be_between": (frozenset(), _COMMON | _BETWEEN),
    "expect_column_to_exist": (frozenset({"column"}), _COMMON | {"column", "column_index"}),
    "expect_table_columns_to_match_set": (frozenset({"column_set"}),
                                          _COMMON | {"column_set", "exact_match"}),
}
_NEEDS_A_BOUND = {"expect_column_values_to_be_between",
                  "expect_column_value_lengths_to_be_between"}
_IGNORE_ROW_IF = {
    "expect_compound_columns_to_be_unique": ("all_values_are_missing",
                                             ("all_values_are_missing", "any_value_is_missing",
                                              "never")),
    "expect_column_pair_values_to_be_equal": ("both_values_are_missing",
                                              ("both_values_are_missing",
                                               "either_value_is_missing", "neither")),
}
_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "IN", "NOT_IN")


# ------------------------------------------------------------------ checking


def _refuse(suite: Suite, expectation: Expectation, what: str) -> UserError:
    return UserError(f"the native check runner cannot evaluate this expectation: {what}",
                     where=f"{suite.path}: expectation #{expectation.position + 1} "
                           f"({expectation.name})",
                     hint="use a supported type/kwargs, or run the checks with runner='gx'")


def check_suite_definitions(suite: Suite) -> None:
    """UserError naming the file and expectation for anything this runner cannot evaluate."""
    for expectation in suite.expectations:
        kind, kwargs = expectation.type, expectation.kwargs
        if kind not in SUPPORTED:
            raise _refuse(suite, expectation, f"unsupported type {kind}")
        required, allowed = SUPPORTED[kind]
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise _refuse(suite, expectation, f"unsupported kwarg(s) {', '.join(unknown)}")
        absent = sorted(k for k in required if kwargs.get(k) is None)
        if absent:
            raise _refuse(suite, expectation, f"missing kwarg(s) {', '.join(absent)}")
        for key in ("column", "column_A", "column_B"):
            if key in kwargs and not (isinstance(kwargs[key], str) and kwargs[key]):
                raise _refuse(suite, expectation, f"{key} must be a column name")
        if "column_list" in kwargs and not (
                isinstance(kwargs["column_list"], list) and kwargs["column_list"]
                and all(isinstance(c, str) for c in kwargs["column_list"])):
            raise _refuse(suite, expectation, "column_list must be a list of column names")
        if kind in _NEEDS_A_BOUND and kwargs.get("min_value") is None and (
                kwargs.get("max_value") is None):
            raise _refuse(suite, expectation, "min_value and max_value cannot both be None")
        if kind in _IGNORE_ROW_IF:
            default, choices = _IGNORE_ROW_IF[kind]
            if kwargs.get("ignore_row_if", default) not in choices:
                raise _refuse(suite, expectation,
                              f"ignore_row_if must be one of {', '.join(choices)}")
        if kwargs.get("condition_parser") is not None:
            raise _refuse(suite, expectation, "condition_parser (string row conditions)")
        if kwargs.get("row_condition") is not None:
            problem = _condition_problem(kwargs["row_condition"])
            if problem:
                raise _refuse(suite, expectation, f"row_condition: {problem}")


def _condition_problem(condition: Any) -> str | None:
    """Why a row condition cannot be evaluated (None: it can)."""
    if not isinstance(condition, dict):
        return "only the dict form (comparison, nullity, and, or) is supported"
    kind = condition.get("type")
    if kind in ("and", "or"):
        parts = condition.get("conditions")
        if not isinstance(parts, list) or not parts:
            return f"an {kind} condition needs a list of conditions"
        for part in parts:
            problem = _condition_problem(part)
            if problem:
                return problem
        return None
    if kind not in ("comparison", "nullity"):
        return f"unsupported condition type {kind!r}"
    column = condition.get("column")
    if not (isinstance(column, dict) and isinstance(column.get("name"), str)):
        return "a condition needs a column {\"name\": ...}"
    if kind == "nullity":
        return None if isinstance(condition.get("is_null"), bool) else "is_null must be true/false"
    operator, parameter = condition.get("operator"), condition.get("parameter")
    if operator not in _OPERATORS:
        return f"unsupported operator {operator!r}"
    if parameter is None:
        return "a comparison needs a parameter"
    if operator in ("IN", "NOT_IN") and not isinstance(parameter, list):
        return f"{operator} needs a list parameter"
    return None


# ------------------------------------------------------------------- running


def run_suite(
    stage: str,
    suite_name: str,
    frames: Mapping[str, pa.Table],
    parameters: dict | None = None,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    notes: Mapping[str, str] | None = None,
    suites_dir: str | Path | None = None,
    now: dt.datetime | None = None,
) -> pa.Table:
    """Validate ``frames`` with suite ``suite_name``; one result row per expectation.

    Same arguments and result as ``gx_runner.run_suite``.
    """
    return run_suite_with(_validate, stage, suite_name, frames, parameters, max_rows=max_rows,
                          notes=notes, suites_dir=suites_dir, now=now,
                          accept=check_suite_definitions, engine="the native check runner")


class _EvaluationError(Exception):
    """An expectation that cannot be evaluated on this data (GX would raise too)."""


def _validate(suite: Suite, frame: str, expectations: list[Expectation], data: pa.Table,
              values: dict[str, Any]) -> dict[str, Result]:
    frame_data = _Frame(data)
    results = {}
    for expectation in expectations:
        kwargs = {k: _resolve(v, values) for k, v in expectation.kwargs.items()}
        try:
            results[expectation.name] = _EVALUATORS[expectation.type](frame_data, kwargs)
        except Exception as error:  # a failed check, not a crash
            # GX 1.x files a metric's exception under the metric's id, not at the top
            # of exception_info, so gx_runner records such a check as plain "failed"
            # with no details: the same here (the error is logged at debug level).
            _LOG.debug("%s: %s: %s", suite.name, expectation.name, error, exc_info=True)
            results[expectation.name] = Result(False, {})
    return results


def _resolve(raw: Any, values: dict[str, Any]) -> Any:
    """``{"$PARAMETER": name}`` -> its value, anywhere in a kwarg."""
    if isinstance(raw, dict):
        if "$PARAMETER" in raw:
            return parameter_value(raw, values)
        return {k: _resolve(v, values) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_resolve(v, values) for v in raw]
    return raw


class _Frame:
    """The validated table with per-column caches (plain arrays, null masks)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.n = table.num_rows
        self._arrays: dict[str, pa.Array] = {}
        self._nulls: dict[str, np.ndarray] = {}

    def array(self, name: str) -> pa.Array:
        """The column as one array with pandas' view of it: dictionaries decoded,
        integers with nulls as float64, float NaN as null."""
        array = self._arrays.get(name)
        if array is None:
            column = self.table.column(name)
            array = (column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
            if pa.types.is_dictionary(array.type):
                array = array.dictionary_decode()
            if pa.types.is_integer(array.type) and array.null_count:
                array = pc.cast(array, pa.float64(), safe=False)
            if pa.types.is_floating(array.type) and array.null_count < len(array):
                array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
            self._arrays[name] = array
        return array

    def nulls(self, name: str) -> np.ndarray:
        mask = self._nulls.get(name)
        if mask is None:
            mask = _np(pc.is_null(self.array(name)))
            self._nulls[name] = mask
        return mask

    def domain(self, condition: Any) -> np.ndarray:
        """Rows passing ``row_condition`` (all rows without one)."""
        if condition is None:
            return np.ones(self.n, dtype=bool)
        return _condition_mask(self, condition)


def _np(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array (nulls as False) -> numpy bool."""
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    if mask.null_count:
        mask = pc.fill_null(mask, False)
    return mask.to_numpy(zero_copy_only=False).astype(bool, copy=False)


# -------------------------------------------------------------- row conditions


def _condition_mask(frame: _Frame, condition: dict) -> np.ndarray:
    kind = condition["type"]
    if kind in ("and", "or"):
        masks = [_condition_mask(frame, c) for c in condition["conditions"]]
        combine = np.logical_and if kind == "and" else np.logical_or
        out = masks[0]
        for mask in masks[1:]:
            out = combine(out, mask)
        return out
    name = condition["column"]["name"]
    if kind == "nullity":
        nulls = frame.nulls(name)
        return nulls.copy() if condition["is_null"] else ~nulls
    array, operator, parameter = frame.array(name), condition["operator"], condition["parameter"]
    if operator in ("IN", "NOT_IN"):
        hit = _is_in(array, parameter)
        return hit if operator == "IN" else ~hit
    result = _np(_compare(array, operator, parameter))
    if operator == "!=":  # pandas: a null is != anything
        result |= frame.nulls(name)
    return result


# ----------------------------------------------------------------- comparison

_PC = {"==": pc.equal, "!=": pc.not_equal, "<": pc.less, "<=": pc.less_equal,
       ">": pc.greater, ">=": pc.greater_equal}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or (
        pa.types.is_string_view(kind))


def _constant(array: pa.Array, value: bool) -> pa.Array:
    """``value`` for every non-null element, null for nulls."""
    out = pa.array(np.full(len(array), value))
    return pc.if_else(pc.is_null(array), pa.scalar(None, pa.bool_()), out)


def _compare(array: pa.Array, operator: str, value: Any) -> pa.Array:
    """``array <operator> value`` elementwise, exact; null where the element is null."""
    kind = array.type
    if pa.types.is_decimal(kind) and _is_number(value):
        return _compare_decimal(array, operator, value)
    scalar = _scalar_for(value, kind)
    if scalar is None:
        if operator in ("==", "!="):
            return _constant(array, operator == "!=")
        raise TypeError(f"'{operator}' not supported between {kind} values and "
                        f"{type(value).__name__}")
    return _PC[operator](array, scalar)


def _scalar_for(value: Any, kind: pa.DataType) -> pa.Scalar | None:
    """``value`` as a scalar comparable with ``kind`` values (None: not comparable)."""
    if _is_text(kind):
        return pa.scalar(value, kind) if isinstance(value, str) else None
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, Decimal):
            value = float(value)
        return pa.scalar(value) if _is_number(value) else None
    if pa.types.is_boolean(kind):
        return pa.scalar(bool(value)) if isinstance(value, bool | int) and value in (
            0, 1) else None
    if pa.types.is_timestamp(kind):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime):
            if (value.tzinfo is None) != (kind.tz is None):
                raise TypeError("Cannot compare tz-naive and tz-aware datetime-like objects")
            return pa.scalar(value, kind)
        return None
    if pa.types.is_date(kind):
        if isinstance(value, dt.datetime):
            raise TypeError("can't compare datetime.datetime to datetime.date")
        return pa.scalar(value, kind) if isinstance(value, dt.date) else None
    try:
        return pa.scalar(value).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _compare_decimal(array: pa.Array, operator: str, value: Any) -> pa.Array:
    """Decimal values against a number, exactly (a float bound by its exact value)."""
    kind = array.type
    exact = Decimal(value) if not isinstance(value, Decimal) else value
    unit, largest = _decimal_limits(kind)
    if operator in ("==", "!="):
        member = _as_decimal(value, kind)
        if member is None:
            return _constant(array, operator == "!=")
        return _PC[operator](array, pa.scalar(member, kind))
    context = Context(prec=1000)
    upward = operator in (">", ">=")
    rounded = exact.quantize(unit, rounding=ROUND_CEILING if upward else ROUND_FLOOR,
                             context=context)
    if rounded != exact:  # between two representable values: strictness no longer matters
        operator = ">=" if upward else "<="
    if rounded > largest:
        return _constant(array, not upward)
    if rounded < -largest:
        return _constant(array, upward)
    return _PC[operator](array, pa.scalar(rounded, kind))


def _decimal_limits(kind: pa.DataType) -> tuple[Decimal, Decimal]:
    """(smallest step, largest value) of a decimal type."""
    return (Decimal(1).scaleb(-kind.scale),
            (Decimal(10) ** kind.precision - 1).scaleb(-kind.scale))


def _as_decimal(value: Any, kind: pa.DataType) -> Decimal | None:
    """A number as a value of decimal type ``kind`` when it is exactly one, else None."""
    if not _is_number(value):
        return None
    exact = Decimal(value) if not isinstance(value, Decimal) else value
    unit, largest = _decimal_limits(kind)
    if not exact.is_finite() or abs(exact) > largest:
        return None
    quantized = exact.quantize(unit, context=Context(prec=1000))
    return quantized if quantized == exact else None


def _member_values(value_set: list, kind: pa.DataType) -> pa.Array:
    """The members of ``value_set`` a ``kind`` value can equal (Python equality)."""
    members = []
    for value in value_set:
        if value is None:
            continue
        if _is_text(kind):
            if isinstance(value, str):
                members.append(value)
            continue
        if pa.types.is_decimal(kind):
            member = _as_decimal(value, kind)
            if member is not None:
                members.append(member)
            continue
        if pa.types.is_timestamp(kind) and isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value)
            except ValueError:
                continue
        try:
            cast = pa.scalar(value).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError,
                ValueError, OverflowError):
            continue
        if cast.is_valid and cast.as_py() == value:
            members.append(cast.as_py())
    return pa.array(members, kind)


# ---------------------------------------------------------- map expectations


def _map_result(total: int, considered: int, unexpected: np.ndarray, mostly: Any) -> Result:
    """GX's map-expectation result over a domain of ``total`` rows of which
    ``considered`` were checked; ``unexpected`` are the failing row positions."""
    count = int(len(unexpected))
    if total == 0 or considered == 0:
        success = True
    else:
        success = (float(considered) - float(count)) / float(considered) >= mostly
    return Result(success, {
        "element_count": total,
        "unexpected_count": count,
        "partial_unexpected_index_list": unexpected[:EXAMPLES].tolist(),
    })


def _column_map(check: Callable[[pa.Array, dict], np.ndarray]) -> Callable[[_Frame, dict],
                                                                             Result]:
    """A column map expectation from ``check(non-null domain values, kwargs) -> ok mask``."""
    def evaluate(frame: _Frame, kwargs: dict) -> Result:
        column = kwargs["column"]
        domain = frame.domain(kwargs.get("row_condition"))
        considered = domain & ~frame.nulls(column)
        positions = np.flatnonzero(considered)
        ok = check(frame.array(column).filter(pa.array(considered)), kwargs)
        return _map_result(int(domain.sum()), len(positions), positions[~ok],
                           kwargs.get("mostly", 1))
    return evaluate


def _not_null(frame: _Frame, kwargs: dict) -> Result:
    column = kwargs["column"]
    domain = frame.domain(kwargs.get("row_condition"))
    total = int(domain.sum())
    unexpected = np.flatnonzero(domain & frame.nulls(column))
    # GX: the ratio is over all rows, not the non-null ones
    return _map_result(total, total, unexpected, kwargs.get("mostly", 1))


def _is_in(values: pa.Array, value_set: list) -> np.ndarray:
    """pandas' ``isin``: Python equality (so -0.0 is 0), nulls never in."""
    members = _member_values(value_set, values.type)
    if pa.types.is_floating(values.type):
        values, members = (pc.add(x, pa.scalar(0.0, x.type)) for x in (values, members))
    return _np(pc.is_in(values, value_set=members))


def _in_set(values: pa.Array, kwargs: dict) -> np.ndarray:
    if kwargs.get("value_set") is None:
        return np.ones(len(values), dtype=bool)
    return _is_in(values, kwargs["value_set"])


def _not_in_set(values: pa.Array, kwargs: dict) -> np.ndarray:
    if kwargs.get("value_set") is None:
        return np.ones(len(values), dtype=bool)
    return ~_in_set(values, kwargs)


def _check_bounds(kwargs: dict) -> tuple[Any, Any]:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise _EvaluationError("min_value and max_value cannot both be None")
    if low is not None and high is not None and low > high:
        raise _EvaluationError("min_value cannot be greater than max_value")
    return low, high


def _between_mask(values: pa.Array, low: Any, high: Any, strict_min: bool,
                  strict_max: bool) -> np.ndarray:
    ok = np.ones(len(values), dtype=bool)
    if low is not None:
        ok &= _np(_compare(values, ">" if strict_min else ">=", low))
    if high is not None:
        ok &= _np(_compare(values, "<" if strict_max else "<=", high))
    return ok


def _between(values: pa.Array, kwargs: dict) -> np.ndarray:
    low, high = _check_bounds(kwargs)
    kind = values.type
    if not len(values):  # GX compares nothing, so refuses nothing
        return np.ones(0, dtype=bool)
    if not (pa.types.is_timestamp(kind) or pa.types.is_integer(kind)
            or pa.types.is_floating(kind)):
        # GX compares value by value here and refuses text against non-text bounds
        for bound in (low, high):
            if bound is not None and isinstance(bound, str) != _is_text(kind):
                raise _EvaluationError("Column values, min_value, and max_value must either "
                                       "be None or of the same type.")
    return _between_mask(values, low, high, bool(kwargs.get("strict_min")),
                         bool(kwargs.get("strict_max")))


def _lengths(values: pa.Array, kwargs: dict) -> np.ndarray:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if low is None and high is None:
        raise _EvaluationError("Invalid configuration")
    lengths = pc.utf8_length(_as_text(values))
    return _between_mask(lengths, low, high, bool(kwargs.get("strict_min")),
                         bool(kwargs.get("strict_max")))


def _as_text(values: pa.Array) -> pa.Array:
    """pandas' ``astype(str)`` of the values."""
    if _is_text(values.type):
        return values
    return pa.array([str(v) for v in values.to_pylist()], pa.string())


def _unique(values: pa.Array, kwargs: dict) -> np.ndarray:
    return ~_duplicated([values])


def _regex(negate: bool) -> Callable[[pa.Array, dict], np.ndarray]:
    def check(values: pa.Array, kwargs: dict) -> np.ndarray:
        found = _search(_as_text(values), kwargs["regex"])
        return ~found if negate else found
    return check


# Rows of these characters only are matched by RE2 (Arrow) and by Python's re alike.
_SAFE_TEXT = r"^[\x20-\x7e\t]*$"
_END_ANCHOR = re.compile(r"(?<!\\)((?:\\\\)*)\\Z")


def _search(values: pa.Array, pattern: str) -> np.ndarray:
    """``re.search(pattern, value) is not None`` for every value."""
    compiled = re.compile(pattern)  # re.error: the expectation fails with it, as under GX
    found = np.zeros(len(values), dtype=bool)
    if not len(values):
        return found
    try:
        if "{," in pattern or "[:" in pattern:  # RE2 reads these differently from Python
            raise pa.ArrowInvalid("not the same in RE2")
        safe = _np(pc.match_substring_regex(values, _SAFE_TEXT))
        if safe.any():
            hits = pc.match_substring_regex(values.filter(pa.array(safe)),
                                            _END_ANCHOR.sub(r"\1\\z", pattern))
            found[safe] = _np(hits)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # not RE2 syntax
        safe = np.zeros(len(values), dtype=bool)
    rest = ~safe
    if rest.any():
        others = values.filter(pa.array(rest))
        distinct = pc.unique(others)
        matching = [v for v in distinct.to_pylist() if compiled.search(v) is not None]
        found[rest] = _np(pc.is_in(others, value_set=pa.array(matching, values.type)))
    return found


def _duplicated(columns: list[pa.Array]) -> np.ndarray:
    """pandas' ``duplicated(keep=False)`` over rows of ``columns`` (nulls equal each other)."""
    n = len(columns[0])
    key = np.zeros(n, dtype=np.int64)
    cardinality = 1
    for column in columns:
        if pa.types.is_floating(column.type):
            column = pc.add(column, pa.scalar(0.0, column.type))  # -0.0 == 0.0
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        size = max(len(encoded.dictionary), 1)
        if cardinality * size >= 2 ** 62:
            _, key = np.unique(key, return_inverse=True)
            cardinality = int(key.max()) + 1 if n else 1
        key = key * size + codes
        cardinality *= size
    if cardinality > 4 * n + 16:
        _, key = np.unique(key, return_inverse=True)
        cardinality = int(key.max()) + 1 if n else 1
    counts = np.bincount(key, minlength=cardinality)
    return counts[key] > 1


def _compound_unique(frame: _Frame, kwargs: dict) -> Result:
    columns = kwargs["column_list"]
    domain = frame.domain(kwargs.get("row_condition"))
    nulls = np.column_stack([frame.nulls(c) for c in columns])
    ignore = kwargs.get("ignore_row_if", "all_values_are_missing")
    if ignore == "all_values_are_missing":
        kept = domain & ~nulls.all(axis=1)
    elif ignore == "any_value_is_missing":
        kept = domain & ~nulls.any(axis=1)
    else:
        kept = domain
    positions = np.flatnonzero(kept)
    mask = pa.array(kept)
    duplicated = _duplicated([frame.array(c).filter(mask) for c in columns]) if len(
        positions) else np.zeros(0, dtype=bool)
    return _map_result(int(domain.sum()), len(positions), positions[duplicated],
                       kwargs.get("mostly", 1))


def _pair_equal(frame: _Frame, kwargs: dict) -> Result:
    a, b = kwargs["column_A"], kwargs["column_B"]
    domain = frame.domain(kwargs.get("row_condition"))
    null_a, null_b = frame.nulls(a), frame.nulls(b)
    ignore = kwargs.get("ignore_row_if", "both_values_are_missing")
    if ignore == "both_values_are_missing":
        kept = domain & ~(null_a & null_b)
    elif ignore == "either_value_is_missing":
        kept = domain & ~(null_a | null_b)
    else:
        kept = domain
    positions = np.flatnonzero(kept)
    mask = pa.array(kept)
    left, right = frame.array(a).filter(mask), frame.array(b).filter(mask)
    try:
        equal = _np(pc.equal(left, right))  # a null equals nothing
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        equal = np.zeros(len(positions), dtype=bool)  # incomparable types: never equal
    return _map_result(int(domain.sum()), len(positions), positions[~equal],
                       kwargs.get("mostly", 1))


# ------------------------------------------------- aggregate and table expectations


def _metric_between(value: Any, kwargs: dict) -> Result:
    """GX's ``_validate_metric_value_between``."""
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return Result(False, {"observed_value": None})
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    above = True if low is None else (value > low if kwargs.get("strict_min") else value >= low)
    below = True if high is None else (value < high if kwargs.get("strict_max")
                                       else value <= high)
    return Result(bool(above and below), {"observed_value": value})


def _mean(frame: _Frame, kwargs: dict) -> Result:
    column = kwargs["column"]
    domain = frame.domain(kwargs.get("row_condition"))
    array = frame.array(column).filter(pa.array(domain))
    kind = array.type
    if pa.types.is_decimal(kind):  # GX converts decimals to float first
        array = pc.cast(pc.cast(array, pa.string()), pa.float64())
        kind = array.type
    if pa.types.is_floating(kind) and kind.bit_width >= 32:
        dtype = np.dtype(np.float32 if kind.bit_width == 32 else np.float64)
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_floating(kind):
        dtype = np.dtype(np.float64)
    else:
        raise _EvaluationError(f"the mean of a {kind} column is not supported")
    count = len(array) - array.null_count
    if count == 0:
        return _metric_between(None, kwargs)
    values = pc.fill_null(pc.cast(array, pa.from_numpy_dtype(dtype)), 0)
    the_sum = values.to_numpy(zero_copy_only=False).sum(dtype=dtype)
    return _metric_between(the_sum / dtype.type(count), kwargs)  # pandas' nanmean


def _row_count_equal(frame: _Frame, kwargs: dict) -> Result:
    return Result(frame.n == kwargs["value"], {"observed_value": frame.n})


def _row_count_between(frame: _Frame, kwargs: dict) -> Result:
    return _metric_between(frame.n, kwargs)


def _column_exists(frame: _Frame, kwargs: dict) -> Result:
    columns, index = frame.table.column_names, kwargs.get("column_index")
    if index:
        try:
            success = columns[index] == kwargs["column"]
        except IndexError:
            success = False
    else:
        success = kwargs["column"] in columns
    return Result(bool(success), {})


def _columns_match_set(frame: _Frame, kwargs: dict) -> Result:
    actual = set(frame.table.column_names)
    expected = set(kwargs["column_set"] or [])
    observed = sorted(actual)
    if actual == expected:
        return Result(True, {"observed_value": observed})
    if kwargs.get("exact_match", True):
        return Result(False, {"observed_value": observed})
    return Result(not (expected - actual), {"observed_value": observed})


_EVALUATORS: dict[str, Callable[[_Frame, dict], Result]] = {
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_in_set": _column_map(_in_set),
    "expect_column_values_to_not_be_in_set": _column_map(_not_in_set),
    "expect_column_values_to_match_regex": _column_map(_regex(negate=False)),
    "expect_column_values_to_not_match_regex": _column_map(_regex(negate=True)),
    "expect_column_values_to_be_between": _column_map(_between),
    "expect_column_values_to_be_unique": _column_map(_unique),
    "expect_column_value_lengths_to_be_between": _column_map(_lengths),
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_pair_values_to_be_equal": _pair_equal,
    "expect_column_mean_to_be_between": _mean,
    "expect_table_row_count_to_equal": _row_count_equal,
    "expect_table_row_count_to_be_between": _row_count_between,
    "expect_column_to_exist": _column_exists,
    "expect_table_columns_to_match_set": _columns_match_set,
}
assert set(_EVALUATORS) == set(SUPPORTED)
