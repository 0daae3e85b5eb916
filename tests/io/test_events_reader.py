"""Event readers: JSONL / CSV / Parquet -> RAW_EVENT_SCHEMA batches."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import UserError
from pipelines.io import events_reader
from pipelines.io.events_reader import expand_event_paths, iter_raw_batches
from pipelines.rules.raw_text import cap_text
from pipelines.rules.validate import validate_events
from schemas.events import MAX_RECORD_BYTES, RAW_EVENT_SCHEMA

EVENT = {
    "event_id": "evt-1",
    "event_type": "deal_won",
    "event_time": "2026-03-01T14:05:00Z",
    "deal_id": "D-1",
    "account_id": "A-1",
    "amount": "1234.56",
    "currency": "USD",
}


def line(**overrides) -> str:
    return json.dumps({**EVENT, **overrides})


def write(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def read(path: str, **kwargs) -> pa.Table:
    batches = list(iter_raw_batches(path, **kwargs))
    for batch in batches:
        assert batch.schema == RAW_EVENT_SCHEMA
    return pa.Table.from_batches(batches, schema=RAW_EVENT_SCHEMA)


def rows(path: str, **kwargs) -> list[dict]:
    return read(path, **kwargs).to_pylist()


# --------------------------------------------------------------------------- JSONL


def test_jsonl_clean_lines(tmp_path):
    path = write(tmp_path, "e.jsonl", line() + "\n" + line(event_id="evt-2", stage="S") + "\n")
    out = rows(path)
    assert [r["event_id"] for r in out] == ["evt-1", "evt-2"]
    assert [r["position"] for r in out] == [1, 2]
    assert {r["source"] for r in out} == {path}
    assert out[0]["raw"] == line()
    assert out[1]["stage"] == "S" and out[0]["stage"] is None
    assert all(r["reason"] is None and r["detail"] is None for r in out)


@pytest.mark.parametrize("extension", [".jsonl", ".ndjson", ".json", ".JSONL"])
def test_jsonl_extensions(tmp_path, extension):
    assert len(rows(write(tmp_path, "e" + extension, line() + "\n"))) == 1


@pytest.mark.parametrize(
    ("number", "text"),
    [("0.1", "0.1"), ("999999999999.99", "999999999999.99"), ("1234.56", "1234.56"),
     ("-5", "-5"), ("12.10", "12.10"), ("1e3", "1e3"), ("0", "0")],
)
def test_json_number_amount_is_kept_exactly(tmp_path, number, text):
    path = write(tmp_path, "e.jsonl", '{"event_id": "e", "amount": ' + number + ', "x": 1}\n')
    out = rows(path)
    assert out[0]["amount"] == text
    assert out[0]["raw"] == '{"event_id": "e", "amount": ' + number + ', "x": 1}'


def test_json_number_amount_exact_through_validation(tmp_path):
    lines = [line(event_id=f"e{i}").replace('"1234.56"', value)
             for i, value in enumerate(["0.1", "999999999999.99", '"7.25"', "1234.5"])]
    events, rejects = validate_events(read(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n")))
    assert rejects.num_rows == 0
    assert events["amount"].to_pylist() == [Decimal("0.1"), Decimal("999999999999.99"),
                                           Decimal("7.25"), Decimal("1234.5")]


def test_numeric_amount_after_string_amounts_in_a_later_batch(tmp_path):
    lines = [line(event_id=f"e{i}") for i in range(5)]
    lines.append(line(event_id="num").replace('"1234.56"', "42.42"))
    out = rows(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n"), batch_rows=2)
    assert out[-1]["amount"] == "42.42" and out[-1]["reason"] is None


def test_unknown_extra_fields_ignored(tmp_path):
    text = json.dumps({**EVENT, "extra": {"amount": 5, "deep": [1, {"x": None}]},
                       "flag": True, "n": 3.5, "list": []})
    out = rows(write(tmp_path, "e.jsonl", text + "\n"))
    assert out[0]["reason"] is None
    assert out[0]["event_id"] == "evt-1" and out[0]["amount"] == "1234.56"
    assert out[0]["raw"] == text  # the extra fields stay in the raw record


def test_json_null_is_missing(tmp_path):
    out = rows(write(tmp_path, "e.jsonl", line(stage=None, deal_id=None) + "\n{}\n"))
    assert out[0]["deal_id"] is None and out[0]["reason"] is None
    assert out[1]["event_id"] is None and out[1]["reason"] is None  # validation's job


def test_blank_lines_skipped_with_file_line_positions(tmp_path):
    text = "\n" + line(event_id="a") + "\n\n   \n\t\n" + line(event_id="b") + "\n\n"
    out = rows(write(tmp_path, "e.jsonl", text))
    assert [(r["event_id"], r["position"]) for r in out] == [("a", 2), ("b", 6)]
    assert out[1]["raw"] == line(event_id="b")


def test_crlf_lines(tmp_path):
    text = line(event_id="a") + "\r\n\r\n" + line(event_id="b") + "\r\n"
    out = rows(write(tmp_path, "e.jsonl", text))
    assert [(r["event_id"], r["position"]) for r in out] == [("a", 1), ("b", 3)]
    assert out[0]["raw"] == line(event_id="a")  # no \r


def test_no_final_newline_and_bom(tmp_path):
    text = b"\xef\xbb\xbf" + line(event_id="a").encode() + b"\n" + line(event_id="b").encode()
    out = rows(write(tmp_path, "e.jsonl", text))
    assert [(r["event_id"], r["position"]) for r in out] == [("a", 1), ("b", 2)]
    assert out[0]["raw"] == line(event_id="a")


def test_empty_file_has_no_records(tmp_path):
    assert rows(write(tmp_path, "e.jsonl", "")) == []
    assert rows(write(tmp_path, "f.jsonl", "\n\n  \n")) == []


def test_malformed_line_among_10k_good_lines(tmp_path):
    lines = [line(event_id=f"e{i}") for i in range(10_000)]
    lines[6_789] = '{"event_id": "broken", '
    out = rows(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n"))
    assert len(out) == 10_000
    bad = [r for r in out if r["reason"] is not None]
    assert len(bad) == 1
    assert bad[0]["position"] == 6_790
    assert bad[0]["reason"] == "malformed"
    assert bad[0]["raw"] == '{"event_id": "broken", '
    assert "not valid JSON" in bad[0]["detail"]
    assert [r["position"] for r in out] == list(range(1, 10_001))
    good_ids = [r["event_id"] for r in out if r["reason"] is None]
    assert good_ids == [f"e{i}" for i in range(10_000) if i != 6_789]


@pytest.mark.parametrize(
    ("text", "reason", "detail"),
    [
        ('{"event_id": "e", "deal_id": 123}', "bad_type",
         "field deal_id is a number, expected a string"),
        ('{"event_id": {"a": 1}}', "bad_type", "field event_id is an object"),
        ('{"currency": ["USD"]}', "bad_type", "field currency is an array"),
        ('{"stage": true}', "bad_type", "field stage is a boolean"),
        ('{"amount": true}', "bad_type", "field amount is a boolean, expected a string or a num"),
        ('{"amount": {"value": 1}}', "bad_type", "field amount is an object"),
        ("not json", "malformed", "not valid JSON"),
        ("[1, 2]", "malformed", "not a JSON object (the line is an array)"),
        ('"just a string"', "malformed", "not a JSON object (the line is a string)"),
        ("42", "malformed", "not a JSON object"),
        ("null", "malformed", "not a JSON object (the line is null)"),
        ("  null ", "malformed", "not a JSON object (the line is null)"),
        ("true", "malformed", "not a JSON object (the line is a boolean)"),
        ('{"event_id": "a"}{"event_id": "b"}', "malformed", "not valid JSON: Extra data"),
        ('{"event_id": "a", "event_id": "b"}', "malformed", "field event_id appears more than"),
        ('{"event_id": "a", "amount": NaN}', "malformed", "NaN is not valid JSON"),
        ('{"event_id": "a", "amount": 012}', "malformed", "not valid JSON"),
        ('{"event_id": "a\\ud800"}', "malformed", "invalid unicode escape (a lone surrogate)"),
    ],
)
def test_bad_lines_are_classified(tmp_path, text, reason, detail):
    lines = [line(event_id="before"), text, line(event_id="after")]
    out = rows(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n"))
    assert [r["position"] for r in out] == [1, 2, 3]
    assert out[0]["reason"] is None and out[2]["reason"] is None
    assert [out[0]["event_id"], out[2]["event_id"]] == ["before", "after"]
    assert out[1]["reason"] == reason
    assert detail in out[1]["detail"]
    assert out[1]["raw"] == text
    assert all(out[1][f] is None for f in ("event_id", "deal_id", "amount"))


@pytest.mark.parametrize("bad", ["oops", "null", '{"deal_id": 5}', '{"a": 1}{"b": 2}'])
def test_batch_rows_and_many_bad_lines(tmp_path, bad):
    lines = [line(event_id=f"e{i}") if i % 7 else bad for i in range(200)]
    out = read(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n"), batch_rows=16)
    batches = list(iter_raw_batches(str(tmp_path / "e.jsonl"), batch_rows=16))
    assert all(b.num_rows <= 16 for b in batches)
    assert out["position"].to_pylist() == list(range(1, 201))
    reasons = out["reason"].to_pylist()
    assert [i for i, r in enumerate(reasons) if r] == list(range(0, 200, 7))


def test_small_reads_split_lines_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(events_reader, "_FIRST_READ", 50)
    monkeypatch.setattr(events_reader, "_MIN_READ", 50)
    monkeypatch.setattr(events_reader, "_MAX_READ", 120)
    lines = [line(event_id=f"e{i}", stage="x" * (i * 37 % 300)) for i in range(60)]
    lines[10] = ""
    lines[33] = "{bad"
    out = rows(write(tmp_path, "e.jsonl", "\r\n".join(lines)), batch_rows=7)
    assert [r["position"] for r in out] == [i + 1 for i in range(60) if i != 10]
    assert [r["raw"] for r in out] == [t for t in lines if t]
    assert [r["position"] for r in out if r["reason"]] == [34]


def test_a_line_that_is_not_utf8_is_malformed_and_the_others_are_read(tmp_path):
    data = (line() + "\n").encode() + b'{"event_id": "\xff"}\r\n\n' + (line() + "\n").encode()
    out = sorted(rows(write(tmp_path, "e.jsonl", data)), key=lambda r: r["position"])
    assert [(r["position"], r["reason"]) for r in out] == [(1, None), (2, "malformed"), (4, None)]
    assert out[1]["detail"] == "line is not valid UTF-8 (byte 15)"
    assert out[1]["raw"] == '{"event_id": "\ufffd"}'
    assert out[0]["event_id"] == out[2]["event_id"] is not None


def test_missing_file_is_a_user_error(tmp_path):
    path = str(tmp_path / "nope.jsonl")
    with pytest.raises(UserError) as err:
        list(iter_raw_batches(path))
    assert path in str(err.value) and "not found" in str(err.value)
    assert "\n" not in str(err.value)


def test_unsupported_extension_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unsupported"):
        list(iter_raw_batches(write(tmp_path, "e.xml", "<e/>")))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_is_a_user_error(tmp_path):
    path = write(tmp_path, "e.jsonl", line() + "\n")
    os.chmod(path, 0)
    with pytest.raises(UserError, match="permission"):
        list(iter_raw_batches(path))


# --------------------------------------------------------------------------- CSV

HEADER = "event_id,event_type,event_time,deal_id,account_id,amount,currency,stage"


def test_csv_rows_positions_and_nulls(tmp_path):
    text = (HEADER + "\n"
            "e1,deal_won,2026-03-01T14:05:00Z,D1,A1,10.00,USD,\n"
            "e2,deal_won,2026-03-01T14:05:00Z,D1\n"  # short row
            "\n"
            'e3,deal_won,2026-03-01T14:05:00Z,D1,A1,"1,000.00",USD,"two\nlines"\n'
            "e4,deal_lost,2026-03-01T14:05:00Z,D1,A1,0,USD,x,extra\n"  # long row
            "e5,deal_lost,2026-03-01T14:05:00Z,D1,A1,0,USD,\"say \"\"hi\"\"\"\n")
    out = rows(write(tmp_path, "e.csv", text))
    assert [(r["event_id"], r["position"], r["reason"]) for r in out] == [
        ("e1", 2, None), (None, 3, "malformed"), ("e3", 5, None), (None, 7, "malformed"),
        ("e5", 8, None),
    ]
    assert out[0]["stage"] is None  # empty cell -> null
    assert out[0]["raw"] == "e1,deal_won,2026-03-01T14:05:00Z,D1,A1,10.00,USD,"
    assert out[1]["raw"] == "e2,deal_won,2026-03-01T14:05:00Z,D1"
    assert out[1]["detail"] == "CSV row has 4 fields, the header has 8"
    assert out[2]["amount"] == "1,000.00" and out[2]["stage"] == "two\nlines"
    assert out[2]["raw"] == 'e3,deal_won,2026-03-01T14:05:00Z,D1,A1,"1,000.00",USD,"two\nlines"'
    assert out[3]["detail"] == "CSV row has 9 fields, the header has 8"
    assert out[4]["stage"] == 'say "hi"'
    assert out[4]["raw"].endswith(',"say ""hi"""')


