"""The "Split credit" section of the account manager's report (account-team splits).

A generated history with account teams (primary shares and 10% overlays) is run once;
each person's primary and overlay split credit for a period must equal the published
``split_revenue`` view (``split_revenue_restated`` on the restated basis) to the cent,
shown separately, overlay labelled as in addition; the split rows of the CSV must be
exactly the person's rows of ``split_credit`` plus the team-less events of their
accounts; and a team corrected between two runs must not show the earlier split credit
to the person who is no longer on the team (the issue 12 rule, for teams).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from pipelines.reports.data import CSV_COLUMNS, ReportData
from pipelines.reports.periods import parse_period
from tests.reports.histories import History, publish, render_all
from tests.reports.oracle import figures, number, read_csv

pytestmark = pytest.mark.slow
runner = CliRunner()
MARCH = parse_period("2026-03")


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def teams_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("splits")
    generate_dataset(root / "data", events=3000, seed=11, bad_rate=0.0)
    db = root / "out" / "revenue.duckdb"
    ran = runner.invoke(
        app,
        [
            "run",
            "--events",
            str(root / "data" / "events"),
            "--reference",
            str(root / "data" / "reference"),
            "--db",
            str(db),
            "--no-checks",
            "--restate-as-of",
            "2026-04-01",
        ],
    )
    assert ran.exit_code == 0, ran.output
    kinds = {k for (k,) in query(db, "SELECT DISTINCT split_type FROM split_credit")}
    assert kinds == {"primary", "overlay"}
    return db


def _view(db: Path, view: str, start: dt.date, end: dt.date) -> dict[tuple, tuple]:
    return {
        (person, split): (booked, pipeline, events)
        for person, split, booked, pipeline, events in query(
            db,
            f"""
            SELECT person_id, split_type, sum(booked_revenue), sum(pipeline_created),
                   sum(events)
            FROM {view} WHERE day >= ? AND day < ? GROUP BY ALL""",
            [start, end],
        )
    }


@pytest.mark.parametrize(
    "basis, view", [("as_booked", "split_revenue"), ("restated", "split_revenue_restated")]
)
@pytest.mark.parametrize("label", ["2026-03", "2026-Q1"])
def test_split_credit_equals_the_split_revenue_view(teams_db, basis, view, label):
    period = parse_period(label)
    expected = _view(teams_db, view, period.start, period.end)
    with ReportData(teams_db) as data:
        data.prepare(period, basis)
        people = data.active_account_managers()
        # everyone with split credit gets a report, overlay-only specialists too
        assert {p for p, _ in expected if p != "UNASSIGNED"} <= set(people)
        assert any(split == "overlay" for _, split in expected)
        for person in people:
            report = data.account_manager_report(person)
            assert report.has_splits
            for split, shown in (
                ("primary", report.split_primary),
                ("overlay", report.split_overlay),
            ):
                booked, pipeline, events = expected.get((person, split), (0, 0, 0))
                assert (shown.booked, shown.pipeline, shown.events) == (booked, pipeline, events), (
                    person,
                    split,
                    basis,
                )


def test_the_section_shows_overlay_apart_from_primary(teams_db, tmp_path):
    expected = _view(teams_db, "split_revenue", MARCH.start, MARCH.end)
    overlay_only = sorted(
        p for p, s in expected if s == "overlay" and (p, "primary") not in expected
    )
    manager = sorted(p for p, s in expected if s == "primary" and p != "UNASSIGNED")[0]
    assert overlay_only
    for person in (overlay_only[0], manager):
        out = tmp_path / person
        result = runner.invoke(
            app,
            [
                "report",
                "--db",
                str(teams_db),
                "--out",
                str(out),
                "--period",
                "2026-03",
                "--manager",
                person,
            ],
        )
        assert result.exit_code == 0, result.output
        page = (out / "account_managers" / f"{person}.html").read_text(encoding="utf-8")
        shown = figures(page)
        assert "Split credit" in page and "Overlay credit, in addition to primary" in page
        for split in ("primary", "overlay"):
            booked, pipeline, events = expected.get((person, split), (0, 0, 0))
            assert number(shown[f"split_{split}_booked"]) == booked, (person, split)
            assert number(shown[f"split_{split}_pipeline"]) == pipeline
            assert number(shown[f"split_{split}_events"]) == events
        rows = read_csv(out / "account_managers" / f"{person}.csv")
        assert tuple(rows[0]) == CSV_COLUMNS
        for split in ("primary", "overlay"):
            total = sum(
                (Decimal(r["booked_revenue"]) for r in rows if r["scope"] == f"split_{split}"),
                Decimal(0),
            )
            assert total == number(shown[f"split_{split}_booked"]), (person, split)
        # the headline stays the revenue of the person's own accounts
        own = sum(
            (
                Decimal(r["booked_revenue"])
                for r in rows
                if r["scope"] == "account" and r["period_role"] == "current"
            ),
            Decimal(0),
        )
        assert number(shown["booked"]) == own
    assert (
        number(
            figures(
                (
                    tmp_path / overlay_only[0] / "account_managers" / f"{overlay_only[0]}.html"
                ).read_text(encoding="utf-8")
            )["accounts"]
        )
        == 0
    )


def test_split_rows_are_the_persons_published_rows(teams_db):
    """CSV split rows = the person's ``split_credit`` rows of the period, plus the events of
    their accounts without any team row (wholly theirs, 100%)."""
    with ReportData(teams_db) as data:
        data.prepare(MARCH, "as_booked")
        reports = {p: data.account_manager_report(p) for p in data.active_account_managers()}
    column = {name: i for i, name in enumerate(CSV_COLUMNS)}
    for person, report in reports.items():
        shown = sorted(
            (
                row[column["event_id"]],
                row[column["scope"]],
                row[column["split_role"]],
                row[column["split_percent"]],
                row[column["booked_revenue"]],
            )
            for row in report.csv_rows
            if row[column["scope"]].startswith("split_")
        )
        expected = sorted(
            query(
                teams_db,
                """
            SELECT event_id, 'split_' || split_type, role, percent, booked_revenue
            FROM split_credit WHERE person_id = ? AND day >= DATE '2026-03-01'
              AND day < DATE '2026-04-01'
            UNION ALL
            SELECT f.event_id, 'split_primary', 'account_manager', 100, f.booked_revenue
            FROM attributed_events f
            WHERE f.account_manager_id = ? AND f.day >= DATE '2026-03-01'
              AND f.day < DATE '2026-04-01'
              AND f.event_id NOT IN (SELECT event_id FROM split_credit)""",
                [person, person],
            )
        )
        assert shown == expected, person


# ----------------------------------------------------------------------------- a corrected team


def _reference(splits: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    people = ("AM-1", "AM-2", "SP-1", "TM-1")
    return {
        "territories": [
            {"territory_id": "T-ROOT", "territory_name": "World", "level": "global"},
            {
                "territory_id": "T-US",
                "territory_name": "United States",
                "parent_territory_id": "T-ROOT",
                "level": "country",
            },
        ],
        "territory_rules": [{"territory_id": "T-US", "country": "US"}],
        "territory_managers": [{"territory_id": "T-US", "manager_id": "TM-1"}],
        "people": [
            {
                "person_id": p,
                "name": f"Person {p}",
                "email": f"{p.lower()}@example.com",
                "role": "account_manager",
            }
            for p in people
        ],
        "accounts": [
            {"account_id": f"ACC-{i}X", "account_name": f"Firm-{i}-Ltd", "country": "US"}
            for i in (1, 2)
        ],
        "account_assignments": [
            {"account_id": "ACC-1X", "account_manager_id": "AM-1"},
            {"account_id": "ACC-2X", "account_manager_id": "AM-2"},
        ],
        "account_splits": splits,
        "fx_rates": [{"currency": "USD", "rate_date": "2020-01-01", "rate_to_reporting": "1"}],
    }


def _events(prefix: str, account: str, amounts: list[str]) -> list[dict[str, str]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "event_type": "deal_won",
            "event_time": f"2026-03-{10 + i:02d}T10:00:00Z",
            "deal_id": f"D-{prefix}-{i}",
            "account_id": account,
            "amount": amount,
            "currency": "USD",
        }
        for i, amount in enumerate(amounts)
    ]


def test_a_corrected_team_leaks_no_split_credit_to_a_former_member(tmp_path):
    """Run 1: SP-1 has an overlay on ACC-1X and ACC-2X; run 2 corrects the team of ACC-1X
    (SP-1 was never on it). SP-1's report keeps ACC-2X and shows nothing of ACC-1X."""
    overlay_2 = {
        "account_id": "ACC-2X",
        "person_id": "SP-1",
        "role": "specialist",
        "split_type": "overlay",
        "percent": "10",
    }
    first = _reference(
        [
            {
                "account_id": "ACC-1X",
                "person_id": "SP-1",
                "role": "specialist",
                "split_type": "overlay",
                "percent": "10",
            },
            overlay_2,
        ]
    )
    early = _events("R0", "ACC-1X", ["7123456.70", "7234567.80"])
    publish(tmp_path / "data", History(first, [*early, *_events("R0B", "ACC-2X", ["55500.00"])]))
    db = publish(
        tmp_path / "data", History(_reference([overlay_2]), _events("R1", "ACC-2X", ["66600.00"]))
    )
    published = query(
        db, "SELECT count(*) FROM split_credit WHERE person_id = 'SP-1' AND account_id = 'ACC-1X'"
    )[0][0]
    assert published == 2  # frozen as published by the first run
    seen = render_all(db, tmp_path / "reports", MARCH)
    text = seen[("account_manager", "SP-1")]
    assert "ACC-1X" not in text and "Firm-1-Ltd" not in text
    for amount in ("712345.67", "723456.78", "712,345.67", "723,456.78"):  # their 10%
        assert amount not in text
    assert "ACC-2X" in text and "5550.00" in text and "6660.00" in text  # both runs' rows
    assert "12,210.00" in text  # the overlay credit: 10% of 55,500 + 66,600
    assert "ACC-1X" in seen[("account_manager", "AM-1")]
