"""Scoping regressions on small hand-made histories (docs/reports.md, "Scope").

The leak of issue 12: a history loaded in several runs, with the account
assignments corrected in between. Facts published by an earlier run keep the
``account_manager_id`` they were attributed under, but the published
``account_assignments`` are the corrected ones; a report that trusted the
published credit showed an account to managers it was never assigned to.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipelines.reports.periods import parse_period
from tests.reports.histories import History, publish, render_all

pytestmark = pytest.mark.slow


def _reference(assignments: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    people = ("AM-1", "AM-2", "AM-3", "TM-1")
    return {
        "territories": [
            {"territory_id": "T-ROOT", "territory_name": "World", "level": "global"},
            {"territory_id": "T-US", "territory_name": "United States",
             "parent_territory_id": "T-ROOT", "level": "country"},
        ],
        "territory_rules": [{"territory_id": "T-US", "country": "US"}],
        "territory_managers": [{"territory_id": "T-US", "manager_id": "TM-1"}],
        "people": [
            {"person_id": p, "name": f"Person {p}", "email": f"{p.lower()}@example.com",
             "role": "territory_manager" if p.startswith("TM") else "account_manager"}
            for p in people
        ],
        "accounts": [
            {"account_id": f"ACC-{i}X", "account_name": f"Firm-{i}-Ltd", "country": "US"}
            for i in range(1, 5)
        ],
        "account_assignments": assignments,
        "fx_rates": [{"currency": "USD", "rate_date": "2020-01-01", "rate_to_reporting": "1"}],
    }


def _events(prefix: str, times: list[str], accounts: list[str], base: int) -> list[dict]:
    out = []
    for i, (account, time) in enumerate(
        (a, t) for a in accounts for t in times
    ):
        out.append({
            "event_id": f"{prefix}-{i}", "event_type": "deal_won", "event_time": time,
            "deal_id": f"D-{prefix}-{i}", "account_id": account,
            "amount": f"{base + i * 1111}.{i:02d}", "currency": "USD",
        })
    return out


def test_a_corrected_assignment_history_leaks_no_account_to_its_earlier_managers(
    tmp_path: Path,
) -> None:
    """ACC-1X is published as AM-1's, then AM-2's, then (the truth) AM-3's all along.

    The first two runs' facts still say AM-1 / AM-2; the year report of AM-1 and
    AM-2 (each still active through another account) must not show ACC-1X.
    """
    own = [
        {"account_id": "ACC-2X", "account_manager_id": "AM-1"},
        {"account_id": "ACC-3X", "account_manager_id": "AM-2"},
        {"account_id": "ACC-4X", "account_manager_id": "AM-3"},
    ]
    accounts = ["ACC-1X", "ACC-2X", "ACC-3X", "ACC-4X"]
    runs = [
        ("AM-1", ["2025-04-01T10:00:00Z", "2026-02-01T10:00:00Z"], 700_000),
        ("AM-2", ["2026-05-01T10:00:00Z"], 800_000),
        ("AM-3", ["2026-09-01T10:00:00Z"], 900_000),
    ]
    db = None
    first_run_amounts = []
    for n, (holder, times, base) in enumerate(runs):
        assignments = [{"account_id": "ACC-1X", "account_manager_id": holder}, *copy.deepcopy(own)]
        events = _events(f"R{n}", times, accounts, base)
        if n == 0:
            first_run_amounts = [e["amount"] for e in events if e["account_id"] == "ACC-1X"]
        db = publish(tmp_path / "data", History(_reference(assignments), events))
    assert db is not None

    seen = render_all(db, tmp_path / "reports", parse_period("2026"))

    assert set(seen) >= {("account_manager", m) for m in ("AM-1", "AM-2", "AM-3")}
    for manager in ("AM-1", "AM-2"):
        text = seen[("account_manager", manager)]
        assert "ACC-1X" not in text and "Firm-1-Ltd" not in text, manager
        for amount in first_run_amounts:
            assert amount not in text, (manager, amount)
    owner = seen[("account_manager", "AM-3")]
    assert "ACC-1X" in owner and "Firm-1-Ltd" in owner
    assert all(amount in owner for amount in first_run_amounts)  # 2025 and 2026 rows
