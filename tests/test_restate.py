"""Two bases: a realignment restates every published event without reading it again.

Run once (booked basis frozen as of each event's time), then realign: three accounts
move to another manager from 2026-03-01, and ``revattr restate`` publishes that snapshot
as of 2026-04-01 (territory managers move too: the snapshot's dated territory manager
rows are taken at that date, not at each event's time). The booked views must not change; the
restated views must reconcile to the cent, credit the moved accounts to their new
managers, and ``restatement_moves`` must explain the difference for every manager.
"""

from __future__ import annotations

import csv
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset

pytestmark = pytest.mark.slow
runner = CliRunner()
MOVED = ("ACC-000002", "ACC-000003", "ACC-000004")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _write(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def realign(reference: Path, target: Path) -> dict[str, str]:
    """A copy of ``reference`` where MOVED change manager on 2026-03-01; returns
    account -> its new manager."""
    shutil.copytree(reference, target)
    rows = _rows(target / "account_assignments.csv")
    managers = sorted({r["account_manager_id"] for r in rows})
    moved: dict[str, str] = {}
    out = []
    for row in rows:
        if row["account_id"] in MOVED and not row["valid_to"]:
            new = next(m for m in managers if m != row["account_manager_id"])
            moved[row["account_id"]] = new
            out.append({**row, "valid_to": "2026-03-01"})
            out.append({**row, "account_manager_id": new, "valid_from": "2026-03-01"})
        else:
            out.append(row)
    _write(target / "account_assignments.csv", out)
    return moved


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def restated(tmp_path_factory) -> tuple[Path, dict[str, str], list[tuple]]:
    root = tmp_path_factory.mktemp("restate")
    generate_dataset(root / "data", events=6000, seed=5)
    db = root / "out" / "revenue.duckdb"
    ran = runner.invoke(app, ["run", "--events", str(root / "data" / "events"), "--reference",
                              str(root / "data" / "reference"), "--db", str(db), "--no-checks",
                              "--restate-as-of", "2026-01-01"])
    assert ran.exit_code == 0, ran.output
    booked = query(db, "SELECT * FROM account_manager_revenue ORDER BY ALL")
    moved = realign(root / "data" / "reference", root / "realigned")
    shutil.rmtree(root / "data" / "events")  # restating never reads an event
    done = runner.invoke(app, ["restate", "--reference", str(root / "realigned"), "--db", str(db),
                               "--as-of", "2026-04-01"])
    assert done.exit_code == 0, done.output
    assert "Restated as of 2026-04-01" in done.output
    return db, moved, booked


def test_the_booked_basis_does_not_change(restated):
    db, _, booked = restated
    assert query(db, "SELECT * FROM account_manager_revenue ORDER BY ALL") == booked
    assert query(db, "SELECT mode, input_records, status FROM pipeline_runs ORDER BY started_at"
                 ) == [("batch", 6000, "succeeded"), ("restate", 0, "succeeded")]


def test_both_bases_reconcile_to_the_cent_every_day(restated):
    db, _, _ = restated
    for view in ("reconciliation", "reconciliation_restated"):
        assert query(db, f"SELECT count(*), bool_and(balanced) FROM {view}")[0][1] is True
    facts = query(db, "SELECT sum(booked_revenue) FROM attributed_events")[0][0]
    for view in ("account_manager_revenue", "account_manager_revenue_restated",
                 "territory_revenue", "territory_revenue_restated"):
        assert query(db, f"SELECT sum(booked_revenue) FROM {view}")[0][0] == facts


def test_moved_accounts_are_credited_to_their_new_managers_on_the_restated_basis(restated):
    db, moved, _ = restated
    assert query(db, "SELECT DISTINCT as_of::DATE::VARCHAR FROM restated_attribution") == [
        ("2026-04-01",)]
    credited = dict(query(db, f"""SELECT account_id, account_manager_id FROM restated_attribution
                                  WHERE account_id IN {MOVED}"""))
    assert credited == moved
    for account, manager in moved.items():
        total = query(db, f"""SELECT coalesce(sum(booked_revenue), 0) FROM restatement_moves
                              WHERE kind = 'account_manager' AND direction = 'moved_in'
                                AND manager_id = '{manager}' AND account_id = '{account}'""")
        booked_elsewhere = query(db, f"""SELECT coalesce(sum(booked_revenue), 0)
            FROM attributed_events WHERE account_id = '{account}'
              AND account_manager_id <> '{manager}'""")
        assert total == booked_elsewhere


@pytest.mark.parametrize("kind, key, view", [
    ("account_manager", "account_manager_id", "account_manager_revenue"),
    ("territory_manager", "territory_manager_id", None)])
def test_restated_equals_booked_plus_moved_in_minus_moved_out_for_every_manager(
        restated, kind, key, view):
    db, _, _ = restated
    booked = dict(query(db, f"SELECT {key}, sum(booked_revenue) FROM attributed_events GROUP BY 1"))
    restated_totals = dict(query(db, f"""SELECT coalesce(r.{key}, 'UNASSIGNED'),
        sum(f.booked_revenue) FROM attributed_events f
        LEFT JOIN restated_attribution r USING (account_id) GROUP BY 1"""))
    if view:  # the published restated view says the same
        assert restated_totals == dict(query(
            db, f"SELECT {key}, sum(booked_revenue) FROM {view}_restated GROUP BY 1"))
    moves = query(db, f"""SELECT manager_id, direction, sum(booked_revenue) FROM restatement_moves
                          WHERE kind = '{kind}' GROUP BY ALL""")
    assert moves, "the realignment moved some credit"
    explained = dict(booked)
    for manager, direction, amount in moves:
        sign = 1 if direction == "moved_in" else -1
        explained[manager] = explained.get(manager, Decimal(0)) + sign * amount
    assert {m: v for m, v in explained.items() if v} == {
        m: v for m, v in restated_totals.items() if v}