def test_csv_missing_columns_are_null_and_extra_columns_ignored(tmp_path):
    text = "event_id,amount,note\ne1,5,hello\n"
    out = rows(write(tmp_path, "e.csv", text))
    assert out[0]["event_id"] == "e1" and out[0]["amount"] == "5"
    assert out[0]["currency"] is None and out[0]["deal_id"] is None
    assert out[0]["raw"] == "e1,5,hello"


def test_csv_crlf_blank_and_whitespace_lines(tmp_path):
    text = (HEADER + "\r\n\r\n"
            "e1,deal_won,2026-03-01T14:05:00Z,D1,A1,1,USD,\r\n"
            "   \r\n"
            "e2,deal_won,2026-03-01T14:05:00Z,D1,A1,2,USD,s\r\n")
    out = rows(write(tmp_path, "e.csv", text))
    assert [(r["event_id"], r["position"]) for r in out] == [("e1", 3), ("e2", 5)]
    assert out[1]["stage"] == "s"


def test_csv_bad_rows_at_the_end_and_many_batches(tmp_path):
    body = [f"e{i},deal_won,2026-03-01T14:05:00Z,D1,A1,{i},USD,s" for i in range(1, 200)]
    body[50] = "short,row"
    body.append("also,short")
    out = rows(write(tmp_path, "e.csv", HEADER + "\n" + "\n".join(body) + "\n"), batch_rows=16)
    assert [r["position"] for r in out] == list(range(2, 202))
    assert [r["position"] for r in out if r["reason"]] == [52, 201]


