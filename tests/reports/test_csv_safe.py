from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from pipelines.reports.csv_safe import neutralise, to_csv


@pytest.mark.parametrize(
    "value, expected",
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("  =1", "'  =1"),
        ("\n=1", "'\n=1"),
        ("\u202e=cmd|' /C calc'!A0", "'\u202e=cmd|' /C calc'!A0"),  # behind an RTL override
        ("\u200b@SUM(1)", "'\u200b@SUM(1)"),  # behind a zero-width space
        ("\u00a0\ufeff+1", "'\u00a0\ufeff+1"),
        ("\uff1dHYPERLINK(1)", "'\uff1dHYPERLINK(1)"),  # full-width equals
        ("\u202eAcme", "\u202eAcme"),  # kept whole: the CSV holds the full value
        ("x" * 10_000, "x" * 10_000),
        ("Acme Corp.", "Acme Corp."),
        ("Müller & Söhne", "Müller & Söhne"),
        ("", ""),
        ("a=b", "a=b"),
    ],
)
def test_text_that_could_start_a_formula_gets_a_leading_quote(value, expected):
    assert neutralise(value) == expected


def test_numbers_stay_numbers_and_quoting_follows_rfc4180():
    text = to_csv(
        ["name", "amount", "count", "day", "at", "none"],
        [
            [
                '=HYPERLINK("http://x"), "quoted"',
                Decimal("-12.50"),
                -3,
                date(2026, 3, 1),
                datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
                None,
            ],
            ["line\nbreak", Decimal("0.00"), 0, None, None, None],
        ],
    )
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["name", "amount", "count", "day", "at", "none"]
    assert rows[1] == [
        '\'=HYPERLINK("http://x"), "quoted"',
        "-12.50",
        "-3",
        "2026-03-01",
        "2026-03-01T14:05:00+00:00",
        "",
    ]
    assert rows[2][0] == "line\nbreak"
    assert text.endswith("\r\n")
