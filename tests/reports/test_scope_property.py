"""Property: a manager's report never shows an account, id or amount outside their scope.

For generated histories — territory managers and account managers changing
mid-period, leaving (a vacancy) and arriving, a country realigned from one
territory to another (with or without a gap: accounts moving territory), events
exactly on the change instants; sometimes loaded in two runs, the first under
a draft of the assignments that the second corrects — the pipeline (embedded
engine) publishes the history, every active manager's report is rendered (HTML with its charts
decoded, CSV, mail message), and the scope is computed here, independently,
from the generated history by the rules of docs/reports.md ("Scope"). Every
account id and name and every event amount is a unique, fixed-width token, so
"appears anywhere" is a substring check; the in-scope ones must appear too, so
the test fails if reports go empty.

The restated basis is checked on the same database: its restated basis is taken at a
generated instant ``as_of``, and every restated report may show only the events of its
manager's scope under the assignments, tenures and rules holding at ``as_of`` (docs/reports.md,
"Scope", restated basis), plus the current period's events it moved out of its booked scope.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.reports.periods import Period, parse_period
from tests.reports.histories import History, publish, render_all

pytestmark = pytest.mark.slow
UTC = dt.UTC
EXAMPLES = 12
PERIODS = ("2026", "2026-Q2", "2026-03", "2025-Q4")
# T-ROOT > T-R1 > (T-S1, T-S2); T-ROOT > T-R2 > T-S3.
PARENT = {"T-ROOT": None, "T-R1": "T-ROOT", "T-R2": "T-ROOT", "T-S1": "T-R1",
          "T-S2": "T-R1", "T-S3": "T-R2"}
HOME = {"DE": "T-S1", "AT": "T-S2", "JP": "T-S3"}  # FR: no rule, never a territory
COUNTRIES = ("DE", "AT", "JP", "FR")
TERRITORY_MANAGERS = tuple(f"TM-{i}" for i in range(1, 6))
ACCOUNT_MANAGERS = tuple(f"AM-{i}" for i in range(1, 5))
Interval = tuple[dt.datetime | None, dt.datetime | None]


@dataclass(frozen=True)
class Tenure:
    object_id: str  # territory or account
    manager: str
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None

    def holds(self, moment: dt.datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= moment) and (
            self.valid_to is None or moment < self.valid_to
        )

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return (self.valid_from is None or self.valid_from < end) and (
            self.valid_to is None or self.valid_to > start
        )


@dataclass(frozen=True)
class Rule:
    territory: str
    country: str
    valid_from: dt.datetime | None
    valid_to: dt.datetime | None

    def holds(self, moment: dt.datetime) -> bool:
        return Tenure("", "", self.valid_from, self.valid_to).holds(moment)


@dataclass(frozen=True)
class Account:
    account_id: str
    name: str
    country: str


@dataclass(frozen=True)
class Event:
    event_id: str
    event_type: str
    time: dt.datetime
    account: Account
    amount: str  # "1234567.89"

    @property
    def shown_amounts(self) -> tuple[str, str]:
        units, cents = self.amount.split(".")
        return self.amount, f"{int(units):,}.{cents}"


@dataclass
class Scenario:
    period: Period
    tenures: list[Tenure] = field(default_factory=list)
    assignments: list[Tenure] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # An earlier run: these events published under a draft of the assignments
    # (holders swapped), before the corrected history (the one above) replaced it.
    draft_assignments: list[Tenure] | None = None
    early_events: set[str] = field(default_factory=set)
    as_of: dt.datetime | None = None  # of the restated basis


# ----------------------------------------------------------------------------- generation


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def _windows(period: Period) -> list[tuple[dt.datetime, dt.datetime]]:
    return [(_midnight(p.start), _midnight(p.end))
            for p in {period, period.previous(), period.year_ago()}]


@st.composite
def instants(draw, period: Period) -> dt.datetime:
    """A whole-hour instant, mostly inside the period or a comparison period."""
    windows = _windows(period)
    start, end = draw(st.sampled_from([*windows, *windows,
                                       (_midnight(dt.date(2024, 9, 1)),
                                        _midnight(dt.date(2027, 3, 1)))]))
    hours = int((end - start).total_seconds() // 3600)
    return start + dt.timedelta(hours=draw(st.integers(0, hours - 1)))


@st.composite
def segments(draw, object_id: str, managers: tuple[str, ...], period: Period) -> list[Tenure]:
    """Consecutive tenures of one territory or account; ``None`` holders are vacancies."""
    cuts = sorted(set(draw(st.lists(instants(period), max_size=3))))
    bounds = [None, *cuts, None]
    out = []
    for valid_from, valid_to in zip(bounds, bounds[1:], strict=False):
        holder = draw(st.one_of(st.none(), st.sampled_from(managers))
                      if len(bounds) > 2 else st.sampled_from(managers))
        if holder is not None:
            out.append(Tenure(object_id, holder, valid_from, valid_to))
    return out


@st.composite
def scenarios(draw) -> Scenario:
    period = parse_period(draw(st.sampled_from(PERIODS)))
    s = Scenario(period)
    for territory in PARENT:
        s.tenures += draw(segments(territory, TERRITORY_MANAGERS, period))
    for country, territory in HOME.items():
        s.rules.append(Rule(territory, country, None, None))
    if draw(st.booleans()):  # AT moves from T-S2 to T-S3, maybe after a gap
        move = draw(instants(period))
        gap = dt.timedelta(days=draw(st.sampled_from([0, 0, 20])))
        s.rules = [r for r in s.rules if r.country != "AT"]
        s.rules += [Rule("T-S2", "AT", None, move), Rule("T-S3", "AT", move + gap, None)]
    n = draw(st.integers(3, 6))
    for i in range(n):
        account = Account(f"AC{i:02d}-Q", f"Firm{i:02d}-Zq", draw(st.sampled_from(COUNTRIES)))
        s.accounts.append(account)
        s.assignments += draw(segments(account.account_id, ACCOUNT_MANAGERS, period))
    cuts = [t.valid_from for t in [*s.tenures, *s.assignments] if t.valid_from is not None]
    amounts = draw(st.lists(st.integers(1_000_000_00, 9_999_999_99), min_size=n * 4,
                            max_size=n * 4, unique=True))
    for i, account in enumerate(s.accounts):
        for j in range(draw(st.integers(1, 4))):
            on_cut = cuts and draw(st.integers(0, 3)) == 0
            time = draw(st.sampled_from(cuts)) if on_cut else draw(instants(period))
            amount = amounts[i * 4 + j]
            s.events.append(Event(
                f"EV-{i:02d}-{j}", draw(st.sampled_from(["deal_won", "deal_won",
                                                        "deal_created", "deal_refunded"])),
                time, account, f"{amount // 100}.{amount % 100:02d}"))
    if draw(st.booleans()):
        swap = dict(zip(ACCOUNT_MANAGERS, draw(st.permutations(ACCOUNT_MANAGERS)), strict=True))
        s.draft_assignments = [Tenure(a.object_id, swap[a.manager], a.valid_from, a.valid_to)
                               for a in s.assignments]
        s.early_events = {e.event_id for e in s.events if draw(st.booleans())}
    s.as_of = draw(st.sampled_from(cuts)) if cuts and draw(st.booleans()) else draw(
        instants(period))
    return s


# ----------------------------------------------------------------------------- publishing


def _text(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def to_history(s: Scenario, assignments: list[Tenure] | None = None,
               events: list[Event] | None = None) -> History:
    assignments = s.assignments if assignments is None else assignments
    events = s.events if events is None else events
    people = [*TERRITORY_MANAGERS, *ACCOUNT_MANAGERS]
    return History(
        reference={
            "territories": [
                {"territory_id": t, "territory_name": f"Zone {t}", "parent_territory_id": p or "",
                 "level": "global" if p is None else "region"}
                for t, p in PARENT.items()
            ],
            "territory_rules": [
                {"territory_id": r.territory, "country": r.country,
                 "valid_from": _text(r.valid_from), "valid_to": _text(r.valid_to)}
                for r in s.rules
            ],
            "territory_managers": [
                {"territory_id": t.object_id, "manager_id": t.manager,
                 "valid_from": _text(t.valid_from), "valid_to": _text(t.valid_to)}
                for t in s.tenures
            ],
            "account_assignments": [
                {"account_id": a.object_id, "account_manager_id": a.manager,
                 "valid_from": _text(a.valid_from), "valid_to": _text(a.valid_to)}
                for a in assignments
            ],
            "accounts": [
                {"account_id": a.account_id, "account_name": a.name, "country": a.country,
                 "city": "Sometown"}
                for a in s.accounts
            ],
            "people": [
                {"person_id": p, "name": f"Person {p}", "email": f"{p.lower()}@example.com",
                 "role": "territory_manager" if p.startswith("TM") else "account_manager"}
                for p in people
            ],
            "fx_rates": [{"currency": "USD", "rate_date": "2020-01-01",
                          "rate_to_reporting": "1"}],
        },
        events=[
            {"event_id": e.event_id, "event_type": e.event_type, "event_time": _text(e.time),
             "deal_id": f"D-{e.event_id}", "account_id": e.account.account_id,
             "amount": e.amount, "currency": "USD"}
            for e in events
        ],
    )


# ----------------------------------------------------------------------------- expected scope


def _ancestors(territory: str) -> list[str]:
    out: list[str] = []
    current: str | None = territory
    while current is not None:
        out.append(current)
        current = PARENT[current]
    return out


def _territory_at(s: Scenario, e: Event, moment: dt.datetime | None = None) -> str | None:
    moment = e.time if moment is None else moment
    matches = sorted(r.territory for r in s.rules if r.country == e.account.country
                     and r.holds(moment))
    return matches[0] if matches else None


def _in_windows(s: Scenario, e: Event) -> bool:
    return any(start <= e.time < end for start, end in _windows(s.period))


def territory_scope(s: Scenario, manager: str, restated: bool = False,
                    nearby: bool = True) -> set[Event]:
    """In M's subtree at the event's time, or unassigned and touching M's geography (with
    ``nearby``). Restated: the account's territory and M's tenures at ``as_of``."""
    countries = {t: {r.country for r in s.rules if t in _ancestors(r.territory)}
                 for t in PARENT}
    out = set()
    for e in filter(lambda e: _in_windows(s, e), s.events):
        moment = s.as_of if restated else e.time
        assert moment is not None
        mine = [t for t in s.tenures if t.manager == manager and t.holds(moment)]
        territory = _territory_at(s, e, moment)
        if territory is not None:
            if any(t.object_id in _ancestors(territory) for t in mine):
                out.add(e)
        elif nearby and any(PARENT[t.object_id] is None
                            or e.account.country in countries[t.object_id] for t in mine):
            out.add(e)
    return out


def _holder(s: Scenario, account_id: str, moment: dt.datetime) -> str | None:
    holders = sorted(a.manager for a in s.assignments
                     if a.object_id == account_id and a.holds(moment))
    return holders[0] if holders else None


def account_scope(s: Scenario, manager: str, restated: bool = False) -> set[Event]:
    """The events whose account's assignment at the event's time (restated: at ``as_of``)
    is A's."""
    return {e for e in s.events if _in_windows(s, e) and _holder(
        s, e.account.account_id, s.as_of if restated else e.time) == manager}


