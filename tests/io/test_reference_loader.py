"""Reference loader: typed tables from CSV / Parquet, and one-line user errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import UserError
from pipelines.io.reference_loader import load_reference, reference_fingerprint
from schemas.reference import (
    REFERENCE_FILE_COLUMNS,
    REFERENCE_SCHEMAS,
    REFERENCE_TABLES,
    REQUIRED_REFERENCE_TABLES,
)

UTC = dt.UTC

MINIMAL = {
    "accounts": "account_id,account_name,country,region,city,postal_code,industry\n"
                " A1 , Acme ,US,CA,San Francisco, 02134 ,\n",
    "account_assignments": "account_id,account_manager_id,valid_from,valid_to\n"
                           "A1,AM1,,2026-03-01\n"
                           "A1,AM2,2026-03-01,\n"
                           "A1,AM3,2026-03-01T09:05:00-05:00, 2026-03-02T00:00:00.5Z \n",
    "territories": "territory_id,territory_name,parent_territory_id,level\n"
                   "WEST,West,,group\nCA,California,WEST,state\n",
    "territory_rules": "territory_id,country,region,city,postal_prefix,valid_from,valid_to\n"
                       "CA,US,CA,,,,\n",
    "territory_managers": "territory_id,manager_id,valid_from,valid_to\nWEST,TM1,,\n",
    "people": "person_id,name,email,role,reports_to\nAM1,Ann,ann@example.com,account_manager,\n",
    "fx_rates": "currency,rate_date,rate_to_reporting\nEUR,2026-01-02,1.0825\n"
                "JPY,2026-01-02,0.0066666667\n",
}


def write(directory: Path, overrides: dict[str, str | None] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    files = {**MINIMAL, **(overrides or {})}
    for table, text in files.items():
        if text is not None:
            (directory / f"{table}.csv").write_text(text, encoding="utf-8")
    return directory


def error_of(directory: Path) -> str:
    with pytest.raises(UserError) as caught:
        load_reference(directory)
    return str(caught.value)


def test_loads_every_table_with_its_exact_schema(tmp_path):
    reference = load_reference(write(tmp_path))
    assert tuple(reference) == REFERENCE_TABLES
    for table, schema in REFERENCE_SCHEMAS.items():
        assert reference[table].schema == schema


def test_values_are_trimmed_and_empty_means_null(tmp_path):
    accounts = load_reference(write(tmp_path))["accounts"].to_pylist()
    assert accounts == [{"account_id": "A1", "account_name": "Acme", "country": "US",
                         "region": "CA", "city": "San Francisco", "postal_code": "02134",
                         "industry": None}]
    territories = load_reference(tmp_path)["territories"]
    assert territories["parent_territory_id"].to_pylist() == [None, "WEST"]


def test_dates_are_midnight_utc_timestamps_keep_their_instant_empty_is_unbounded(tmp_path):
    rows = load_reference(write(tmp_path))["account_assignments"].to_pylist()
    assert [(r["valid_from"], r["valid_to"]) for r in rows] == [
        (None, dt.datetime(2026, 3, 1, tzinfo=UTC)),
        (dt.datetime(2026, 3, 1, tzinfo=UTC), None),
        (dt.datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
         dt.datetime(2026, 3, 2, 0, 0, 0, 500000, tzinfo=UTC)),
    ]


def test_rates_are_exact_decimals_and_dates_are_dates(tmp_path):
    fx = load_reference(write(tmp_path))["fx_rates"]
    assert fx["rate_to_reporting"].to_pylist() == [Decimal("1.0825"), Decimal("0.0066666667")]
    assert fx["rate_date"].to_pylist() == [dt.date(2026, 1, 2)] * 2


@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        ("account_assignments",
         "account_id,account_manager_id,valid_from,valid_to\nA1,AM1,,\nA1,AM2,2026-02-30,\n",
         "account_assignments.csv:3: valid_from '2026-02-30' is not a real calendar date"),
        ("account_assignments",
         "account_id,account_manager_id,valid_from,valid_to\nA1,AM1,2026-03-01T10:00:00,\n",
         "account_assignments.csv:2: valid_from '2026-03-01T10:00:00' is not a date"),
        ("territory_managers",
         "territory_id,manager_id,valid_from,valid_to\nT,M,,01/03/2026\n",
         "territory_managers.csv:2: valid_to '01/03/2026'"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\nEUR,2026-1-2,1.1\n",
         "fx_rates.csv:2: rate_date '2026-1-2' is not a valid date"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\nEUR,2026-01-02,1e-3\n",
         "fx_rates.csv:2: rate_to_reporting '1e-3' is not a plain decimal"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\nEUR,2026-01-02,0.000\n",
         "fx_rates.csv:2: rate_to_reporting '0.000' is not positive"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\nEUR,2026-01-02,1.12345678901\n",
         "fx_rates.csv:2: rate_to_reporting '1.12345678901'"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\neur,2026-01-02,1.1\n",
         "fx_rates.csv:2: currency 'eur' is not an ISO 4217 code"),
        ("fx_rates", "currency,rate_date,rate_to_reporting\nEUR,2026-01-02,1.1\n"
                     "EUR,2026-01-02,1.2\n",
         "fx_rates.csv:3: a second, different rate for EUR on 2026-01-02"),
        ("territories", "territory_id,territory_name,parent_territory_id,level\n  ,x,,\n",
         "territories.csv:2: territory_id is empty"),
        ("account_assignments",
         "account_id,account_manager_id,valid_from,valid_to\nA1,AM1,2026-03-02,2026-03-01\n",
         "account_assignments.csv:2: valid_to 2026-03-01 00:00:00+00:00 is before valid_from"),
    ],
)
def test_invalid_values_name_file_line_and_column(tmp_path, table, text, expected):
    message = error_of(write(tmp_path, {table: text}))
    assert expected in message
    assert str(tmp_path) in message


def test_line_numbers_count_blank_lines(tmp_path):
    text = "account_id,account_manager_id,valid_from,valid_to\n\nA1,AM1,,\n\nA1,AM2,2026-13-01,\n"
    assert "account_assignments.csv:5: valid_from '2026-13-01'" in error_of(
        write(tmp_path, {"account_assignments": text}))


def test_a_ragged_row_is_located(tmp_path):
    text = "territory_id,territory_name,parent_territory_id,level\nA,a,,\nB,b\n"
    assert "territories.csv:3: not a valid CSV row" in error_of(
        write(tmp_path, {"territories": text}))


def test_missing_file_lists_the_expected_names(tmp_path):
    message = error_of(write(tmp_path, {"fx_rates": None, "people": None}))
    assert "missing reference file(s): people.csv, fx_rates.csv" in message
    for table in REQUIRED_REFERENCE_TABLES:
        assert f"{table}.csv" in message
    assert "account_splits.csv" not in message  # optional


def test_an_absent_optional_table_is_empty(tmp_path):
    reference = load_reference(write(tmp_path, {}))
    assert reference["account_splits"].num_rows == 0
    assert reference["account_splits"].schema == REFERENCE_SCHEMAS["account_splits"]


def test_account_splits_percent_and_split_type_are_parsed_and_checked(tmp_path):
    header = "account_id,person_id,role,split_type,percent,valid_from,valid_to\n"
    good = header + "A,P1,ae,,60,,\nA,P2,se,primary,40.0000,,\nA,P3,x,overlay,.5,2026-01-01,\n"
    table = load_reference(write(tmp_path / "ok", {"account_splits": good}))["account_splits"]
    assert table["split_type"].to_pylist() == ["primary", "primary", "overlay"]
    assert [str(p) for p in table["percent"].to_pylist()] == ["60.0000", "40.0000", "0.5000"]
    cases = {
        "A,P1,ae,,0,,\n": "account_splits.csv:2: percent '0' is not in (0, 100]",
        "A,P1,ae,,100.5,,\n": "account_splits.csv:2: percent '100.5' is not in (0, 100]",
        "A,P1,ae,,12.34567,,\n": "percent '12.34567' is not a plain decimal",
        "A,P1,ae,,0.1e2,,\n": "percent '0.1e2' is not a plain decimal",
        "A,P1,ae,shadow,10,,\n": "account_splits.csv:2: split_type 'shadow' is not a split type",
        "A,,ae,,10,,\n": "account_splits.csv:2: person_id is empty",
    }
    for i, (row, expected) in enumerate(cases.items()):
        message = error_of(write(tmp_path / f"bad{i}", {"account_splits": header + row}))
        assert expected in message, (row, message)


def test_missing_directory(tmp_path):
    assert "does not exist" in error_of(tmp_path / "nope")


def test_missing_column(tmp_path):
    text = "territory_id,manager_id,valid_from\nT,M,\n"
    message = error_of(write(tmp_path, {"territory_managers": text}))
    assert "territory_managers.csv:1: missing column(s) valid_to" in message


def test_extra_columns_and_padded_headers_are_fine(tmp_path):
    text = " territory_id , manager_id,valid_from,valid_to,note\nT,M,,,hello\n"
    reference = load_reference(write(tmp_path, {"territory_managers": text}))
    assert reference["territory_managers"].to_pylist() == [
        {"territory_id": "T", "manager_id": "M", "valid_from": None, "valid_to": None}]


def test_parquet_files_with_native_and_text_types(tmp_path):
    write(tmp_path, {"fx_rates": None, "account_assignments": None})
    pq.write_table(pa.table({
        "currency": ["EUR"],
        "rate_date": pa.array([dt.date(2026, 1, 2)], pa.date32()),
        "rate_to_reporting": pa.array([Decimal("1.0825")], pa.decimal128(10, 4)),
    }), tmp_path / "fx_rates.parquet")
    pq.write_table(pa.table({
        "account_id": ["A1", "A1"],
        "account_manager_id": ["AM1", "AM2"],
        "valid_from": pa.array([None, dt.datetime(2026, 3, 1, tzinfo=UTC)],
                               pa.timestamp("ms", tz="UTC")),
        "valid_to": ["2026-03-01", ""],
    }), tmp_path / "account_assignments.parquet")
    reference = load_reference(tmp_path)
    assert reference["fx_rates"].schema == REFERENCE_SCHEMAS["fx_rates"]
    assert reference["fx_rates"]["rate_to_reporting"].to_pylist() == [Decimal("1.0825")]
    rows = reference["account_assignments"].to_pylist()
    assert [(r["valid_from"], r["valid_to"]) for r in rows] == [
        (None, dt.datetime(2026, 3, 1, tzinfo=UTC)), (dt.datetime(2026, 3, 1, tzinfo=UTC), None)]


def test_parquet_errors_name_the_row_and_refuse_float_rates(tmp_path):
    write(tmp_path, {"fx_rates": None})
    pq.write_table(pa.table({"currency": ["EUR"], "rate_date": ["2026-01-02"],
                             "rate_to_reporting": [1.08]}), tmp_path / "fx_rates.parquet")
    assert "binary floating point" in error_of(tmp_path)
    pq.write_table(pa.table({"currency": ["EUR", "USD"], "rate_date": ["2026-01-02", "bad"],
                             "rate_to_reporting": ["1.08", "1"]}), tmp_path / "fx_rates.parquet")
    assert "fx_rates.parquet:row 2: rate_date 'bad'" in error_of(tmp_path)


def test_csv_and_parquet_for_one_table_is_ambiguous(tmp_path):
    write(tmp_path)
    pq.write_table(REFERENCE_SCHEMAS["people"].empty_table(), tmp_path / "people.parquet")
    assert "both people.csv and people.parquet exist" in error_of(tmp_path)


def test_header_only_files_give_empty_tables(tmp_path):
    headers = {t: ",".join(REFERENCE_FILE_COLUMNS[t]) + "\n" for t in REFERENCE_TABLES}
    reference = load_reference(write(tmp_path, headers))
    assert all(t.num_rows == 0 for t in reference.values())


def test_fingerprint_changes_with_content_only(tmp_path):
    write(tmp_path)
    first = reference_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("unrelated")
    assert reference_fingerprint(tmp_path) == first
    write(tmp_path, {"people": MINIMAL["people"] + "AM2,Bob,,account_manager,\n"})
    assert reference_fingerprint(tmp_path) != first
