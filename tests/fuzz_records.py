"""Hypothesis strategies for the fuzz test: bad event records of every kind the issue
lists, each with the one reason the contract gives it, written as JSONL, CSV or Parquet.

A record is built from a clean event (``base``) with one fault; its expected reason is
stated next to the fault, never computed by the code under test. ``Written`` keeps,
for every record of a file, its position and expected outcome.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from schemas.events import EVENT_FIELDS, MAX_RECORD_BYTES, REQUIRED_FIELDS

GOOD = "accepted"
DUPLICATE = "duplicate"
NO_FX = "CHF"  # a currency the generated reference has no rate for
ID_FIELDS = ("event_id", "deal_id", "account_id")
STRING_FIELDS = tuple(f for f in EVENT_FIELDS if f != "amount")
CONTROL = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 0x7F, 0x85, 0x9F)]


@dataclass
class Record:
    """One record's content and the outcome the contract gives it."""

    kind: str
    expected: str  # a quarantine reason, GOOD or DUPLICATE
    event: dict | None = None  # CSV / Parquet: the cells; JSONL: used when text is None
    text: bytes | None = None  # JSONL: the exact line (without terminator)
    terminator: bytes = b"\n"


@dataclass
class Written:
    """Every record written, by (file, position)."""

    outcomes: dict[tuple[str, int], tuple[str, str]] = field(default_factory=dict)

    def add(self, path: Path, position: int, record: Record) -> None:
        self.outcomes[(str(path), position)] = (record.kind, record.expected)


def _event(base: dict, event_id: str, **changes: object) -> dict:
    return {**base, "event_id": event_id, **changes}


def _json(event: dict) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode()


# --------------------------------------------------------------------------- faults

SHARED = ("tz_less", "leap_second", "too_many_digits", "huge_number", "missing_field",
          "unknown_type", "bad_currency", "no_fx", "long_id", "control_in_id")
JSONL_ONLY = ("truncated", "wrong_type", "nan", "deep_nesting", "invalid_utf8",
              "bom_inside", "oversized", "duplicate_key", "raw_control", "not_object",
              "crlf_good")
CSV_ONLY = ("wrong_field_count", "invalid_utf8", "oversized", "newline_in_value_good",
            "nan")


@st.composite
def faulty(draw, base: dict, event_id: str, fmt: str) -> Record:
    """One record with one fault (or a clean variant), for ``fmt``."""
    kinds = SHARED + {"jsonl": JSONL_ONLY, "csv": CSV_ONLY, "parquet": ()}[fmt]
    kind = draw(st.sampled_from(kinds))
    if kind == "oversized" and draw(st.integers(0, 9)):  # 1 MB each: keep them rare
        kind = "tz_less"
    event = _event(base, event_id)
    if kind == "tz_less":
        return Record(kind, "bad_timestamp", {**event, "event_time": event["event_time"][:19]})
    if kind == "leap_second":
        return Record(kind, "bad_timestamp", {**event, "event_time": "2026-06-30T23:59:60Z"})
    if kind == "too_many_digits":
        digits = draw(st.sampled_from(["10.123", "0.001", "12345.6789"]))
        return Record(kind, "bad_amount", {**event, "amount": digits, "currency": "USD"})
    if kind == "huge_number":
        text = draw(st.sampled_from(["1e400", "12345678901234567890123", "10000000000000",
                                     "-99999999999999.99", "1" * 400]))
        if fmt == "jsonl" and draw(st.booleans()):  # a JSON number, not a string
            line = _json({k: v for k, v in event.items() if k != "amount"})[:-1] \
                + b', "amount": ' + text.encode() + b"}"
            return Record(kind, "bad_amount", text=line)
        return Record(kind, "bad_amount", {**event, "amount": text})
    if kind == "missing_field":
        name = draw(st.sampled_from(REQUIRED_FIELDS))
        if fmt == "jsonl" and draw(st.booleans()):
            return Record(kind, "missing_field", {k: v for k, v in event.items() if k != name})
        blank = draw(st.sampled_from(["", "   "] if fmt == "csv" else ["", "  ", None]))
        return Record(kind, "missing_field", {**event, name: blank})
    if kind == "unknown_type":
        return Record(kind, "unknown_event_type",
                      {**event, "event_type": draw(st.sampled_from(
                          ["deal_deleted", "Deal_Won", " deal_won", "won"]))})
    if kind == "bad_currency":
        return Record(kind, "bad_currency", {**event, "currency": draw(st.sampled_from(
            ["usd", "US$", "EURO", "XYZ", "€"]))})
    if kind == "no_fx":
        return Record(kind, "no_fx_rate", {**event, "currency": NO_FX})
    if kind == "long_id":
        name = draw(st.sampled_from(ID_FIELDS))
        return Record(kind, "bad_type", {**event, name: "x" * draw(st.integers(129, 10_000))})
    if kind == "control_in_id":
        name = draw(st.sampled_from(ID_FIELDS))
        char = draw(st.sampled_from([c for c in CONTROL if c not in "\x00"]
                                    if fmt == "csv" else CONTROL))
        # JSONL escapes it (json.dumps): an escaped control character is valid JSON
        return Record(kind, "bad_type", {**event, name: f"{event[name][:5]}{char}x"})
    if kind == "nan":
        if fmt == "csv":
            return Record(kind, "bad_amount", {**event, "amount": "NaN"})
        line = _json({k: v for k, v in event.items() if k != "amount"})[:-1] + b', "amount": NaN}'
        return Record(kind, "malformed", text=line)
    if kind == "invalid_utf8":
        if fmt == "csv":
            return Record(kind, "malformed",
                          {**event, "deal_id": event["deal_id"].encode() + b"\xff\xfe"})
        line = _json(event)
        cut = draw(st.integers(2, len(line) - 2))
        return Record(kind, "malformed",
                      text=line[:cut] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"]))
                      + line[cut:])
    if kind == "oversized":
        size = MAX_RECORD_BYTES + draw(st.integers(1, 4096))
        return Record(kind, "malformed", {**event, "stage": "s" * size})
    if kind == "wrong_field_count":
        return Record(kind, "malformed", {**event, "_extra": "x"})
    if kind == "newline_in_value_good":
        return Record(kind, GOOD, {**event, "stage": "line one\nline two, \"quoted\""})
    if kind == "truncated":
        line = _json(event)
        return Record(kind, "malformed", text=line[:draw(st.integers(1, len(line) - 1))])
    if kind == "wrong_type":
        name = draw(st.sampled_from(EVENT_FIELDS))
        value = draw(st.sampled_from([123, 1.5, True, None, [1], {"a": "b"}] if name != "amount"
                                     else [True, [1], {"a": "b"}]))
        if value is None:  # null is a missing field (optional: fine)
            value = 123
        return Record(kind, "bad_type", {**event, name: value})
    if kind == "deep_nesting":
        depth = draw(st.sampled_from([1_100, 5_000, 50_000]))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        line = _json(event)[:-1] + b', "x": ' + (opener * depth + "1" + closer * depth).encode() \
            + b"}"
        return Record(kind, "malformed", text=line)
    if kind == "bom_inside":
        return Record(kind, "malformed", text=b"\xef\xbb\xbf" + _json(event))
    if kind == "duplicate_key":
        name = draw(st.sampled_from(sorted(event)))  # a key the line has
        return Record(kind, "malformed", text=_json(event)[:-1] + f', "{name}": "x"}}'.encode())
    if kind == "raw_control":  # an unescaped C0 character inside a string: not JSON
        char = draw(st.sampled_from([c for c in CONTROL[:28] if c not in "\n\r"]))
        line = _json(event).replace(b'"deal_id": "', b'"deal_id": "' + char.encode(), 1)
        return Record(kind, "malformed", text=line)
    if kind == "not_object":
        return Record(kind, "malformed", text=draw(st.sampled_from(
            [b"[1, 2]", b"null", b'"deal_won"', b"42", b"true", b"{}x", b"}{"])))
    if kind == "crlf_good":
        return Record(kind, GOOD, event, terminator=b"\r\n")
    raise AssertionError(kind)


