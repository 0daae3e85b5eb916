"""Reports on both bases (``--basis as_booked|restated``) after a realignment.

One generated history (January to March 2026) is run once, with its restated basis as of
2026-04-01; its reports are written; then three accounts that had March events are moved
to another account manager from 2026-04-01 and ``revattr restate`` publishes that
snapshot as of 2026-04-01 (the booked facts do not change). The restated reports must
then equal the published ``*_restated`` views to the cent, list the moved accounts as
moved in (new manager) and moved out (old manager) with the amounts of
``restatement_moves``, and restated = booked + moved in - moved out for every manager;
the booked reports must be byte for byte what they were before the restatement.
Expected numbers come from the published views, queried here, never from the reports'
SQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from pipelines.reports.data import RESTATED_CSV_COLUMNS, ReportData
from pipelines.reports.periods import parse_label, parse_period
from pipelines.reports.render import write_reports
from tests.reports.oracle import figures, number, read_csv

pytestmark = pytest.mark.slow
runner = CliRunner()
AS_OF = "2026-04-01"
MARCH = parse_period("2026-03")
NOW = dt.datetime(2026, 4, 2, tzinfo=dt.UTC)
VIEW_MEASURES = {  # report measure -> view column
    "booked": "booked_revenue",
    "pipeline": "pipeline_created",
    "net_won": "won_deals",
    "lost": "lost_deals",
    "created": "created_deals",
    "refunds": "refunds",
}


@dataclass
class Realigned:
    db: Path
    moved: dict[str, tuple[str, str]]  # account -> (old manager, new manager)
    before: Path  # booked reports written before the restatement
    root: Path


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        return con.execute(sql, params or []).fetchall()


def _realign(reference: Path, target: Path, accounts: list[str]) -> dict[str, tuple[str, str]]:
    """A copy of ``reference`` where ``accounts`` change manager on AS_OF."""
    shutil.copytree(reference, target)
    path = target / "account_assignments.csv"
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    managers = sorted({r["account_manager_id"] for r in rows})
    moved, out = {}, []
    for row in rows:
        if row["account_id"] in accounts and not row["valid_to"]:
            new = next(m for m in managers if m != row["account_manager_id"])
            moved[row["account_id"]] = (row["account_manager_id"], new)
            out.append({**row, "valid_to": AS_OF})
            out.append({**row, "account_manager_id": new, "valid_from": AS_OF})
        else:
            out.append(row)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(out)
    return moved


@pytest.fixture(scope="module")
def realigned(tmp_path_factory: pytest.TempPathFactory) -> Realigned:
    root = tmp_path_factory.mktemp("bases")
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
            AS_OF,
        ],
    )
    assert ran.exit_code == 0, ran.output
    write_reports(db, root / "before", MARCH, now=NOW)
    # The three accounts with the most March events among those with an open assignment.
    busiest = [
        a
        for (a,) in query(
            db,
            """
        SELECT e.account_id FROM attributed_events e
        JOIN account_assignments s ON s.account_id = e.account_id AND s.valid_to IS NULL
        WHERE e.day >= DATE '2026-03-01' GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 3""",
        )
    ]
    moved = _realign(root / "data" / "reference", root / "realigned", busiest)
    assert len(moved) == 3
    done = runner.invoke(
        app, ["restate", "--reference", str(root / "realigned"), "--db", str(db), "--as-of", AS_OF]
    )
    assert done.exit_code == 0, done.output
    return Realigned(db, moved, root / "before", root)


def _view_totals(
    db: Path, view: str, key: str, manager: str, start: dt.date, end: dt.date
) -> dict[str, Decimal]:
    columns = ", ".join(f"coalesce(sum({c}), 0)" for c in VIEW_MEASURES.values())
    row = query(
        db,
        f"SELECT {columns} FROM {view} WHERE {key} = ? AND day >= ? AND day < ?",
        [manager, start, end],
    )[0]
    return dict(zip(VIEW_MEASURES, row, strict=True))


def _reports(db: Path, period, basis: str, kind: str) -> dict:  # noqa: ANN001
    with ReportData(db) as data:
        if not hasattr(period, "start"):
            period = data.fiscal_period(period)
        data.prepare(period, basis)
        managers = (
            data.active_account_managers()
            if kind == "account_manager"
            else data.active_territory_managers()
        )
        build = (
            data.account_manager_report
            if kind == "account_manager"
            else data.territory_manager_report
        )
        return {m: build(m) for m in managers}


# ----------------------------------------------------------------------------- account managers


@pytest.mark.parametrize("label", ["2026-03", "2026-Q1", "FY2026-P02"])
def test_restated_account_manager_reports_equal_the_restated_view(realigned, label):
    db = realigned.db
    reports = _reports(db, parse_label(label), "restated", "account_manager")
    holders = {
        m
        for (m,) in query(
            db,
            """SELECT DISTINCT account_manager_id
        FROM restated_attribution WHERE account_manager_id <> 'UNASSIGNED'
        UNION SELECT person_id FROM restated_splits WHERE person_id IS NOT NULL""",
        )
    }
    # whoever holds an account (or is on its team) on AS_OF, whatever the period
    assert set(reports) == holders
    for new in {new for _old, new in realigned.moved.values()}:
        assert new in reports
    for manager, report in reports.items():
        period = report.period
        expected = _view_totals(
            db,
            "account_manager_revenue_restated",
            "account_manager_id",
            manager,
            period.start,
            period.end,
        )
        for name, value in expected.items():
            assert getattr(report.current, name) == value, (label, manager, name)
        previous = report.comparison("previous")
        assert (
            previous.measures.booked
            == _view_totals(
                db,
                "account_manager_revenue_restated",
                "account_manager_id",
                manager,
                previous.period.start,
                previous.period.end,
            )["booked"]
        ), (label, manager)
        assert report.basis == "restated" and report.as_of == dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    if label.startswith("FY"):  # and the fiscal view of the restated basis agrees
        for manager, report in reports.items():
            (booked,) = query(
                db,
                """SELECT coalesce(sum(booked_revenue), 0)
                FROM account_manager_revenue_restated_fiscal
                WHERE account_manager_id = ? AND fiscal_year = 2026 AND fiscal_period = 2""",
                [manager],
            )[0]
            assert report.current.booked == booked, manager


def test_moves_of_a_whole_year_are_the_restatement_moves_view(realigned):
    """Every event is in 2026, so the year's moves are all of ``restatement_moves``."""
    db = realigned.db
    assert query(
        db,
        "SELECT min(day) >= DATE '2026-01-01', max(day) < DATE '2027-01-01' FROM attributed_events",
    )[0] == (True, True)
    reports = _reports(db, parse_period("2026"), "restated", "account_manager")
    for manager, report in reports.items():
        shown = sorted(
            (
                m["direction"],
                m["account_id"],
                m["other_manager_id"],
                m["events"],
                m["booked"],
                m["pipeline"],
            )
            for m in report.moves
        )
        expected = sorted(
            query(
                db,
                """
            SELECT direction, account_id, other_manager_id, events, booked_revenue,
                   pipeline_created
            FROM restatement_moves WHERE kind = 'account_manager' AND manager_id = ?""",
                [manager],
            )
        )
        assert shown == expected, manager
    for account, (old, new) in realigned.moved.items():
        moved_in = [
            m
            for m in reports[new].moves
            if m["account_id"] == account and m["direction"] == "moved_in"
        ]
        assert [m["other_manager_id"] for m in moved_in] == [old]
        moved_out = [
            m
            for m in reports[old].moves
            if m["account_id"] == account and m["direction"] == "moved_out"
        ]
        assert [m["other_manager_id"] for m in moved_out] == [new]


