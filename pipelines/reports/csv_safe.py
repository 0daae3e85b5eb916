"""CSV that a spreadsheet opens as data, never as formulas (CSV-injection guidance).

Text cells whose first character is ``=``, ``+``, ``-``, ``@``, a tab, a carriage
return or a line feed, or a full-width ``＝ ＋ － ＠`` (also after leading whitespace or
invisible format characters such as U+202E, which some spreadsheets skip) get a
leading ``'``, which Excel, LibreOffice and Google Sheets show as text. Numbers
(``int``/``Decimal``) are written as they are, so a negative amount stays a number:
only text can come from the CRM. Quoting follows RFC 4180 (``csv`` module, minimal
quoting, ``\\r\\n`` line ends); the file is UTF-8 with a BOM so Excel reads accents.

>>> neutralise('=HYPERLINK("http://x")'), neutralise("-5"), neutralise("Acme"), neutralise(-5)
('\\'=HYPERLINK("http://x")', "'-5", 'Acme', -5)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

# The OWASP list, a line feed, and their full-width forms (some locales read them).
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_TRIGGER_SET = frozenset(TRIGGERS)
# What a spreadsheet may skip before a formula: whitespace and invisible format characters
# (zero-width, bidi controls, BOM).
_LEADING = re.compile("[\\s\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]*")


def neutralise(value: object) -> object:
    """A cell value that cannot start a formula; numbers, dates and None pass unchanged."""
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    if first.isalnum():
        return value
    if first in _TRIGGER_SET or value[_LEADING.match(value).end() :][:1] in _TRIGGER_SET:
        return "'" + value
    return value


def _iso(value: date) -> str:
    return value.isoformat()


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _as_is(value: object) -> object:
    return value


# Exact type -> cell conversion (a dict lookup per cell: the CSVs have millions of cells).
_CONVERT = {
    str: neutralise,
    int: _as_is,
    Decimal: _as_is,
    bool: _bool,
    date: _iso,
    datetime: _iso,
    type(None): lambda _value: "",
}


def _cell(value: object) -> object:
    convert = _CONVERT.get(type(value))
    if convert is not None:
        return convert(value)
    if isinstance(value, date):  # date and datetime subclasses
        return value.isoformat()
    if isinstance(value, int | Decimal):
        return value
    return neutralise(str(value))


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The CSV text (header row first); every text cell neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow([neutralise(name) for name in header])
    cell = _cell
    writer.writerows([cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def to_csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    return b"\xef\xbb\xbf" + to_csv(header, rows).encode("utf-8")