def _current(s: Scenario, e: Event) -> bool:
    return _midnight(s.period.start) <= e.time < _midnight(s.period.end)


def moved_out(s: Scenario, kind: str, manager: str) -> set[Event]:
    """Restated basis: this period's events of the booked scope that left it."""
    if kind == "territory_manager":
        booked = territory_scope(s, manager, nearby=False)
        restated = territory_scope(s, manager, restated=True, nearby=False)
    else:
        booked, restated = account_scope(s, manager), account_scope(s, manager, restated=True)
    return {e for e in booked - restated if _current(s, e)}


def active(s: Scenario, kind: str, restated: bool = False) -> set[str]:
    start, end = _midnight(s.period.start), _midnight(s.period.end)
    if restated:
        assert s.as_of is not None
        if kind == "territory_manager":
            return {t.manager for t in s.tenures if t.holds(s.as_of)}
        return {h for a in s.accounts if (h := _holder(s, a.account_id, s.as_of))}
    grants = s.tenures if kind == "territory_manager" else s.assignments
    return {g.manager for g in grants if g.overlaps(start, end)}


# ----------------------------------------------------------------------------- the property

checked: Counter[str] = Counter()


def check_report(s: Scenario, kind: str, manager: str, text: str,
                 restated: bool = False) -> None:
    if kind == "territory_manager":
        scope = territory_scope(s, manager, restated)
        allowed = set()
    else:
        scope = account_scope(s, manager, restated)
        start, end = _midnight(s.period.start), _midnight(s.period.end)
        assigned = (
            {a.account_id for a in s.accounts if _holder(s, a.account_id, s.as_of) == manager}
            if restated and s.as_of is not None
            else {a.object_id for a in s.assignments
                  if a.manager == manager and a.overlaps(start, end)})
        allowed = {a for a in s.accounts if a.account_id in assigned}
    if restated:
        moved = moved_out(s, kind, manager)
        checked["restated events moved out"] += len(moved - scope)
        scope = scope | moved
    allowed |= {e.account for e in scope}
    where = f"{kind} {manager} {s.period.label}{' restated' if restated else ''}"
    for account in s.accounts:
        if account in allowed:
            assert account.account_id in text and account.name in text, (where, account)
            checked["accounts in scope"] += 1
        else:
            assert account.account_id not in text, (where, account)
            assert account.name not in text, (where, account)
            checked["accounts out of scope"] += 1
    for e in s.events:
        if e in scope:
            assert e.amount in text, (where, e)
            checked["events in scope"] += 1
        else:
            for shown in e.shown_amounts:
                assert shown not in text, (where, e, shown)
            checked["events out of scope"] += 1
    checked["restated reports" if restated else "reports"] += 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios())