def test_march_moves_equal_the_facts_credited_on_each_basis(realigned):
    """A month's moves: the facts of March whose booked and restated credit differ."""
    db = realigned.db
    expected = defaultdict(lambda: [0, Decimal(0)])
    for booked_to, restated_to, account, booked in query(
        db,
        """
            SELECT f.account_manager_id, coalesce(r.account_manager_id, 'UNASSIGNED'),
                   f.account_id, f.booked_revenue
            FROM attributed_events f LEFT JOIN restated_attribution r USING (account_id)
            WHERE f.day >= DATE '2026-03-01' AND f.day < DATE '2026-04-01'
              AND f.account_manager_id <> coalesce(r.account_manager_id, 'UNASSIGNED')""",
    ):
        for key in (
            (booked_to, "moved_out", account, restated_to),
            (restated_to, "moved_in", account, booked_to),
        ):
            expected[key][0] += 1
            expected[key][1] += booked
    reports = _reports(db, MARCH, "restated", "account_manager")
    shown = {
        (manager, m["direction"], m["account_id"], m["other_manager_id"]): [
            m["events"],
            m["booked"],
        ]
        for manager, r in reports.items()
        for m in r.moves
    }
    assert shown == {k: v for k, v in expected.items() if k[0] in reports}
    for account, (old, new) in realigned.moved.items():
        assert (new, "moved_in", account, old) in shown
        assert (old, "moved_out", account, new) in shown


