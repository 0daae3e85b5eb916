"""Reference data: ``<dir>/<table>.csv`` or ``<table>.parquet`` -> typed tables.

``load_reference(directory)`` returns one table per name in
``schemas.reference.REFERENCE_TABLES``, each with exactly
``REFERENCE_SCHEMAS[table]`` (CONTRACT.md section 2):

* every value is read as text, trimmed of surrounding whitespace; empty -> null;
* ``valid_from`` / ``valid_to``: a date ``YYYY-MM-DD`` (midnight UTC) or an
  RFC 3339 timestamp with offset (``2026-03-01T09:05:00-05:00``, ``...Z``);
  empty = unbounded (null). Fractions beyond microseconds are truncated;
* ``rate_date``: a date; ``rate_to_reporting``: a plain decimal (at most 8
  integer and 10 fractional digits, > 0), parsed exactly into ``FX_RATE_TYPE``;
* ``account_splits`` (optional: no file = no splits): ``percent`` a plain decimal
  with at most 4 fractional digits, 0 < percent <= 100; ``split_type`` ``primary``
  or ``overlay``, empty meaning ``primary``.

Any invalid value raises ``UserError`` naming the file, the line (CSV: physical
line, header = line 1; Parquet: data row) and the column. Parsing is vectorised:
the per-row position is only looked up for the first bad row.

Parquet files may also carry native types: strings, integers, dates,
time-zone-aware timestamps and decimals are accepted; naive timestamps and
floating-point rates are refused (money is never binary floating point).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipelines.errors import UserError
from schemas.money import FX_RATE_TYPE
from schemas.reference import (
    OPTIONAL_REFERENCE_TABLES,
    PERCENT_TYPE,
    REFERENCE_SCHEMAS,
    REFERENCE_TABLES,
    REQUIRED_REFERENCE_TABLES,
    SPLIT_TYPES,
    VALIDITY_TYPE,
)

FORMATS: tuple[str, ...] = ("csv", "parquet")
TEMPORAL_COLUMNS: tuple[str, ...] = ("valid_from", "valid_to")

_US_PER_DAY = 86_400_000_000
_TIMESTAMP_PATTERN = (
    r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})"
    r"(?:[Tt ](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<off>[Zz]|[+-]\d{2}:\d{2}))?$"
)
_DATE_PATTERN = r"^(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})$"
_RATE_PATTERN = r"^(?:\d{1,8}(?:\.\d{0,10})?|\.\d{1,10})$"
_CURRENCY_PATTERN = r"^[A-Z]{3}$"
_PERCENT_PATTERN = r"^(?:\d{1,3}(?:\.\d{0,4})?|\.\d{1,4})$"
# What an empty cell of a required column means.
_DEFAULTS: dict[str, str] = {"split_type": "primary"}

_TEMPORAL_HINT = (
    "use a date YYYY-MM-DD (midnight UTC) or an RFC 3339 timestamp with offset, "
    "e.g. 2026-03-01T09:05:00-05:00; leave empty for unbounded"
)


@dataclass(frozen=True)
class _Source:
    """One reference file and how to name a row of it in an error message."""

    path: Path
    kind: str  # "csv" | "parquet"

    def where(self, row: int | None = None) -> str:
        if row is None:
            return str(self.path)
        if self.kind == "parquet":
            return f"{self.path}:row {row + 1}"
        return f"{self.path}:{_csv_line_of_row(self.path, row)}"


def reference_files(directory: str | Path) -> dict[str, Path]:
    """The file of each reference table found in ``directory`` (absent tables omitted).

    Raises ``UserError`` when a table has both a CSV and a Parquet file.
    """
    directory = Path(directory)
    found: dict[str, Path] = {}
    for table in REFERENCE_TABLES:
        candidates = [directory / f"{table}.{ext}" for ext in FORMATS]
        present = [p for p in candidates if p.is_file()]
        if len(present) > 1:
            raise UserError(
                f"both {present[0].name} and {present[1].name} exist",
                where=str(directory),
                hint="keep one file per reference table",
            )
        if present:
            found[table] = present[0]
    return found


def load_reference(directory: str | Path) -> dict[str, pa.Table]:
    """Read and type the reference tables of ``directory`` (an optional table without a
    file is empty)."""
    directory = Path(directory)
    expected = ", ".join(f"{t}.csv" for t in REQUIRED_REFERENCE_TABLES)
    if not directory.is_dir():
        raise UserError(
            f"reference directory {directory} does not exist",
            hint=f"pass a directory holding {expected} (or .parquet)",
        )
    files = reference_files(directory)
    missing = [t for t in REQUIRED_REFERENCE_TABLES if t not in files]
    if missing:
        names = ", ".join(f"{t}.csv" for t in missing)
        raise UserError(
            f"missing reference file(s): {names}",
            where=str(directory),
            hint=f"the directory needs one <table>.csv or <table>.parquet for each of: {expected}",
        )
    return {table: load_table(table, files[table]) if table in files
            else REFERENCE_SCHEMAS[table].empty_table() for table in REFERENCE_TABLES}


def with_optional_tables(reference: dict[str, pa.Table]) -> dict[str, pa.Table]:
    """``reference`` with an empty table for each optional table it lacks."""
    return {**{t: REFERENCE_SCHEMAS[t].empty_table() for t in OPTIONAL_REFERENCE_TABLES},
            **reference}


def reference_file_names() -> list[str]:
    """Every file name a reference folder may hold (``<table>.csv``, ``<table>.parquet``)."""
    return [f"{table}.{ext}" for table in REFERENCE_TABLES for ext in FORMATS]


def load_reference_from(directory: str) -> dict[str, pa.Table]:
    """``load_reference`` of any FileSystems folder (``gs://...``: its files are fetched
    to a temporary local folder first). The Beam graph's reference step."""
    from pipelines.io.files import local_folder

    with local_folder(directory, reference_file_names()) as folder:
        return load_reference(folder)