def test_csv_header_only_and_empty(tmp_path):
    assert rows(write(tmp_path, "e.csv", HEADER + "\n")) == []
    assert rows(write(tmp_path, "f.csv", "")) == []


def test_csv_through_validation(tmp_path):
    text = HEADER + "\ne1,deal_won,2026-03-01T09:05:00-05:00,D1,A1,10.50,USD,\n"
    events, rejects = validate_events(read(write(tmp_path, "e.csv", text)))
    assert rejects.num_rows == 0
    assert events["amount"].to_pylist() == [Decimal("10.5")]
    assert events["event_time"][0].as_py().hour == 14


def test_a_csv_record_that_is_not_utf8_is_malformed_and_the_others_are_read(tmp_path):
    good = "e1,deal_won,2026-03-01T10:00:00Z,D1,A1,10.00,USD,\n"
    data = (HEADER + "\n" + good).encode() + b"e2,deal_won,x,D\xff1,A,1,USD,\r\n" \
        + b'"e3\xfe\n",x\n' + good.replace("e1", "e4").encode()
    out = rows(write(tmp_path, "e.csv", data))
    assert [(r["position"], r["event_id"], r["reason"]) for r in out] == [
        (2, "e1", None), (3, None, "malformed"), (4, None, "malformed"), (6, "e4", None)]
    assert out[1]["detail"] == "record is not valid UTF-8 (byte 16)"
    assert "D\ufffd1" in out[1]["raw"]
    assert out[2]["detail"] == "record is not valid UTF-8 (byte 4)"


