"""Fiscal calendars: months from any start month, and 4-4-5 / 4-5-4 / 5-4-4 retail years."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pyarrow.compute as pc
import pytest

from pipelines.rules.fiscal_calendar import FISCAL_CALENDAR_SCHEMA, KINDS, FiscalCalendar

D = dt.date


def year(calendar: FiscalCalendar, fiscal_year: int) -> list[dict]:
    days = calendar.days(fiscal_year - 1, fiscal_year + 1)
    return days.filter(pc.equal(days["fiscal_year"], fiscal_year)).to_pylist()


def test_calendar_months_are_the_calendar():
    rows = year(FiscalCalendar(), 2026)
    assert (rows[0]["day"], rows[-1]["day"], len(rows)) == (D(2026, 1, 1), D(2026, 12, 31), 365)
    march = [r for r in rows if r["day"] == D(2026, 3, 15)][0]
    assert (march["fiscal_quarter"], march["fiscal_period"], march["period_start"],
            march["quarter_start"]) == (1, 3, D(2026, 3, 1), D(2026, 1, 1))


def test_a_fiscal_year_is_named_by_the_calendar_year_it_ends_in():
    rows = year(FiscalCalendar("months", start_month=2), 2027)
    assert (rows[0]["day"], rows[-1]["day"]) == (D(2026, 2, 1), D(2027, 1, 31))
    march = [r for r in rows if r["day"] == D(2026, 3, 10)][0]
    assert (march["fiscal_quarter"], march["fiscal_period"], march["quarter_start"]) == (
        1, 2, D(2026, 2, 1))
    november = [r for r in rows if r["day"] == D(2026, 11, 30)][0]
    assert (november["fiscal_quarter"], november["quarter_start"]) == (4, D(2026, 11, 1))


def test_the_nrf_retail_calendar_ends_on_the_saturday_nearest_january_31():
    """NRF fiscal 2023 (named 2024 here: it ends in 2024) ran 2023-01-29 to 2024-02-03, a
    53-week year; 2024 (named 2025) ran 2024-02-04 to 2025-02-01."""
    nrf = FiscalCalendar("4-5-4", start_month=2, week_end="saturday")
    long_year, short_year = year(nrf, 2024), year(nrf, 2025)
    assert (long_year[0]["day"], long_year[-1]["day"], len(long_year)) == (
        D(2023, 1, 29), D(2024, 2, 3), 371)
    assert (short_year[0]["day"], short_year[-1]["day"], len(short_year)) == (
        D(2024, 2, 4), D(2025, 2, 1), 364)
    assert {r["day"].weekday() for r in short_year if r["day"] == r["period_start"]} == {6}


@pytest.mark.parametrize("kind", ["4-4-5", "4-5-4", "5-4-4"])
def test_retail_periods_follow_the_pattern_and_the_53rd_week_goes_to_the_last_period(kind):
    weeks = [int(w) for w in kind.split("-")] * 4
    calendar = FiscalCalendar(kind, start_month=2)
    for fiscal_year, extra in ((2025, 0), (2024, 1)):
        lengths = Counter(r["fiscal_period"] for r in year(calendar, fiscal_year))
        assert [lengths[p] for p in range(1, 13)] == [7 * w for w in weeks[:11]] + [
            7 * (weeks[11] + extra)]


@pytest.mark.parametrize("kind", KINDS)
def test_every_day_belongs_to_exactly_one_period_and_periods_nest(kind):
    days = FiscalCalendar(kind, start_month=7).days(2020, 2030)
    assert days.schema == FISCAL_CALENDAR_SCHEMA
    rows = days.to_pylist()
    assert all((b["day"] - a["day"]).days == 1 for a, b in zip(rows, rows[1:], strict=False))
    for row in rows:
        assert row["year_start"] <= row["quarter_start"] <= row["period_start"] <= row["day"]
        assert row["fiscal_quarter"] == (row["fiscal_period"] - 1) // 3 + 1
    assert sorted(set(days["fiscal_year"].to_pylist())) == list(range(2020, 2031))


def test_bad_settings_say_what_is_allowed():
    with pytest.raises(ValueError, match="4-4-5"):
        FiscalCalendar("4-4-4")
    with pytest.raises(ValueError, match="1..12"):
        FiscalCalendar("months", 13)
