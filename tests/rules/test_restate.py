"""The restated basis: each account's credit under the reference in force at one date."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from pipelines.rules.enrich import EnrichmentIndex, enrich
from pipelines.rules.restate import restate_moment, restated_attribution
from schemas.outputs import RESTATED_ATTRIBUTION_SCHEMA
from schemas.reference import REFERENCE_SCHEMAS, UNASSIGNED

UTC = dt.UTC


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def reference() -> dict[str, pa.Table]:
    def table(name: str, rows: list[dict]) -> pa.Table:
        schema = REFERENCE_SCHEMAS[name]
        return pa.Table.from_pylist(
            [{f.name: row.get(f.name) for f in schema} for row in rows], schema=schema)

    return {
        "accounts": table("accounts", [
            {"account_id": "A1", "country": "US", "region": "NY", "city": "New York"},
            {"account_id": "A2", "country": "US", "region": "CA", "city": "Oakland"},
        ]),
        "account_assignments": table("account_assignments", [
            {"account_id": "A1", "account_manager_id": "M-old", "valid_to": _at("2026-06-01")},
            {"account_id": "A1", "account_manager_id": "M-new", "valid_from": _at("2026-06-01")},
            {"account_id": "A2", "account_manager_id": "M-2"},
            {"account_id": "A9", "account_manager_id": "M-9"},  # not in accounts
        ]),
        "territories": table("territories", [
            {"territory_id": "T-US"}, {"territory_id": "T-NY", "parent_territory_id": "T-US"}]),
        "territory_rules": table("territory_rules", [
            {"territory_id": "T-NY", "country": "US", "region": "NY"},
            {"territory_id": "T-US", "country": "US", "valid_from": _at("2026-03-01")},
        ]),
        "territory_managers": table("territory_managers", [
            {"territory_id": "T-US", "manager_id": "TM-us"}]),
        "people": table("people", []),
        "fx_rates": table("fx_rates", []),
    }


@pytest.mark.parametrize("as_of, a1, a2_territory", [
    ("2026-01-15", "M-old", UNASSIGNED), ("2026-07-01", "M-new", "T-US")])
def test_every_account_is_credited_as_the_reference_says_at_that_date(as_of, a1, a2_territory):
    out = restated_attribution(reference(), _at(as_of))
    assert out.schema == RESTATED_ATTRIBUTION_SCHEMA
    rows = {r["account_id"]: r for r in out.to_pylist()}
    assert sorted(rows) == ["A1", "A2", "A9"]
    assert rows["A1"]["account_manager_id"] == a1
    assert (rows["A1"]["territory_id"], rows["A1"]["territory_manager_id"]) == ("T-NY", "TM-us")
    assert rows["A2"]["territory_id"] == a2_territory
    assert rows["A9"]["attribution_status"] == "unknown_account"
    assert {r["as_of"] for r in rows.values()} == {_at(as_of)}


def test_it_is_the_booked_rule_applied_at_one_moment():
    """Same rules as an event's own enrichment: an event at as_of gets the same credit."""
    ref = reference()
    moment = _at("2026-06-01")
    events = pa.table({"account_id": ["A1", "A2", "A9", "A1"],
                       "event_time": pa.array([moment] * 4, pa.timestamp("us", tz="UTC"))})
    booked = enrich(events, EnrichmentIndex.build(ref)).to_pylist()
    restated = {r["account_id"]: r for r in restated_attribution(ref, moment).to_pylist()}
    for row in booked:
        for column in ("account_manager_id", "territory_id", "territory_manager_id",
                       "attribution_status"):
            assert restated[row["account_id"]][column] == row[column]


def test_the_moment_is_a_date_at_midnight_utc_or_today():
    now = dt.datetime(2026, 12, 2, 21, 5, tzinfo=UTC)
    assert restate_moment(None, now) == dt.datetime(2026, 12, 2, tzinfo=UTC)
    assert restate_moment(dt.date(2026, 3, 1)) == dt.datetime(2026, 3, 1, tzinfo=UTC)
    assert restate_moment(dt.datetime(2026, 3, 1, 9)) == dt.datetime(2026, 3, 1, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone"):
        restated_attribution(reference(), dt.datetime(2026, 3, 1))
