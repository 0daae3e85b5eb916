"""The quality page: self-contained, failures first, untrusted values escaped."""

from __future__ import annotations

import json
import re

import pyarrow as pa

from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from pipelines.quality.page import render_quality_page


def results(rows: list[tuple]) -> pa.Table:
    names = CHECK_RESULT_SCHEMA.names
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows],
                                schema=CHECK_RESULT_SCHEMA)


ROWS = [
    ("reference", "reference", "accounts_key_unique", "critical", True, "0 of 4", None),
    ("raw_events", "raw_events", "event_id_not_null", "critical", True, "0 of 10", None),
    ("raw_events", "raw_events", "currency_is_iso_code", "warning", False, "1 of 10",
     json.dumps([{"currency": "<script>alert(1)</script>", "event_id": "e1"}])),
    ("raw_events", "raw_events", "event_type_known", "critical", False, "2 of 10",
     json.dumps(["deal_teleported", "x&y"])),
]


def test_page_lists_failing_stages_and_failures_first_with_badges(tmp_path):
    out = render_quality_page(results(ROWS), "run-1", tmp_path / "q" / "quality.html")
    html = out.read_text()
    assert html.index("<h2>raw_events") < html.index("<h2>reference")
    section = html[html.index("<h2>raw_events"):html.index("<h2>reference")]
    order = [m.group(1) for m in re.finditer(r"<code>([a-z_]+)</code>", section)]
    assert order == ["event_type_known", "currency_is_iso_code", "event_id_not_null"]
    assert 'class="badge critical"' in html and 'class="badge warning"' in html
    assert "1 critical" in section and "1 warning" in section
    assert "run-1" in html


def test_untrusted_values_are_escaped_and_nothing_is_fetched(tmp_path):
    hostile = ROWS + [("<b>stage</b>", "s", "x", "warning", False, "<img src=x onerror=1>",
                       "not json <i>")]
    html = render_quality_page(results(hostile), "<run>", tmp_path / "q.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<b>stage</b>" not in html and "<run>" not in html
    assert "x&amp;y" in html
    assert not re.search(r"(src|href)=[\"']?https?:", html)
    assert "<link" not in html and "@import" not in html


def test_example_rows_become_a_small_table(tmp_path):
    html = render_quality_page(results(ROWS), "r", tmp_path / "q.html").read_text()
    assert "<th>currency</th><th>event_id</th>" in html
    assert "<td>e1</td>" in html


def test_an_empty_result_set_still_renders(tmp_path):
    html = render_quality_page(CHECK_RESULT_SCHEMA.empty_table(), "r",
                               tmp_path / "q.html").read_text()
    assert "No checks were run." in html


def test_bidi_controls_control_characters_and_huge_values_are_inert(tmp_path):
    from pipelines.quality.page import VALUE_LIMIT

    long = "L" * 10_000
    rtl = "Acme\u202efdp.exe"
    hostile = ROWS + [
        ("reference", "reference", "account_name_clean", "warning", False,
         f"bad \x1b[2J\u2066 {rtl}",
         json.dumps([{"account_name": rtl, "raw": long}, {"account_name": "\x07\x85x"}])),
        ("raw_events", "raw_events", "raw_text", "warning", False, "1 of 1",
         "not json \u202e" + long),
    ]
    html = render_quality_page(results(hostile), "run\u202e-1", tmp_path / "q.html").read_text()
    unsafe = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f"
                        "\u2028-\u202e\u2066-\u2069\ufeff]")
    assert not unsafe.search(html), unsafe.search(html)
    assert "Acme\ufffdfdp.exe" in html and "run\ufffd-1" in html
    assert "L" * VALUE_LIMIT not in html  # cut with an ellipsis
    assert "L" * (VALUE_LIMIT - 1) + "…" in html