def test_a_csv_record_over_the_limit_is_malformed_unparsed(tmp_path):
    huge = '"' + "x" * (2 * MAX_RECORD_BYTES) + '\n"'  # quoted, across lines, over any block
    data = (HEADER + "\n" + huge + ",deal_won,x,D,A,1,USD,\n"
            + "e2,deal_won,2026-03-01T10:00:00Z,D1,A1,10.00,USD,\n")
    out = rows(write(tmp_path, "e.csv", data))
    assert [(r["position"], r["reason"]) for r in out] == [(2, "malformed"), (4, None)]
    assert out[0]["detail"].startswith(f"record is {len(huge) + 22} bytes")
    assert out[0]["raw"].startswith('"xxx') and len(out[0]["raw"]) < 4200


def test_a_csv_header_that_is_not_utf8_is_a_user_error(tmp_path):
    path = write(tmp_path, "e.csv", b"event_id,\xff\n1,2\n")
    with pytest.raises(UserError, match="header is not valid UTF-8"):
        list(iter_raw_batches(path))


# --------------------------------------------------------------------------- Parquet


def test_parquet_decimal_amount_and_missing_columns(tmp_path):
    path = str(tmp_path / "e.parquet")
    pq.write_table(pa.table({
        "event_id": ["p1", "p2", "p3"],
        "event_type": ["deal_won"] * 3,
        "event_time": ["2026-03-01T14:05:00Z"] * 3,
        "deal_id": ["D"] * 3,
        "account_id": ["A"] * 3,
        "amount": pa.array([Decimal("1234.56"), Decimal("0.10"), Decimal("-7.00")],
                           pa.decimal128(12, 2)),
        "currency": ["USD"] * 3,
        "extra": [1, 2, 3],
    }), path, row_group_size=2)
    out = rows(path, batch_rows=2)
    assert [r["amount"] for r in out] == ["1234.56", "0.10", "-7.00"]
    assert [r["position"] for r in out] == [1, 2, 3]
    assert all(r["raw"] is None and r["stage"] is None and r["reason"] is None for r in out)
    events, rejects = validate_events(read(path))
    assert events["amount"].to_pylist() == [Decimal("1234.56"), Decimal("0.1")]
    assert rejects.to_pylist()[0]["reason"] == "bad_amount"