@pytest.mark.parametrize("kind", ["account_manager", "territory_manager"])
def test_restated_is_booked_plus_moved_in_minus_moved_out(realigned, kind):
    booked = _reports(realigned.db, MARCH, "as_booked", kind)
    restated = _reports(realigned.db, MARCH, "restated", kind)
    both = set(booked) & set(restated)
    assert both
    for manager in both:
        r, b = restated[manager], booked[manager]
        assert r.booked_basis == b.current.booked, manager
        assert r.current.booked == b.current.booked + r.moved_in.booked - r.moved_out.booked
        assert r.current.events == b.current.events + r.moved_in.events - r.moved_out.events
        assert b.moves == [] and b.basis == "as_booked"


# ----------------------------------------------------------------------------- territory managers


def test_restated_territory_manager_reports_equal_the_restated_views(realigned):
    db = realigned.db
    parent = dict(query(db, "SELECT territory_id, parent_territory_id FROM territories"))

    def ancestors(territory: str) -> set[str]:
        out = set()
        while territory is not None and territory not in out:
            out.add(territory)
            territory = parent.get(territory)
        return out

    managed = defaultdict(set)
    for territory, manager in query(
        db,
        """SELECT territory_id, manager_id
            FROM territory_managers
            WHERE (valid_from IS NULL OR valid_from <= TIMESTAMPTZ '2026-04-01 00:00:00+00')
              AND (valid_to IS NULL OR TIMESTAMPTZ '2026-04-01 00:00:00+00' < valid_to)""",
    ):
        managed[manager].add(territory)
    leaves = query(
        db,
        """SELECT territory_id, sum(booked_revenue) FROM territory_revenue_restated
                          WHERE day >= DATE '2026-03-01' AND day < DATE '2026-04-01'
                          GROUP BY 1""",
    )
    credited = dict(
        query(
            db,
            """
        SELECT coalesce(r.territory_manager_id, 'UNASSIGNED'), sum(f.booked_revenue)
        FROM attributed_events f LEFT JOIN restated_attribution r USING (account_id)
        WHERE f.day >= DATE '2026-03-01' AND f.day < DATE '2026-04-01' GROUP BY 1""",
        )
    )
    reports = _reports(db, MARCH, "restated", "territory_manager")
    assert set(reports) == set(managed)
    for manager, report in reports.items():
        expected = sum((b for t, b in leaves if ancestors(t) & managed[manager]), Decimal(0))
        assert report.current.booked == expected, manager
        assert report.credited == credited.get(manager, Decimal(0)), manager


# ----------------------------------------------------------------------------- what is written


