"""Account-team splits: exact largest-remainder shares, overlays, teams over time."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.rules.splits import (
    SplitIndex,
    decimal_units,
    half_even_shares,
    largest_remainder,
    split_credit,
    team_intervals,
    units_decimal,
)
from schemas.money import REPORTING_MONEY_TYPE
from schemas.reference import PERCENT_TYPE, REFERENCE_SCHEMAS

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, tzinfo=UTC)
T1 = dt.datetime(2026, 2, 1, tzinfo=UTC)


def splits(*rows: tuple) -> pa.Table:
    """Rows of (account, person, role, split_type, percent, valid_from, valid_to)."""
    names = ("account_id", "person_id", "role", "split_type", "percent", "valid_from", "valid_to")
    columns = {n: [r[i] for r in rows] for i, n in enumerate(names)}
    columns["percent"] = [Decimal(p) for p in columns["percent"]]
    return pa.table(columns, schema=REFERENCE_SCHEMAS["account_splits"])


def facts(*rows: tuple) -> pa.Table:
    """Rows of (event_id, account, account manager, event_time, booked, pipeline)."""
    n = len(rows)
    return pa.table({
        "event_id": [r[0] for r in rows],
        "event_type": ["deal_won"] * n,
        "event_time": pa.array([r[3] for r in rows], pa.timestamp("us", tz="UTC")),
        "day": [r[3].date() for r in rows],
        "account_id": [r[1] for r in rows],
        "account_manager_id": [r[2] for r in rows],
        "booked_revenue": pa.array([Decimal(r[4]) for r in rows], REPORTING_MONEY_TYPE),
        "pipeline_created": pa.array([Decimal(r[5]) for r in rows], REPORTING_MONEY_TYPE),
        "run_id": ["r1"] * n,
    })


def credit_by_person(table: pa.Table, measure: str = "booked_revenue") -> dict:
    return {(p, t): v for p, t, v in zip(table["person_id"].to_pylist(),
                                         table["split_type"].to_pylist(),
                                         table[measure].to_pylist(), strict=True)}


def test_a_third_each_of_one_hundred_gives_the_left_over_cent_to_the_first_person():
    index = SplitIndex.build(splits(
        ("A", "P1", "ae", "primary", "33.3333", None, None),
        ("A", "P2", "ae", "primary", "33.3333", None, None),
        ("A", "P3", "ae", "primary", "33.3334", None, None)))
    out = split_credit(facts(("e1", "A", "AM", T0, "100.00", "0")), index)
    credit = credit_by_person(out)
    assert sum(credit.values()) == Decimal("100.00")
    # 33.3334 % of 100.00 = 33.33334: floor 33.33, the largest remainder takes the cent.
    assert credit == {("P1", "primary"): Decimal("33.33"), ("P2", "primary"): Decimal("33.33"),
                      ("P3", "primary"): Decimal("33.34")}


def test_equal_remainders_go_to_the_person_first_in_order_deterministically():
    index = SplitIndex.build(splits(
        ("A", "P2", "ae", "primary", "50", None, None),
        ("A", "P1", "ae", "primary", "50", None, None)))
    out = split_credit(facts(("e1", "A", "AM", T0, "0.01", "0")), index)
    assert credit_by_person(out) == {("P1", "primary"): Decimal("0.01"),
                                     ("P2", "primary"): Decimal("0.00")}


def test_a_refund_takes_back_exactly_what_the_win_credited():
    index = SplitIndex.build(splits(
        ("A", "P1", "ae", "primary", "60", None, None),
        ("A", "P2", "se", "primary", "40", None, None),
        ("A", "P9", "overlay", "overlay", "12.5", None, None)))
    won = split_credit(facts(("e1", "A", "AM", T0, "10.05", "0")), index)
    refunded = split_credit(facts(("e2", "A", "AM", T0, "-10.05", "0")), index)
    assert {k: -v for k, v in credit_by_person(won).items()} == credit_by_person(refunded)


def test_overlay_is_credited_in_addition_and_rounded_half_even():
    index = SplitIndex.build(splits(
        ("A", "P1", "ae", "primary", "100", None, None),
        ("A", "P9", "specialist", "overlay", "10", None, None)))
    out = split_credit(facts(("e1", "A", "AM", T0, "0.25", "0"),
                             ("e2", "A", "AM", T0, "0.35", "0")), index)
    rows = sorted(zip(out["event_id"].to_pylist(), out["split_type"].to_pylist(),
                      out["booked_revenue"].to_pylist(), strict=True))
    # 10 % of 0.25 = 0.025 -> 0.02 (half to even); of 0.35 = 0.035 -> 0.04.
    assert rows == [("e1", "overlay", Decimal("0.02")), ("e1", "primary", Decimal("0.25")),
                    ("e2", "overlay", Decimal("0.04")), ("e2", "primary", Decimal("0.35"))]


def test_overlays_without_primaries_leave_the_account_manager_one_hundred_percent():
    index = SplitIndex.build(splits(("A", "P9", "specialist", "overlay", "5", None, None)))
    out = split_credit(facts(("e1", "A", "AM-7", T0, "200.00", "0")), index)
    credit = credit_by_person(out)
    assert credit == {("AM-7", "primary"): Decimal("200.00"), ("P9", "overlay"): Decimal("10.00")}
    assert out.filter(pa.compute.equal(out["split_type"], "primary"))["role"].to_pylist() == [
        "account_manager"]


def test_the_team_valid_at_the_event_time_splits_it_and_other_accounts_get_no_rows():
    index = SplitIndex.build(splits(
        ("A", "P1", "ae", "primary", "100", None, T1),
        ("A", "P1", "ae", "primary", "50", T1, None),
        ("A", "P2", "ae", "primary", "50", T1, None)))
    before = T1 - dt.timedelta(microseconds=1)
    out = split_credit(facts(("e1", "A", "AM", before, "9.00", "0"),
                             ("e2", "A", "AM", T1, "9.00", "0"),
                             ("e3", "B", "AM", T1, "9.00", "0")), index)
    got = sorted(zip(out["event_id"].to_pylist(), out["person_id"].to_pylist(),
                     out["booked_revenue"].to_pylist(), strict=True))
    assert got == [("e1", "P1", Decimal("9.00")), ("e2", "P1", Decimal("4.50")),
                   ("e2", "P2", Decimal("4.50"))]


def test_primary_percents_not_summing_to_100_share_in_proportion_and_are_reported():
    table = splits(("A", "P1", "ae", "primary", "30", None, T1),
                   ("A", "P2", "ae", "primary", "30", None, None))
    out = split_credit(facts(("e1", "A", "AM", T0, "10.00", "0")), SplitIndex.build(table))
    assert credit_by_person(out) == {("P1", "primary"): Decimal("5.00"),
                                     ("P2", "primary"): Decimal("5.00")}
    intervals = team_intervals(table)
    assert intervals["primary_percent"].to_pylist() == [Decimal("60.0000"), Decimal("30.0000")]
    assert intervals["valid_to"].to_pylist()[0] == T1


def test_pipeline_created_is_split_like_booked_revenue():
    index = SplitIndex.build(splits(("A", "P1", "ae", "primary", "70", None, None),
                                    ("A", "P2", "ae", "primary", "30", None, None)))
    out = split_credit(facts(("e1", "A", "AM", T0, "0", "0.99")), index)
    assert credit_by_person(out, "pipeline_created") == {
        ("P1", "primary"): Decimal("0.69"), ("P2", "primary"): Decimal("0.30")}


def test_amounts_near_the_decimal_18_2_limit_split_exactly():
    index = SplitIndex.build(splits(("A", "P1", "ae", "primary", "33.3333", None, None),
                                    ("A", "P2", "ae", "primary", "66.6667", None, None)))
    big = "9999999999999999.99"
    out = split_credit(facts(("e1", "A", "AM", T0, big, "0")), index)
    assert sum(out["booked_revenue"].to_pylist()) == Decimal(big)


def test_decimal_units_round_trip_with_offsets_and_negatives():
    values = pa.array([Decimal("-1.05"), Decimal("0.00"), Decimal("12345678901234.56")],
                      REPORTING_MONEY_TYPE)
    units = decimal_units(values.slice(1))
    assert units.tolist() == [0, 1234567890123456]
    assert units_decimal(decimal_units(values), REPORTING_MONEY_TYPE).equals(values)
    assert units_decimal(np.array([1_000_000]), PERCENT_TYPE).to_pylist() == [Decimal("100")]


@settings(max_examples=200, deadline=None)
@given(amount=st.integers(0, 10**17), weights=st.lists(st.integers(1, 10**6), min_size=1,
                                                         max_size=6))
def test_largest_remainder_shares_sum_to_the_amount_and_each_is_within_a_cent(amount, weights):
    units = np.array(weights, dtype=np.int64)
    owner = np.zeros(len(weights), dtype=np.int64)
    total = int(units.sum())
    shares = largest_remainder(np.array([amount], dtype=np.int64), owner, units,
                               np.array([total], dtype=np.int64))
    assert int(shares.sum()) == amount
    for share, weight in zip(shares.tolist(), weights, strict=True):
        exact = Decimal(amount) * weight / total
        assert abs(Decimal(share) - exact) < 1


@pytest.mark.parametrize(("amount", "units", "expected"), [
    (25, 100_000, 2), (35, 100_000, 4), (15, 100_000, 2), (-25, 100_000, -2)])
def test_half_even_overlay_rounding(amount, units, expected):
    got = half_even_shares(np.abs(np.array([amount])), np.array([units]))
    assert int(got[0]) * (1 if amount >= 0 else -1) == expected


def test_restated_teams_are_the_members_valid_at_the_moment_in_rule_order():
    from pipelines.rules.splits import restated_teams

    table = splits(("A", "P2", "ae", "primary", "50", None, T1),
                   ("A", "P1", "ae", "primary", "50", None, T1),
                   ("A", "P9", "specialist", "overlay", "10", None, None),
                   ("B", "P3", "ae", "primary", "100", T1, None))
    before = restated_teams(table, T0)
    assert list(zip(before["account_id"].to_pylist(), before["person_id"].to_pylist(),
                    before["split_type"].to_pylist(), strict=True)) == [
        ("A", "P1", "primary"), ("A", "P2", "primary"), ("A", "P9", "overlay")]
    after = restated_teams(table, T1)
    # A keeps only its overlay: the account manager's default member (null person) leads.
    assert list(zip(after["account_id"].to_pylist(), after["person_id"].to_pylist(),
                    after["role"].to_pylist(), after["percent"].to_pylist(), strict=True)) == [
        ("A", None, "account_manager", Decimal("100.0000")),
        ("A", "P9", "specialist", Decimal("10.0000")), ("B", "P3", "ae", Decimal("100.0000"))]
    assert set(after["as_of"].to_pylist()) == {T1}
    assert restated_teams(splits(), T0).num_rows == 0


_TIMES = [None, T0, T1, dt.datetime(2026, 3, 1, tzinfo=UTC)]
_split_row = st.tuples(
    st.sampled_from(["A", "B", "C"]), st.sampled_from(["P1", "P2", "P3"]),
    st.sampled_from(["ae", "se", None]), st.sampled_from(["primary", "overlay"]),
    st.sampled_from(["10", "25.5", "50", "100"]), st.sampled_from(_TIMES[:3]),
    st.sampled_from([None, *_TIMES[1:]]))


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(_split_row, max_size=8),
       moment=st.sampled_from([T0 - dt.timedelta(days=1), T0, T1, T1 + dt.timedelta(days=45)]))
def test_restated_teams_from_the_table_equal_the_teams_of_its_split_index(rows, moment):
    from pipelines.rules.splits import restated_teams

    table = splits(*rows)
    assert restated_teams(table, moment).equals(
        restated_teams(SplitIndex.build(table), moment))


def test_a_split_index_of_some_accounts_splits_their_facts_as_the_whole_index_does():
    table = splits(("A", "P1", "ae", "primary", "60", None, T1),
                   ("A", "P2", "ae", "primary", "40", None, None),
                   ("B", "P3", "ae", "primary", "100", None, None))
    fact_rows = facts(("e1", "A", "AM", T0, "10.01", "0"), ("e2", "A", "AM", T1, "3.00", "1"))
    some = SplitIndex.build(table, pa.array(["A"]))
    assert some.timeline.keys.to_pylist() == ["A"]  # B's teams are not resolved
    assert split_credit(fact_rows, some).equals(split_credit(fact_rows, SplitIndex.build(table)))
    assert SplitIndex.build(table, pa.array([], pa.string())).empty