def test_parquet_integer_float_and_timestamp_columns(tmp_path):
    path = str(tmp_path / "e.parquet")
    pq.write_table(pa.table({
        "event_id": ["p1"],
        "event_time": pa.array([0], pa.timestamp("us", tz="UTC")),
        "amount": pa.array([0.1], pa.float64()),
        "deal_id": pa.array([7], pa.int64()),
    }), path)
    out = rows(path)[0]
    assert out["amount"] == "0.1"
    assert out["event_time"].startswith("1970-01-01") and out["event_time"].endswith("Z")
    assert out["reason"] == "bad_type"
    assert out["detail"] == "field deal_id has Parquet type int64, expected a string"


def test_corrupt_parquet_is_a_user_error(tmp_path):
    path = write(tmp_path, "e.parquet", b"this is not parquet")
    with pytest.raises(UserError) as err:
        list(iter_raw_batches(path))
    assert path in str(err.value) and "Parquet" in str(err.value)


# --------------------------------------------------------------------------- paths


def test_expand_event_paths(tmp_path):
    for name in ("b.jsonl", "a.csv", "c.parquet", "notes.txt", ".hidden.jsonl"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_text("")
    d = str(tmp_path)
    assert expand_event_paths(d) == [f"{d}/a.csv", f"{d}/b.jsonl", f"{d}/c.parquet"]
    assert expand_event_paths(f"{d}/*.jsonl") == [f"{d}/b.jsonl"]
    assert expand_event_paths(f"{d}/**/*.jsonl") == [f"{d}/b.jsonl", f"{d}/sub/d.jsonl"]
    assert expand_event_paths(f"{d}/a.csv") == [f"{d}/a.csv"]
    with pytest.raises(UserError, match="no event files match"):
        expand_event_paths(f"{d}/*.ndjson")
    with pytest.raises(UserError, match="no event files match"):
        expand_event_paths(f"{d}/missing")
    with pytest.raises(UserError, match="unsupported"):
        expand_event_paths(f"{d}/notes.txt")


# --------------------------------------------------------------------------- speed (printed)


def test_throughput_smoke(tmp_path, capsys):
    n = 50_000
    path = write(tmp_path, "e.jsonl", "\n".join(line(event_id=f"e{i}") for i in range(n)) + "\n")
    start = time.perf_counter()
    accepted = sum(validate_events(b)[0].num_rows for b in iter_raw_batches(path))
    elapsed = time.perf_counter() - start
    assert accepted == n
    with capsys.disabled():
        print(f"\nread+validate: {n / elapsed:,.0f} lines/s ({n} lines)")


@pytest.mark.parametrize("scan_chunk", [5, 64, 1 << 20])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_positions_with_awkward_quoting(tmp_path, monkeypatch, scan_chunk, newline):
    """Quoted newlines, escaped quotes, empty quoted fields, stray quotes, blank lines."""
    import random

    monkeypatch.setattr(events_reader, "_CSV_SCAN_CHUNK", scan_chunk)
    rng = random.Random(scan_chunk)
    kinds = ["x", '"a,b"', f'"l1{newline}l2"', '"say ""hi"""', '""', 'ab"c', "",
             '"""q"""', f'"{newline}"', '"x""y,z"']
    text, line_no, expected = HEADER + newline, 2, []
    for i in range(300):
        while rng.random() < 0.2:
            text += rng.choice(["", "\r"]) + newline if newline == "\n" else newline
            line_no += 1
        cells = [f"e{i}"] + [rng.choice(kinds) for _ in range(7)]
        record = ",".join(cells)
        expected.append((f"e{i}", line_no))
        text += record + newline
        line_no += record.count("\n") + 1
    out = rows(write(tmp_path, "e.csv", text), batch_rows=32)
    assert [r["reason"] for r in out if r["reason"]] == []
    assert [(r["event_id"], r["position"]) for r in out] == expected


def test_csv_empty_quoted_field_does_not_open_a_quote(tmp_path):
    text = HEADER + '\ne1,"",x,D,A,1,USD,""\n\ne2,deal_won,x,D,A,1,USD,s\n'
    out = rows(write(tmp_path, "e.csv", text))
    assert [(r["event_id"], r["position"]) for r in out] == [("e1", 2), ("e2", 4)]
    assert out[0]["event_type"] is None  # "" is an empty cell


def test_vectorised_amount_quoting_matches_the_regex():
    """The numpy fast path quotes exactly what the reference regex quotes."""
    import random

    import numpy as np

    rng = random.Random(7)
    values = ["12.5", "-0.01", "0", "1e3", "-1.5E-7", "012", "1.", ".5", "--1", "12abc",
              '"12.5"', "null", "true", "[1]", '{"amount": 3}', "1.2.3", "-", "9" * 70]
    lines = []
    for _ in range(2_000):
        value = rng.choice(values)
        spaces = [rng.choice(["", " ", "\t", "  "]) for _ in range(3)]
        prefix = rng.choice(["", '"note": "amount", ', '"x": {"amount": 7}, ', '"a\\"amount": 1, '])
        suffix = rng.choice(["}", ', "currency": "USD"}', " }"])
        lines.append("{" + prefix + f'"amount"{spaces[0]}:{spaces[1]}{value}{spaces[2]}' + suffix)
    text = ("\n".join(lines) + "\n").encode()
    whole = events_reader._string_array(pa.py_buffer(text), np.array([0, len(text)], np.int32))
    fast, moved = events_reader._quote_amount_numbers(whole, text, len(text))
    slow = events_reader._quote_amounts(pa.py_buffer(text))
    assert fast.to_pybytes() == slow.to_pybytes()
    newlines = np.flatnonzero(np.frombuffer(text, np.uint8) == 10)
    assert (np.frombuffer(fast, np.uint8)[moved(newlines)] == 10).all()


def test_null_lines_never_reach_arrow(tmp_path):
    """pyarrow 25 segfaults on a JSON block whose first row is `null`; such lines
    must be read by json.loads only, wherever they fall (first line, block starts)."""
    lines = [line(event_id=f"e{i}", stage="s" * 200) if i % 997 else "null"
             for i in range(12_000)]  # ~3 MB: several 1 MiB Arrow blocks
    out = read(write(tmp_path, "e.jsonl", "\n".join(lines) + "\n"))
    reasons = out["reason"].to_pylist()
    assert [i for i, r in enumerate(reasons) if r] == list(range(0, 12_000, 997))
    assert set(out["detail"].to_pylist()) - {None} == {"not a JSON object (the line is null)"}
    assert rows(write(tmp_path, "only.jsonl", "null\n null\n"))[1]["position"] == 2


# --------------------------------------------------------------------------- oversized lines

BIG = MAX_RECORD_BYTES + 10


def _oversized_case(size: int = BIG) -> tuple[str, str]:
    """A valid JSON event padded past the record limit, and its expected capped raw."""
    padded = line(stage="s" * (size - len(line(stage=""))))
    return padded, cap_text(padded)


@pytest.mark.parametrize("first_read", [4 << 20, 64 << 10], ids=["in a chunk", "streamed past"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_line_longer_than_a_record_may_be_is_malformed_unread(tmp_path, monkeypatch,
                                                                 first_read, newline):
    monkeypatch.setattr(events_reader, "_FIRST_READ", first_read)
    monkeypatch.setattr(events_reader, "_MIN_READ", min(first_read, 1 << 20))
    padded, capped = _oversized_case()
    text = newline.join([line(event_id="a"), padded, "   ", line(event_id="b")]) + newline
    out = sorted(rows(write(tmp_path, "e.jsonl", text)), key=lambda r: r["position"])
    assert [(r["position"], r["reason"]) for r in out] == [(1, None), (2, "malformed"), (4, None)]
    assert out[1]["detail"] == (f"record is {len(padded)} bytes, more than the "
                                f"{MAX_RECORD_BYTES} bytes a record may have")
    assert out[1]["raw"] == capped and out[1]["event_id"] is None
    assert [out[0]["event_id"], out[2]["event_id"]] == ["a", "b"]


def test_a_streamed_long_line_that_is_not_utf8_says_so_like_a_short_one(tmp_path, monkeypatch):
    monkeypatch.setattr(events_reader, "_FIRST_READ", 64 << 10)
    monkeypatch.setattr(events_reader, "_MIN_READ", 64 << 10)
    bad = b"{" + b"x" * 100 + b"\xff" + b"y" * BIG + b"}"
    out = rows(write(tmp_path, "e.jsonl", bad + b"\n" + line().encode()))
    verdict = {r["position"]: r for r in out}
    assert verdict[1]["detail"] == "line is not valid UTF-8 (byte 102)"
    assert verdict[1]["raw"] == cap_text(bad.decode("utf-8", errors="replace"), original=bad)
    assert verdict[2]["reason"] is None


def test_a_long_last_line_without_a_newline_is_malformed(tmp_path, monkeypatch):
    monkeypatch.setattr(events_reader, "_FIRST_READ", 64 << 10)
    monkeypatch.setattr(events_reader, "_MIN_READ", 64 << 10)
    padded, capped = _oversized_case()
    out = rows(write(tmp_path, "e.jsonl", line() + "\n" + padded))
    assert [(r["position"], r["reason"], r["raw"] == capped or None) for r in out] == [
        (1, None, None), (2, "malformed", True)]


def test_quarantined_raw_text_is_capped(tmp_path):
    long_bad = '{"event_id": "' + "z" * 10_000  # truncated JSON, 10k characters
    out = rows(write(tmp_path, "e.jsonl", long_bad + "\n"))
    assert out[0]["reason"] == "malformed"
    assert out[0]["raw"] == cap_text(long_bad) and len(out[0]["raw"]) < 4200


@pytest.mark.parametrize("depth, reason", [(63, None), (64, "malformed"), (5000, "malformed")])
def test_nesting_deeper_than_the_limit_is_malformed_whatever_the_recursion_limit(
        tmp_path, depth, reason):
    """The record is level 1, so an extra field nested ``depth`` deep is level depth + 1."""
    import sys

    nested = line()[:-1] + ', "x": ' + "[" * depth + "1" + "]" * depth + "}"
    path = write(tmp_path, "e.jsonl", line() + "\n" + nested + "\n")
    original = sys.getrecursionlimit()
    for limit in (original, 20_000):  # Hypothesis, for one, raises the limit
        sys.setrecursionlimit(limit)
        try:
            out = rows(path)
        finally:
            sys.setrecursionlimit(original)
        assert [r["reason"] for r in out] == [None, reason]
        if reason:
            assert out[1]["detail"] == "nested deeper than 64 levels"
