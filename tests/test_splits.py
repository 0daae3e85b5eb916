"""Account-team split credit end to end: ``revattr run`` publishes ``split_credit`` and
its views; every split equals an independent Decimal computation of the contract's rule
(docs/contract.md "Account-team splits"), primaries tie out to the facts to the cent,
re-runs add nothing, a later team change leaves what was already credited as it was, and
shares that do not sum to 100 stop the run with the check that failed."""

from __future__ import annotations

import datetime as dt
import shutil
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.generate import generate_dataset
from tests.test_restate import _rows, _write

pytestmark = pytest.mark.slow
runner = CliRunner()
CENT = Decimal("0.01")
FAR_PAST = dt.datetime.min.replace(tzinfo=dt.UTC)
FAR_FUTURE = dt.datetime.max.replace(tzinfo=dt.UTC)


def _instant(text: str, default: dt.datetime) -> dt.datetime:
    if not text:
        return default
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def run(events: Path, reference: Path, db: Path, *extra: str):
    return runner.invoke(app, ["run", "--events", str(events), "--reference", str(reference),
                               "--db", str(db), *extra])


def expected_split(amount: Decimal, team: list[dict], manager: str) -> dict[tuple, Decimal]:
    """The contract's rule, written independently: (person, role, type) -> credit."""
    primaries = sorted((r for r in team if r["split_type"] in ("", "primary")),
                       key=lambda r: (r["person_id"], r["role"]))
    overlays = [r for r in team if r["split_type"] == "overlay"]
    if not primaries:
        primaries = [{"person_id": manager, "role": "account_manager", "percent": "100"}]
    cents = abs(int(amount / CENT))
    sign = -1 if amount < 0 else 1
    total = sum(Fraction(r["percent"]) for r in primaries)
    exact = [Fraction(cents) * Fraction(r["percent"]) / total for r in primaries]
    shares = [int(e) for e in exact]
    left = cents - sum(shares)
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    out: dict[tuple, Decimal] = defaultdict(Decimal)
    for row, share in zip(primaries, shares, strict=True):
        out[(row["person_id"], row["role"], "primary")] += sign * share * CENT
    for row in overlays:
        credit = (Decimal(cents) * Decimal(row["percent"]) / 100).quantize(
            Decimal(1), rounding="ROUND_HALF_EVEN")
        out[(row["person_id"], row["role"], "overlay")] += sign * credit * CENT
    return dict(out)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("splits")
    generate_dataset(root / "data", events=4000, seed=11)
    db = root / "out" / "revenue.duckdb"
    ran = run(root / "data" / "events", root / "data" / "reference", db)
    assert ran.exit_code == 0, ran.output
    return root, root / "data" / "reference", db


def test_every_split_equals_the_rule_computed_independently(published):
    _, reference, db = published
    teams = defaultdict(list)
    for row in _rows(reference / "account_splits.csv"):
        teams[row["account_id"]].append(row)
    facts = query(db, "SELECT event_id, account_id, account_manager_id, event_time, "
                      "booked_revenue, pipeline_created FROM attributed_events")
    published_rows = defaultdict(dict)
    for event, person, role, kind, booked, pipeline in query(
            db, "SELECT event_id, person_id, role, split_type, booked_revenue, pipeline_created "
                "FROM split_credit"):
        published_rows[event][(person, role, kind)] = (booked, pipeline)
    split_events = 0
    for event, account, manager, time, booked, pipeline in facts:
        team = [r for r in teams.get(account, [])
                if _instant(r["valid_from"], FAR_PAST) <= time
                < _instant(r["valid_to"], FAR_FUTURE)]
        if not team:
            assert event not in published_rows, f"{event}: split without a team"
            continue
        split_events += 1
        want_booked = expected_split(booked, team, manager)
        want_pipeline = expected_split(pipeline, team, manager)
        got = published_rows[event]
        assert {k: v[0] for k, v in got.items()} == want_booked, event
        assert {k: v[1] for k, v in got.items()} == want_pipeline, event
    assert split_events > 100  # the sample gives ~15% of the accounts a team
    assert len(published_rows) == split_events


def test_primary_split_credit_ties_out_to_the_facts_every_day_and_overlays_add(published):
    _, _, db = published
    days = query(db, "SELECT count(*), count(*) FILTER (WHERE balanced), sum(overlay_total), "
                     "sum(events_total), sum(primary_total) FROM reconciliation_splits")[0]
    assert days[0] == days[1] > 0
    assert days[2] > 0 and days[3] == days[4]
    facts_total = query(db, "SELECT sum(booked_revenue) FROM attributed_events")[0][0]
    by_type = dict(query(db, "SELECT split_type, sum(booked_revenue) FROM split_revenue "
                             "GROUP BY 1"))
    assert by_type["primary"] == facts_total
    # Per person, the view holds the published splits plus the whole credit of the facts
    # whose account had no team.
    view = dict(query(db, "SELECT person_id, sum(booked_revenue) FROM split_revenue "
                          "WHERE split_type = 'primary' GROUP BY 1"))
    direct = defaultdict(Decimal)
    for person, amount in query(db, "SELECT person_id, booked_revenue FROM split_credit "
                                    "WHERE split_type = 'primary'"):
        direct[person] += amount
    for person, amount in query(db, "SELECT account_manager_id, booked_revenue FROM "
                                    "attributed_events WHERE event_id NOT IN "
                                    "(SELECT event_id FROM split_credit)"):
        direct[person] += amount
    assert view == {p: v for p, v in direct.items()}
    fiscal = query(db, "SELECT sum(booked_revenue) FROM split_revenue_fiscal "
                       "WHERE split_type = 'primary'")[0][0]
    assert fiscal == facts_total