@st.composite
def file_records(draw, pool: list[dict], fmt: str, prefix: str, bad: tuple[int, int]
                 ) -> list[Record]:
    """A file's records: clean events from ``pool``, faulty ones (between ``bad`` in
    number), exact repeats (duplicates) and conflicting repeats. The first is clean (a
    BOM is only skipped on the first line, and the conflicting copy follows its original)."""
    n_good = draw(st.integers(5, 20))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n_good, max_size=n_good,
                          unique=True))
    good = [Record("good", GOOD, pool[i]) for i in picks]
    n_bad = draw(st.integers(*bad))
    bases = draw(st.lists(st.integers(0, len(pool) - 1), min_size=n_bad, max_size=n_bad))
    faults = [draw(faulty(pool[b], f"{prefix}-{k}", fmt)) for k, b in enumerate(bases)]
    repeats = []
    for record in draw(st.lists(st.sampled_from(good), max_size=5)):
        if draw(st.booleans()):
            repeats.append(Record("exact_repeat", DUPLICATE, record.event))
        else:
            changed = {**record.event, "stage": f"changed-{draw(st.integers(0, 10**6))}"}
            repeats.append(Record("conflicting_repeat", "conflicting_duplicate", changed))
    rest = draw(st.permutations(good[1:] + faults))
    return [good[0], *rest, *repeats]


# --------------------------------------------------------------------------- writers


def write_jsonl(path: Path, records: list[Record], blanks: list[int], written: Written) -> None:
    out = bytearray()
    line = 0
    for k, record in enumerate(records):
        for _ in range(blanks[k % len(blanks)] if blanks else 0):
            out += b"   \n" if k % 2 else b"\n"
            line += 1
        text = record.text if record.text is not None else _json(record.event)
        out += text + record.terminator
        line += 1
        written.add(path, line, record)
    path.write_bytes(bytes(out))


def write_csv(path: Path, records: list[Record], written: Written) -> None:
    header = list(EVENT_FIELDS)
    out = io.BytesIO()
    out.write((",".join(header) + "\n").encode())
    line = 2
    for record in records:
        cells = [_cell(record.event.get(name)) for name in header]
        if "_extra" in record.event:
            cells.append(b"extra")
        text = b",".join(cells) + b"\n"
        out.write(text)
        written.add(path, line, record)
        line += text.count(b"\n")
    path.write_bytes(out.getvalue())


def _cell(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([str(value)])
    return buffer.getvalue().encode()


def write_parquet(path: Path, records: list[Record], written: Written) -> None:
    columns = {name: pa.array([_text(r.event.get(name)) for r in records], pa.string())
               for name in EVENT_FIELDS}
    pq.write_table(pa.table(columns), path)
    for row, record in enumerate(records, start=1):
        written.add(path, row, record)


def _text(value: object) -> str | None:
    return None if value is None else str(value)
