"""``--period`` fiscal labels (``FY2027``, ``FY2027-Q1``, ``FY2027-P03``) resolved from the
published ``fiscal_calendar``: months from a February start and a 4-4-5 retail year.

Expected ranges follow from the contract (docs/contract.md, "Fiscal calendars"): years
are named by the calendar year they end in; a 4-4-5 year with a February start ends on
the Saturday nearest January 31 (NRF), its quarters are 4 + 4 + 5 weeks, and a 53-week
year gives its extra week to period 12. Report figures are checked against the
``*_fiscal`` views.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from pipelines.reports.data import ReportData
from pipelines.reports.periods import FiscalLabel, Period, parse_label
from tests.reports.oracle import figures, number

pytestmark = pytest.mark.slow
runner = CliRunner()
D = dt.date


def _run(root: Path, *calendar: str) -> Path:
    db = root / "out" / "revenue.duckdb"
    ran = runner.invoke(
        app,
        [
            "run",
            "--events",
            str(root.parent / "data" / "events"),
            "--reference",
            str(root.parent / "data" / "reference"),
            "--db",
            str(db),
            "--no-checks",
            "--restate-as-of",
            "2026-04-01",
            *calendar,
        ],
    )
    assert ran.exit_code == 0, ran.output
    return db


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fiscal")
    generate_dataset(root / "data", events=3000, seed=11, bad_rate=0.0)
    return {
        "months": _run(root / "months", "--fiscal-year-start-month", "2"),
        "4-4-5": _run(
            root / "retail", "--fiscal-calendar", "4-4-5", "--fiscal-year-start-month", "2"
        ),
    }


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("FY2027", FiscalLabel("year", 2027)),
        ("FY2027-Q1", FiscalLabel("quarter", 2027, 1)),
        ("fy2027-q4", FiscalLabel("quarter", 2027, 4)),
        ("FY2027-P03", FiscalLabel("period", 2027, 3)),
        ("FY2027-P12", FiscalLabel("period", 2027, 12)),
        ("2026-03", Period("month", 2026, 3)),
        ("2026-Q1", Period("quarter", 2026, 1)),
        ("2026", Period("year", 2026)),
    ],
)
def test_period_labels_parse(text, expected):
    assert parse_label(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "FY2027-Q5",
        "FY2027-P13",
        "FY2027-P3",
        "FY27",
        "FY2027-03",
        "2027-P03",
        "FY2027Q1",
        "FY 2027",
        "garbage",
    ],
)
def test_bad_labels_name_the_label_and_the_accepted_forms(text):
    with pytest.raises(ValueError) as error:
        parse_label(text)
    message = str(error.value)
    assert repr(text) in message and "\n" not in message
    for form in ("2026", "2026-Q1", "2026-03", "FY2027", "FY2027-Q1", "FY2027-P03"):
        assert form in message


def test_fiscal_comparison_labels():
    assert FiscalLabel("quarter", 2027, 1).previous() == FiscalLabel("quarter", 2026, 4)
    assert FiscalLabel("period", 2027, 1).previous() == FiscalLabel("period", 2026, 12)
    assert FiscalLabel("period", 2027, 3).year_ago() == FiscalLabel("period", 2026, 3)
    assert FiscalLabel("year", 2027).previous() == FiscalLabel("year", 2027).year_ago()


# ----------------------------------------------------------------------------- ranges


def _resolve(db: Path, text: str):  # noqa: ANN202
    label = parse_label(text)
    assert isinstance(label, FiscalLabel)
    with ReportData(db) as data:
        return data.fiscal_period(label)


@pytest.mark.parametrize(
    "calendar, text, start, end, previous, year_ago, periods",
    [
        # months from February: FY2027 = Feb 2026 - Jan 2027
        (
            "months",
            "FY2027",
            D(2026, 2, 1),
            D(2027, 2, 1),
            (D(2025, 2, 1), D(2026, 2, 1)),
            None,
            12,
        ),
        (
            "months",
            "FY2027-Q1",
            D(2026, 2, 1),
            D(2026, 5, 1),
            (D(2025, 11, 1), D(2026, 2, 1)),
            (D(2025, 2, 1), D(2025, 5, 1)),
            3,
        ),
        (
            "months",
            "FY2027-P03",
            D(2026, 4, 1),
            D(2026, 5, 1),
            (D(2026, 3, 1), D(2026, 4, 1)),
            (D(2025, 4, 1), D(2025, 5, 1)),
            1,
        ),
        (
            "months",
            "FY2026-P12",
            D(2026, 1, 1),
            D(2026, 2, 1),
            (D(2025, 12, 1), D(2026, 1, 1)),
            (D(2025, 1, 1), D(2025, 2, 1)),
            1,
        ),
        # 4-4-5, Saturday nearest January 31: FY2026 ends Sat 2026-01-31, FY2027 Sat 2027-01-30
        (
            "4-4-5",
            "FY2027",
            D(2026, 2, 1),
            D(2027, 1, 31),
            (D(2025, 2, 2), D(2026, 2, 1)),
            None,
            12,
        ),
        (
            "4-4-5",
            "FY2027-Q1",
            D(2026, 2, 1),
            D(2026, 5, 3),
            (D(2025, 11, 2), D(2026, 2, 1)),
            (D(2025, 2, 2), D(2025, 5, 4)),
            3,
        ),
        (
            "4-4-5",
            "FY2027-P01",
            D(2026, 2, 1),
            D(2026, 3, 1),
            (D(2025, 12, 28), D(2026, 2, 1)),
            (D(2025, 2, 2), D(2025, 3, 2)),
            1,
        ),
        (
            "4-4-5",
            "FY2027-P03",
            D(2026, 3, 29),
            D(2026, 5, 3),
            (D(2026, 3, 1), D(2026, 3, 29)),
            (D(2025, 3, 30), D(2025, 5, 4)),
            1,
        ),
        # FY2024 (NRF "fiscal 2023", ending 2024-02-03) has 53 weeks: P12 has 6
        (
            "4-4-5",
            "FY2024-P12",
            D(2023, 12, 24),
            D(2024, 2, 4),
            (D(2023, 11, 26), D(2023, 12, 24)),
            (D(2022, 12, 25), D(2023, 1, 29)),
            1,
        ),
    ],
)
def test_fiscal_labels_resolve_to_the_published_calendar(
    dbs, calendar, text, start, end, previous, year_ago, periods
):
    p = _resolve(dbs[calendar], text)
    assert (p.start, p.end) == (start, end)
    assert (p.previous().start, p.previous().end) == previous
    ago = p.year_ago()
    assert (ago.start, ago.end) == (previous if year_ago is None else year_ago)
    assert len(p.months()) == periods
    assert p.label == text and calendar in p.calendar
    if calendar == "4-4-5" and p.kind != "year":
        assert all(
            (b - a).days % 7 == 0 for a, b in zip(p.months(), [*p.months()[1:], p.end], strict=True)
        )


def test_a_fiscal_period_buckets_by_day_and_longer_ones_by_fiscal_week(dbs):
    period = _resolve(dbs["4-4-5"], "FY2027-P03")
    assert period.bucket == "day" and len(period.buckets()) == 35
    quarter = _resolve(dbs["4-4-5"], "FY2027-Q1")
    weeks = quarter.buckets()
    assert len(weeks) == 13 and weeks[0] == D(2026, 2, 1) and weeks[-1] == D(2026, 4, 26)
    assert quarter.bucket_of(D(2026, 2, 7)) == D(2026, 2, 1)
    assert quarter.bucket_of(D(2026, 2, 8)) == D(2026, 2, 8)
    assert [quarter.sub_label(m) for m in quarter.months()] == ["P01", "P02", "P03"]


# ----------------------------------------------------------------------------- reports


@pytest.mark.parametrize(
    "calendar, text, where",
    [
        ("4-4-5", "FY2027-Q1", "fiscal_year = 2027 AND fiscal_quarter = 1"),
        ("4-4-5", "FY2027-P02", "fiscal_year = 2027 AND fiscal_period = 2"),
        ("4-4-5", "FY2026", "fiscal_year = 2026"),
        ("months", "FY2027-P02", "fiscal_year = 2027 AND fiscal_period = 2"),
    ],
)
@pytest.mark.parametrize("basis", ["as_booked", "restated"])
def test_account_manager_reports_of_a_fiscal_label_equal_the_fiscal_views(
    dbs, calendar, text, where, basis
):
    db = dbs[calendar]
    view = (
        "account_manager_revenue_fiscal"
        if basis == "as_booked"
        else "account_manager_revenue_restated_fiscal"
    )
    with duckdb.connect(str(db), read_only=True) as con:
        expected = dict(
            con.execute(f"""SELECT account_manager_id, sum(booked_revenue)
                                        FROM {view} WHERE {where} GROUP BY 1""").fetchall()
        )
        per_period = {}
        for manager, start, booked in con.execute(f"""
                SELECT account_manager_id, period_start, sum(booked_revenue) FROM {view}
                WHERE {where} GROUP BY ALL""").fetchall():
            per_period[(manager, start)] = booked
    with ReportData(db) as data:
        period = data.fiscal_period(parse_label(text))
        data.prepare(period, basis)
        managers = data.active_account_managers()
        assert managers
        for manager in managers:
            report = data.account_manager_report(manager)
            assert report.current.booked == expected.get(manager, 0), (manager, basis)
            for month in report.months:
                shown = sum((a["months"].get(month, 0) for a in report.accounts), 0)
                assert shown == per_period.get((manager, month), 0), (manager, month)


def test_the_command_writes_a_4_4_5_quarter(dbs, tmp_path):
    db = dbs["4-4-5"]
    result = runner.invoke(
        app, ["report", "--db", str(db), "--out", str(tmp_path), "--period", "FY2027-Q1"]
    )
    assert result.exit_code == 0, result.output
    assert "FY2027-Q1" in result.output and "4-4-5" in result.output
    with duckdb.connect(str(db), read_only=True) as con:
        expected = dict(
            con.execute("""SELECT account_manager_id, sum(booked_revenue)
            FROM account_manager_revenue_fiscal WHERE fiscal_year = 2027 AND fiscal_quarter = 1
            GROUP BY 1""").fetchall()
        )
    pages = sorted((tmp_path / "account_managers").glob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert number(figures(text)["booked"]) == expected.get(page.stem, 0), page.stem
        assert "period FY2027-Q1: 1 Feb 2026 – 2 May 2026" in text
        if number(figures(text)["accounts"]):  # the account-by-period columns
            assert ">P01<" in text and ">P03<" in text
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "FY2027 Q1" in index


@pytest.mark.parametrize(
    "text, says",
    [
        ("FY2027-Q5", "FY2027-Q1"),  # not a label at all: the accepted forms
        ("FY2150", "not in the published fiscal_calendar"),  # a label the calendar lacks
        ("Q1-2026", "FY2027-P03"),
    ],
)
def test_an_unknown_label_is_a_one_line_error(dbs, tmp_path, text, says):
    result = runner.invoke(
        app, ["report", "--db", str(dbs["4-4-5"]), "--out", str(tmp_path), "--period", text]
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert repr(text) in lines[0] and says in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "index.html").exists()