def test_a_rerun_of_the_same_input_adds_no_split_credit(published, tmp_path):
    root, reference, db = published
    copy = tmp_path / "copy" / "revenue.duckdb"
    shutil.copytree(db.parent, copy.parent)
    before = query(copy, "SELECT * FROM split_credit ORDER BY ALL")
    again = run(root / "data" / "events", reference, copy)
    assert again.exit_code == 0, again.output
    assert query(copy, "SELECT * FROM split_credit ORDER BY ALL") == before


def test_a_team_change_credits_later_events_only_what_was_credited_stays(published, tmp_path):
    root, reference, db = published
    copy = tmp_path / "copy" / "revenue.duckdb"
    shutil.copytree(db.parent, copy.parent)
    before = query(copy, "SELECT * FROM split_credit ORDER BY ALL")
    changed = tmp_path / "reference"
    shutil.copytree(reference, changed)
    rows = _rows(changed / "account_splits.csv")
    account = rows[0]["account_id"]
    rows = [r for r in rows if r["account_id"] != account] + [
        {**rows[0], "person_id": "P-99999", "role": "new_owner", "split_type": "primary",
         "percent": "100", "valid_from": "", "valid_to": ""}]
    _write(changed / "account_splits.csv", rows)
    late = tmp_path / "late.jsonl"
    late.write_text(
        '{"event_id": "late-1", "event_type": "deal_won", "event_time": "2026-03-20T10:00:00Z",'
        f' "deal_id": "D-late", "account_id": "{account}", "amount": "1000.00",'
        ' "currency": "USD"}\n')
    ran = run(late, changed, copy, "--no-checks")  # P-99999 is not in people: a warning
    assert ran.exit_code == 0, ran.output
    after = query(copy, "SELECT * FROM split_credit ORDER BY ALL")
    assert [r for r in after if r[0] != "late-1"] == before  # booked basis: frozen
    assert [(r[4], r[6], r[8]) for r in after if r[0] == "late-1"] == [
        ("P-99999", "primary", Decimal("1000.00"))]


def test_primary_shares_that_do_not_sum_to_100_stop_the_run_naming_the_check(tmp_path):
    generate_dataset(tmp_path / "data", events=500, seed=3)
    reference = tmp_path / "data" / "reference"
    rows = _rows(reference / "account_splits.csv")
    rows[0]["percent"] = str(Decimal(rows[0]["percent"]) - 10)
    _write(reference / "account_splits.csv", rows)
    db = tmp_path / "out" / "revenue.duckdb"
    ran = run(tmp_path / "data" / "events", reference, db)
    assert ran.exit_code == 1, ran.output
    assert "failed_checks" in ran.output
    assert query(db, "SELECT suite, expectation, severity FROM dq_results WHERE NOT success") == [
        ("reference", "account_splits_primary_shares_sum_to_100", "critical")]
    assert not query(db, "SELECT * FROM split_credit")
    assert not query(db, "SELECT * FROM attributed_events")


def test_the_restated_split_view_is_the_rule_applied_at_the_restate_moment(published):
    """``split_credit_restated`` (SQL) equals ``rules.splits.split_credit`` (Arrow) on
    every fact moved to the restate moment and credited to its restated manager."""
    from pipelines.io.reference_loader import load_reference
    from pipelines.rules.splits import SplitIndex, split_credit

    _, reference, db = published
    with duckdb.connect(str(db), read_only=True) as con:
        facts = con.sql("""
            SELECT f.event_id, f.event_type, r.as_of AS event_time, f.day, f.account_id,
                   coalesce(r.account_manager_id, 'UNASSIGNED') AS account_manager_id,
                   f.booked_revenue, f.pipeline_created, f.run_id
            FROM attributed_events f LEFT JOIN restated_attribution r USING (account_id)
            WHERE f.account_id IN (SELECT account_id FROM restated_splits)""").to_arrow_table()
        view = con.execute("""SELECT event_id, person_id, role, split_type, percent,
                                     booked_revenue, pipeline_created
                              FROM split_credit_restated ORDER BY ALL""").fetchall()
        restated_total, booked_total = con.execute(
            "SELECT (SELECT sum(booked_revenue) FROM split_revenue_restated "
            "        WHERE split_type = 'primary'), "
            "(SELECT sum(booked_revenue) FROM attributed_events)").fetchall()[0]
        unbalanced = con.execute("SELECT count(*) FROM reconciliation_splits_restated "
                                 "WHERE NOT balanced").fetchall()[0][0]
    expected = split_credit(facts, SplitIndex.build(load_reference(reference)["account_splits"]))
    columns = ["event_id", "person_id", "role", "split_type", "percent", "booked_revenue",
               "pipeline_created"]
    rows = sorted(zip(*(expected[c].to_pylist() for c in columns), strict=True),
                  key=lambda r: tuple("" if v is None else str(v) for v in r))
    assert len(view) == len(rows) > 100
    key = lambda r: tuple("" if v is None else str(v) for v in r)  # noqa: E731
    assert sorted(view, key=key) == rows
    assert restated_total == booked_total and unbalanced == 0