def reference_fingerprint(directory: str | Path) -> str:
    """sha256 over the reference files' names and contents (change detection)."""
    digest = hashlib.sha256()
    for _table, path in sorted(reference_files(directory).items()):
        name = path.name.encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(path.stat().st_size.to_bytes(8, "big"))
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_table(table: str, path: str | Path) -> pa.Table:
    """One reference file (CSV or Parquet by extension) -> ``REFERENCE_SCHEMAS[table]``."""
    path = Path(path)
    kind = "parquet" if path.suffix.lower() == ".parquet" else "csv"
    source = _Source(path, kind)
    raw = _read_csv(source) if kind == "csv" else _read_parquet(source)
    return _typed(table, raw, source)


# --------------------------------------------------------------------- reading


def _read_csv(source: _Source) -> dict[str, pa.Array]:
    with source.path.open("r", encoding="utf-8-sig", newline="") as handle:
        try:
            header = next(csv.reader(handle), None)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read the header row: {exc}", where=source.where()) from None
    if not header:
        raise UserError("the file is empty", where=f"{source.path}:1",
                        hint="the first line must be the header row")
    try:
        table = pacsv.read_csv(
            source.path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        line = _csv_first_ragged_line(source.path, len(header))
        where = f"{source.path}:{line}" if line else str(source.path)
        raise UserError(f"not a valid CSV row: {exc}", where=where,
                        hint=f"every row needs the {len(header)} columns of the header") from None
    return _columns_by_trimmed_name(table, source)


def _read_parquet(source: _Source) -> dict[str, pa.Array]:
    try:
        table = pq.read_table(source.path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable Parquet file: {exc}", where=source.where()) from None
    return _columns_by_trimmed_name(table, source)


def _columns_by_trimmed_name(table: pa.Table, source: _Source) -> dict[str, pa.Array]:
    columns: dict[str, pa.Array] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        key = name.strip()
        if key in columns:
            where = f"{source.path}:1" if source.kind == "csv" else str(source.path)
            raise UserError(f"column {key!r} appears twice in the header", where=where)
        columns[key] = column.combine_chunks()
    return columns


def _csv_line_of_row(path: Path, row: int) -> int:
    """Physical line (1-based) of data row ``row`` (0-based); blank lines are skipped
    by the CSV reader and values cannot span lines (newlines_in_values=False)."""
    with path.open("rb") as handle:
        lines = handle.read().splitlines()
    non_empty = [i + 1 for i, text in enumerate(lines) if text not in (b"", b"\xef\xbb\xbf")]
    return non_empty[row + 1] if row + 1 < len(non_empty) else row + 2


def _csv_first_ragged_line(path: Path, width: int) -> int | None:
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            for number, text in enumerate(handle.read().splitlines(), start=1):
                if text and len(next(csv.reader(io.StringIO(text)), [])) != width:
                    return number
    except (UnicodeDecodeError, csv.Error):
        return None
    return None


# ---------------------------------------------------------------------- typing


def _typed(table: str, columns: dict[str, pa.Array], source: _Source) -> pa.Table:
    schema = REFERENCE_SCHEMAS[table]
    missing = [name for name in schema.names if name not in columns]
    if missing:
        raise UserError(
            f"missing column(s) {', '.join(missing)}",
            where=f"{source.path}:1" if source.kind == "csv" else str(source.path),
            hint=f"{table} needs the columns {', '.join(schema.names)}",
        )
    arrays: list[pa.Array] = []
    for field in schema:
        column = columns[field.name]
        if field.name in TEMPORAL_COLUMNS and pa.types.is_timestamp(column.type):
            values = _native_timestamp(column, field.name, source)
        else:
            text = _as_text(column, field, source)
            if field.name in _DEFAULTS:
                text = pc.fill_null(text, _DEFAULTS[field.name])
            _check_required(text, field, source)
            values = _parse(text, field, source)
        arrays.append(values)
    typed = pa.Table.from_arrays(arrays, schema=schema)
    _check_table(table, typed, source)
    return typed


def _as_text(column: pa.Array, field: pa.Field, source: _Source) -> pa.Array:
    """Column -> trimmed strings, empty -> null."""
    kind = column.type
    if pa.types.is_floating(kind) and field.type in (FX_RATE_TYPE, PERCENT_TYPE):
        raise UserError(
            f"column {field.name} is binary floating point ({kind})",
            where=source.where(),
            hint="store rates as decimal or text: money is never floating point",
        )
    if pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
    if not pa.types.is_string(column.type):
        try:
            column = column.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise UserError(f"column {field.name} of type {kind} cannot be read as text: {exc}",
                            where=source.where()) from None
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _first(mask: pa.Array | np.ndarray) -> int | None:
    """Index of the first true value (nulls are false), or None."""
    if isinstance(mask, pa.Array | pa.ChunkedArray):
        mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _check_required(text: pa.Array, field: pa.Field, source: _Source) -> None:
    if field.nullable:
        return
    row = _first(pc.is_null(text))
    if row is not None:
        raise UserError(f"{field.name} is empty", where=source.where(row),
                        hint=f"{field.name} is required")


def _parse(text: pa.Array, field: pa.Field, source: _Source) -> pa.Array:
    if field.name in TEMPORAL_COLUMNS:
        micros, bad, why = _parse_timestamps(text)
        _raise_first(bad, text, field, source, why, _TEMPORAL_HINT)
        return _micros_to_timestamps(micros, pc.is_valid(text))
    if pa.types.is_date32(field.type):
        days, bad, why = _parse_dates(text)
        _raise_first(bad, text, field, source, why, "use a date YYYY-MM-DD")
        valid = pc.is_valid(text).to_numpy(zero_copy_only=False)
        return pa.array(days.astype(np.int32), pa.int32(), mask=~valid).cast(pa.date32())
    if field.type == FX_RATE_TYPE:
        return _parse_rates(text, field, source)
    if field.type == PERCENT_TYPE:
        return _parse_percents(text, field, source)
    if field.name == "split_type":
        bad = pc.invert(pc.is_in(text, value_set=pa.array(SPLIT_TYPES)))
        _raise_first(bad, text, field, source, "is not a split type",
                     f"use one of {', '.join(SPLIT_TYPES)} (empty means primary)")
    if field.name == "currency":
        bad = pc.invert(pc.match_substring_regex(text, _CURRENCY_PATTERN))
        _raise_first(bad, text, field, source, "is not an ISO 4217 code",
                     "use 3 upper-case letters, e.g. EUR")
    return text


def _raise_first(bad: pa.Array | np.ndarray, text: pa.Array, field: pa.Field, source: _Source,
                 why: str | np.ndarray, hint: str) -> None:
    row = _first(bad)
    if row is None:
        return
    reason = why if isinstance(why, str) else str(why[row])
    raise UserError(f"{field.name} {text[row].as_py()!r} {reason}", where=source.where(row),
                    hint=hint)


def _ints(parts: pa.StructArray, name: str) -> np.ndarray:
    """A digits-only group of a regex match -> int64 (missing -> 0)."""
    values = pc.struct_field(parts, name)
    values = pc.fill_null(pc.if_else(pc.equal(values, ""), "0", values), "0")
    return values.cast(pa.int64()).to_numpy(zero_copy_only=False)


def _days_from_civil(y: np.ndarray, mo: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 and whether (y, mo, d) is a real calendar date."""
    month_ok = (mo >= 1) & (mo <= 12)
    months = (y - 1970) * 12 + np.where(month_ok, mo - 1, 0)
    first = months.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    following = (months + 1).astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
    days = first + d - 1
    return days, month_ok & (d >= 1) & (days < following)


def _parse_dates(text: pa.Array) -> tuple[np.ndarray, np.ndarray, str]:
    parts = pc.extract_regex(text, _DATE_PATTERN)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    days, real = _days_from_civil(_ints(parts, "y"), _ints(parts, "mo"), _ints(parts, "d"))
    bad = present & ~(matched & real)
    return np.where(bad | ~present, 0, days), bad, "is not a valid date YYYY-MM-DD"


def _parse_timestamps(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dates or RFC 3339 timestamps -> UTC microseconds, bad-row mask, reason per row."""
    parts = pc.extract_regex(text, _TIMESTAMP_PATTERN)
    present = pc.is_valid(text).to_numpy(zero_copy_only=False)
    matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    days, real = _days_from_civil(_ints(parts, "y"), _ints(parts, "mo"), _ints(parts, "d"))
    h, mi, s = _ints(parts, "h"), _ints(parts, "mi"), _ints(parts, "s")
    frac = pc.struct_field(parts, "frac")
    frac = pc.fill_null(pc.utf8_rpad(pc.if_else(pc.equal(frac, ""), "0", frac), 9, "0"), "0")
    nanos = frac.cast(pa.int64()).to_numpy(zero_copy_only=False)
    offset = pc.fill_null(pc.struct_field(parts, "off"), "")
    upper = pc.utf8_upper(offset)
    numeric = pc.and_(pc.not_equal(upper, ""), pc.not_equal(upper, "Z"))
    sign = np.where(pc.starts_with(offset, "-").to_numpy(zero_copy_only=False), -1, 1)
    off_h = pc.if_else(numeric, pc.utf8_slice_codeunits(offset, 1, 3), "0")
    off_m = pc.if_else(numeric, pc.utf8_slice_codeunits(offset, 4, 6), "0")
    off_h = off_h.cast(pa.int64()).to_numpy(zero_copy_only=False)
    off_m = off_m.cast(pa.int64()).to_numpy(zero_copy_only=False)
    clock_ok = (h <= 23) & (mi <= 59) & (s <= 59) & (off_h <= 23) & (off_m <= 59)
    micros = (
        days * _US_PER_DAY
        + ((h * 60 + mi) * 60 + s) * 1_000_000
        + nanos // 1000
        - sign * (off_h * 60 + off_m) * 60_000_000
    )
    bad = present & ~(matched & real & clock_ok)
    why = np.where(
        matched & ~real, "is not a real calendar date",
        np.where(matched & ~clock_ok, "has an out-of-range time or offset",
                 "is not a date (YYYY-MM-DD) or an RFC 3339 timestamp with offset"),
    )
    return np.where(bad | ~present, 0, micros), bad, why


def _micros_to_timestamps(micros: np.ndarray, valid: pa.Array) -> pa.Array:
    mask = ~pc.fill_null(valid, False).to_numpy(zero_copy_only=False)
    return pa.array(micros, pa.int64(), mask=mask).cast(VALIDITY_TYPE)


def _native_timestamp(column: pa.Array, name: str, source: _Source) -> pa.Array:
    if column.type.tz is None:
        raise UserError(
            f"column {name} holds timestamps without a time zone",
            where=source.where(), hint="write time-zone-aware (UTC) timestamps, or dates",
        )
    try:
        return column.cast(VALIDITY_TYPE)
    except pa.ArrowInvalid as exc:
        raise UserError(f"column {name}: {exc}", where=source.where(),
                        hint="timestamps are kept to the microsecond") from None


def _parse_rates(text: pa.Array, field: pa.Field, source: _Source) -> pa.Array:
    bad = pc.invert(pc.match_substring_regex(text, _RATE_PATTERN))
    _raise_first(bad, text, field, source, "is not a plain decimal with at most 8 integer and "
                 "10 fractional digits", "write the rate as e.g. 1.0825")
    rates = text.cast(FX_RATE_TYPE)
    zero = pa.scalar(Decimal(0), FX_RATE_TYPE)
    _raise_first(pc.less_equal(rates, zero), text, field, source, "is not positive",
                 "a rate multiplies an amount into the reporting currency: it must be > 0")
    return rates


def _parse_percents(text: pa.Array, field: pa.Field, source: _Source) -> pa.Array:
    bad = pc.invert(pc.match_substring_regex(text, _PERCENT_PATTERN))
    _raise_first(bad, text, field, source, "is not a plain decimal with at most 4 fractional "
                 "digits", "write the share as e.g. 33.3333 (percent, not a fraction)")
    percents = text.cast(PERCENT_TYPE)
    zero, hundred = (pa.scalar(Decimal(v), PERCENT_TYPE) for v in (0, 100))
    out = pc.or_(pc.less_equal(percents, zero), pc.greater(percents, hundred))
    _raise_first(out, text, field, source, "is not in (0, 100]",
                 "a share is a percent of the account's credit: more than 0, at most 100")
    return percents


def _check_table(table: str, typed: pa.Table, source: _Source) -> None:
    """Row-level consistency checks whose failure makes the table unusable."""
    if "valid_from" in typed.column_names:
        start = typed["valid_from"].combine_chunks()
        end = typed["valid_to"].combine_chunks()
        row = _first(pc.less(end, start))
        if row is not None:
            raise UserError(
                f"valid_to {end[row].as_py()} is before valid_from {start[row].as_py()}",
                where=source.where(row), hint="valid_from is inclusive, valid_to exclusive",
            )
    if table == "fx_rates" and typed.num_rows:
        _check_fx_keys(typed, source)


def _check_fx_keys(typed: pa.Table, source: _Source) -> None:
    """Two different rates for one (currency, rate_date) make conversion ambiguous."""
    keyed = typed.append_column("_row", pa.array(np.arange(typed.num_rows), pa.int64()))
    order = pc.sort_indices(keyed, [("currency", "ascending"), ("rate_date", "ascending"),
                                    ("_row", "ascending")])
    ordered = keyed.take(order)
    if ordered.num_rows < 2:
        return
    same_key = pc.and_(
        pc.equal(ordered["currency"][1:], ordered["currency"][:-1]),
        pc.equal(ordered["rate_date"][1:], ordered["rate_date"][:-1]),
    )
    conflict = pc.and_(same_key, pc.not_equal(ordered["rate_to_reporting"][1:],
                                              ordered["rate_to_reporting"][:-1]))
    at = _first(conflict)
    if at is not None:
        row = ordered["_row"][at + 1].as_py()
        first = ordered["_row"][at].as_py()
        raise UserError(
            f"a second, different rate for {ordered['currency'][at].as_py()} on "
            f"{ordered['rate_date'][at].as_py()} (first given at {source.where(first)})",
            where=source.where(row), hint="keep one rate per currency and day",
        )
