"""The quarantine's raw text: capped the same way in Python, Arrow and DuckDB."""

from __future__ import annotations

import hashlib

import duckdb
import pyarrow as pa
import pytest

from pipelines.rules.raw_text import cap_raw, cap_sql, cap_text, cut_text
from schemas.events import RAW_KEPT_CHARS


def test_a_short_text_is_kept_whole():
    text = "x" * RAW_KEPT_CHARS
    assert cap_text(text) == text
    assert cap_raw(pa.array([text, None])).to_pylist() == [text, None]


def test_a_long_text_keeps_its_start_its_size_and_its_hash():
    text = "é" * (RAW_KEPT_CHARS + 1)
    capped = cap_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    size = 2 * (RAW_KEPT_CHARS + 1)
    assert capped == "é" * RAW_KEPT_CHARS + f"…[cut: {size} bytes, sha256 {digest}]"


def test_the_size_and_hash_of_bytes_that_are_not_utf8_are_of_the_bytes():
    original = b"\xff" * (RAW_KEPT_CHARS + 10)
    shown = original.decode("utf-8", errors="replace")
    capped = cap_text(shown, original=original)
    assert capped.endswith(
        f"[cut: {len(original)} bytes, sha256 {hashlib.sha256(original).hexdigest()}]")
    assert capped.startswith("\ufffd" * RAW_KEPT_CHARS + "…")


def test_cut_text_describes_a_record_never_held_whole():
    assert cut_text("abc", 10, "f" * 64) == "abc…[cut: 10 bytes, sha256 " + "f" * 64 + "]"


@pytest.mark.parametrize("text", [
    "a" * (RAW_KEPT_CHARS - 1), "a" * RAW_KEPT_CHARS, "a" * (RAW_KEPT_CHARS + 1),
    "e\u0301" * RAW_KEPT_CHARS, "€" * 5000 + "'quote'", "😀" * (RAW_KEPT_CHARS + 3),
])
def test_arrow_duckdb_and_python_cap_identically(text):
    arrow = cap_raw(pa.array(["short", text, None])).to_pylist()
    sql = duckdb.connect().execute(
        f"SELECT {cap_sql('t')} FROM (SELECT unnest(?::VARCHAR[]) AS t, "
        "generate_subscripts(?::VARCHAR[], 1) AS i) ORDER BY i",
        [["short", text], ["short", text]]).fetchall()
    assert arrow == ["short", cap_text(text), None]
    assert [row[0] for row in sql] == ["short", cap_text(text)]
