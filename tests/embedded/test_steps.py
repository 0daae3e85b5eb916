"""The engine's SQL steps against the rule functions, on rows built to hit the edges."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.embedded import steps
from pipelines.embedded.engine import connect_engine
from pipelines.rules.fx import convert_to_reporting
from schemas.events import EVENT_SCHEMA
from schemas.money import FX_RATE_TYPE
from schemas.outputs import create_table_sql
from schemas.rejects import REJECT_SCHEMA

UTC = dt.UTC


def events(rows: list[tuple[str, str, str, dt.datetime]]) -> pa.Table:
    """EVENT_SCHEMA rows from (event_id, amount, currency, event_time)."""
    n = len(rows)
    return pa.table({
        "event_id": [r[0] for r in rows], "event_type": ["deal_won"] * n,
        "event_time": [r[3] for r in rows], "deal_id": ["d"] * n, "account_id": ["a"] * n,
        "amount": [Decimal(r[1]) for r in rows], "currency": [r[2] for r in rows],
        "stage": [None] * n, "product": [None] * n, "opportunity_owner_id": [None] * n,
        "source": ["f.jsonl"] * n, "position": list(range(1, n + 1)),
    }).cast(EVENT_SCHEMA)


FX = pa.table({
    "currency": ["EUR", "EUR", "JPY", "KWD", "OMR", "BHD"],
    "rate_date": [dt.date(2026, 1, 1), dt.date(2026, 1, 3), dt.date(2026, 1, 1),
                  dt.date(2026, 1, 1), dt.date(2026, 1, 1), dt.date(2026, 1, 1)],
    "rate_to_reporting": pa.array([Decimal("0.5"), Decimal("1.2345678901"),
                                   Decimal("0.0066666667"), Decimal("3.2512345678"),
                                   Decimal("5000"), Decimal("9999.9999999999")], FX_RATE_TYPE),
})

DAY1 = dt.datetime(2026, 1, 2, 12, tzinfo=UTC)
DAY3 = dt.datetime(2026, 1, 3, 0, 0, tzinfo=UTC)
EDGES = [
    ("tie-even", "1.01", "EUR", DAY1),  # 0.505 -> 0.50
    ("tie-odd", "1.03", "EUR", DAY1),  # 0.515 -> 0.52
    ("neg-tie", "-1.01", "EUR", DAY1),  # -0.505 -> -0.50
    ("neg-tie-odd", "-1.03", "EUR", DAY1),
    ("not-tie", "1.011", "EUR", DAY1),
    ("new-rate", "10.00", "EUR", DAY3),  # the rate of Jan 3 applies from midnight UTC
    ("before-rate", "10.00", "EUR", dt.datetime(2025, 12, 31, 23, 59, tzinfo=UTC)),
    ("jpy", "150", "JPY", DAY1),
    ("kwd", "1.235", "KWD", DAY1),
    ("usd", "12.34", "USD", DAY1),
    ("no-currency-rows", "5.00", "GBP", DAY1),
    ("huge", "9999999999999.999", "OMR", DAY1),  # beyond decimal(18,2) once converted
    ("max", "9999999999999.99", "USD", DAY1),
    # A rate just below 10^4: the largest amount that fits, and the smallest that does not.
    ("bhd-fits", "1000000000000.000", "BHD", DAY1),  # 9,999,999,999,999,900.00: fits
    ("bhd-rounds-over", "1000000000000.010", "BHD", DAY1),  # ...999.9999...: rounds to 10^16
    ("bhd-over", "1000000000000.020", "BHD", DAY1),
]


@pytest.mark.parametrize("reporting", ["USD", "JPY"])
def test_sql_conversion_equals_the_rule_function_row_for_row(tmp_path: Path, reporting):
    table = events(EDGES)
    expected, expected_rejects = convert_to_reporting(table, FX, reporting)
    con = connect_engine(tmp_path / "engine")
    con.execute(create_table_sql("rejects", REJECT_SCHEMA))
    con.register("_events", table)
    con.execute("CREATE VIEW unique_events AS SELECT * FROM _events")
    steps.convert(con, FX, reporting)
    got = con.sql("SELECT event_id, amount_reporting FROM converted ORDER BY event_id") \
        .to_arrow_table()
    want = expected.select(["event_id", "amount_reporting"]).sort_by("event_id")
    assert got.to_pylist() == want.to_pylist()
    rejects = con.sql("SELECT source, position, reason, detail FROM rejects ORDER BY position") \
        .to_arrow_table().to_pylist()
    assert rejects == expected_rejects.select(["source", "position", "reason", "detail"]) \
        .to_pylist()
    assert {r["reason"] for r in rejects} == {"no_fx_rate", "bad_amount"}
    if reporting == "USD":
        values = dict(zip(got["event_id"].to_pylist(), got["amount_reporting"].to_pylist(),
                          strict=True))
        assert values["tie-even"] == Decimal("0.50")
        assert values["tie-odd"] == Decimal("0.52")
        assert values["neg-tie"] == Decimal("-0.50")
        assert values["new-rate"] == Decimal("12.35")
        assert values["bhd-fits"] == Decimal("9999999999999900.00")
        assert {"bhd-rounds-over", "bhd-over"}.isdisjoint(values)


def test_the_utc_day_is_the_calendar_date_in_utc_whatever_the_offset(tmp_path: Path):
    con = connect_engine(tmp_path / "engine")
    times = pa.array([dt.datetime(2026, 3, 1, 4, 59, tzinfo=UTC),
                      dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                      dt.datetime(1, 1, 1, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    con.register("t", pa.table({"ts": times}))
    got = [r[0] for r in con.execute(f"SELECT {steps.utc_day('ts')} FROM t").fetchall()]
    assert got == pc.cast(times, pa.date32()).to_pylist()


def test_running_out_of_memory_is_a_user_error_saying_what_to_set(tmp_path: Path, monkeypatch):
    import pipelines.embedded.engine as engine
    from pipelines.errors import UserError
    from pipelines.generate import generate_dataset
    from pipelines.io.reference_loader import load_reference
    from pipelines.rules.enrich import EnrichmentTimelines

    generate_dataset(tmp_path / "data", events=20000, seed=3)
    reference = load_reference(str(tmp_path / "data" / "reference"))
    paths = sorted(str(p) for p in (tmp_path / "data" / "events").glob("*.jsonl"))
    monkeypatch.setattr(engine, "MEMORY_LIMIT", "1MB")
    with pytest.raises(UserError, match="ran out of memory") as error:
        engine.stage_embedded(paths, reference, EnrichmentTimelines.build(reference),
                              tmp_path / "staging", "r1", checks=False)
    assert "REVATTR_ENGINE_MEMORY" in error.value.hint


def test_a_corrupt_parquet_file_is_a_user_error_naming_it(tmp_path):
    from pipelines.embedded.read import raw_relations
    from pipelines.errors import UserError

    path = tmp_path / "events.parquet"
    path.write_bytes(b"PAR1 not a Parquet file")
    with pytest.raises(UserError, match="not a readable Parquet file") as caught:
        raw_relations([str(path)], 1024)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("read_by", ["duckdb", "arrow reader"])
def test_an_oversized_line_is_quarantined_as_the_reader_quarantines_it(tmp_path, monkeypatch,
                                                                       read_by):
    """DuckDB never hands the line to Python: its SQL caps it; the verdict is the reader's.
    A file larger than a group is read by the chunked reader instead (bounded memory)."""
    import json

    from pipelines.embedded import read
    from pipelines.io.events_reader import iter_raw_batches
    from pipelines.rules.validate import validate_events
    from schemas.events import MAX_RECORD_BYTES

    if read_by == "arrow reader":
        monkeypatch.setattr(read, "_GROUP_BYTES", 1 << 20)
    event = {"event_id": "e1", "event_type": "deal_won", "event_time": "2026-03-01T10:00:00Z",
             "deal_id": "D1", "account_id": "A1", "amount": "10.00", "currency": "USD"}
    padded = json.dumps({**event, "event_id": "e2", "stage": "s" * (MAX_RECORD_BYTES + 5)})
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join([json.dumps(event), padded, "{bad"]) + "\n")
    relations, raw = read.raw_relations([str(path)], 1024)
    assert (raw.duckdb_paths == [str(path)]) == (read_by == "duckdb")
    con = connect_engine(tmp_path / "scratch")
    steps.validate(con, relations, raw.duckdb_paths, raw.arrow)
    got = con.sql("SELECT position, raw, reason, detail FROM rejects ORDER BY position").fetchall()
    expected = validate_events(pa.Table.from_batches(list(iter_raw_batches(str(path)))))[1]
    assert got == [(r["position"], r["raw"], r["reason"], r["detail"])
                   for r in expected.sort_by("position").to_pylist()]
    assert [row[0] for row in got] == [2, 3] and len(got[0][1]) < 4200
    assert con.sql("SELECT event_id FROM events").fetchall() == [("e1",)]


def test_write_parquet_writes_every_batch_with_the_schema_in_query_order(tmp_path: Path,
                                                                         monkeypatch):
    monkeypatch.setattr(steps, "WRITE_BATCH_ROWS", 1000)  # several batches, several groups
    con = connect_engine(tmp_path / "scratch")
    schema = pa.schema([pa.field("n", pa.int64(), nullable=False), ("amount", pa.decimal128(18, 2)),
                        ("label", pa.string())])
    sql = ("SELECT range AS n, CAST(range AS DECIMAL(18,2)) / 100 AS amount, "
           "CAST(range AS VARCHAR) AS label FROM range(5500) ORDER BY n")
    target = tmp_path / "out.parquet"
    assert steps.write_parquet(con, sql, target, schema) == 5500
    import pyarrow.parquet as pq
    written = pq.read_table(target)
    assert written.schema == schema
    assert written["n"].to_pylist() == list(range(5500))
    assert written["amount"][1234].as_py() == Decimal("12.34")
    assert pq.ParquetFile(target).num_row_groups == 6


def test_write_parquet_raises_the_writers_error_and_stops_reading(tmp_path: Path, monkeypatch):
    import pyarrow.parquet as pq
    monkeypatch.setattr(steps, "WRITE_BATCH_ROWS", 100)
    calls = []

    def failing(self, batch):
        calls.append(batch.num_rows)
        raise OSError("disk full")

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", failing)
    con = connect_engine(tmp_path / "scratch")
    with pytest.raises(OSError, match="disk full"):
        steps.write_parquet(con, "SELECT range AS n FROM range(100000)",
                            tmp_path / "out.parquet", pa.schema([("n", pa.int64())]))
    assert calls == [100]  # the first batch failed; nothing else was handed over
