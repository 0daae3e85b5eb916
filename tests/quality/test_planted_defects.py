"""One planted defect per expectation: exactly that expectation fails, with its severity.

Each case starts from the clean data set (``tests.quality``), changes one thing and
runs the one suite that owns the defect. The clean data set passes every suite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pyarrow as pa
import pytest

from pipelines.quality.gx_runner import run_suite
from pipelines.quality.stage_frames import frames_from_tables, reconciliation_frame_from_view
from pipelines.quality.suites import SUITES, load_suite
from schemas.reference import UNASSIGNED
from tests import quality as c
from tests.utils import ts


@dataclass(frozen=True)
class Defect:
    id: str
    suite: str
    inputs: Callable[[], dict[str, pa.Table]]
    fails: tuple[str, ...]  # the expectation(s) that must fail, nothing else
    severity: str


def failures(results: pa.Table) -> dict[str, str]:
    return {r["expectation"]: r["severity"] for r in results.to_pylist() if not r["success"]}


def run(suite: str, inputs: dict[str, pa.Table], parameters: dict | None = None) -> pa.Table:
    return run_suite(suite, suite, frames_from_tables(suite, inputs), parameters)


CLEAN: dict[str, Callable[[], dict[str, pa.Table]]] = {
    "raw_events": lambda: {"events": c.events()},
    "enriched_events": lambda: {"attributed_events": c.attributed_events()},
    "territory_revenue": lambda: c.view_inputs("territory_revenue"),
    "account_manager_revenue": lambda: c.view_inputs("account_manager_revenue"),
    "reconciliation": c.reconciliation_inputs,
    "reference": c.reference,
    "published": lambda: _published_inputs(),
}


def _published_inputs() -> dict[str, pa.Table]:
    """What a publication derives from the clean reference: the restated basis, a
    (two-year, 4-4-5) fiscal calendar, and no split mismatch."""
    import datetime as dt

    from pipelines.rules.fiscal_calendar import FiscalCalendar
    from pipelines.rules.restate import restated_attribution
    from pipelines.rules.splits import restated_teams
    from schemas.outputs import SPLIT_MISMATCH_SCHEMA

    moment = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    restated = restated_attribution(c.reference(), moment)
    calendar = FiscalCalendar(kind="4-4-5", start_month=2).days()
    return {"restated_attribution": restated, "fiscal_calendar": calendar,
            "restated_splits": restated_teams(c.reference()["account_splits"], moment),
            "split_mismatches": SPLIT_MISMATCH_SCHEMA.empty_table()}


# ------------------------------------------------------------------ raw events

def _events(change: Callable[[pa.Table], pa.Table]) -> Callable[[], dict[str, pa.Table]]:
    return lambda: {"events": change(c.events())}


RAW = [
    *[Defect(f"null {column}", "raw_events", _events(
        lambda t, column=column: c.set_value(t, column, 0, None)),
        (f"{column}_not_null",), "critical")
      for column in ("event_id", "event_type", "event_time", "deal_id", "account_id", "amount",
                     "currency")],
    Defect("unknown event type", "raw_events", _events(
        lambda t: c.set_value(t, "event_type", 0, "deal_teleported")),
        ("event_type_known",), "critical"),
    Defect("lower-case currency", "raw_events", _events(
        lambda t: c.set_value(t, "currency", 0, "usd")), ("currency_is_iso_code",), "warning"),
    *[Defect(f"{column} too long", "raw_events", _events(
        lambda t, column=column: c.set_value(t, column, 0, "x" * 129)),
        (f"{column}_length",), "warning") for column in ("event_id", "deal_id", "account_id")],
    Defect("deal_won of 0", "raw_events", _events(
        lambda t: c.set_value(t, "amount", 1, Decimal("0"))),
        ("amount_positive_for_won_refunded_reopened",), "critical"),
    Defect("negative deal_lost", "raw_events", _events(
        lambda t: c.set_value(t, "amount", 3, Decimal("-1.00"))),
        ("amount_non_negative_for_created_changed_lost",), "critical"),
    Defect("deal_amended of 0", "raw_events", _events(
        lambda t: c.set_value(t, "amount", 6, Decimal("0.000"))),
        ("amount_nonzero_for_amended",), "critical"),
    Defect("event in 1999", "raw_events", _events(
        lambda t: c.set_value(t, "event_time", 0, ts("1999-12-31T23:00:00Z"))),
        ("event_time_in_window",), "warning"),
]

# ------------------------------------------------------------- enriched events


def _facts(change: Callable[[pa.Table], pa.Table]) -> Callable[[], dict[str, pa.Table]]:
    return lambda: {"attributed_events": change(c.attributed_events())}


def _unassign(column: str) -> Callable[[pa.Table], pa.Table]:
    def change(t: pa.Table) -> pa.Table:
        for row in (0, 1):
            t = c.set_value(t, column, row, UNASSIGNED)
        return t  # 3 of 10 events: 0.3 > 0.2
    return change


ENRICHED = [
    *[Defect(f"null {column}", "enriched_events", _facts(
        lambda t, column=column: c.set_value(t, column, 0, None)),
        (f"{column}_not_null",), "critical")
      for column in ("account_manager_id", "territory_id", "territory_manager_id",
                     "attribution_status")],
    Defect("unknown attribution status", "enriched_events", _facts(
        lambda t: c.set_value(t, "attribution_status", 0, "teleported")),
        ("attribution_status_known",), "critical"),
    Defect("event counted twice", "enriched_events", _facts(
        lambda t: c.set_value(t, "event_id", 1, "e01")), ("event_id_unique",), "critical"),
    Defect("too many UNASSIGNED territories", "enriched_events", _facts(
        _unassign("territory_id")), ("unassigned_territory_share",), "warning"),
    Defect("too many UNASSIGNED account managers", "enriched_events", _facts(
        _unassign("account_manager_id")), ("unassigned_account_manager_share",), "warning"),
]

# ----------------------------------------------------------------------- views


def _view(name: str, change: Callable[[pa.Table], pa.Table]) -> Callable[[], dict[str, pa.Table]]:
    def inputs() -> dict[str, pa.Table]:
        tables = c.view_inputs(name)
        tables[name] = change(tables[name])
        return tables
    return inputs


def _split_first_row(view: pa.Table) -> pa.Table:
    """Row 0 split in two rows with the same key (measures all on the first): totals unchanged."""
    twin = {**c.row(view, 0), **{m: 0 for m in ("won_deals", "lost_deals", "created_deals")},
            **{m: Decimal("0.00") for m in ("booked_revenue", "pipeline_created", "refunds")}}
    return c.add_rows(view, [twin])


VIEWS = []
for _name, _key in (("territory_revenue", "territory_id"),
                    ("account_manager_revenue", "account_manager_id")):
    VIEWS += [
        Defect(f"{_name}: null key", _name, _view(
            _name, lambda t, k=_key: c.set_value(t, k, 0, None)), (f"{_key}_not_null",),
            "critical"),
        Defect(f"{_name}: null day", _name, _view(
            _name, lambda t: c.set_value(t, "day", 0, None)), ("day_not_null",), "critical"),
        Defect(f"{_name}: duplicated key", _name, _view(_name, _split_first_row),
               ("key_unique",), "critical"),
        *[Defect(f"{_name}: negative {m}", _name, _view(
            _name, lambda t, m=m: c.move_measure(t, m)), (f"{m}_non_negative",), "warning")
          for m in ("lost_deals", "created_deals", "refunds", "pipeline_created")],
        Defect(f"{_name}: a cent more than the facts", _name, _view(
            _name, lambda t: c.set_value(t, "booked_revenue", 0,
                                         c.row(t, 0)["booked_revenue"] + Decimal("0.01"))),
            ("totals_match_facts",), "critical"),
    ]

# -------------------------------------------------------------- reconciliation


def _unbalanced() -> dict[str, pa.Table]:
    tables = c.reconciliation_inputs()
    view = tables["territory_revenue"]
    tables["territory_revenue"] = c.set_value(
        view, "booked_revenue", 0, c.row(view, 0)["booked_revenue"] + Decimal("0.01"))
    return tables


def _published_reconciliation_with_a_repeated_day() -> dict[str, pa.Table]:
    days = frames_from_tables("reconciliation", c.reconciliation_inputs())["days"]
    return {"reconciliation": c.add_rows(days, [c.row(days, 0)])}


RECONCILIATION = [
    Defect("a day off by one cent", "reconciliation", _unbalanced, ("every_day_balanced",),
           "critical"),
    Defect("published view repeats a day", "reconciliation",
           _published_reconciliation_with_a_repeated_day, ("day_unique",), "warning"),
]

# ------------------------------------------------------------------- reference


def _ref(table: str, change: Callable[[pa.Table], pa.Table]) -> Callable[[], dict[str, pa.Table]]:
    def inputs() -> dict[str, pa.Table]:
        tables = c.reference()
        tables[table] = change(tables[table])
        return tables
    return inputs


def _dup(index: int) -> Callable[[pa.Table], pa.Table]:
    return lambda t: c.add_rows(t, [c.row(t, index)])


def _add(**row) -> Callable[[pa.Table], pa.Table]:
    for column in ("valid_from", "valid_to"):
        if isinstance(row.get(column), str):
            row[column] = ts(row[column])
    return lambda t: c.add_rows(t, [row])


REFERENCE = [
    Defect("account listed twice", "reference", _ref("accounts", _dup(0)),
           ("accounts_key_unique",), "critical"),
    Defect("territory listed twice", "reference", _ref("territories", _dup(3)),
           ("territories_key_unique",), "critical"),
    Defect("rule listed twice", "reference", _ref("territory_rules", _dup(1)),
           ("territory_rules_key_unique",), "warning"),
    Defect("person listed twice", "reference", _ref("people", _dup(0)),
           ("people_key_unique",), "warning"),
    Defect("two USD rates on one day", "reference", _ref("fx_rates", _dup(0)),
           ("fx_rates_key_unique",), "critical"),
    Defect("FX rate of zero", "reference", _ref(
        "fx_rates", lambda t: c.set_value(t, "rate_to_reporting", 1, Decimal("0"))),
        ("fx_rates_positive",), "critical"),
    Defect("overlapping assignment", "reference", _ref("account_assignments", _add(
        account_id="A2", account_manager_id="P6", valid_from="2026-01-01T00:00:00Z")),
        ("account_assignments_no_overlap",), "critical"),
    Defect("overlapping territory manager", "reference", _ref("territory_managers", _add(
        territory_id="DE", manager_id="P1", valid_from="2026-02-01T00:00:00Z",
        valid_to="2026-03-01T00:00:00Z")), ("territory_managers_no_overlap",), "critical"),
    Defect("cyclic territory tree", "reference", _ref(
        "territories", lambda t: c.set_value(t, "parent_territory_id", 5, "DE")),
        ("territory_tree_acyclic",), "critical"),
    # A second root in one tree needs a territory listed twice (once as a root).
    Defect("two roots in one tree", "reference", _ref("territories", _add(
        territory_id="EMEA", territory_name="EMEA", parent_territory_id=None, level="region")),
        ("territory_tree_single_root", "territories_key_unique"), "critical"),
    Defect("parent that does not exist", "reference", _ref(
        "territories", lambda t: c.set_value(t, "parent_territory_id", 5, "WORLD")),
        ("territory_parents_exist",), "critical"),
    Defect("rule naming an unknown territory", "reference", _ref("territory_rules", _add(
        territory_id="US-TX", country="US", region="TX")),
        ("territory_rules_name_known_territories",), "warning"),
    Defect("manager of an unknown territory", "reference", _ref("territory_managers", _add(
        territory_id="US-TX", manager_id="P1")),
        ("territory_managers_name_known_territories",), "warning"),
    Defect("assignment of an unknown account", "reference", _ref("account_assignments", _add(
        account_id="A9", account_manager_id="P5")),
        ("account_assignments_name_known_accounts",), "warning"),
    Defect("account manager who is nobody", "reference", _ref(
        "account_assignments", lambda t: c.set_value(t, "account_manager_id", 2, "P9")),
        ("account_managers_are_people",), "warning"),
    Defect("territory manager who is nobody", "reference", _ref(
        "territory_managers", lambda t: c.set_value(t, "manager_id", 3, "P9")),
        ("territory_managers_are_people",), "warning"),
    Defect("equally specific rules tie", "reference", _ref("territory_rules", _add(
        territory_id="US-NY", country="US", region="CA")), ("rule_ties_absent",), "critical"),
    Defect("primary shares summing to 105", "reference", _ref("account_splits", _add(
        account_id="A1", person_id="P3", role="ae", split_type="primary", percent=Decimal("5"),
        valid_from="2026-02-01T00:00:00Z", valid_to=None)),
        ("account_splits_primary_shares_sum_to_100",), "critical"),
    Defect("overlay listed twice", "reference", _ref("account_splits", _dup(2)),
           ("account_splits_no_overlap",), "warning"),
    Defect("team of an unknown account", "reference", _ref("account_splits", _add(
        account_id="A9", person_id="P5", role="ae", split_type="overlay", percent=Decimal("10"),
        valid_from=None, valid_to=None)), ("account_splits_name_known_accounts",), "warning"),
    Defect("split credit to nobody", "reference", _ref(
        "account_splits", lambda t: c.set_value(t, "person_id", 2, "P9")),
        ("account_splits_people_exist",), "warning"),
]

def _derived(name: str, change: Callable[[pa.Table], pa.Table],
             ) -> Callable[[], dict[str, pa.Table]]:
    def inputs() -> dict[str, pa.Table]:
        tables = _published_inputs()
        tables[name] = change(tables[name])
        return tables
    return inputs


def _mismatch(t: pa.Table) -> pa.Table:
    return c.add_rows(t, [{"event_id": "e02", "booked_revenue": Decimal("400.00"),
                           "primary_booked_revenue": Decimal("399.99"),
                           "pipeline_created": Decimal("0.00"),
                           "primary_pipeline_created": Decimal("0.00")}])


PUBLISHED = [
    Defect("account restated twice", "published", _derived("restated_attribution", _dup(0)),
           ("restated_one_credit_per_account",), "critical"),
    Defect("restated account without manager", "published", _derived(
        "restated_attribution", lambda t: c.set_value(t, "account_manager_id", 0, None)),
        ("restated_account_manager_not_null",), "critical"),
    Defect("restated account without territory manager", "published", _derived(
        "restated_attribution", lambda t: c.set_value(t, "territory_manager_id", 1, None)),
        ("restated_territory_manager_not_null",), "critical"),
    Defect("restated status unknown", "published", _derived(
        "restated_attribution", lambda t: c.set_value(t, "attribution_status", 0, "lost")),
        ("restated_status_known",), "critical"),
    Defect("calendar day twice", "published", _derived("fiscal_calendar", _dup(40)),
           ("fiscal_calendar_day_unique",), "critical"),
    Defect("fiscal period 13", "published", _derived(
        "fiscal_calendar", lambda t: c.set_value(t, "fiscal_period", 3, 13)),
        ("fiscal_period_in_range",), "critical"),
    Defect("fiscal quarter 5", "published", _derived(
        "fiscal_calendar", lambda t: c.set_value(t, "fiscal_quarter", 3, 5)),
        ("fiscal_quarter_in_range",), "critical"),
    Defect("fiscal week 0", "published", _derived(
        "fiscal_calendar", lambda t: c.set_value(t, "fiscal_week", 3, 0)),
        ("fiscal_week_in_range",), "critical"),
    Defect("calendar day missing", "published", _derived(
        "fiscal_calendar", lambda t: t.take(pa.array([i for i in range(t.num_rows) if i != 100]))),
        ("fiscal_calendar_without_gaps",), "critical"),
    Defect("split credit a cent short", "published", _derived("split_mismatches", _mismatch),
           ("split_credit_ties_out",), "critical"),
]

DEFECTS = RAW + ENRICHED + VIEWS + RECONCILIATION + REFERENCE + PUBLISHED


@pytest.mark.parametrize("suite", SUITES)
def test_the_clean_data_set_passes_every_expectation(suite):
    results = run(suite, CLEAN[suite]())
    assert failures(results) == {}
    assert results.num_rows == len(load_suite(suite).expectations)
    assert all(o and not o.startswith("error") for o in results["observed"].to_pylist())


@pytest.mark.parametrize("defect", DEFECTS, ids=lambda d: d.id)
def test_a_planted_defect_fails_exactly_its_expectation(defect):
    failed = failures(run(defect.suite, defect.inputs()))
    assert set(failed) == set(defect.fails)
    assert failed[defect.fails[0]] == defect.severity


def test_every_expectation_of_every_suite_has_a_planted_defect():
    planted = {(d.suite, name) for d in DEFECTS for name in d.fails}
    declared = {(s, e.name) for s in SUITES for e in load_suite(s).expectations}
    assert declared - planted == set()


def test_failures_show_examples_with_the_frames_id_columns():
    defect = next(d for d in DEFECTS if d.id == "unknown event type")
    row = next(r for r in run(defect.suite, defect.inputs()).to_pylist() if not r["success"])
    assert row["observed"].startswith("1 of 10 value(s) unexpected")
    assert '"event_type": "deal_teleported"' in row["examples"]
    assert '"event_id": "e01"' in row["examples"] and '"position": 1' in row["examples"]


def test_a_failing_derived_frame_shows_its_offending_rows():
    defect = next(d for d in DEFECTS if d.id == "cyclic territory tree")
    row = next(r for r in run(defect.suite, defect.inputs()).to_pylist() if not r["success"])
    assert row["observed"] == "2 row(s)"
    assert "DE > EMEA > DE" in row["examples"]


def test_unbalanced_day_example_names_the_day_and_totals():
    row = next(r for r in run("reconciliation", _unbalanced()).to_pylist() if not r["success"])
    assert '"day": "2026-03-01"' in row["examples"]
    assert '"territory_total": "400.01"' in row["examples"]


def test_event_time_window_is_a_run_time_parameter():
    inputs = {"events": c.events()}
    late = {"event_time_max": "2026-03-01T12:00:00Z"}
    assert set(failures(run("raw_events", inputs, late))) == {"event_time_in_window"}
    early = {"event_time_min": dt.date(2026, 3, 2), "event_time_max": "now+1d"}
    assert set(failures(run("raw_events", inputs, early))) == {"event_time_in_window"}


def test_unassigned_share_threshold_is_a_run_time_parameter():
    inputs = {"attributed_events": c.attributed_events()}  # 1 of 10 UNASSIGNED
    results = run("enriched_events", inputs, {"unassigned_share_max": 0.05})
    assert set(failures(results)) == {"unassigned_territory_share",
                                      "unassigned_account_manager_share"}
    assert failures(run("enriched_events", inputs, {"unassigned_share_max": "0.1"})) == {}


def test_reconciliation_from_the_published_view_recomputes_balanced():
    days = frames_from_tables("reconciliation", c.reconciliation_inputs())["days"]
    lying = c.set_value(days, "territory_total", 0, Decimal("1.00"))  # balanced still says true
    assert reconciliation_frame_from_view(lying)["balanced"].to_pylist()[0] is False
    assert set(failures(run("reconciliation", {"reconciliation": lying}))) == {
        "every_day_balanced"}
