"""The tuned SQL reference (the bench's yardstick) gives what the plain oracle gives.

``pipelines.reference_tuned.compute_reference`` against ``pipelines.reference_sql``: the
same facts (every column), views, quarantine counts per reason and counts, on generated
data sets with every hard case (JSONL, CSV, Parquet) and on hand-written edge cases:
every quarantine and acceptance case of tests/test_reference_sql.py, JSON-number amounts,
huge amounts, malformed lines, byte order marks, blank lines.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import reference_sql, reference_tuned
from pipelines.generate import generate_dataset
from tests.test_reference_sql import (
    ACCEPTED_CASES,
    QUARANTINE_CASES,
    event,
    write_jsonl,
    write_reference,
)

OUTPUTS = ("ref_attributed_events", "ref_territory_revenue", "ref_account_manager_revenue",
           "ref_quarantine_counts", "ref_counts")


def run_both(events: str | Path, reference_dir: str | Path, reporting_currency: str = "USD"
             ) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    oracle, tuned = duckdb.connect(), duckdb.connect()
    reference_sql.compute_reference(oracle, str(events), str(reference_dir), reporting_currency)
    reference_tuned.compute_reference(tuned, str(events), str(reference_dir), reporting_currency)
    return oracle, tuned


def outputs(con: duckdb.DuckDBPyConnection, positions: bool = True) -> dict[str, object]:
    out: dict[str, object] = {
        table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() for table in OUTPUTS}
    out["types"] = {table: [r[:3] for r in con.execute(f"DESCRIBE {table}").fetchall()]
                    for table in (*OUTPUTS, "ref_quarantine")}
    columns = "source, position, event_id, reason" if positions else "source, event_id, reason"
    out["quarantine"] = con.execute(f"SELECT {columns} FROM ref_quarantine ORDER BY ALL").fetchall()
    return out


def assert_same(oracle: duckdb.DuckDBPyConnection, tuned: duckdb.DuckDBPyConnection,
                positions: bool = True) -> None:
    want, got = outputs(oracle, positions), outputs(tuned, positions)
    for key in want:
        assert got[key] == want[key], key


# --- generated data sets ----------------------------------------------------------


@pytest.fixture(scope="module")
def jsonl_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("jsonl")
    generate_dataset(root, events=6000, seed=11, bad_rate=0.02, rule_tie=True)
    return root


@pytest.fixture(scope="module")
def parquet_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parquet")
    generate_dataset(root, events=4000, seed=5, bad_rate=0.02, event_format="parquet",
                     rule_tie=True)
    return root


def test_generated_jsonl_every_hard_case(jsonl_dataset: Path) -> None:
    oracle, tuned = run_both(jsonl_dataset / "events" / "*.jsonl", jsonl_dataset / "reference")
    assert_same(oracle, tuned)  # no blank lines: the positions are line numbers too
    expected = json.loads((jsonl_dataset / "manifest.json").read_text())["expected"]
    assert dict(tuned.execute("SELECT reason, n FROM ref_quarantine_counts").fetchall()) == (
        expected["quarantined_by_reason"])
    assert "malformed" in expected["quarantined_by_reason"]


def test_generated_parquet_every_hard_case(parquet_dataset: Path) -> None:
    oracle, tuned = run_both(parquet_dataset / "events", parquet_dataset / "reference")
    assert_same(oracle, tuned)


def test_generated_csv_every_hard_case(parquet_dataset: Path, tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    for path in sorted((parquet_dataset / "events").glob("*.parquet")):
        with duckdb.connect() as con:
            con.execute(f"COPY (SELECT * FROM read_parquet('{path}')) "
                        f"TO '{events / (path.stem + '.csv')}' (HEADER, DELIMITER ',')")
    oracle, tuned = run_both(events, parquet_dataset / "reference")
    assert_same(oracle, tuned)
    assert tuned.execute("SELECT input_records FROM ref_counts").fetchall()[0][0] == 4000


def test_mixed_formats_and_first_occurrences_across_files(parquet_dataset: Path,
                                                          tmp_path: Path) -> None:
    """The first occurrence is the smallest (source, position) over every format."""
    events = tmp_path / "events"
    events.mkdir()
    files = sorted((parquet_dataset / "events").glob("*.parquet"))
    with duckdb.connect() as con:
        # a-*.jsonl and c-*.csv repeat some ids of b-*.parquet, a few with another amount
        rows = con.execute(f"SELECT * FROM read_parquet('{files[0]}') LIMIT 300").fetchall()
        names = [d[0] for d in con.description]
    lines = []
    for i, row in enumerate(rows[:150]):
        record = {k: v for k, v in zip(names, row, strict=True) if v is not None}
        if i % 5 == 0 and "amount" in record:
            record["amount"] = "1.00"  # conflicting with the Parquet copy
        lines.append(json.dumps(record))
    (events / "a-part.jsonl").write_text("\n".join(lines) + "\n")
    (events / "b-part.parquet").write_bytes(files[0].read_bytes())
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * FROM read_parquet('{files[0]}') LIMIT 200 OFFSET 100) "
                    f"TO '{events / 'c-part.csv'}' (HEADER)")
    oracle, tuned = run_both(events, parquet_dataset / "reference")
    assert_same(oracle, tuned)
    assert dict(tuned.execute("SELECT reason, n FROM ref_quarantine_counts").fetchall())[
        "conflicting_duplicate"] > 0


# --- hand-written cases -----------------------------------------------------------


@pytest.mark.parametrize("record", [r for _, r in QUARANTINE_CASES] + ACCEPTED_CASES)
def test_each_case_of_the_oracles_tests(tmp_path: Path, record: dict | str) -> None:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", [record])
    write_reference(tmp_path / "reference")
    assert_same(*run_both(tmp_path / "events" / "*.jsonl", tmp_path / "reference"))


def line(**fields: object) -> str:
    return json.dumps(event(**fields))


def number_amount(amount_text: str, **fields: object) -> str:
    """A line whose amount is the JSON number ``amount_text``, written as is."""
    return line(amount="@", **fields).replace('"amount": "@"', f'"amount": {amount_text}')


JSON_NUMBER_AMOUNTS = [
    number_amount("12.345", event_id="kwd3", currency="KWD"),  # 3 decimals, KWD: exact
    number_amount("12.345", event_id="usd3", event_type="deal_created"),  # too many: bad
    number_amount("1234567890123.456", event_id="kwd16", currency="KWD"),  # 16 digits
    number_amount("9999999999999.999", event_id="kwdmax", currency="KWD"),
    number_amount("9999999999999.99", event_id="usdmax"),  # a double prints it back
    number_amount("9999999999999.995", event_id="usd17", currency="KWD"),  # not a double
    number_amount("12.3450000000000001", event_id="long", currency="KWD"),  # rounds to 12.345
    number_amount("10000000000000", event_id="toolarge"),
    number_amount("8800.00", event_id="zeros"),
    number_amount("1e3", event_id="exp"),
    number_amount("1.5E+2", event_id="exp2"),
    number_amount("-0.0", event_id="negzero", event_type="deal_created"),
    number_amount("0.1", event_id="tenth", event_type="deal_created"),
    number_amount("100000000000000000000000000001", event_id="bigint"),
    '{"extra": {"amount": 5}, "event_id": "nested", "event_type": "deal_won", '
    '"event_time": "2026-03-02T12:00:00Z", "deal_id": "D1", "account_id": "A1", '
    '"amount": 7.5, "currency": "USD"}',
    line(event_id="huge-string", amount="9999999999999.99"),
    line(event_id="huge-string-kwd", amount="1234567890123.456", currency="KWD"),
    line(event_id="jpy", amount="1500", currency="JPY"),
    line(event_id="eur", amount="0.05", currency="EUR"),
    line(event_id="eur-half", amount="0.125", currency="EUR"),  # half-even after the rate
]

MALFORMED_LINES = [
    "not json", "[1, 2]", '"a string"', "null", "1", "true", "{}", '{"x": 1}',
    '{"event_id": "e1"',  # truncated
    line(event_id="t1")[:45],  # truncated inside a string
    line(event_id="q1").replace('"', "'"),  # single quotes
    "[" + line(event_id="a1") + "]",
    "ERROR 502 upstream timeout while exporting evt-1",
    line(event_id="tc")[:-1] + ",}",
    line(event_id="tc2", extra=[1, 2]).replace("2]", "2 , ]"),
    line(event_id="nan")[:-1] + ', "x": NaN}',
    line(event_id="inf")[:-1] + ', "x": -Infinity}',
    line(event_id="nan-in-string")[:-1] + ', "x": "NaN, Infinity,]"}',  # valid
    line(event_id="dup")[:-1] + ', "deal_id": "D2"}',
    line(event_id="dup-null")[:-1] + ', "stage": null, "stage": "x"}',
    line(event_id="dup-extra")[:-1] + ', "x": 1, "x": 2}',  # valid
    line(event_id="null-field", stage=None),  # valid
    line(event_id="esc\\u0041")[:-1] + ', "deal\\u005fid": "D2"}',  # an escaped repeat
    line(event_id="x" * 129),
    line(event_id="obj", deal_id={"id": "D1"}),
    line(event_id="num", deal_id=5),
    line(event_id="bool", amount=True),
    line(event_id="array", amount=[1]),
    line(event_id="quote\"inside", deal_id="D\"1"),
    line(event_id="unicode-é", deal_id="Ré"),
]


def test_json_number_and_huge_amounts(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", JSON_NUMBER_AMOUNTS)
    write_reference(tmp_path / "reference")
    oracle, tuned = run_both(tmp_path / "events", tmp_path / "reference")
    assert_same(oracle, tuned)
    amounts = dict(tuned.execute("SELECT event_id, CAST(amount AS VARCHAR) "
                                 "FROM ref_attributed_events").fetchall())
    assert amounts["kwd3"] == "12.345"
    assert amounts["kwd16"] == "1234567890123.456"
    assert amounts["usdmax"] == "9999999999999.990"
    assert "exp" not in amounts and "long" not in amounts  # bad_amount, as the oracle says


def test_malformed_and_other_odd_lines(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", MALFORMED_LINES)
    write_reference(tmp_path / "reference")
    oracle, tuned = run_both(tmp_path / "events", tmp_path / "reference")
    assert_same(oracle, tuned)
    counts = dict(tuned.execute("SELECT reason, n FROM ref_quarantine_counts").fetchall())
    assert counts["malformed"] == 18


def test_byte_order_marks_blank_lines_and_crlf(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    records = [line(event_id=f"b{i}") for i in range(6)]
    (events / "a.jsonl").write_bytes(
        "\ufeff".encode() + b"\r\n".join(r.encode() for r in records[:3]) + b"\r\n")
    (events / "b.jsonl").write_text(
        "\n" + records[3] + "\n\n   \n\t\n" + records[4] + "\n" + "\ufeff" + records[5]
        + "\n\n")  # a BOM that is not at the start of the file: malformed
    (events / "c.jsonl").write_text("")  # no records at all
    (events / "d.jsonl").write_text("\n\n")
    write_reference(tmp_path / "reference")
    oracle, tuned = run_both(events, tmp_path / "reference")
    # Positions differ after a blank line (the tuned reference numbers non-blank lines).
    assert_same(oracle, tuned, positions=False)
    assert tuned.execute("SELECT * FROM ref_counts").fetchall() == [(6, 5, 0, 1)]
    assert tuned.execute("SELECT source, position, reason FROM ref_quarantine").fetchall() == [
        (str(events / "b.jsonl"), 3, "malformed")]


def test_several_files_keep_the_first_occurrence(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "part-1.jsonl", [
        line(event_id="x", amount="2.00"), line(event_id="y"), line(event_id="x", amount="3.00")])
    write_jsonl(tmp_path / "events" / "part-0.jsonl", [
        line(event_id="x", amount="1.00"), line(event_id="y"), line(event_id="z")])
    write_reference(tmp_path / "reference")
    oracle, tuned = run_both(tmp_path / "events", tmp_path / "reference")
    assert_same(oracle, tuned)
    assert tuned.execute("SELECT event_id, amount FROM ref_attributed_events ORDER BY 1"
                         ).fetchall()[0][1] == 1


def test_parquet_typed_columns_and_missing_columns(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    when = dt.datetime(2026, 3, 2, 7, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    pq.write_table(pa.table({
        "event_id": ["t1", "t2", "t3", "t4"],
        "event_type": ["deal_won"] * 4,
        "event_time": pa.array([when] * 4, pa.timestamp("us", tz="UTC")),
        "deal_id": ["D1", "D2", "D3", None],
        "account_id": ["A1", "A1", "A9", "A1"],
        "amount": pa.array([10, 20, 30, 40], pa.int64()),
        "currency": ["USD", "EUR", "USD", "USD"],
        "stage": pa.array([None, None, 5, None], pa.int64()),
    }), events / "a.parquet")
    pq.write_table(pa.table({  # another schema: no stage, string amounts, naive times
        "event_id": ["u1", "u2"],
        "event_type": ["deal_created", "deal_won"],
        "event_time": pa.array([dt.datetime(2026, 3, 2, 7)] * 2, pa.timestamp("us")),
        "deal_id": ["D1", "D2"],
        "account_id": ["A1", "A2"],
        "amount": ["5.5", "6"],
        "currency": ["USD", "USD"],
    }), events / "b.parquet")
    pq.write_table(pa.table({  # no event_id column at all
        "event_type": ["deal_won"], "amount": ["1"],
    }), events / "c.parquet")
    write_reference(tmp_path / "reference")
    assert_same(*run_both(events, tmp_path / "reference"))


def test_reporting_currency_with_zero_minor_digits(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", [
        *JSON_NUMBER_AMOUNTS[:2], *JSON_NUMBER_AMOUNTS[-5:],
        line(event_id="half", amount="0.01", currency="EUR"),  # 0.011 JPY -> 0
        line(event_id="kwd", amount="1.001", currency="KWD")])
    write_reference(tmp_path / "reference", {"fx_rates": [
        {"currency": "USD", "rate_date": "2026-01-01", "rate_to_reporting": "150.5"},
        {"currency": "KWD", "rate_date": "2026-01-01", "rate_to_reporting": "490.25"},
    ]})
    assert_same(*run_both(tmp_path / "events", tmp_path / "reference", "JPY"))


def test_refusals_are_the_oracles(tmp_path: Path) -> None:
    write_reference(tmp_path / "reference")
    with pytest.raises(FileNotFoundError):
        reference_tuned.compute_reference(duckdb.connect(), str(tmp_path / "none" / "*.jsonl"),
                                          str(tmp_path / "reference"))
    write_jsonl(tmp_path / "events" / "part-0.jsonl", [line()])
    with pytest.raises(ValueError, match="unknown reporting currency"):
        reference_tuned.compute_reference(duckdb.connect(), str(tmp_path / "events"),
                                          str(tmp_path / "reference"), "XYZ")


def test_running_twice_replaces_the_tables_and_leaves_no_temp_tables(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "events" / "part-0.jsonl", [line(), line(event_id="e2")])
    write_reference(tmp_path / "reference")
    con = duckdb.connect()
    for _ in range(2):
        reference_tuned.compute_reference(con, str(tmp_path / "events"),
                                          str(tmp_path / "reference"), threads=1)
    assert con.execute("SELECT * FROM ref_counts").fetchall() == [(2, 2, 0, 0)]
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'ref\\_\\_%' "
                       "ESCAPE '\\'").fetchall() == [(0,)]
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall() == [("",)]
