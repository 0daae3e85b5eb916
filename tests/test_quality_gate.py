"""The data-quality gate end to end: suites at every stage, results stored,
critical failures block publication and exit 1."""

from __future__ import annotations

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from tests.utils import copy_database, edit_published

pytestmark = pytest.mark.slow
runner = CliRunner()
SUITES = {
    "raw_events",
    "enriched_events",
    "territory_revenue",
    "account_manager_revenue",
    "reconciliation",
    "reference",
}


def run_cli(data, db, *extra):
    return runner.invoke(
        app,
        [
            "run",
            "--events",
            str(data / "events"),
            "--reference",
            str(data / "reference"),
            "--db",
            str(db),
            *extra,
        ],
    )


def query(db, sql):
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    data = tmp_path_factory.mktemp("clean")
    generate_dataset(data, events=3000, seed=3, bad_rate=0.01)
    db = data / "out" / "revenue.duckdb"
    result = run_cli(data, db)
    assert result.exit_code == 0, result.output
    return data, db, result.output


def test_a_clean_run_stores_results_of_all_six_suites_and_writes_the_page(clean):
    data, db, output = clean
    suites = {r[0] for r in query(db, "SELECT DISTINCT suite FROM dq_results")}
    assert SUITES <= suites
    assert query(db, "SELECT count(*) FROM dq_results WHERE NOT success") == [(0,)]
    page = (db.parent / "quality.html").read_text()
    assert "reference" in page and "http://" not in page and "https://" not in page
    assert "checks" in output and "0 critical failed" in output


def test_a_critical_reference_failure_keeps_the_published_views_and_exits_1(clean, tmp_path):
    data, published_db, _ = clean
    db = copy_database(published_db, tmp_path / "revenue.duckdb")
    before = query(db, "SELECT * FROM territory_revenue ORDER BY ALL")
    tied = tmp_path / "tied"
    generate_dataset(tied, events=3000, seed=4, rule_tie=True)  # equally specific rules
    result = run_cli(tied, db)
    assert result.exit_code == 1, result.output
    assert "rule_ties_absent" in result.output
    assert query(db, "SELECT * FROM territory_revenue ORDER BY ALL") == before
    assert query(db, "SELECT status FROM pipeline_runs ORDER BY started_at") == [
        ("succeeded",),
        ("failed_checks",),
    ]
    failed = query(db, "SELECT suite, expectation, severity FROM dq_results WHERE NOT success")
    assert ("reference", "rule_ties_absent", "critical") in failed


def test_checks_can_be_turned_off(clean, tmp_path):
    data, _, _ = clean
    db = tmp_path / "revenue.duckdb"
    result = run_cli(data, db, "--no-checks")
    assert result.exit_code == 0, result.output
    assert {r[0] for r in query(db, "SELECT DISTINCT suite FROM dq_results")} == {"publication"}


def test_check_verb_passes_on_the_published_database_and_fails_on_a_tampered_view(clean, tmp_path):
    _, published_db, _ = clean
    assert runner.invoke(app, ["check", "--db", str(published_db)]).exit_code == 0
    db = copy_database(published_db, tmp_path / "revenue.duckdb")
    edit_published(
        db,
        "territory_revenue",
        "UPDATE territory_revenue SET booked_revenue = booked_revenue + 0.01 "
        "WHERE rowid = (SELECT min(rowid) FROM territory_revenue)",
    )
    result = runner.invoke(app, ["check", "--db", str(db)])
    assert result.exit_code == 1
    assert "every_day_balanced" in result.output