def test_no_report_shows_anything_outside_its_managers_scope(s: Scenario) -> None:
    with tempfile.TemporaryDirectory(prefix="scope-") as folder:
        data = Path(folder) / "data"
        if s.draft_assignments is not None:
            early = [e for e in s.events if e.event_id in s.early_events]
            publish(data, to_history(s, s.draft_assignments, early))
            checked["examples with a corrected history"] += 1
        late = [e for e in s.events if e.event_id not in s.early_events]
        assert s.as_of is not None
        db = publish(data, to_history(s, events=late), restate_as_of=s.as_of.isoformat())
        seen = render_all(db, Path(folder) / "reports", s.period)
        restated = render_all(db, Path(folder) / "restated", s.period, basis="restated")
    for kind in ("territory_manager", "account_manager"):
        assert {m for k, m in seen if k == kind} == active(s, kind), kind
        assert {m for k, m in restated if k == kind} == active(s, kind, restated=True), kind
    for (kind, manager), text in seen.items():
        check_report(s, kind, manager, text)
    for (kind, manager), text in restated.items():
        check_report(s, kind, manager, text, restated=True)
    checked["examples"] += 1


def test_the_property_checked_something() -> None:
    """Runs after the property (same module): it must not have passed vacuously."""
    if checked["examples"] == 0:
        pytest.skip("the property test did not run in this session")
    print(dict(checked))
    assert checked["examples"] == EXAMPLES
    assert checked["accounts in scope"] > 0 and checked["accounts out of scope"] > 0
    assert checked["events in scope"] > 0 and checked["events out of scope"] > 0
    assert checked["examples with a corrected history"] > 0
    assert checked["restated reports"] > 0 and checked["restated events moved out"] > 0