def test_the_booked_reports_are_unchanged_by_the_restatement(realigned, tmp_path):
    after = tmp_path / "after"
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(realigned.db),
            "--out",
            str(after),
            "--period",
            "2026-03",
            "--basis",
            "as_booked",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "as_booked basis" in result.output
    before = sorted(p.relative_to(realigned.before) for p in realigned.before.glob("*/*.csv"))
    assert before == sorted(p.relative_to(after) for p in after.glob("*/*.csv"))
    for path in before:
        assert (after / path).read_bytes() == (realigned.before / path).read_bytes(), path
        page = (after / path).with_suffix(".html").read_text(encoding="utf-8")
        assert figures(page)["basis"] == "as_booked basis"
        assert "Moved in / moved out" not in page
    # the default basis is as_booked
    manager = sorted(realigned.moved.values())[0][0]
    default = tmp_path / "default"
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(realigned.db),
            "--out",
            str(default),
            "--period",
            "2026-03",
            "--manager",
            manager,
        ],
    )
    assert result.exit_code == 0, result.output
    path = Path("account_managers") / f"{manager}.csv"
    assert (default / path).read_bytes() == (after / path).read_bytes()


def test_a_restated_report_states_its_basis_and_lists_the_moves(realigned, tmp_path):
    db = realigned.db
    account, (old, new) = sorted(realigned.moved.items())[0]
    names = dict(query(db, "SELECT person_id, name FROM people"))
    (account_name,) = query(
        db, "SELECT account_name FROM accounts WHERE account_id = ?", [account]
    )[0]
    for manager, direction, other in ((new, "moved in", old), (old, "moved out", new)):
        out = tmp_path / manager
        result = runner.invoke(
            app,
            [
                "report",
                "--db",
                str(db),
                "--out",
                str(out),
                "--period",
                "2026-03",
                "--basis",
                "restated",
                "--manager",
                manager,
            ],
        )
        assert result.exit_code == 0, result.output
        assert "restated basis, as of 1 Apr 2026" in result.output
        page = (out / "account_managers" / f"{manager}.html").read_text(encoding="utf-8")
        shown = figures(page)
        assert shown["basis"] == "restated basis, as of 1 Apr 2026"
        assert "Moved in / moved out" in page and account in page
        assert names[other] in page and direction in page
        rows = read_csv(out / "account_managers" / f"{manager}.csv")
        assert tuple(rows[0]) == RESTATED_CSV_COLUMNS
        current = [r for r in rows if r["period_role"] == "current"]

        def total(scope: str, rows: list[dict] = current) -> Decimal:
            return sum(
                (Decimal(r["booked_revenue"]) for r in rows if r["scope"] == scope), Decimal(0)
            )

        assert number(shown["booked"]) == total("account")
        assert number(shown["moved_in_booked"]) == total("moved_in")
        assert number(shown["moved_out_booked"]) == total("moved_out")
        assert number(shown["booked_basis"]) == (
            total("account") - total("moved_in") + total("moved_out")
        )
        scope = "moved_in" if manager == new else "moved_out"
        moved_rows = [r for r in current if r["scope"] == scope and r["account_id"] == account]
        assert moved_rows and {r["other_manager_id"] for r in moved_rows} == {other}
        assert {r["account_name"] for r in moved_rows} == {account_name}
        # the restated credit is in the credit columns
        assert {r["account_manager_id"] for r in moved_rows} == {new}
        (expected,) = query(
            db,
            """SELECT sum(booked_revenue) FROM account_manager_revenue_restated
            WHERE account_manager_id = ? AND day >= DATE '2026-03-01'
              AND day < DATE '2026-04-01'""",
            [manager],
        )[0]
        assert number(shown["booked"]) == expected


def test_an_unknown_basis_is_refused(realigned, tmp_path):
    result = runner.invoke(
        app, ["report", "--db", str(realigned.db), "--out", str(tmp_path), "--basis", "as_restated"]
    )
    assert result.exit_code == 2
    assert "as_booked" in result.output and "restated" in result.output
