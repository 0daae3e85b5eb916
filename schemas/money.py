"""Money types and ISO 4217 minor units. Money is never binary floating point."""

from __future__ import annotations

import pyarrow as pa

# Original amounts: |amount| < 10**13 with up to 3 minor digits (BHD, KWD, ...).
AMOUNT_TYPE = pa.decimal128(16, 3)
AMOUNT_MAX_ABS_EXCLUSIVE = 10**13
# Amounts in the reporting currency, as published (CONTRACT.md: DECIMAL(18,2)).
REPORTING_MONEY_TYPE = pa.decimal128(18, 2)
# FX multipliers: up to 10 fractional digits.
FX_RATE_TYPE = pa.decimal128(18, 10)
# Sums of reporting money before they are cast back to REPORTING_MONEY_TYPE.
MONEY_SUM_TYPE = pa.decimal128(38, 2)

DEFAULT_REPORTING_CURRENCY = "USD"

# ISO 4217 active codes and their minor-unit digits (exponent).
# Codes not listed here are quarantined as bad_currency.
_THREE_DIGITS = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_ZERO_DIGITS = {
    "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
    "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
}
_TWO_DIGITS = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM",
    "BBD", "BDT", "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN",
    "BZD", "CAD", "CDF", "CHF", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK",
    "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS",
    "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD",
    "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR",
    "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS",
    "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR", "ZMW", "ZWG",
}

CURRENCY_MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO_DIGITS},
    **{code: 0 for code in _ZERO_DIGITS},
    **{code: 3 for code in _THREE_DIGITS},
}


def minor_units(currency: str) -> int:
    """Minor-unit digits of an ISO 4217 code; KeyError for unknown codes."""
    return CURRENCY_MINOR_UNITS[currency]
