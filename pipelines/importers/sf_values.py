"""Salesforce export values -> contract values: ids, datetimes, money, booleans, countries.

Every parser returns ``None`` for an empty cell and raises ``ValueError`` (with a
reason the rejects file shows) for a value it cannot read. Money is ``Decimal``
throughout, never binary floating point.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from schemas.money import CURRENCY_MINOR_UNITS

_ID_CHECKSUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID15 = re.compile(r"^[a-zA-Z0-9]{15}$")
_ID18 = re.compile(r"^[a-zA-Z0-9]{18}$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"\s*(Z|z|[+-]\d{2}:?\d{2}|GMT|UTC)?$"
)
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}

# Billing country names seen in orgs without State and Country Picklists -> ISO 3166-1
# alpha-2. With the picklists enabled the export has BillingCountryCode, used first.
COUNTRY_NAMES: dict[str, str] = {
    "united states": "US", "united states of america": "US", "usa": "US", "u.s.": "US",
    "u.s.a.": "US", "america": "US", "canada": "CA", "mexico": "MX", "brazil": "BR",
    "argentina": "AR", "chile": "CL", "colombia": "CO", "united kingdom": "GB", "uk": "GB",
    "great britain": "GB", "england": "GB", "scotland": "GB", "wales": "GB",
    "ireland": "IE", "germany": "DE", "deutschland": "DE", "france": "FR", "spain": "ES",
    "italy": "IT", "netherlands": "NL", "the netherlands": "NL", "belgium": "BE",
    "luxembourg": "LU", "switzerland": "CH", "austria": "AT", "sweden": "SE", "norway": "NO",
    "denmark": "DK", "finland": "FI", "iceland": "IS", "poland": "PL", "portugal": "PT",
    "czech republic": "CZ", "czechia": "CZ", "hungary": "HU", "romania": "RO", "greece": "GR",
    "turkey": "TR", "israel": "IL", "united arab emirates": "AE", "uae": "AE",
    "saudi arabia": "SA", "south africa": "ZA", "nigeria": "NG", "egypt": "EG", "kenya": "KE",
    "india": "IN", "china": "CN", "japan": "JP", "south korea": "KR", "korea": "KR",
    "singapore": "SG", "hong kong": "HK", "taiwan": "TW", "australia": "AU",
    "new zealand": "NZ", "indonesia": "ID", "malaysia": "MY", "philippines": "PH",
    "thailand": "TH", "vietnam": "VN",
}


def sf_id(text: str | None) -> str | None:
    """A record id as 18 characters: 15-character (case-sensitive) ids get their
    checksum suffix, so ``001...`` ids from any export or history value match.

    >>> sf_id("001000000000001")
    '001000000000001AAA'
    """
    if text is None or not text.strip():
        return None
    text = text.strip()
    if _ID15.match(text):
        suffix = ""
        for chunk in (text[0:5], text[5:10], text[10:15]):
            bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
            suffix += _ID_CHECKSUM[bits]
        return text + suffix
    return text


def looks_like_user_id(text: str | None) -> bool:
    """True for a User record id (key prefix 005), 15 or 18 characters."""
    return bool(text) and text.startswith("005") and bool(_ID15.match(text) or _ID18.match(text))


def sf_datetime(text: str | None) -> datetime | None:
    """A Salesforce datetime (``2026-01-05T10:00:00.000Z``, ``...+0000``, ``...+01:00``, or
    ``2026-01-05 10:00:00`` without an offset: exports write datetimes in GMT) -> aware UTC."""
    if text is None or not text.strip():
        return None
    m = _DATETIME.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a datetime (e.g. 2026-01-05T10:00:00.000Z)")
    y, mo, d, h, mi, s, frac, off = m.groups()
    micros = int((frac or "0").ljust(9, "0")[:6])
    tz: timezone = UTC
    if off and off.upper() not in ("Z", "GMT", "UTC"):
        digits = off[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        tz = timezone(-delta if off[0] == "-" else delta)
    try:
        value = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micros, tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date and time ({exc})") from None
    return value.astimezone(UTC)


def sf_date(text: str | None) -> date | None:
    """A Salesforce date (``2026-03-20``; a datetime's date part is accepted too)."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    m = _DATE.match(text[:10])
    if not m or (len(text) > 10 and text[10] not in "T "):
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD")
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a real date ({exc})") from None


def sf_decimal(text: str | None) -> Decimal | None:
    """A number as exported (``12000.5``, ``-40``, ``1.2E7``) -> exact ``Decimal``."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    if not _NUMBER.match(text):
        raise ValueError(f"{text!r} is not a number")
    try:
        return Decimal(text)
    except InvalidOperation:  # pragma: no cover - the pattern already refused it
        raise ValueError(f"{text!r} is not a number") from None


def sf_bool(text: str | None, default: bool = False) -> bool:
    """``true``/``false`` (also ``1``/``0``); empty -> ``default``."""
    if text is None or not text.strip():
        return default
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def money(amount: Decimal, currency: str) -> Decimal:
    """``amount`` at the currency's minor unit; ``ValueError`` if it holds more digits
    or the currency is not an ISO 4217 code the pipeline knows."""
    digits = CURRENCY_MINOR_UNITS.get(currency)
    if digits is None:
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    exact = amount.quantize(Decimal(1).scaleb(-digits))
    if exact != amount:
        raise ValueError(f"{amount} {currency} has more than {digits} decimal place(s)")
    return exact


def money_text(amount: Decimal) -> str:
    """A decimal as plain text, never in exponent form (``Decimal('1E+3')`` -> ``1000``)."""
    return f"{amount:f}"


def country_code(code: str | None, name: str | None) -> str | None:
    """ISO 3166-1 alpha-2 from BillingCountryCode, else from a 2-letter or known
    BillingCountry name; ``None`` if neither gives one."""
    for value in (code, name):
        if value and len(value.strip()) == 2 and value.strip().isalpha():
            return value.strip().upper()
    if name:
        return COUNTRY_NAMES.get(" ".join(name.lower().split()))
    return None


def rfc3339(value: datetime) -> str:
    """UTC instant as RFC 3339 with ``Z`` (microseconds only when non-zero)."""
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "Z"


def midnight_utc(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
