"""The DuckDB SQL reference implementation (the oracle) against hand-computed rows.

Every test writes a tiny events file and reference directory into ``tmp_path``,
runs ``compute_reference`` into a fresh in-memory DuckDB and compares exact rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.reference_sql import compute_reference
from schemas.outputs import (
    ACCOUNT_MANAGER_REVENUE_SCHEMA,
    ATTRIBUTED_EVENTS_SCHEMA,
    TERRITORY_REVENUE_SCHEMA,
)
from schemas.reference import REFERENCE_FILE_COLUMNS

D = Decimal
UTC = dt.UTC

# A small world. Tree: GLOBAL > AMER > US > {US-CA > SF, US-NY}; JP-ORPHAN alone.
# Managers: AMER (TM-AMER), US-CA (TM-CA), SF (TM-SF from 2026-03-01).
BASE_REFERENCE: dict[str, list[dict[str, str]]] = {
    "accounts": [
        {"account_id": "A1", "country": "US", "region": "CA", "city": "San Francisco",
         "postal_code": "94105"},
        {"account_id": "A2", "country": "US", "region": "NY", "city": "New York",
         "postal_code": "10001"},
        {"account_id": "A3", "country": "DE", "region": "BE", "city": "Berlin",
         "postal_code": "10115"},
        {"account_id": "A4", "country": "US", "region": "CA", "city": "Los Angeles",
         "postal_code": "90001"},
        {"account_id": "A5", "country": "US", "region": "CA", "city": "Los Angeles",
         "postal_code": "90002"},
        {"account_id": "A6", "country": "JP", "region": "13", "city": "Tokyo",
         "postal_code": "100-0001"},
    ],
    "account_assignments": [
        {"account_id": "A1", "account_manager_id": "AM1", "valid_from": "",
         "valid_to": "2026-03-15"},
        {"account_id": "A1", "account_manager_id": "AM2", "valid_from": "2026-03-15",
         "valid_to": ""},
        {"account_id": "A2", "account_manager_id": "AM1", "valid_from": "2026-01-01",
         "valid_to": ""},
        {"account_id": "A3", "account_manager_id": "AM3", "valid_from": "", "valid_to": ""},
        {"account_id": "A4", "account_manager_id": "AM4", "valid_from": "", "valid_to": ""},
        {"account_id": "A6", "account_manager_id": "AM6", "valid_from": "", "valid_to": ""},
        {"account_id": "A9", "account_manager_id": "AM9", "valid_from": "", "valid_to": ""},
    ],
    "territories": [
        {"territory_id": "GLOBAL", "parent_territory_id": "", "level": "global"},
        {"territory_id": "AMER", "parent_territory_id": "GLOBAL", "level": "region"},
        {"territory_id": "US", "parent_territory_id": "AMER", "level": "country"},
        {"territory_id": "US-CA", "parent_territory_id": "US", "level": "state"},
        {"territory_id": "US-NY", "parent_territory_id": "US", "level": "state"},
        {"territory_id": "SF", "parent_territory_id": "US-CA", "level": "city"},
        {"territory_id": "JP-ORPHAN", "parent_territory_id": "", "level": "country"},
    ],
    "territory_rules": [
        {"territory_id": "US", "country": "US"},
        {"territory_id": "US-CA", "country": "US", "region": "CA"},
        {"territory_id": "US-NY", "country": "US", "region": "NY"},
        {"territory_id": "SF", "country": "us", "region": " ca ", "city": " san francisco "},
        {"territory_id": "JP-ORPHAN", "country": "JP"},
    ],
    "territory_managers": [
        {"territory_id": "AMER", "manager_id": "TM-AMER"},
        {"territory_id": "US-CA", "manager_id": "TM-CA"},
        {"territory_id": "SF", "manager_id": "TM-SF", "valid_from": "2026-03-01T00:00:00Z"},
    ],
    "people": [{"person_id": "AM1", "name": "Ann", "role": "account_manager"}],
    "fx_rates": [
        {"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "1.10"},
        {"currency": "EUR", "rate_date": "2026-03-01", "rate_to_reporting": "1.20"},
        {"currency": "KWD", "rate_date": "2026-01-01", "rate_to_reporting": "1"},
        {"currency": "JPY", "rate_date": "2026-01-01", "rate_to_reporting": "0.0066666667"},
    ],
}


def event(**fields: object) -> dict[str, object]:
    """A valid deal_won of 100.00 USD for A1 on 2026-03-02, overridden by ``fields``."""
    base: dict[str, object] = {
        "event_id": "e1", "event_type": "deal_won", "event_time": "2026-03-02T12:00:00Z",
        "deal_id": "D1", "account_id": "A1", "amount": "100.00", "currency": "USD",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}  # ``...`` drops a field


def write_reference(directory: Path, overrides: dict[str, list[dict[str, str]]] | None = None
                    ) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tables = {**BASE_REFERENCE, **(overrides or {})}
    for table, rows in tables.items():
        columns = REFERENCE_FILE_COLUMNS[table]
        with open(directory / f"{table}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({c: row.get(c, "") for c in columns})
    return directory


def write_jsonl(path: Path, records: list[dict | str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n")
    return path


def reference(tmp_path: Path, records: list[dict | str],
              overrides: dict[str, list[dict[str, str]]] | None = None,
              reporting_currency: str = "USD") -> duckdb.DuckDBPyConnection:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", records)
    write_reference(tmp_path / "reference", overrides)
    con = duckdb.connect()
    compute_reference(con, str(tmp_path / "events" / "*.jsonl"), str(tmp_path / "reference"),
                      reporting_currency)
    return con


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, int]:
    return con.execute(
        "SELECT input_records, accepted, duplicates, quarantined FROM ref_counts").fetchall()[0]


def reasons(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str]]:
    return rows(con, "SELECT position, reason FROM ref_quarantine ORDER BY source, position")


# --- shapes -----------------------------------------------------------------------

def test_output_tables_have_the_published_columns_and_types(tmp_path: Path) -> None:
    con = reference(tmp_path, [event()])
    expected = {
        "ref_attributed_events": [f.name for f in ATTRIBUTED_EVENTS_SCHEMA if f.name != "run_id"],
        "ref_territory_revenue": TERRITORY_REVENUE_SCHEMA.names,
        "ref_account_manager_revenue": ACCOUNT_MANAGER_REVENUE_SCHEMA.names,
        "ref_quarantine_counts": ["reason", "n"],
        "ref_counts": ["input_records", "accepted", "duplicates", "quarantined"],
    }
    for table, names in expected.items():
        assert [r[0] for r in rows(con, f"DESCRIBE {table}")] == list(names)
    types = dict((r[0], r[1]) for r in rows(con, "DESCRIBE ref_attributed_events"))
    assert types["event_time"] == "TIMESTAMP WITH TIME ZONE"
    assert types["amount"] == "DECIMAL(16,3)"
    assert types["booked_revenue"] == "DECIMAL(18,2)"
    assert types["day"] == "DATE"
    # Intermediate tables are gone.
    assert rows(con, "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'ref\\_\\_%' "
                     "ESCAPE '\\'") == [(0,)]


def test_running_twice_replaces_the_tables(tmp_path: Path) -> None:
    con = reference(tmp_path, [event()])
    compute_reference(con, str(tmp_path / "events"), str(tmp_path / "reference"))
    assert counts(con) == (1, 1, 0, 0)


# --- quarantine -------------------------------------------------------------------

QUARANTINE_CASES = [
    ("malformed", "not json"),
    ("malformed", "[1, 2]"),
    ("malformed", '"a string"'),
    ("malformed", '{"event_id": "e1"'),
    ("malformed", json.dumps(event())[:-1] + ",}"),  # trailing comma
    ("malformed", json.dumps(event(extra=[1, 2])).replace("2]", "2,]")),
    ("malformed", json.dumps(event())[:-1] + ', "x": NaN}'),  # not JSON
    ("malformed", json.dumps(event())[:-1] + ', "x": -Infinity}'),
    ("malformed", json.dumps(event())[:-1] + ', "deal_id": "D2"}'),  # a field given twice
    ("missing_field", event(account_id=...)),
    ("missing_field", event(event_id=None)),
    ("missing_field", event(amount="")),
    ("missing_field", event(deal_id=" \t")),
    ("missing_field", event(currency=..., event_type="nonsense")),  # missing beats the rest
    ("bad_type", event(deal_id=5)),
    ("bad_type", event(event_id="x" * 129)),
    ("bad_type", event(stage=7)),
    ("bad_type", event(amount=True)),
    ("bad_type", event(event_time=["2026-03-02T12:00:00Z"])),
    ("unknown_event_type", event(event_type="deal_closed")),
    ("unknown_event_type", event(event_type="Deal_Won", event_time="nonsense")),
    ("bad_timestamp", event(event_time="2026-03-02T12:00:00")),
    ("bad_timestamp", event(event_time="2026-03-02")),
    ("bad_timestamp", event(event_time="2026-02-30T12:00:00Z")),
    ("bad_timestamp", event(event_time="2026-03-02T24:00:00Z")),
    ("bad_timestamp", event(event_time="2026-03-02T12:00:00+0100")),
    ("bad_timestamp", event(event_time="1772452800")),
    ("bad_timestamp", event(event_time="2026-03-02T12:00:00.1234567890Z")),
    ("bad_timestamp", event(event_time="0001-01-01T00:30:00+01:00")),  # year 0 in UTC
    ("bad_currency", event(currency="usd")),
    ("bad_currency", event(currency="XYZ")),
    ("bad_currency", event(currency="US")),
    ("bad_currency", event(currency="XYZ", amount="abc")),  # currency before amount
    ("bad_amount", event(amount="abc")),
    ("bad_amount", event(amount="1e3")),
    ("bad_amount", json.dumps(event(amount=0)).replace('"amount": 0', '"amount": 1e3')),
    ("bad_amount", json.dumps(event(amount=0)).replace('"amount": 0', '"amount": 1.5E+2')),
    ("bad_amount", event(amount=" 5.00")),
    ("bad_amount", event(amount=".5")),
    ("bad_amount", event(amount="100.001")),
    ("bad_amount", event(amount="1.5", currency="JPY")),
    ("bad_amount", event(amount="10000000000000")),
    ("bad_amount", event(amount="-5.00")),
    ("bad_amount", event(amount="0", event_type="deal_won")),
    ("bad_amount", event(amount="0.00", event_type="deal_amended")),
    ("bad_amount", event(amount="0", event_type="deal_refunded")),
    ("bad_amount", event(amount="-1", event_type="deal_reopened")),
    ("bad_amount", event(amount="-1", event_type="deal_created")),
    ("no_fx_rate", event(currency="GBP")),
    ("no_fx_rate", event(currency="EUR", event_time="2025-12-31T23:59:59Z")),
    # 2026-01-01T00:30+01:00 is still 2025-12-31 in UTC: no EUR rate yet.
    ("no_fx_rate", event(currency="EUR", event_time="2026-01-01T00:30:00+01:00")),
]


@pytest.mark.parametrize(("reason", "record"), QUARANTINE_CASES)
def test_each_quarantine_reason(tmp_path: Path, reason: str, record: dict | str) -> None:
    con = reference(tmp_path, [record])
    assert reasons(con) == [(1, reason)]
    assert rows(con, "SELECT reason, n FROM ref_quarantine_counts") == [(reason, 1)]
    assert counts(con) == (1, 0, 0, 1)


ACCEPTED_CASES = [
    event(amount="9999999999999.99"),
    event(amount=9999999999999.99),  # a JSON number keeps its digits
    event(amount="100.500"),  # trailing zeros beyond the minor unit are allowed
    event(amount="+100"),
    event(amount=1500, currency="JPY"),
    event(amount="0", event_type="deal_created"),
    event(amount="-0.01", event_type="deal_amended"),
    event(event_time="2026-03-02t12:00:00.123456789z"),
    event(event_time="2026-03-02T12:00:00-00:00"),
    event(event_time="2026-03-02 12:00:00+01:00"),
    json.dumps(event())[:-1] + ', "x": "NaN, Infinity,]"}',  # only outside strings
    json.dumps(event())[:-1] + ', "x": 1, "x": 2}',  # a repeated extra field is ignored
    "\ufeff" + json.dumps(event()),  # a UTF-8 byte order mark
    event(stage=None, product="", opportunity_owner_id="u1"),
    event(extra={"amount": 5}, unknown="kept and ignored"),
]


@pytest.mark.parametrize("record", ACCEPTED_CASES)
def test_valid_edge_cases_are_accepted(tmp_path: Path, record: dict | str) -> None:
    con = reference(tmp_path, [record])
    assert reasons(con) == []
    assert counts(con) == (1, 1, 0, 0)


def test_json_number_amount_is_exact(tmp_path: Path) -> None:
    nested_first = ('{"extra": {"amount": 5}, "event_id": "e3", "event_type": "deal_won", '
                    '"event_time": "2026-03-02T12:00:00Z", "deal_id": "D1", "account_id": "A1", '
                    '"amount": 7.5, "currency": "USD"}')
    con = reference(tmp_path, [
        '{"event_id": "e1", "event_type": "deal_won", "event_time": "2026-03-02T12:00:00Z", '
        '"deal_id": "D1", "account_id": "A1", "amount": 9999999999999.99, "currency": "USD"}',
        event(event_id="e2", amount=0.1, event_type="deal_created"),
        nested_first,
    ])
    assert rows(con, "SELECT event_id, amount, booked_revenue, pipeline_created "
                     "FROM ref_attributed_events ORDER BY event_id") == [
        ("e1", D("9999999999999.990"), D("9999999999999.99"), D("0.00")),
        ("e2", D("0.100"), D("0.00"), D("0.10")),
        ("e3", D("7.500"), D("7.50"), D("0.00")),
    ]


def test_blank_lines_are_not_records(tmp_path: Path) -> None:
    con = reference(tmp_path, ["", json.dumps(event()), "   ", "oops"])
    assert counts(con) == (2, 1, 0, 1)
    assert reasons(con) == [(4, "malformed")]


# --- effects ----------------------------------------------------------------------

def test_each_event_types_effect(tmp_path: Path) -> None:
    t = "2026-03-02T12:00:00Z"
    con = reference(tmp_path, [
        event(event_id="c", event_type="deal_created", amount="1000", event_time=t),
        event(event_id="s", event_type="deal_stage_changed", amount="500", event_time=t),
        event(event_id="w", event_type="deal_won", amount="800", event_time=t),
        event(event_id="l", event_type="deal_lost", amount="300", event_time=t),
        event(event_id="a", event_type="deal_amended", amount="-50.25", event_time=t),
        event(event_id="f", event_type="deal_refunded", amount="20", event_time=t),
        event(event_id="o", event_type="deal_reopened", amount="800", event_time=t),
    ])
    assert rows(con, """SELECT event_id, amount_reporting, booked_revenue, pipeline_created,
                               refunds FROM ref_attributed_events ORDER BY event_id""") == [
        ("a", D("-50.25"), D("-50.25"), D("0.00"), D("0.00")),
        ("c", D("1000.00"), D("0.00"), D("1000.00"), D("0.00")),
        ("f", D("20.00"), D("-20.00"), D("0.00"), D("20.00")),
        ("l", D("300.00"), D("0.00"), D("0.00"), D("0.00")),
        ("o", D("800.00"), D("-800.00"), D("0.00"), D("0.00")),
        ("s", D("500.00"), D("0.00"), D("0.00"), D("0.00")),
        ("w", D("800.00"), D("800.00"), D("0.00"), D("0.00")),
    ]
    counts_per_event = [c for c in ("won_deals", "lost_deals", "created_deals")
                        if c in ATTRIBUTED_EVENTS_SCHEMA.names]
    if counts_per_event:  # the published shape may carry the per-event counts
        expected_counts = {"a": (0, 0, 0), "c": (0, 0, 1), "f": (0, 0, 0), "l": (0, 1, 0),
                           "o": (-1, 0, 0), "s": (0, 0, 0), "w": (1, 0, 0)}
        names = ("won_deals", "lost_deals", "created_deals")
        got = rows(con, f"SELECT event_id, {', '.join(counts_per_event)} "
                        "FROM ref_attributed_events ORDER BY event_id")
        assert got == [(e, *(v[names.index(c)] for c in counts_per_event))
                       for e, v in sorted(expected_counts.items())]
    measures = ("day, booked_revenue, won_deals, lost_deals, created_deals, pipeline_created, "
                "refunds")
    expected = [(dt.date(2026, 3, 2), D("-70.25"), 0, 1, 1, D("1000.00"), D("20.00"))]
    assert rows(con, f"SELECT territory_id, {measures} FROM ref_territory_revenue") == [
        ("SF", *expected[0])]
    assert rows(con, f"SELECT account_manager_id, {measures} FROM ref_account_manager_revenue"
                ) == [("AM1", *expected[0])]


def test_day_is_the_utc_date(tmp_path: Path) -> None:
    con = reference(tmp_path, [
        event(event_id="late", event_time="2026-03-02T22:30:00-05:00"),  # 03:30Z on the 3rd
        event(event_id="early", event_time="2026-03-03T00:30:00+02:00"),  # 22:30Z on the 2nd
    ])
    assert rows(con, "SELECT event_id, day, event_time FROM ref_attributed_events "
                     "ORDER BY event_id") == [
        ("early", dt.date(2026, 3, 2), dt.datetime(2026, 3, 2, 22, 30, tzinfo=UTC)),
        ("late", dt.date(2026, 3, 3), dt.datetime(2026, 3, 3, 3, 30, tzinfo=UTC)),
    ]


# --- FX and rounding --------------------------------------------------------------

def test_latest_rate_on_or_before_the_utc_date(tmp_path: Path) -> None:
    con = reference(tmp_path, [
        event(event_id="jan", currency="EUR", event_time="2026-01-01T00:00:00Z"),
        event(event_id="feb", currency="EUR", event_time="2026-02-28T23:59:59Z"),
        event(event_id="mar", currency="EUR", event_time="2026-03-01T00:00:00Z"),
        # 2026-02-28T20:00-05:00 is 2026-03-01T01:00Z: the March rate.
        event(event_id="mar2", currency="EUR", event_time="2026-02-28T20:00:00-05:00"),
    ])
    assert rows(con, "SELECT event_id, amount_reporting FROM ref_attributed_events "
                     "ORDER BY event_id") == [
        ("feb", D("110.00")), ("jan", D("110.00")), ("mar", D("120.00")), ("mar2", D("120.00")),
    ]


@pytest.mark.parametrize(("amount", "expected"), [
    ("0.125", "0.12"), ("0.135", "0.14"), ("0.145", "0.14"), ("0.155", "0.16"),
    ("0.126", "0.13"), ("0.124", "0.12"), ("2.005", "2.00"), ("-0.125", "-0.12"),
    ("-0.135", "-0.14"), ("-0.126", "-0.13"),
])
def test_conversion_rounds_half_even(tmp_path: Path, amount: str, expected: str) -> None:
    # KWD has 3 minor digits; its rate here is exactly 1.
    con = reference(tmp_path, [event(currency="KWD", amount=amount, event_type="deal_amended")])
    assert rows(con, "SELECT amount_reporting, booked_revenue FROM ref_attributed_events") == [
        (D(expected), D(expected))]


def test_conversion_rounds_half_even_after_an_exact_product(tmp_path: Path) -> None:
    fx = [{"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "0.5"},
          {"currency": "CHF", "rate_date": "2026-01-01", "rate_to_reporting": "1.0850000001"}]
    con = reference(tmp_path, [
        event(event_id="a", currency="EUR", amount="0.25"),  # 0.125 -> 0.12
        event(event_id="b", currency="EUR", amount="0.27"),  # 0.135 -> 0.14
        event(event_id="c", currency="CHF", amount="100.00"),  # 108.50000001 -> 108.50
        event(event_id="d", currency="CHF", amount="9999999999999.99"),
    ], overrides={"fx_rates": fx})
    assert rows(con, "SELECT event_id, amount_reporting FROM ref_attributed_events "
                     "ORDER BY event_id") == [
        ("a", D("0.12")), ("b", D("0.14")), ("c", D("108.50")),
        # 10850000000999.989149999999 -> exact to the last digit, no float on the way.
        ("d", D("10850000000999.99")),
    ]


def test_conversion_matches_python_decimal_half_even(tmp_path: Path) -> None:
    rng = random.Random(20260301)
    minor = {"EUR": 2, "KWD": 3, "JPY": 0, "BHD": 3}
    rates = {c: D(rng.randrange(1, 10**12)).scaleb(-10) for c in ("EUR", "KWD", "JPY")}
    rates["BHD"] = D(1)  # x.xx5 amounts at rate 1: every one a tie
    fx = [{"currency": c, "rate_date": "2026-01-01", "rate_to_reporting": str(r)}
          for c, r in rates.items()]
    records, expected = [], {}
    for currency, rate in rates.items():
        for i in range(50):
            if currency == "BHD":
                amount = D(rng.randrange(0, 10**6) * 10 + 5).scaleb(-3)
            else:
                amount = D(rng.randrange(1, 10 ** rng.randrange(1, 14))).scaleb(-minor[currency])
            event_id = f"{currency}-{i}"
            records.append(event(event_id=event_id, currency=currency, amount=str(amount)))
            expected[event_id] = (amount * rate).quantize(D("0.01"), rounding=ROUND_HALF_EVEN)
    con = reference(tmp_path, records, overrides={"fx_rates": fx})
    got = dict(rows(con, "SELECT event_id, amount_reporting FROM ref_attributed_events"))
    assert got == expected


def test_reporting_currency_with_zero_minor_digits(tmp_path: Path) -> None:
    fx = [{"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "160.5"}]
    con = reference(tmp_path, [
        event(event_id="a", currency="EUR", amount="1.00"),  # 160.5 -> 160
        event(event_id="b", currency="EUR", amount="3.00"),  # 481.5 -> 482
        event(event_id="c", currency="JPY", amount="1234"),  # the reporting currency: rate 1
    ], overrides={"fx_rates": fx}, reporting_currency="JPY")
    assert rows(con, "SELECT event_id, amount_reporting FROM ref_attributed_events "
                     "ORDER BY event_id") == [("a", D("160.00")), ("b", D("482.00")),
                                              ("c", D("1234.00"))]
    # USD is now a foreign currency without a rate.
    con = reference(tmp_path, [event()], overrides={"fx_rates": fx}, reporting_currency="JPY")
    assert reasons(con) == [(1, "no_fx_rate")]


def test_unknown_reporting_currency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reporting currency"):
        reference(tmp_path, [event()], reporting_currency="XYZ")


# --- enrichment -------------------------------------------------------------------

ENRICHMENT = ("SELECT event_id, account_manager_id, territory_id, territory_manager_id, "
              "attribution_status FROM ref_attributed_events ORDER BY event_id")


def test_account_manager_as_of_boundaries(tmp_path: Path) -> None:
    con = reference(tmp_path, [
        event(event_id="1-before", event_time="2026-03-14T23:59:59.999999Z"),
        event(event_id="2-at", event_time="2026-03-15T00:00:00Z"),
        event(event_id="3-offset", event_time="2026-03-14T20:00:00-05:00"),  # 01:00Z on the 15th
    ])
    assert [(r[0], r[1]) for r in rows(con, ENRICHMENT)] == [
        ("1-before", "AM1"), ("2-at", "AM2"), ("3-offset", "AM2")]


def test_territory_manager_as_of_boundaries(tmp_path: Path) -> None:
    managers = BASE_REFERENCE["territory_managers"] + [
        {"territory_id": "US-NY", "manager_id": "TM-NY1", "valid_from": "2026-03-10",
         "valid_to": "2026-03-20T12:00:00+01:00"},  # 11:00Z
    ]
    con = reference(tmp_path, [
        # SF's own manager starts at 2026-03-01T00:00Z; before that: walk up to US-CA.
        event(event_id="sf-1", event_time="2026-02-28T23:59:59Z"),
        event(event_id="sf-2", event_time="2026-03-01T00:00:00Z"),
        event(event_id="ny-1", account_id="A2", event_time="2026-03-09T23:59:59Z"),
        event(event_id="ny-2", account_id="A2", event_time="2026-03-10T00:00:00Z"),
        event(event_id="ny-3", account_id="A2", event_time="2026-03-20T10:59:59Z"),
        event(event_id="ny-4", account_id="A2", event_time="2026-03-20T11:00:00Z"),
    ], overrides={"territory_managers": managers})
    assert [(r[0], r[2], r[3]) for r in rows(con, ENRICHMENT)] == [
        ("ny-1", "US-NY", "TM-AMER"), ("ny-2", "US-NY", "TM-NY1"),
        ("ny-3", "US-NY", "TM-NY1"), ("ny-4", "US-NY", "TM-AMER"),
        ("sf-1", "SF", "TM-CA"), ("sf-2", "SF", "TM-SF"),
    ]


def test_rule_specificity(tmp_path: Path) -> None:
    rules = BASE_REFERENCE["territory_rules"] + [
        {"territory_id": "P9", "country": "US", "postal_prefix": "9"},
        {"territory_id": "P941", "country": "US", "postal_prefix": " 941"},
        {"territory_id": "CITY-ANY-REGION", "country": "US", "city": "Los Angeles"},
        {"territory_id": "RULE-LATER", "country": "US", "region": "NY", "city": "New York",
         "valid_from": "2026-04-01"},
    ]
    territories = BASE_REFERENCE["territories"] + [
        {"territory_id": t, "parent_territory_id": "US"}
        for t in ("P9", "P941", "CITY-ANY-REGION", "RULE-LATER")
    ]
    con = reference(tmp_path, [
        event(event_id="a1", account_id="A1"),  # 94105: longest prefix 941 beats city, 9
        event(event_id="a4", account_id="A4"),  # 90001: prefix 9 beats city and region
        event(event_id="a2", account_id="A2"),  # NY: region beats country; city rule not yet
        event(event_id="a2-later", account_id="A2", event_time="2026-04-01T00:00:00Z"),
    ], overrides={"territory_rules": rules, "territories": territories})
    assert [(r[0], r[2]) for r in rows(con, ENRICHMENT)] == [
        ("a1", "P941"), ("a2", "US-NY"), ("a2-later", "RULE-LATER"), ("a4", "P9")]


def test_city_rule_beats_region_rule_and_case_and_spaces_do_not_matter(tmp_path: Path) -> None:
    con = reference(tmp_path, [event(event_id="sf"), event(event_id="la", account_id="A4")])
    assert rows(con, ENRICHMENT) == [
        ("la", "AM4", "US-CA", "TM-CA", "attributed"),
        ("sf", "AM1", "SF", "TM-SF", "attributed"),
    ]


def test_equally_specific_rules_resolve_to_the_smallest_territory_id(tmp_path: Path) -> None:
    rules = [
        {"territory_id": "T-B", "country": "US", "region": "CA"},
        {"territory_id": "T-A", "country": "US", "region": "CA"},
        {"territory_id": "T-C", "country": "US", "region": "CA"},
    ]
    managers = [{"territory_id": t, "manager_id": f"M-{t}"} for t in ("T-A", "T-B", "T-C")]
    con = reference(tmp_path, [event()], overrides={
        "territory_rules": rules, "territory_managers": managers})
    assert rows(con, ENRICHMENT) == [("e1", "AM1", "T-A", "M-T-A", "attributed")]


def test_rule_validity_boundaries(tmp_path: Path) -> None:
    rules = [
        {"territory_id": "OLD", "country": "US", "region": "CA", "valid_to": "2026-03-10"},
        {"territory_id": "NEW", "country": "US", "region": "CA", "valid_from": "2026-03-10"},
    ]
    managers = [{"territory_id": "OLD", "manager_id": "M-OLD"},
                {"territory_id": "NEW", "manager_id": "M-NEW"}]
    con = reference(tmp_path, [
        event(event_id="1", account_id="A4", event_time="2026-03-09T23:59:59Z"),
        event(event_id="2", account_id="A4", event_time="2026-03-10T00:00:00Z"),
    ], overrides={"territory_rules": rules, "territory_managers": managers})
    assert [(r[0], r[2], r[3]) for r in rows(con, ENRICHMENT)] == [
        ("1", "OLD", "M-OLD"), ("2", "NEW", "M-NEW")]


def test_walk_up_to_the_first_managed_ancestor(tmp_path: Path) -> None:
    # US-NY and US have no manager: AMER's manager gets the credit.
    con = reference(tmp_path, [event(account_id="A2")])
    assert rows(con, ENRICHMENT) == [("e1", "AM1", "US-NY", "TM-AMER", "attributed")]


def test_unassigned_statuses(tmp_path: Path) -> None:
    con = reference(tmp_path, [
        event(event_id="1", account_id="A404"),  # not in accounts, no assignment
        event(event_id="2", account_id="A9"),  # not in accounts, but assigned
        event(event_id="3", account_id="A5"),  # in accounts, no assignment
        event(event_id="4", account_id="A3"),  # DE: no rule
        event(event_id="5", account_id="A6"),  # JP-ORPHAN: no manager up its tree
        event(event_id="6", account_id="A2", event_time="2025-12-31T23:59:59Z"),  # before AM1
    ])
    assert rows(con, ENRICHMENT) == [
        ("1", "UNASSIGNED", "UNASSIGNED", "UNASSIGNED", "unknown_account"),
        ("2", "AM9", "UNASSIGNED", "UNASSIGNED", "unknown_account"),
        ("3", "UNASSIGNED", "US-CA", "TM-CA", "no_account_manager"),
        ("4", "AM3", "UNASSIGNED", "UNASSIGNED", "no_territory"),
        ("5", "AM6", "JP-ORPHAN", "UNASSIGNED", "no_territory_manager"),
        ("6", "UNASSIGNED", "US-NY", "TM-AMER", "no_account_manager"),
    ]
    # Unassigned events still count in both views, so they reconcile.
    assert rows(con, "SELECT sum(booked_revenue) FROM ref_territory_revenue") == [(D("600.00"),)]
    assert rows(con, "SELECT sum(booked_revenue) FROM ref_account_manager_revenue") == [
        (D("600.00"),)]
    assert rows(con, "SELECT territory_id, won_deals FROM ref_territory_revenue "
                     "ORDER BY territory_id, day") == [
        ("JP-ORPHAN", 1), ("UNASSIGNED", 3), ("US-CA", 1), ("US-NY", 1)]


def test_views_group_by_key_and_day(tmp_path: Path) -> None:
    con = reference(tmp_path, [
        event(event_id="1", event_time="2026-03-14T10:00:00Z", amount="10"),
        event(event_id="2", event_time="2026-03-14T11:00:00Z", amount="20"),
        event(event_id="3", event_time="2026-03-15T10:00:00Z", amount="40"),  # AM2 from the 15th
        event(event_id="4", event_time="2026-03-15T11:00:00Z", amount="80", account_id="A2"),
    ])
    assert rows(con, "SELECT account_manager_id, day, booked_revenue, won_deals "
                     "FROM ref_account_manager_revenue ORDER BY ALL") == [
        ("AM1", dt.date(2026, 3, 14), D("30.00"), 2),
        ("AM1", dt.date(2026, 3, 15), D("80.00"), 1),
        ("AM2", dt.date(2026, 3, 15), D("40.00"), 1),
    ]
    assert rows(con, "SELECT territory_id, day, booked_revenue, won_deals "
                     "FROM ref_territory_revenue ORDER BY ALL") == [
        ("SF", dt.date(2026, 3, 14), D("30.00"), 2),
        ("SF", dt.date(2026, 3, 15), D("40.00"), 1),
        ("US-NY", dt.date(2026, 3, 15), D("80.00"), 1),
    ]


# --- duplicates -------------------------------------------------------------------

def test_duplicates_and_conflicting_duplicates(tmp_path: Path) -> None:
    first = event(event_id="e1", amount="100.00", stage="won")
    con = reference(tmp_path, [
        first,
        first,  # identical: duplicate
        # Same payload as typed values (same instant, same decimal): duplicate.
        event(event_id="e1", amount=100, stage="won", event_time="2026-03-02T07:00:00-05:00"),
        event(event_id="e1", amount="100.01", stage="won"),  # different: conflicting
        event(event_id="e1", amount="100.00", stage="lost"),  # different optional field
        event(event_id="e1", amount="100.00"),  # stage missing vs "won": conflicting
        event(event_id="e1", amount="100.00", stage="won", extra="ignored"),  # duplicate
    ])
    assert counts(con) == (7, 1, 3, 3)
    assert reasons(con) == [(4, "conflicting_duplicate"), (5, "conflicting_duplicate"),
                            (6, "conflicting_duplicate")]
    assert rows(con, "SELECT event_id, amount, stage FROM ref_attributed_events") == [
        ("e1", D("100.000"), "won")]
    assert rows(con, "SELECT booked_revenue, won_deals FROM ref_territory_revenue") == [
        (D("100.00"), 1)]


def test_a_repeat_is_compared_with_the_first_occurrence(tmp_path: Path) -> None:
    a, b = event(amount="1.00"), event(amount="2.00")
    con = reference(tmp_path, [a, b, b])
    # The third copy equals the second, but the second conflicts with the first.
    assert reasons(con) == [(2, "conflicting_duplicate"), (3, "conflicting_duplicate")]
    assert counts(con) == (3, 1, 0, 2)


def test_invalid_records_do_not_take_part_in_deduplication(tmp_path: Path) -> None:
    con = reference(tmp_path, [event(amount="oops"), event(amount="5.00")])
    assert reasons(con) == [(1, "bad_amount")]
    assert rows(con, "SELECT amount FROM ref_attributed_events") == [(D("5.000"),)]


def test_first_occurrence_is_the_smallest_source_then_position(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "b.jsonl", [event(event_id="x", amount="2.00")])
    write_jsonl(tmp_path / "events" / "a.jsonl",
                ["{}", event(event_id="x", amount="1.00"), event(event_id="x", amount="1.00")])
    write_reference(tmp_path / "reference")
    con = duckdb.connect()
    compute_reference(con, str(tmp_path / "events" / "*.jsonl"), str(tmp_path / "reference"))
    assert rows(con, "SELECT amount FROM ref_attributed_events") == [(D("1.000"),)]
    assert [(Path(s).name, p, r) for s, p, r in rows(
        con, "SELECT source, position, reason FROM ref_quarantine ORDER BY ALL")] == [
        ("a.jsonl", 1, "missing_field"), ("b.jsonl", 1, "conflicting_duplicate")]
    assert counts(con) == (4, 1, 1, 2)


def test_deduplication_comes_before_the_fx_lookup(tmp_path: Path) -> None:
    gbp = event(event_id="g", currency="GBP")
    con = reference(tmp_path, [
        gbp, gbp,  # the kept copy has no rate; its identical repeat is a duplicate
        event(event_id="g", currency="USD"),  # conflicts with the first occurrence
    ])
    assert reasons(con) == [(1, "no_fx_rate"), (3, "conflicting_duplicate")]
    assert counts(con) == (3, 0, 1, 2)


def test_a_converted_amount_too_large_to_publish_is_a_bad_amount(tmp_path: Path) -> None:
    fx = [{"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "1000"},
          {"currency": "CHF", "rate_date": "2026-01-01", "rate_to_reporting": "1001"}]
    con = reference(tmp_path, [
        event(event_id="fits", currency="EUR", amount="9999999999999.99"),
        event(event_id="too-big", currency="CHF", amount="9999999999999.99"),
    ], overrides={"fx_rates": fx})
    assert rows(con, "SELECT event_id, amount_reporting FROM ref_attributed_events") == [
        ("fits", D("9999999999999990.00"))]
    assert reasons(con) == [(2, "bad_amount")]


def test_conflicting_fx_rates_are_refused(tmp_path: Path) -> None:
    fx = [{"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "1.1"},
          {"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "1.10"},
          {"currency": "EUR", "rate_date": "2026-01-01", "rate_to_reporting": "1.2"}]
    with pytest.raises(ValueError, match="two different rates for EUR"):
        reference(tmp_path, [event()], overrides={"fx_rates": fx})


def test_overlapping_intervals_resolve_to_the_smallest_id(tmp_path: Path) -> None:
    assignments = [
        {"account_id": "A1", "account_manager_id": "AM-Z"},
        {"account_id": "A1", "account_manager_id": "AM-B", "valid_from": "2026-03-01"},
        {"account_id": "A1", "account_manager_id": "AM-A", "valid_to": "2026-03-01"},
    ]
    managers = [
        {"territory_id": "SF", "manager_id": "TM-2"},
        {"territory_id": "SF", "manager_id": "TM-1", "valid_from": "2026-03-02T12:00:00Z"},
    ]
    con = reference(tmp_path, [
        event(event_id="1", event_time="2026-02-28T00:00:00Z"),
        event(event_id="2", event_time="2026-03-02T12:00:00Z"),
    ], overrides={"account_assignments": assignments, "territory_managers": managers})
    assert [(r[0], r[1], r[3]) for r in rows(con, ENRICHMENT)] == [
        ("1", "AM-A", "TM-2"), ("2", "AM-B", "TM-1")]


# --- other input formats ----------------------------------------------------------

def test_csv_events(tmp_path: Path) -> None:
    path = tmp_path / "events" / "backfill.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "event_id,event_type,event_time,deal_id,account_id,amount,currency,stage,product\n"
        "c1,deal_won,2026-03-02T12:00:00Z,D1,A1,100.00,USD,,\n"
        "c2,deal_won,2026-03-02T12:00:00Z,D1,A1,100.00,USD,won,extra,columns\n"
        "c3,deal_won,2026-03-02T12:00:00Z,D1,,5,USD,,\n"
        "c1,deal_won,2026-03-02T12:00:00Z,D1,A1,100,USD,,\n"
        "c4,deal_created,2026-03-02T12:00:00Z,D2,A1,\"1,5\",USD,new,p\n"
    )
    write_reference(tmp_path / "reference")
    con = duckdb.connect()
    compute_reference(con, str(path), str(tmp_path / "reference"))
    # Positions are line numbers: the header is line 1.
    assert reasons(con) == [(3, "malformed"), (4, "missing_field"), (6, "bad_amount")]
    assert counts(con) == (5, 1, 1, 3)
    assert rows(con, "SELECT event_id, stage, product, booked_revenue FROM ref_attributed_events"
                ) == [("c1", None, None, D("100.00"))]


def test_parquet_events(tmp_path: Path) -> None:
    path = tmp_path / "events" / "backfill.parquet"
    path.parent.mkdir(parents=True)
    table = pa.table({
        "event_id": ["p1", "p2", "p3"],
        "event_type": ["deal_won", "deal_won", "deal_created"],
        "event_time": ["2026-03-02T12:00:00Z", "2026-03-02T12:00:00Z", "2026-03-02T12:00:00Z"],
        "deal_id": ["D1", "D2", "D3"],
        "account_id": ["A1", "A1", "A1"],
        "amount": pa.array([D("10.50"), D("1.001"), D("3")], pa.decimal128(16, 3)),
        "currency": ["USD", "USD", "EUR"],
        "stage": ["won", None, None],
    })
    pq.write_table(table, path)
    write_reference(tmp_path / "reference")
    con = duckdb.connect()
    compute_reference(con, str(path), str(tmp_path / "reference"))
    assert reasons(con) == [(2, "bad_amount")]
    assert rows(con, "SELECT event_id, amount_reporting, pipeline_created, stage "
                     "FROM ref_attributed_events ORDER BY event_id") == [
        ("p1", D("10.50"), D("0.00"), "won"), ("p3", D("3.60"), D("3.60"), None)]


def test_no_event_files_is_an_error(tmp_path: Path) -> None:
    write_reference(tmp_path / "reference")
    with pytest.raises(FileNotFoundError):
        compute_reference(duckdb.connect(), str(tmp_path / "nothing" / "*.jsonl"),
                          str(tmp_path / "reference"))


def test_parquet_typed_columns(tmp_path: Path) -> None:
    path = tmp_path / "events" / "typed.parquet"
    path.parent.mkdir(parents=True)
    when = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    table = pa.table({
        "event_id": ["t1", "t2", "t3"],
        "event_type": ["deal_won", "deal_won", "deal_won"],
        "event_time": pa.array([when, when, when], pa.timestamp("us", tz="UTC")),
        "deal_id": ["D1", "D2", "D3"],
        "account_id": ["A1", "A1", "A1"],
        "amount": pa.array([10, 20, 30], pa.int64()),
        "currency": ["USD", "USD", "USD"],
        "stage": pa.array([None, None, 5], pa.int64()),  # not a string: bad_type
    })
    pq.write_table(table, path)
    write_reference(tmp_path / "reference")
    con = duckdb.connect()
    compute_reference(con, str(path), str(tmp_path / "reference"))
    assert reasons(con) == [(3, "bad_type")]
    assert rows(con, "SELECT event_id, event_time, amount FROM ref_attributed_events "
                     "ORDER BY event_id") == [
        ("t1", dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC), D("10.000")),
        ("t2", dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC), D("20.000")),
    ]
