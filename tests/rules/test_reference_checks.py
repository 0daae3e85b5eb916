"""Reference checks that GX cannot express on one frame: overlaps, cycles, roots, orphans, ties."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.rules.reference_checks import (
    CYCLE_SCHEMA,
    TIE_SCHEMA,
    equally_specific_rule_ties,
    orphan_references,
    overlapping_intervals,
    roots_per_tree,
    territory_cycles,
)
from schemas.reference import REFERENCE_SCHEMAS
from tests.utils import ts


def _table(name: str, rows: list[dict]) -> pa.Table:
    schema = REFERENCE_SCHEMAS[name]
    full = []
    for row in rows:
        record = {n: row.get(n) for n in schema.names}
        for column in ("valid_from", "valid_to"):
            if record.get(column):
                record[column] = ts(record[column])
        full.append(record)
    return pa.Table.from_pylist(full, schema=schema)


def assignments(*rows: tuple[str, str, str | None, str | None]) -> pa.Table:
    return _table("account_assignments", [
        {"account_id": a, "account_manager_id": m, "valid_from": f, "valid_to": t}
        for a, m, f, t in rows])


def territories(*rows: tuple[str, str | None]) -> pa.Table:
    return _table("territories", [{"territory_id": t, "parent_territory_id": p} for t, p in rows])


# ------------------------------------------------------------------ overlaps

JAN, FEB, MAR = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"


def test_consecutive_intervals_do_not_overlap():
    table = assignments(("A1", "M1", None, JAN), ("A1", "M2", JAN, FEB), ("A1", "M3", FEB, None),
                        ("A2", "M1", None, None))
    assert overlapping_intervals(table, "account_id").num_rows == 0


@pytest.mark.parametrize("rows, expected", [
    # open start overlaps a later start
    ([("A1", "M1", None, FEB), ("A1", "M2", JAN, None)], [("M2", "M1")]),
    # two open-ended rows
    ([("A1", "M1", JAN, None), ("A1", "M2", MAR, None)], [("M2", "M1")]),
    # same start
    ([("A1", "M1", JAN, FEB), ("A1", "M2", JAN, MAR)], [("M2", "M1")]),
    # contained in a long interval, after a short one that does not reach it
    ([("A1", "M1", None, None), ("A1", "M2", JAN, FEB), ("A1", "M3", FEB, MAR)],
     [("M2", "M1"), ("M3", "M1")]),
])
def test_overlaps_are_reported_with_the_row_they_overlap(rows, expected):
    out = overlapping_intervals(assignments(*rows), "account_id")
    got = sorted(zip(out["account_manager_id"].to_pylist(),
                     out["other_account_manager_id"].to_pylist(), strict=True))
    assert got == sorted(expected)
    assert set(out["account_id"].to_pylist()) == {"A1"}


def test_same_interval_on_different_keys_is_fine_and_empty_intervals_overlap_nothing():
    table = assignments(("A1", "M1", JAN, MAR), ("A2", "M1", JAN, MAR), ("A1", "M2", FEB, FEB))
    assert overlapping_intervals(table, "account_id").num_rows == 0


def test_overlap_rows_point_back_to_input_positions():
    table = assignments(("A2", "M9", None, None), ("A1", "M1", JAN, None), ("A1", "M2", FEB, None))
    out = overlapping_intervals(table, "account_id").to_pylist()
    assert [(r["row"], r["other_row"]) for r in out] == [(2, 1)]
    assert out[0]["other_valid_from"] == ts(JAN)


def test_overlaps_by_compound_key_and_on_empty_input():
    table = assignments(("A1", "M1", None, None), ("A1", "M2", None, None))
    assert overlapping_intervals(table, ["account_id", "account_manager_id"]).num_rows == 0
    empty = overlapping_intervals(table.slice(0, 0), "account_id")
    assert empty.num_rows == 0 and "other_row" in empty.column_names


# ---------------------------------------------------------------- the tree


def test_a_proper_forest_has_no_cycle_and_one_root_per_tree():
    tree = territories(("G", None), ("NA", "G"), ("US", "NA"), ("EU", "G"), ("X", ""), ("X1", "X"))
    assert territory_cycles(tree).num_rows == 0
    trees = roots_per_tree(tree).to_pylist()
    assert [(t["tree"], t["roots"], t["territories"]) for t in trees] == [("G", 1, 4), ("X", 1, 2)]


def test_cycles_are_found_and_spelled_from_their_smallest_id():
    tree = territories(("G", None), ("B", "C"), ("C", "A"), ("A", "B"), ("D", "A"), ("S", "S"))
    out = territory_cycles(tree)
    assert out.schema == CYCLE_SCHEMA
    assert sorted(out["territory_id"].to_pylist()) == ["A", "B", "C", "S"]
    assert set(out["cycle"].to_pylist()) == {"A > B > C > A", "S > S"}


def test_a_territory_listed_twice_once_as_root_makes_two_roots_in_one_tree():
    tree = territories(("G", None), ("EU", "G"), ("DE", "EU"), ("EU", None))
    trees = roots_per_tree(tree).to_pylist()
    assert trees == [{"tree": "EU", "roots": 2, "root_ids": "EU, G", "territories": 3}]


def test_a_cycle_is_a_tree_without_root():
    trees = roots_per_tree(territories(("A", "B"), ("B", "A"), ("C", "A"))).to_pylist()
    assert [(t["roots"], t["territories"]) for t in trees] == [(0, 3)]


# ------------------------------------------------------------------ orphans


def test_orphan_references_keep_the_row_and_ignore_empty_values():
    tree = territories(("G", None), ("EU", "G"), ("DE", "EUROPE"), ("FR", " "))
    out = orphan_references(tree, "parent_territory_id", tree, "territory_id").to_pylist()
    assert [(r["row"], r["territory_id"], r["parent_territory_id"]) for r in out] == [
        (2, "DE", "EUROPE")]


# --------------------------------------------------------------------- ties


def accounts(*rows: tuple[str, str, str | None, str | None, str | None]) -> pa.Table:
    return _table("accounts", [
        {"account_id": a, "country": c, "region": r, "city": ci, "postal_code": p}
        for a, c, r, ci, p in rows])


def rules(*rows: tuple) -> pa.Table:
    return _table("territory_rules", [
        dict(zip(("territory_id", "country", "region", "city", "postal_prefix", "valid_from",
                  "valid_to"), row + (None,) * (7 - len(row)), strict=True))
        for row in rows])


ACCOUNTS = accounts(("A1", "US", "CA", "San Francisco", "94105"),
                    ("A2", "US", "NY", "New York", "10001"),
                    ("A3", "DE", None, "Berlin", "10115"))


def test_no_tie_when_one_rule_is_more_specific_or_rules_name_one_territory():
    out = equally_specific_rule_ties(ACCOUNTS, rules(
        ("US", "US"), ("CA", "US", "CA"), ("SF", "US", "CA", None, "941"),
        ("CA", "us", " ca "),  # same pattern, same territory: redundant, not a tie
    ))
    assert out.num_rows == 0


def test_equal_patterns_of_two_territories_tie_case_insensitively():
    out = equally_specific_rule_ties(ACCOUNTS, rules(("CA", "US", "CA"), ("WEST", "us", "ca ")))
    assert out.schema == TIE_SCHEMA
    [tie] = out.to_pylist()
    assert (tie["account_id"], tie["territory_id"], tie["other_territory_id"]) == (
        "A1", "CA", "WEST")
    assert tie["valid_from"] is None and tie["valid_to"] is None


def test_ties_need_overlapping_validity_and_a_matching_account():
    disjoint = rules(("CA", "US", "CA", None, None, None, "2026-01-01T00:00:00Z"),
                     ("WEST", "US", "CA", None, None, "2026-01-01T00:00:00Z", None))
    assert equally_specific_rule_ties(ACCOUNTS, disjoint).num_rows == 0
    nobody = rules(("TX", "US", "TX"), ("SOUTH", "US", "TX"))
    assert equally_specific_rule_ties(ACCOUNTS, nobody).num_rows == 0
    overlapping = rules(("CA", "US", "CA", None, None, None, "2026-03-01T00:00:00Z"),
                        ("WEST", "US", "CA", None, None, "2026-01-01T00:00:00Z", None))
    [tie] = equally_specific_rule_ties(ACCOUNTS, overlapping).to_pylist()
    assert (tie["valid_from"], tie["valid_to"]) == (ts("2026-01-01T00:00:00Z"),
                                                   ts("2026-03-01T00:00:00Z"))


def test_postal_prefix_ties_only_between_prefixes_of_the_same_account():
    out = equally_specific_rule_ties(ACCOUNTS, rules(
        ("SF", "US", None, None, "941"), ("BAY", "US", None, None, "941"),
        ("NYC", "US", None, None, "100"), ("BERLIN", "DE", None, None, "101"),
    ))
    assert [(r["account_id"], r["territory_id"], r["other_territory_id"])
            for r in out.to_pylist()] == [("A1", "BAY", "SF")]
