"""Fiscal calendars: the fiscal year, quarter, period and week of every day.

Two kinds (``FiscalCalendar.kind``):

* ``months``: fiscal periods are calendar months; the fiscal year starts on the first
  day of ``start_month`` (1 = the calendar year).
* ``4-4-5``, ``4-5-4``, ``5-4-4``: retail 52/53-week years. A fiscal year ends on the
  ``week_end`` weekday nearest the last day of the month before ``start_month`` (the
  NRF rule: with February and Saturday, the Saturday nearest January 31), so it starts
  on the day after; each quarter is three periods of 4, 4 and 5 weeks (or 4-5-4,
  5-4-4). A 53-week year gives its extra week to the last period.

Either way the fiscal year is named by the calendar year in which it ends (with a
February start, FY2027 runs from February 2026 to January 2027), as the quarterly
views name it. Pure and vectorised: numpy over day numbers, no loop per day.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.fiscal import KINDS, WEEKDAYS
from schemas.outputs import FISCAL_CALENDAR_SCHEMA

FIRST_YEAR, LAST_YEAR = 1990, 2080  # the days the published calendar covers

_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class FiscalCalendar:
    kind: str = "months"
    start_month: int = 1
    week_end: str = "saturday"  # retail calendars only

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fiscal calendar {self.kind!r} (expected one of "
                             f"{', '.join(KINDS)})")
        if not 1 <= self.start_month <= 12:
            raise ValueError(f"fiscal year start month must be 1..12, got {self.start_month}")
        if self.week_end not in WEEKDAYS:
            raise ValueError(f"unknown weekday {self.week_end!r}")

    @property
    def label(self) -> str:
        """What the calendar is, in words (a column of the published calendar)."""
        if self.kind == "months":
            return f"months, fiscal year from {calendar.month_name[self.start_month]}"
        before = 12 if self.start_month == 1 else self.start_month - 1
        return (f"{self.kind}, years ending on the {self.week_end} nearest "
                f"{calendar.month_name[before]} {calendar.monthrange(2001, before)[1]}")

    def year_start(self, fiscal_year: int) -> dt.date:
        """The first day of ``fiscal_year`` (named by the calendar year it ends in)."""
        if self.kind == "months":
            return dt.date(fiscal_year - (self.start_month != 1), self.start_month, 1)
        return self._retail_year_end(fiscal_year - 1) + dt.timedelta(days=1)

    def _retail_year_end(self, fiscal_year: int) -> dt.date:
        """The last day of a retail ``fiscal_year``: the week-end day nearest the last day
        of the month before the start month."""
        month = 12 if self.start_month == 1 else self.start_month - 1
        last = dt.date(fiscal_year, month, calendar.monthrange(fiscal_year, month)[1])
        shift = (WEEKDAYS.index(self.week_end) - last.weekday() + 7) % 7  # days to the next
        nearest = last + dt.timedelta(days=shift)
        return nearest if shift <= 3 else nearest - dt.timedelta(days=7)

    def days(self, first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR) -> pa.Table:
        """``FISCAL_CALENDAR_SCHEMA`` rows for every day of fiscal years
        ``first_year..last_year``."""
        years = np.arange(first_year, last_year + 2)
        starts = np.array([(self.year_start(int(y)) - _EPOCH).days for y in years])
        day = np.arange(starts[0], starts[-1], dtype=np.int64)
        index = np.searchsorted(starts, day, side="right") - 1
        fiscal_year = years[index]
        year_start = starts[index]
        if self.kind == "months":
            dates = day.astype("datetime64[D]")
            month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
            period = (month - self.start_month) % 12 + 1
            period_start = dates.astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
            week = (day - year_start) // 7 + 1
        else:
            week = (day - year_start) // 7 + 1  # 1..53
            pattern = [int(w) for w in self.kind.split("-")] * 4
            first_week = np.cumsum([0, *pattern])  # weeks before each period (13 entries)
            period = np.searchsorted(first_week[1:], week - 1, side="right") + 1
            period = np.minimum(period, 12)  # the 53rd week belongs to period 12
            period_start = year_start + first_week[period - 1] * 7
        quarter = (period - 1) // 3 + 1
        first_period_of_quarter = (quarter - 1) * 3 + 1
        if self.kind == "months":
            base = year_start.astype("datetime64[D]").astype("datetime64[M]")
            quarter_start = (base + (first_period_of_quarter - 1).astype("timedelta64[M]")
                             ).astype("datetime64[D]").astype(np.int64)
        else:
            quarter_start = year_start + first_week[first_period_of_quarter - 1] * 7

        def date(values: np.ndarray) -> pa.Array:
            return pa.array(values.astype(np.int32), pa.int32()).cast(pa.date32())

        return pa.table({
            "day": date(day),
            "fiscal_year": pa.array(fiscal_year, pa.int32()),
            "fiscal_quarter": pa.array(quarter, pa.int32()),
            "fiscal_period": pa.array(period, pa.int32()),
            "fiscal_week": pa.array(week, pa.int32()),
            "period_start": date(period_start),
            "quarter_start": date(quarter_start),
            "year_start": date(year_start),
            "calendar": pa.repeat(pa.scalar(self.label), len(day)),
        }, schema=FISCAL_CALENDAR_SCHEMA)

