"""Fiscal calendars published: ``fiscal_calendar`` and the ``*_fiscal`` views of both bases."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from pipelines.rules.fiscal_calendar import FiscalCalendar

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("fiscal")
    generate_dataset(root, events=3000, seed=9)
    return root


def run(data, db, *flags: str) -> None:
    done = runner.invoke(app, ["run", "--events", str(data / "events"), "--reference",
                               str(data / "reference"), "--db", str(db), "--no-checks", *flags])
    assert done.exit_code == 0, done.output


@pytest.mark.parametrize("kind", ["4-4-5", "5-4-4"])
def test_a_retail_calendar_groups_both_bases_by_its_periods_to_the_cent(data, tmp_path, kind):
    db = tmp_path / "revenue.duckdb"
    run(data, db, "--fiscal-calendar", kind, "--fiscal-year-start-month", "2",
        "--fiscal-week-end", "sunday")
    calendar = FiscalCalendar(kind, 2, "sunday")
    with duckdb.connect(str(db), read_only=True) as con:
        published = con.sql("SELECT * FROM fiscal_calendar ORDER BY day").to_arrow_table()
        assert published.to_pylist() == calendar.days().to_pylist()
        facts = con.execute("""SELECT c.fiscal_year, c.fiscal_period, sum(f.booked_revenue)
            FROM attributed_events f JOIN fiscal_calendar c USING (day)
            GROUP BY ALL ORDER BY ALL""").fetchall()
        for view in ("account_manager_revenue_fiscal", "territory_revenue_restated_fiscal"):
            assert con.execute(f"""SELECT fiscal_year, fiscal_period, sum(booked_revenue)
                FROM {view} GROUP BY ALL ORDER BY ALL""").fetchall() == facts
        starts = {r[0].weekday() for r in con.execute(
            "SELECT DISTINCT period_start FROM account_manager_revenue_fiscal").fetchall()}
    assert starts == {0}  # weeks end on Sunday: periods start on Monday


def test_changing_the_calendar_republishes_it(data, tmp_path):
    db = tmp_path / "revenue.duckdb"
    run(data, db)
    run(data, db, "--fiscal-calendar", "4-5-4")  # same events: all duplicates
    with duckdb.connect(str(db), read_only=True) as con:
        labels = con.execute("SELECT DISTINCT calendar FROM fiscal_calendar").fetchall()
        first = con.execute("SELECT min(period_start) FROM account_manager_revenue_fiscal "
                            "WHERE fiscal_year = 2026").fetchone()[0]
    assert labels == [(FiscalCalendar("4-5-4").label,)]
    assert first == FiscalCalendar("4-5-4").year_start(2026) != dt.date(2026, 1, 1)
