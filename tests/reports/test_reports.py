"""Manager reports end to end: layout, figures against independent computations,
scoping (a report holds only its manager's rows) and the command's exit codes."""

from __future__ import annotations

import html
import re
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.reports.data import CSV_COLUMNS
from pipelines.reports.periods import parse_period
from tests.reports.conftest import PERIOD
from tests.reports.oracle import Oracle, figures, measures, number, read_csv

pytestmark = pytest.mark.slow
runner = CliRunner()
P = parse_period(PERIOD)
FIGURES = (
    "events",
    "booked",
    "pipeline",
    "created",
    "won_events",
    "net_won",
    "lost",
    "refunds",
    "refund_count",
    "reopens",
    "reopened",
)


def _reports(report_dir: Path, folder: str) -> dict[str, Path]:
    return {p.stem: p for p in sorted((report_dir / folder).glob("*.html"))}


def _check_figures(page: str, expected: dict[str, Decimal], where: str) -> None:
    shown = figures(page)
    for name in FIGURES:
        assert number(shown[name]) == expected[name], f"{where}: {name}"
    decided = expected["won_events"] + expected["lost"]
    if decided:
        rate = (expected["won_events"] / decided * 100).quantize(Decimal("0.1"))
        assert number(shown["win_rate"]) == rate, where
    else:
        assert shown["win_rate"] == "—"


def _csv_sum(rows: list[dict], column: str, role: str, scope: str) -> Decimal:
    return sum(
        (Decimal(r[column]) for r in rows if r["period_role"] == role and r["scope"] == scope),
        Decimal(0),
    )


# ----------------------------------------------------------------------------- layout


def test_every_active_manager_gets_an_html_and_a_csv_linked_from_the_index(report_dir, oracle):
    tms = _reports(report_dir, "territory_managers")
    ams = _reports(report_dir, "account_managers")
    assert set(tms) == oracle.active_territory_managers(P.start, P.end)
    assert set(ams) == oracle.active_account_managers(P.start, P.end)
    index = (report_dir / "index.html").read_text(encoding="utf-8")
    for folder, pages in (("territory_managers", tms), ("account_managers", ams)):
        for person_id, page in pages.items():
            assert page.with_suffix(".csv").is_file()
            assert f'href="{folder}/{person_id}.html"' in index
            assert f'href="{folder}/{person_id}.csv"' in index
    assert {p.name for p in report_dir.iterdir()} == {
        "index.html",
        "territory_managers",
        "account_managers",
    }


def test_pages_are_self_contained(report_dir):
    for page in [report_dir / "index.html", *report_dir.glob("*/*.html")]:
        text = page.read_text(encoding="utf-8")
        assert "<script" not in text.lower()
        assert not re.search(r'(src|href)="(https?:)?//', text), page  # nothing fetched
        assert "Content-Security-Policy" in text
    sample = next(report_dir.glob("territory_managers/*.html")).read_text(encoding="utf-8")
    assert sample.count('src="data:image/svg+xml;base64,') == 2  # both charts inline


def test_csv_header_is_the_documented_one(report_dir):
    for path in report_dir.glob("*/*.csv"):
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
        header = path.read_bytes().decode("utf-8-sig").split("\r\n", 1)[0]
        assert header.split(",") == list(CSV_COLUMNS)


# ----------------------------------------------------------------------------- figures


def test_territory_manager_figures_equal_an_independent_computation(report_dir, oracle):
    checked = 0
    for person_id, page_path in _reports(report_dir, "territory_managers").items():
        page = page_path.read_text(encoding="utf-8")
        scope = oracle.territory_scope(person_id, P.start, P.end)
        expected = measures(scope)
        _check_figures(page, expected, person_id)
        shown = figures(page)
        credited = sum((e.booked for e in scope if e.territory_manager_id == person_id), Decimal(0))
        assert number(shown["credited"]) == credited, person_id
        assert number(shown["accounts"]) == len({e.account_id for e in scope})
        no_am = [e for e in scope if e.account_manager_id == "UNASSIGNED"]
        assert number(shown["no_account_manager_booked"]) == measures(no_am)["booked"]
        nearby = oracle.unassigned_nearby(person_id, P.start, P.end)
        assert number(shown["unassigned_booked"]) == measures(nearby)["booked"], person_id
        assert number(shown["unassigned_events"]) == len(nearby)
        previous = oracle.territory_scope(person_id, P.previous().start, P.previous().end)
        assert number(shown["previous_booked"]) == measures(previous)["booked"], person_id
        assert number(shown["previous_won_events"]) == measures(previous)["won_events"]
        year_ago = oracle.territory_scope(person_id, P.year_ago().start, P.year_ago().end)
        assert number(shown["year_ago_booked"]) == measures(year_ago)["booked"]

        rows = read_csv(page_path.with_suffix(".csv"))
        assert _csv_sum(rows, "booked_revenue", "current", "territory") == expected["booked"]
        assert _csv_sum(rows, "refunds", "current", "territory") == expected["refunds"]
        checked += bool(scope)
    assert checked >= 10


def test_territory_figures_equal_the_rollup_view_for_a_whole_period_manager(report_dir, oracle):
    """A manager of one territory for the whole period sees exactly the rollup view's figure."""
    whole = {}
    for territory, manager, valid_from, valid_to in oracle.tenures:
        rows = [t for t in oracle.tenures if t[1] == manager]
        start = P.start.isoformat()
        covers = (valid_from is None or valid_from.date().isoformat() <= start) and (
            valid_to is None or valid_to.date() >= P.end
        )
        if len(rows) == 1 and covers:
            whole[manager] = territory
    assert len(whole) >= 5
    for manager, territory in whole.items():
        page = (report_dir / "territory_managers" / f"{manager}.html").read_text(encoding="utf-8")
        assert number(figures(page)["booked"]) == oracle.rollup_booked(territory, P.start, P.end)


