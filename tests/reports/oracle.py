"""An independent model of report scoping and figures, for the report tests.

Loads the published relations into plain Python and applies the documented
rules (docs/reports.md) event by event — walking the territory tree in Python —
without any of ``pipelines.reports``' SQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb

UNASSIGNED = "UNASSIGNED"
UTC = dt.UTC
FIGURE = re.compile(r'data-figure="([a-z_]+)"[^>]*>([^<]*)<')


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    event_time: dt.datetime
    day: dt.date
    account_id: str
    territory_id: str
    account_manager_id: str
    territory_manager_id: str
    booked: Decimal
    pipeline: Decimal
    won_deals: int
    lost_deals: int
    created_deals: int
    refunds: Decimal


def _valid(valid_from, valid_to, moment) -> bool:  # noqa: ANN001
    return (valid_from is None or valid_from <= moment) and (valid_to is None or moment < valid_to)


def _overlaps(valid_from, valid_to, start: dt.date, end: dt.date) -> bool:  # noqa: ANN001
    s = dt.datetime(start.year, start.month, start.day, tzinfo=UTC)
    e = dt.datetime(end.year, end.month, end.day, tzinfo=UTC)
    return (valid_from is None or valid_from < e) and (valid_to is None or valid_to > s)


class Oracle:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("SET TimeZone = 'UTC'")
        self.events = [
            Event(*row)
            for row in con.execute(
                """SELECT event_id, event_type, event_time, day, account_id, territory_id,
                          account_manager_id, territory_manager_id, booked_revenue,
                          pipeline_created, won_deals, lost_deals, created_deals, refunds
                   FROM attributed_events"""
            ).fetchall()
        ]
        self.parent = dict(
            con.execute("SELECT territory_id, parent_territory_id FROM territories").fetchall()
        )
        self.tenures = con.execute(
            "SELECT territory_id, manager_id, valid_from, valid_to FROM territory_managers"
        ).fetchall()
        self.assignments = con.execute(
            "SELECT account_id, account_manager_id, valid_from, valid_to FROM account_assignments"
        ).fetchall()
        self.accounts = {
            r[0]: (r[1], r[2])
            for r in con.execute(
                "SELECT account_id, account_name, country FROM accounts"
            ).fetchall()
        }
        self.rules = con.execute("SELECT territory_id, country FROM territory_rules").fetchall()
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        # Account teams (optional): who is on which team when, and the published split rows.
        self.teams = (
            con.execute(
                "SELECT account_id, person_id, valid_from, valid_to FROM account_splits"
            ).fetchall()
            if "account_splits" in tables
            else []
        )
        self.split_rows = (
            con.execute(
                "SELECT event_id, person_id, split_type, account_id FROM split_credit"
            ).fetchall()
            if "split_credit" in tables
            else []
        )
        self.am_view = con.execute(
            """SELECT account_manager_id, day, booked_revenue, pipeline_created, won_deals,
                      lost_deals, created_deals, refunds FROM account_manager_revenue"""
        ).fetchall()
        self.rollup = con.execute(
            "SELECT territory_id, day, booked_revenue FROM territory_revenue_rollup"
        ).fetchall()
        self.roots = {t for t, p in self.parent.items() if p is None or p not in self.parent}
        self.countries_under: dict[str, set[str]] = defaultdict(set)
        for territory, country in self.rules:
            for ancestor in self.ancestors(territory):
                self.countries_under[ancestor].add((country or "").strip().upper())

    @classmethod
    def load(cls, db: Path) -> Oracle:
        with duckdb.connect(str(db), read_only=True) as con:
            return cls(con)

    def ancestors(self, territory: str) -> list[str]:
        out, seen = [], set()
        while territory is not None and territory not in seen:
            out.append(territory)
            seen.add(territory)
            territory = self.parent.get(territory)
        return out

    # ------------------------------------------------------------------ who, and which events

    def active_territory_managers(self, start: dt.date, end: dt.date) -> set[str]:
        return {m for _t, m, f, to in self.tenures if _overlaps(f, to, start, end)}

    def active_account_managers(self, start: dt.date, end: dt.date) -> set[str]:
        """Account managers, and account-team members (for their split credit)."""
        return {
            m for _a, m, f, to in [*self.assignments, *self.teams] if _overlaps(f, to, start, end)
        }

    def in_period(self, start: dt.date, end: dt.date) -> list[Event]:
        return [e for e in self.events if start <= e.day < end]

    def territory_scope(self, manager: str, start: dt.date, end: dt.date) -> list[Event]:
        mine = [(t, f, to) for t, m, f, to in self.tenures if m == manager]
        out = []
        for e in self.in_period(start, end):
            if e.territory_id == UNASSIGNED:
                continue
            chain = set(self.ancestors(e.territory_id))
            if any(t in chain and _valid(f, to, e.event_time) for t, f, to in mine):
                out.append(e)
        return out

    def unassigned_nearby(self, manager: str, start: dt.date, end: dt.date) -> list[Event]:
        mine = [(t, f, to) for t, m, f, to in self.tenures if m == manager]
        out = []
        for e in self.in_period(start, end):
            if e.territory_id != UNASSIGNED:
                continue
            country = ((self.accounts.get(e.account_id) or (None, None))[1] or "").strip().upper()
            for t, f, to in mine:
                if _valid(f, to, e.event_time) and (
                    t in self.roots or (country and country in self.countries_under[t])
                ):
                    out.append(e)
                    break
        return out

    def account_scope(self, manager: str, start: dt.date, end: dt.date) -> list[Event]:
        return [e for e in self.in_period(start, end) if e.account_manager_id == manager]

    def split_scope(self, person: str, start: dt.date, end: dt.date) -> set[tuple[str, str]]:
        """(event_id, split_type) of the person's split credit: their published split rows
        for events they are entitled to (on the account's team at the event's time, or
        the event in their account scope), and their account scope's events without a
        team (wholly their primary credit)."""
        events = {e.event_id: e for e in self.in_period(start, end)}
        own = {e.event_id for e in self.account_scope(person, start, end)}
        out = set()
        for event_id, who, split_type, account in self.split_rows:
            e = events.get(event_id)
            if e is None or who != person:
                continue
            on_team = any(
                a == account and p == person and _valid(f, to, e.event_time)
                for a, p, f, to in self.teams
            )
            if on_team or event_id in own:
                out.add((event_id, split_type))
        with_team = {event_id for event_id, *_ in self.split_rows}
        out |= {(event_id, "primary") for event_id in own if event_id not in with_team}
        return out

    def assigned_accounts(self, manager: str, start: dt.date, end: dt.date) -> set[str]:
        return {
            a for a, m, f, to in self.assignments if m == manager and _overlaps(f, to, start, end)
        }

    def am_view_totals(self, manager: str, start: dt.date, end: dt.date) -> dict[str, Decimal]:
        """The view's sums (0 for a manager without rows)."""
        totals = defaultdict(Decimal)
        for m, day, booked, pipeline, won, lost, created, refunds in self.am_view:
            if m == manager and start <= day < end:
                for key, value in (
                    ("booked", booked),
                    ("pipeline", pipeline),
                    ("net_won", won),
                    ("lost", lost),
                    ("created", created),
                    ("refunds", refunds),
                ):
                    totals[key] += value
        return totals

    def rollup_booked(self, territory: str, start: dt.date, end: dt.date) -> Decimal:
        return sum(
            (b for t, day, b in self.rollup if t == territory and start <= day < end), Decimal(0)
        )


def measures(events: list[Event]) -> dict[str, Decimal]:
    """The report's figures, computed the long way."""
    won = sum(1 for e in events if e.event_type == "deal_won")
    lost = sum(e.lost_deals for e in events)
    return {
        "events": Decimal(len(events)),
        "booked": sum((e.booked for e in events), Decimal(0)),
        "pipeline": sum((e.pipeline for e in events), Decimal(0)),
        "created": Decimal(sum(e.created_deals for e in events)),
        "won_events": Decimal(won),
        "net_won": Decimal(sum(e.won_deals for e in events)),
        "lost": Decimal(lost),
        "refunds": sum((e.refunds for e in events), Decimal(0)),
        "refund_count": Decimal(sum(1 for e in events if e.event_type == "deal_refunded")),
        "reopens": Decimal(sum(1 for e in events if e.event_type == "deal_reopened")),
        "reopened": -sum((e.booked for e in events if e.event_type == "deal_reopened"), Decimal(0)),
    }


def figures(page: str) -> dict[str, str]:
    """``data-figure`` values shown in a report page (text as displayed)."""
    return {name: html.unescape(text) for name, text in FIGURE.findall(page)}


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", "").rstrip("%"))


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline="")))
