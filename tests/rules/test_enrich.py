"""As-of enrichment of events and attribution_status precedence."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from pipelines.rules.enrich import ENRICHMENT_COLUMNS, EnrichmentIndex, enrich, status_counts
from schemas.events import EVENT_SCHEMA
from schemas.outputs import ATTRIBUTION_STATUSES
from schemas.reference import REFERENCE_SCHEMAS, UNASSIGNED
from tests.rules.test_territory import ref, rule
from tests.utils import events_table


@pytest.fixture(scope="module")
def reference() -> dict[str, pa.Table]:
    return {
        "accounts": ref("accounts", [
            {"account_id": "A-OK", "country": "US", "region": "CA", "postal_code": "94107"},
            {"account_id": "A-NOMGR", "country": "US", "region": "CA"},
            {"account_id": "A-NOTERR", "country": "FR"},
            {"account_id": "A-NOTM", "country": "US", "region": "NV"},
        ]),
        "account_assignments": ref("account_assignments", [
            {"account_id": "A-OK", "account_manager_id": "AM-1",
             "valid_to": "2026-03-01T15:00:00Z"},
            {"account_id": "A-OK", "account_manager_id": "AM-2",
             "valid_from": "2026-03-01T15:00:00Z"},
            {"account_id": "A-NOTERR", "account_manager_id": "AM-3"},
            {"account_id": "A-NOTM", "account_manager_id": "AM-4"},
            # an assignment for an account missing from accounts still applies
            {"account_id": "A-GHOST", "account_manager_id": "AM-9"},
        ]),
        "territories": ref("territories", [
            {"territory_id": "WEST", "parent_territory_id": None},
            {"territory_id": "CA", "parent_territory_id": "WEST"},
            {"territory_id": "SF", "parent_territory_id": "CA"},
        ]),
        "territory_rules": ref("territory_rules", [
            rule("CA", "US", region="CA"),
            rule("SF", "US", region="CA", postal_prefix="941"),
            rule("NV", "US", region="NV"),  # NV: not in the tree, no manager
        ]),
        "territory_managers": ref("territory_managers", [
            {"territory_id": "WEST", "manager_id": "TM-WEST"},
            {"territory_id": "CA", "manager_id": "TM-CA", "valid_from": "2026-03-02"},
        ]),
        "people": REFERENCE_SCHEMAS["people"].empty_table(),
        "fx_rates": REFERENCE_SCHEMAS["fx_rates"].empty_table(),
    }


@pytest.fixture(scope="module")
def index(reference) -> EnrichmentIndex:
    return EnrichmentIndex.build(reference)


def keys(table: pa.Table) -> list[tuple]:
    return [tuple(r[c] for c in ENRICHMENT_COLUMNS) for r in table.to_pylist()]


def test_attributed_and_each_status_in_precedence_order(index):
    events = events_table([
        {"account_id": "A-OK", "event_time": "2026-03-01T12:00:00Z"},
        {"account_id": "A-GHOST"},
        {"account_id": "A-NOMGR"},
        {"account_id": "A-NOTERR"},
        {"account_id": "A-NOTM"},
        {"account_id": "NOBODY"},
    ])
    assert keys(enrich(events, index)) == [
        ("AM-1", "SF", "TM-WEST", "attributed"),
        # unknown account comes first even though it has a manager
        ("AM-9", UNASSIGNED, UNASSIGNED, "unknown_account"),
        # no manager comes before the territory checks (which pass here)
        (UNASSIGNED, "CA", "TM-WEST", "no_account_manager"),
        ("AM-3", UNASSIGNED, UNASSIGNED, "no_territory"),
        ("AM-4", "NV", UNASSIGNED, "no_territory_manager"),
        (UNASSIGNED, UNASSIGNED, UNASSIGNED, "unknown_account"),
    ]


def test_everything_is_as_of_the_event_time(index):
    events = events_table([
        {"account_id": "A-OK", "event_time": "2026-03-01T14:59:59Z"},
        {"account_id": "A-OK", "event_time": "2026-03-01T10:00:00-05:00"},  # 15:00Z
        {"account_id": "A-OK", "event_time": "2026-03-02T00:00:00Z"},  # CA's manager starts
        {"account_id": "A-NOMGR", "event_time": "2026-03-01T23:59:59Z"},
    ])
    assert keys(enrich(events, index)) == [
        ("AM-1", "SF", "TM-WEST", "attributed"),
        ("AM-2", "SF", "TM-WEST", "attributed"),
        ("AM-2", "SF", "TM-CA", "attributed"),
        (UNASSIGNED, "CA", "TM-WEST", "no_account_manager"),
    ]


def test_output_schema_keeps_events_and_appends_non_null_strings(index):
    events = events_table([{"account_id": "A-OK"}, {"account_id": "NOBODY"}])
    out = enrich(events, index)
    assert out.schema.names == EVENT_SCHEMA.names + list(ENRICHMENT_COLUMNS)
    for name in ENRICHMENT_COLUMNS:
        assert out.schema.field(name).type == pa.string()
        assert out[name].null_count == 0
    assert set(out["attribution_status"].to_pylist()) <= set(ATTRIBUTION_STATUSES)
    again = enrich(out, index)  # re-enriching replaces, never duplicates
    assert again.schema.names == out.schema.names
    assert status_counts(out)["attributed"] == 1


def test_empty_batch_and_empty_reference(index, reference):
    empty = EVENT_SCHEMA.empty_table()
    assert enrich(empty, index).num_rows == 0
    bare = EnrichmentIndex.build({name: t.schema.empty_table() for name, t in reference.items()})
    out = enrich(events_table([{"account_id": "A-OK"}]), bare)
    assert keys(out) == [(UNASSIGNED, UNASSIGNED, UNASSIGNED, "unknown_account")]


def test_index_survives_pickling(index):
    events = events_table([{"account_id": "A-OK"}])
    clone = pickle.loads(pickle.dumps(index))
    assert keys(enrich(events, clone)) == keys(enrich(events, index))
