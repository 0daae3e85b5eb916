"""Territory rule matching, specificity, ties and the manager walk-up."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.rules.asof import TIME_TYPE, lookup_asof, resolve_timeline
from pipelines.rules.territory import (
    MAX_DEPTH,
    account_territory_candidates,
    territory_cycles,
    territory_manager_candidates,
    territory_missing_parents,
    territory_rule_ties,
)
from schemas.reference import REFERENCE_SCHEMAS
from tests.utils import ts


def ref(table: str, rows: list[dict]) -> pa.Table:
    """A typed reference table from partial dicts (times as RFC 3339 text)."""
    schema = REFERENCE_SCHEMAS[table]
    full = []
    for row in rows:
        row = {name: row.get(name) for name in schema.names}
        for name in ("valid_from", "valid_to"):
            if name in row and row[name] is not None:
                row[name] = ts(row[name])
        full.append(row)
    return pa.Table.from_pylist(full, schema=schema)


def rule(territory_id: str, country: str, region=None, city=None, postal_prefix=None,
         valid_from=None, valid_to=None) -> dict:
    return {"territory_id": territory_id, "country": country, "region": region, "city": city,
            "postal_prefix": postal_prefix, "valid_from": valid_from, "valid_to": valid_to}


ACCOUNTS = ref("accounts", [
    {"account_id": "A1", "country": "US", "region": "CA", "city": "San Francisco",
     "postal_code": "94107"},
    {"account_id": "A2", "country": " us ", "region": " ca", "city": "SAN FRANCISCO ",
     "postal_code": " 94110 "},
    {"account_id": "A3", "country": "US", "region": "NY", "city": "New York",
     "postal_code": "10001"},
    {"account_id": "A4", "country": "DE", "region": None, "city": "Berlin", "postal_code": None},
    {"account_id": "A5", "country": "gb", "region": "England", "city": "London",
     "postal_code": "sw1a 1aa"},
])


def territory_at(accounts: pa.Table, rules: pa.Table, account: str, when: str) -> str | None:
    timeline = resolve_timeline(account_territory_candidates(accounts, rules))
    return lookup_asof(timeline, pa.array([account]), pa.array([ts(when)], TIME_TYPE))[0].as_py()


NOW = "2026-03-01T12:00:00Z"


def test_postal_prefix_beats_city_beats_region_beats_country():
    rules = ref("territory_rules", [
        rule("T-US", "US"),
        rule("T-CA", "US", region="CA"),
        rule("T-SF", "US", region="CA", city="San Francisco"),
        rule("T-941", "US", postal_prefix="941"),
    ])
    assert territory_at(ACCOUNTS, rules, "A1", NOW) == "T-941"  # prefix beats city
    without_prefix = rules.filter(pa.array([True, True, True, False]))
    assert territory_at(ACCOUNTS, without_prefix, "A1", NOW) == "T-SF"
    assert territory_at(ACCOUNTS, rules.slice(0, 2), "A1", NOW) == "T-CA"
    assert territory_at(ACCOUNTS, rules.slice(0, 1), "A1", NOW) == "T-US"
    assert territory_at(ACCOUNTS, rules, "A3", NOW) == "T-US"  # NY: only the country rule
    assert territory_at(ACCOUNTS, rules, "A4", NOW) is None  # DE: nothing matches


def test_longest_postal_prefix_wins():
    rules = ref("territory_rules", [
        rule("T-9", "US", postal_prefix="9"),
        rule("T-941", "US", postal_prefix="941"),
        rule("T-9410", "US", postal_prefix="9410"),
        rule("T-94107X", "US", postal_prefix="94107X"),  # longer than the postal code
    ])
    assert territory_at(ACCOUNTS, rules, "A1", NOW) == "T-9410"  # 94107
    assert territory_at(ACCOUNTS, rules, "A2", NOW) == "T-941"  # 94110


def test_matching_is_trimmed_and_case_insensitive():
    rules = ref("territory_rules", [
        rule("T-SF", " US", region="Ca ", city=" san francisco"),
        rule("T-SW1", "GB", postal_prefix=" SW1A "),
    ])
    assert territory_at(ACCOUNTS, rules, "A2", NOW) == "T-SF"
    assert territory_at(ACCOUNTS, rules, "A5", NOW) == "T-SW1"  # "sw1a 1aa" upper-cased


def test_a_rule_field_left_empty_matches_anything():
    rules = ref("territory_rules", [rule("T-CITY", "US", city="new york")])
    assert territory_at(ACCOUNTS, rules, "A3", NOW) == "T-CITY"
    assert territory_at(ACCOUNTS, rules, "A1", NOW) is None


def test_a_rule_valid_only_part_of_the_period():
    rules = ref("territory_rules", [
        rule("T-US", "US"),
        rule("T-CA", "US", region="CA", valid_from="2026-02-01", valid_to="2026-03-01"),
    ])
    assert territory_at(ACCOUNTS, rules, "A1", "2026-01-31T23:59:59Z") == "T-US"
    assert territory_at(ACCOUNTS, rules, "A1", "2026-02-01T00:00:00Z") == "T-CA"
    assert territory_at(ACCOUNTS, rules, "A1", "2026-03-01T00:00:00Z") == "T-US"


def test_equally_specific_rules_resolve_to_smallest_id_and_are_reported():
    rules = ref("territory_rules", [
        rule("T-WEST", "US", region="CA", valid_to="2026-06-01"),
        rule("T-PACIFIC", "US", region="ca", valid_from="2026-01-01"),
        rule("T-SF", "US", region="CA", city="San Francisco", valid_from="2026-04-01"),
    ])
    assert territory_at(ACCOUNTS, rules, "A1", "2025-12-31T00:00:00Z") == "T-WEST"
    assert territory_at(ACCOUNTS, rules, "A1", "2026-02-01T00:00:00Z") == "T-PACIFIC"
    ties = territory_rule_ties(ACCOUNTS, rules).to_pylist()
    overlap = (ts("2026-01-01T00:00:00Z"), ts("2026-06-01T00:00:00Z"))
    assert ties == [
        {"account_id": account, "territory_ids": ["T-PACIFIC", "T-WEST"],
         "valid_from": overlap[0], "valid_to": overlap[1], "specificity": 3}
        for account in ("A1", "A2")
    ]


def test_no_tie_when_validity_does_not_overlap_or_territory_is_the_same():
    rules = ref("territory_rules", [
        rule("T-A", "US", region="CA", valid_to="2026-01-01"),
        rule("T-B", "US", region="CA", valid_from="2026-01-01"),  # touches, no overlap
        rule("T-C", "US", region="NY"),
        rule("T-C", "US", region="ny"),  # same territory twice: not a tie
    ])
    assert territory_rule_ties(ACCOUNTS, rules).num_rows == 0


# ----------------------------------------------------------------- walk-up


TREE = ref("territories", [
    {"territory_id": "GLOBAL", "parent_territory_id": None, "level": "global"},
    {"territory_id": "AMER", "parent_territory_id": "GLOBAL", "level": "region"},
    {"territory_id": "WEST", "parent_territory_id": "AMER", "level": "group"},
    {"territory_id": "CA", "parent_territory_id": "WEST", "level": "state"},
    {"territory_id": "OR", "parent_territory_id": "WEST", "level": "state"},
    {"territory_id": "SF", "parent_territory_id": "CA", "level": "city"},
])


def manager_at(tree: pa.Table, managers: pa.Table, territory: str, when: str) -> str | None:
    timeline = resolve_timeline(territory_manager_candidates(tree, managers))
    return lookup_asof(timeline, pa.array([territory]), pa.array([ts(when)], TIME_TYPE))[0].as_py()


def test_a_state_without_its_own_manager_gets_its_groups_manager():
    managers = ref("territory_managers", [
        {"territory_id": "WEST", "manager_id": "P-WEST"},
        {"territory_id": "CA", "manager_id": "P-CA"},
        {"territory_id": "GLOBAL", "manager_id": "P-CEO"},
    ])
    assert manager_at(TREE, managers, "OR", NOW) == "P-WEST"
    assert manager_at(TREE, managers, "CA", NOW) == "P-CA"
    assert manager_at(TREE, managers, "SF", NOW) == "P-CA"  # two levels up
    assert manager_at(TREE, managers, "AMER", NOW) == "P-CEO"


def test_a_manager_change_at_a_timestamp_and_a_vacancy_falls_back_upwards():
    managers = ref("territory_managers", [
        {"territory_id": "CA", "manager_id": "P-OLD", "valid_to": "2026-03-01T15:00:00Z"},
        {"territory_id": "CA", "manager_id": "P-NEW", "valid_from": "2026-03-10T00:00:00Z"},
        {"territory_id": "WEST", "manager_id": "P-WEST"},
    ])
    assert manager_at(TREE, managers, "SF", "2026-03-01T14:59:59Z") == "P-OLD"
    assert manager_at(TREE, managers, "SF", "2026-03-01T15:00:00Z") == "P-WEST"  # vacancy
    assert manager_at(TREE, managers, "SF", "2026-03-10T00:00:00Z") == "P-NEW"


def test_no_manager_anywhere_up_the_tree():
    managers = ref("territory_managers", [{"territory_id": "OR", "manager_id": "P-OR"}])
    assert manager_at(TREE, managers, "CA", NOW) is None


def test_a_cycle_is_reported_and_does_not_loop_forever():
    tree = ref("territories", [
        {"territory_id": "X", "parent_territory_id": "Y"},
        {"territory_id": "Y", "parent_territory_id": "Z"},
        {"territory_id": "Z", "parent_territory_id": "X"},
        {"territory_id": "LEAF", "parent_territory_id": "X"},
        {"territory_id": "SELF", "parent_territory_id": "SELF"},
        {"territory_id": "ROOT", "parent_territory_id": None},
        {"territory_id": "CHILD", "parent_territory_id": "ROOT"},
    ])
    assert territory_cycles(tree) == ["SELF", "X", "Y", "Z"]
    assert territory_cycles(TREE) == []
    managers = ref("territory_managers", [{"territory_id": "Z", "manager_id": "P-Z"}])
    candidates = territory_manager_candidates(tree, managers)
    assert manager_at(tree, managers, "LEAF", NOW) == "P-Z"  # LEAF -> X -> Y -> Z
    assert manager_at(tree, managers, "X", NOW) == "P-Z"
    # Z's manager row once for each territory below it on the cycle and LEAF.
    found = sorted(zip(candidates["key"].to_pylist(), candidates["priority"].to_pylist(),
                       strict=True))
    assert found == [("LEAF", -3), ("X", -2), ("Y", -1), ("Z", 0)]


def test_missing_parents_end_the_walk_and_are_reported():
    tree = ref("territories", [
        {"territory_id": "A", "parent_territory_id": "GHOST"},
        {"territory_id": "B", "parent_territory_id": "A"},
    ])
    managers = ref("territory_managers", [{"territory_id": "GHOST", "manager_id": "P-G"}])
    assert territory_missing_parents(tree).to_pylist() == [
        {"territory_id": "A", "parent_territory_id": "GHOST"}]
    # GHOST has no row, but its manager row still applies when walking up.
    assert manager_at(tree, managers, "B", NOW) == "P-G"


def test_walk_stops_at_max_depth():
    chain = [{"territory_id": f"L{i}", "parent_territory_id": f"L{i + 1}"}
             for i in range(MAX_DEPTH + 5)]
    tree = ref("territories", chain)
    managers = ref("territory_managers", [
        {"territory_id": f"L{MAX_DEPTH + 5}", "manager_id": "P-TOP"}])
    assert manager_at(tree, managers, f"L{10}", NOW) == "P-TOP"  # 59 levels up
    assert manager_at(tree, managers, "L0", NOW) is None  # 69 levels up: cut


@pytest.mark.parametrize("empty", ["accounts", "territory_rules"])
def test_empty_inputs(empty):
    rules = ref("territory_rules", [rule("T-US", "US")])
    tables = {"accounts": ACCOUNTS, "territory_rules": rules}
    tables[empty] = REFERENCE_SCHEMAS[empty].empty_table()
    assert account_territory_candidates(tables["accounts"], tables["territory_rules"]).num_rows == 0
    assert territory_rule_ties(tables["accounts"], tables["territory_rules"]).num_rows == 0
