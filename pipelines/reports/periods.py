"""Report periods: a calendar year (``2026``), quarter (``2026-Q1``) or month (``2026-03``),
or a fiscal year (``FY2027``), quarter (``FY2027-Q1``) or period (``FY2027-P03``) of the
published ``fiscal_calendar``.

A period is a half-open range of UTC dates ``[start, end)``; an event belongs to it
when its ``day`` (the UTC date of ``event_time``) does. Calendar quarters are
Q1 = January to March whatever ``--fiscal-year-start-month`` the pipeline ran with.
A fiscal label is parsed here (``parse_label`` gives a ``FiscalLabel``) but its days
come from the database: ``ReportData.fiscal_period`` resolves it to a ``FiscalPeriod``
from ``fiscal_calendar``, so it works for any calendar the run published, including
4-4-5 retail years whose periods are not calendar months.

>>> p = parse_period("2026-Q1")
>>> (p.start.isoformat(), p.end.isoformat(), p.previous().label, p.year_ago().label)
('2026-01-01', '2026-04-01', '2025-Q4', '2025-Q1')
>>> parse_period("2026-03").previous().label, parse_period("2026-01").previous().label
('2026-02', '2025-12')
>>> parse_period("2026").previous() == parse_period("2026").year_ago()
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta

_PATTERNS = (
    ("year", re.compile(r"(\d{4})")),
    ("quarter", re.compile(r"(\d{4})-[Qq]([1-4])")),
    ("month", re.compile(r"(\d{4})-(0[1-9]|1[0-2])")),
)
_FISCAL = re.compile(r"FY(\d{4})(?:-(?:Q([1-4])|P(0[1-9]|1[0-2])))?", re.IGNORECASE)
ACCEPTED = (
    "use a year (2026), quarter (2026-Q1) or month (2026-03), or a fiscal year (FY2027), "
    "quarter (FY2027-Q1) or period (FY2027-P03) of the published fiscal_calendar"
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, order=True)
class Period:
    """``kind`` is ``year``, ``quarter`` or ``month``; ``index`` the quarter or month (0 for a
    year)."""

    kind: str
    year: int
    index: int = 0
    calendar = ""  # not a field: a calendar period is on no fiscal calendar

    @property
    def start(self) -> date:
        if self.kind == "year":
            return date(self.year, 1, 1)
        if self.kind == "quarter":
            return date(self.year, 3 * self.index - 2, 1)
        return date(self.year, self.index, 1)

    @property
    def end(self) -> date:
        """The first day after the period (exclusive end)."""
        return self.next().start

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def label(self) -> str:
        if self.kind == "year":
            return f"{self.year}"
        if self.kind == "quarter":
            return f"{self.year}-Q{self.index}"
        return f"{self.year}-{self.index:02d}"

    @property
    def title(self) -> str:
        """Human form: ``Q1 2026``, ``March 2026``, ``2026``."""
        if self.kind == "year":
            return f"{self.year}"
        if self.kind == "quarter":
            return f"Q{self.index} {self.year}"
        return f"{self.start.strftime('%B')} {self.year}"

    @property
    def span(self) -> str:
        """``1 Jan – 31 Mar 2026``."""
        first, last = self.start, self.last_day
        return (
            f"{first.day} {_MONTHS[first.month - 1]} – "
            f"{last.day} {_MONTHS[last.month - 1]} {last.year}"
        )

    @property
    def bucket(self) -> str:
        """Chart granularity: ``day`` for a month, ``week`` for a quarter or a year."""
        return "day" if self.kind == "month" else "week"

    def sub_label(self, month: date) -> str:
        """Column heading of a month in the account-by-month table: ``Mar 2026``."""
        return f"{month:%b %Y}"

    def _shift(self, steps: int) -> Period:
        if self.kind == "year":
            return Period("year", self.year + steps)
        size = 4 if self.kind == "quarter" else 12
        zero_based = self.year * size + self.index - 1 + steps
        return Period(self.kind, zero_based // size, zero_based % size + 1)

    def next(self) -> Period:
        return self._shift(1)

    def previous(self) -> Period:
        return self._shift(-1)

    def year_ago(self) -> Period:
        return Period(self.kind, self.year - 1, self.index)

    def months(self) -> list[date]:
        """First day of every month in the period."""
        out, month = [], self.start
        while month < self.end:
            out.append(month)
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        return out

    def buckets(self) -> list[date]:
        """Start of every chart bucket: each day, or each week (Monday) clipped to the start."""
        if self.bucket == "day":
            return [self.start + timedelta(days=i) for i in range((self.end - self.start).days)]
        out = [self.start]
        monday = self.start - timedelta(days=self.start.weekday()) + timedelta(days=7)
        while monday < self.end:
            out.append(monday)
            monday += timedelta(days=7)
        return out

    def bucket_of(self, day: date) -> date:
        if self.bucket == "day":
            return day
        return max(self.start, day - timedelta(days=day.weekday()))


def parse_period(text: str) -> Period:
    """``2026`` | ``2026-Q1`` | ``2026-03`` -> Period; ValueError otherwise."""
    value = text.strip()
    for kind, pattern in _PATTERNS:
        match = pattern.fullmatch(value)
        if match:
            year = int(match.group(1))
            if year < 1900 or year > 9998:
                break
            return Period(kind, year, int(match.group(2)) if kind != "year" else 0)
    raise ValueError(
        f"unknown period {text!r}: use a year (2026), quarter (2026-Q1) or month (2026-03)"
    )


@dataclass(frozen=True)
class FiscalLabel:
    """A parsed fiscal label, not yet resolved: ``kind`` is ``year``, ``quarter`` or
    ``period``; ``index`` the quarter (1-4) or period (1-12), 0 for a year."""

    kind: str
    fiscal_year: int
    index: int = 0

    @property
    def label(self) -> str:
        if self.kind == "year":
            return f"FY{self.fiscal_year}"
        if self.kind == "quarter":
            return f"FY{self.fiscal_year}-Q{self.index}"
        return f"FY{self.fiscal_year}-P{self.index:02d}"

    def previous(self) -> FiscalLabel:
        if self.kind == "year":
            return FiscalLabel("year", self.fiscal_year - 1)
        size = 4 if self.kind == "quarter" else 12
        zero_based = self.fiscal_year * size + self.index - 1 - 1
        return FiscalLabel(self.kind, zero_based // size, zero_based % size + 1)

    def year_ago(self) -> FiscalLabel:
        return FiscalLabel(self.kind, self.fiscal_year - 1, self.index)


def parse_label(text: str) -> Period | FiscalLabel:
    """What ``--period`` accepts: a calendar ``Period`` or a ``FiscalLabel`` (resolved later
    against the published ``fiscal_calendar``); ValueError naming the accepted forms.

    >>> parse_label("fy2027-q1"), parse_label("FY2027-P03").label, parse_label("2026-03").label
    (FiscalLabel(kind='quarter', fiscal_year=2027, index=1), 'FY2027-P03', '2026-03')
    """
    value = text.strip()
    match = _FISCAL.fullmatch(value)
    if match:
        if match.group(2):
            return FiscalLabel("quarter", int(match.group(1)), int(match.group(2)))
        if match.group(3):
            return FiscalLabel("period", int(match.group(1)), int(match.group(3)))
        return FiscalLabel("year", int(match.group(1)))
    try:
        return parse_period(value)
    except ValueError:
        raise ValueError(f"unknown period {text!r}: {ACCEPTED}") from None


@dataclass(frozen=True)
class FiscalPeriod:
    """A fiscal year, quarter or period resolved from ``fiscal_calendar``: its days
    ``[start, end)``, its fiscal periods (first day, number) and its comparison periods.

    Behaves like ``Period`` for the reports: chart buckets are days for a fiscal period
    and 7-day fiscal weeks from the first day otherwise; the account-by-month table has
    one column per fiscal period (``P03``).
    """

    kind: str  # year | quarter | period
    fiscal_year: int
    index: int
    start: date
    end: date  # exclusive
    periods: tuple[tuple[date, int], ...] = ()  # (period_start, fiscal_period) inside
    calendar: str = field(default="", compare=False)
    prev: FiscalPeriod | None = field(default=None, compare=False, repr=False)
    ago: FiscalPeriod | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        return FiscalLabel(self.kind, self.fiscal_year, self.index).label

    @property
    def title(self) -> str:
        """``FY2027``, ``FY2027 Q1``, ``FY2027 P03``."""
        return self.label.replace("-", " ")

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    @property
    def span(self) -> str:
        first, last = self.start, self.last_day
        return (
            f"{first.day} {_MONTHS[first.month - 1]} {first.year} – "
            f"{last.day} {_MONTHS[last.month - 1]} {last.year}"
        )

    @property
    def bucket(self) -> str:
        return "day" if self.kind == "period" else "week"

    def previous(self) -> FiscalPeriod:
        assert self.prev is not None, "resolved without its comparison periods"
        return self.prev

    def year_ago(self) -> FiscalPeriod:
        assert self.ago is not None, "resolved without its comparison periods"
        return self.ago

    def months(self) -> list[date]:
        """First day of every fiscal period inside (the account-by-period columns)."""
        return [start for start, _ in self.periods]

    def sub_label(self, month: date) -> str:
        number = dict(self.periods).get(month)
        return f"P{number:02d}" if number is not None else f"{month:%d %b %Y}"

    def buckets(self) -> list[date]:
        days = (self.end - self.start).days
        step = 1 if self.bucket == "day" else 7
        return [self.start + timedelta(days=i) for i in range(0, days, step)]

    def bucket_of(self, day: date) -> date:
        if self.bucket == "day":
            return day
        return self.start + timedelta(days=(day - self.start).days // 7 * 7)


def month_of(day: date) -> Period:
    return Period("month", day.year, day.month)
