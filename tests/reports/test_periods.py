from __future__ import annotations

from datetime import date

import pytest

from pipelines.reports.periods import Period, parse_period


@pytest.mark.parametrize(
    "text, start, end, previous, year_ago",
    [
        ("2026", date(2026, 1, 1), date(2027, 1, 1), "2025", "2025"),
        ("2026-Q1", date(2026, 1, 1), date(2026, 4, 1), "2025-Q4", "2025-Q1"),
        ("2026-q4", date(2026, 10, 1), date(2027, 1, 1), "2026-Q3", "2025-Q4"),
        ("2026-03", date(2026, 3, 1), date(2026, 4, 1), "2026-02", "2025-03"),
        ("2026-01", date(2026, 1, 1), date(2026, 2, 1), "2025-12", "2025-01"),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1), "2026-11", "2025-12"),
    ],
)
def test_periods_and_their_comparisons(text, start, end, previous, year_ago):
    p = parse_period(text)
    assert (p.start, p.end) == (start, end)
    assert (p.previous().label, p.year_ago().label) == (previous, year_ago)
    assert parse_period(p.label) == p


@pytest.mark.parametrize(
    "text", ["", "26", "2026-13", "2026-00", "2026-Q5", "2026-3", "Q1-2026", "2026-03-01", "FY2026"]
)
def test_bad_periods_are_refused(text):
    with pytest.raises(ValueError, match="unknown period"):
        parse_period(text)


def test_chart_buckets_are_days_for_a_month_and_clipped_weeks_otherwise():
    march = parse_period("2026-03")
    assert march.bucket == "day" and len(march.buckets()) == 31
    q1 = parse_period("2026-Q1")  # 1 Jan 2026 is a Thursday
    weeks = q1.buckets()
    assert weeks[0] == date(2026, 1, 1) and weeks[1] == date(2026, 1, 5)
    assert all((b - a).days == 7 for a, b in zip(weeks[1:], weeks[2:], strict=False))
    assert q1.bucket_of(date(2026, 1, 3)) == date(2026, 1, 1)
    assert q1.bucket_of(date(2026, 3, 31)) == weeks[-1] == date(2026, 3, 30)
    assert Period("year", 2026).months()[-1] == date(2026, 12, 1)