def test_account_manager_figures_equal_the_account_manager_view(report_dir, oracle):
    pages = _reports(report_dir, "account_managers")
    assert pages
    for person_id, page_path in pages.items():
        page = page_path.read_text(encoding="utf-8")
        scope = oracle.account_scope(person_id, P.start, P.end)
        expected = measures(scope)
        _check_figures(page, expected, person_id)
        view = oracle.am_view_totals(person_id, P.start, P.end)
        shown = figures(page)
        for name in ("booked", "pipeline", "net_won", "lost", "created", "refunds"):
            assert number(shown[name]) == view[name], f"{person_id}: {name} vs the view"
        assert number(shown["accounts"]) == len(oracle.assigned_accounts(person_id, P.start, P.end))
        previous = oracle.account_scope(person_id, P.previous().start, P.previous().end)
        assert number(shown["previous_booked"]) == measures(previous)["booked"]
        rows = read_csv(page_path.with_suffix(".csv"))
        assert _csv_sum(rows, "booked_revenue", "current", "account") == view["booked"]
        assert _csv_sum(rows, "pipeline_created", "current", "account") == view["pipeline"]


# ----------------------------------------------------------------------------- scoping


def _expected_rows(oracle: Oracle, kind: str, person_id: str) -> set[tuple[str, str, str]]:
    out = set()
    for role, period in (("current", P), ("previous", P.previous()), ("year_ago", P.year_ago())):
        if kind == "territory_managers":
            out |= {
                (role, "territory", e.event_id)
                for e in oracle.territory_scope(person_id, period.start, period.end)
            }
            out |= {
                (role, "unassigned_nearby", e.event_id)
                for e in oracle.unassigned_nearby(person_id, period.start, period.end)
            }
        else:
            out |= {
                (role, "account", e.event_id)
                for e in oracle.account_scope(person_id, period.start, period.end)
            }
    if kind == "account_managers":  # split credit: the current period only
        out |= {
            ("current", f"split_{split_type}", event_id)
            for event_id, split_type in oracle.split_scope(person_id, P.start, P.end)
        }
    return out


@pytest.mark.parametrize("folder", ["territory_managers", "account_managers"])
def test_a_report_holds_only_its_managers_rows_and_accounts(report_dir, oracle, folder):
    names = {account_id: name for account_id, (name, _country) in oracle.accounts.items()}
    for person_id, page_path in _reports(report_dir, folder).items():
        rows = read_csv(page_path.with_suffix(".csv"))
        got = {(r["period_role"], r["scope"], r["event_id"]) for r in rows}
        assert got == _expected_rows(oracle, folder, person_id), person_id
        allowed = {r["account_id"] for r in rows}
        if folder == "account_managers":
            allowed |= oracle.assigned_accounts(person_id, P.start, P.end)
            assert {r["account_manager_id"] for r in rows if r["scope"] == "account"} <= {person_id}
        allowed_names = {names[a] for a in allowed if a in names}
        forbidden = {
            name
            for a, name in names.items()
            if a not in allowed and not any(name in ok for ok in allowed_names)
        }
        page = page_path.read_text(encoding="utf-8")
        csv_text = page_path.with_suffix(".csv").read_bytes().decode("utf-8-sig")
        for name in forbidden:
            assert html.escape(name) not in page, f"{person_id}: {name} leaked into the page"
            assert name not in csv_text, f"{person_id}: {name} leaked into the CSV"
        outside = {a for a in names if a not in allowed}
        for account_id in outside:
            assert f">{account_id}<" not in page and f",{account_id}," not in csv_text


def test_a_quarter_report_for_one_manager(published_db, oracle, tmp_path):
    quarter = parse_period("2026-Q1")
    manager = max(
        oracle.active_territory_managers(quarter.start, quarter.end),
        key=lambda m: len(oracle.territory_scope(m, quarter.start, quarter.end)),
    )
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(published_db),
            "--out",
            str(tmp_path),
            "--period",
            "2026-Q1",
            "--manager",
            manager,
        ],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in tmp_path.glob("*/*")} == {f"{manager}.html", f"{manager}.csv"}
    page = (tmp_path / "territory_managers" / f"{manager}.html").read_text(encoding="utf-8")
    _check_figures(
        page, measures(oracle.territory_scope(manager, quarter.start, quarter.end)), manager
    )
    assert "Booked revenue by week" in page
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert index.count('.html">HTML</a>') == 1


# ----------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    "args, message",
    [
        (["--period", "2026-13"], "unknown period"),
        (["--period", "Q1"], "unknown period"),
        (["--manager", "P-nobody"], "neither a territory manager nor an account manager"),
    ],
)
def test_bad_usage_exits_2_with_one_line(published_db, tmp_path, args, message):
    result = runner.invoke(
        app, ["report", "--db", str(published_db), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 2
    assert message in result.output


def test_a_missing_database_exits_2(tmp_path):
    result = runner.invoke(
        app, ["report", "--db", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "no such database" in result.output


def test_dry_run_lists_who_would_get_what_and_sends_nothing(published_db, report_dir, tmp_path):
    manager = sorted(_reports(report_dir, "account_managers"))[0]
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(published_db),
            "--out",
            str(tmp_path),
            "--manager",
            manager,
            "--dry-run",
            "--smtp-port",
            "9",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "would send" in result.output
    assert f"{manager}.html, {manager}.csv" in result.output
    assert "@example.com" in result.output
