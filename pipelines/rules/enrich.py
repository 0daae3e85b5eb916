"""As-of enrichment: account manager, territory and territory manager at event_time.

``EnrichmentIndex.build(reference)`` resolves the effective-dated reference
tables once per snapshot into three ``AsOfIndex`` timelines (CONTRACT.md
section 2, "Enrichment"):

* account -> account manager (``account_assignments``; overlapping rows of one
  account resolve to the smallest manager id; assignments of an account missing
  from ``accounts`` still apply);
* account -> leaf territory (the most specific matching ``territory_rules`` row,
  ties to the smallest territory id; needs the account's row);
* territory -> territory manager (walking up from the territory, the nearest
  one with a ``territory_managers`` row valid at t).

``enrich(events, index)`` then costs, per batch, one hash encoding of the
account ids and three vectorised searches. The index holds numpy arrays and
small pyarrow arrays only: it pickles (Beam side input).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules.asof import (
    CANDIDATE_SCHEMA,
    MAX_TIME,
    AsOfIndex,
    decode,
    encode,
    resolve_timeline,
    sorted_unique,
    to_micros,
)
from pipelines.rules.territory import (
    _text,
    account_territory_candidates,
    territory_manager_candidates,
)
from schemas.outputs import ATTRIBUTION_STATUSES
from schemas.reference import UNASSIGNED

ENRICHMENT_COLUMNS: tuple[str, ...] = (
    "account_manager_id",
    "territory_id",
    "territory_manager_id",
    "attribution_status",
)
# First applicable status wins, in this order; "attributed" otherwise.
_STATUS_ORDER = ("unknown_account", "no_account_manager", "no_territory", "no_territory_manager")
_STATUSES = pa.array(list(ATTRIBUTION_STATUSES), pa.string())
_STATUS_CODE = {status: code for code, status in enumerate(ATTRIBUTION_STATUSES)}


@dataclass(frozen=True, eq=False)
class EnrichmentIndex:
    """Everything ``enrich`` needs, resolved once per reference snapshot."""

    accounts: pa.Array  # account key space: ids of accounts and of assignments, sorted
    known_account: np.ndarray  # bool per account code: the id is a row of ``accounts``
    account_managers: AsOfIndex  # account code -> account_manager_id
    account_territories: AsOfIndex  # account code -> territory code (``territories``)
    territory_managers: AsOfIndex  # territory code -> territory manager_id
    territories: pa.Array  # territory key space (rules, tree, manager rows), sorted

    @classmethod
    def build(cls, reference: dict[str, pa.Table],
              timelines: EnrichmentTimelines | None = None) -> EnrichmentIndex:
        """Resolve ``reference`` (or search its already resolved ``timelines``)."""
        t = timelines if timelines is not None else EnrichmentTimelines.build(reference)
        known = np.zeros(len(t.accounts), dtype=bool)
        codes = encode(t.known_accounts, t.accounts)
        known[codes[codes >= 0]] = True
        return cls(
            accounts=t.accounts,
            known_account=known,
            account_managers=AsOfIndex.build(t.account_managers, keys=t.accounts),
            account_territories=AsOfIndex.build(
                t.account_territories, keys=t.accounts, values=t.territories),
            territory_managers=AsOfIndex.build(t.territory_managers, keys=t.territories),
            territories=t.territories,
        )


@dataclass(frozen=True, eq=False)
class EnrichmentTimelines:
    """The effective-dated reference resolved into three timelines (``TIMELINE_SCHEMA``:
    non-overlapping ``key, valid_from, valid_to, value`` intervals), the rules of
    CONTRACT.md section 2 applied once. ``EnrichmentIndex`` searches them with numpy;
    the embedded engine joins them in DuckDB. Same rules, two lookups."""

    accounts: pa.Array  # account key space: ids of accounts and of assignments, sorted
    known_accounts: pa.Array  # ids that are rows of ``accounts``
    territories: pa.Array  # territory key space (rules, tree, manager rows), sorted
    account_managers: pa.Table  # account -> account_manager_id
    account_territories: pa.Table  # account -> leaf territory_id
    territory_managers: pa.Table  # territory -> territory manager (walk-up resolved)

    @classmethod
    def build(cls, reference: dict[str, pa.Table]) -> EnrichmentTimelines:
        accounts = reference["accounts"]
        assignments = reference["account_assignments"]
        rules = reference["territory_rules"]
        tree = reference["territories"]
        managers = reference["territory_managers"]

        account_ids = _text(accounts["account_id"])
        account_space = sorted_unique(
            pa.concat_arrays([account_ids, _text(assignments["account_id"])]))
        territory_space = sorted_unique(pa.concat_arrays([
            _text(rules["territory_id"]), _text(tree["territory_id"]),
            _text(tree["parent_territory_id"]), _text(managers["territory_id"]),
        ]))
        assignment_candidates = pa.table(
            {
                "key": _text(assignments["account_id"]),
                "valid_from": assignments["valid_from"],
                "valid_to": assignments["valid_to"],
                "priority": pa.repeat(pa.scalar(0, pa.int64()), assignments.num_rows),
                "value": _text(assignments["account_manager_id"]),
            }
        ).cast(CANDIDATE_SCHEMA)
        return cls(
            accounts=account_space,
            known_accounts=pc.drop_null(account_ids),
            territories=territory_space,
            account_managers=resolve_timeline(assignment_candidates),
            account_territories=resolve_timeline(account_territory_candidates(accounts, rules)),
            territory_managers=resolve_timeline(territory_manager_candidates(tree, managers)),
        )


def enrich(events: pa.Table, index: EnrichmentIndex) -> pa.Table:
    """``events`` + ``account_manager_id``, ``territory_id``, ``territory_manager_id``,
    ``attribution_status`` (never null; ``UNASSIGNED`` where nothing is found).

    ``attribution_status``, first that applies: ``unknown_account`` (not in
    ``accounts``), ``no_account_manager``, ``no_territory``,
    ``no_territory_manager``, else ``attributed``. Existing columns of those
    names are replaced.
    """
    account = encode(events["account_id"], index.accounts)
    times = to_micros(events["event_time"], MAX_TIME)
    manager = index.account_managers.lookup_codes(account, times)
    territory = index.account_territories.lookup_codes(account, times)
    territory_manager = index.territory_managers.lookup_codes(territory, times)

    known = np.zeros(account.shape[0], dtype=bool)
    if index.known_account.shape[0]:
        known = (account >= 0) & index.known_account[np.maximum(account, 0)]
    status = np.select(
        [~known, manager < 0, territory < 0, territory_manager < 0],
        [_STATUS_CODE[s] for s in _STATUS_ORDER],
        default=_STATUS_CODE["attributed"],
    )
    added = {
        "account_manager_id": decode(manager, index.account_managers.values, UNASSIGNED),
        "territory_id": decode(territory, index.territories, UNASSIGNED),
        "territory_manager_id": decode(
            territory_manager, index.territory_managers.values, UNASSIGNED),
        "attribution_status": _STATUSES.take(pa.array(status, pa.int64())),
    }
    out = events.drop_columns([c for c in ENRICHMENT_COLUMNS if c in events.column_names])
    for name in ENRICHMENT_COLUMNS:
        out = out.append_column(pa.field(name, pa.string(), nullable=False), added[name])
    return out


def status_counts(enriched: pa.Table) -> dict[str, int]:
    """How many events got each attribution status (for run summaries)."""
    counts = pc.value_counts(enriched["attribution_status"])
    found = {row["values"]: row["counts"] for row in counts.to_pylist()}
    return {status: found.get(status, 0) for status in ATTRIBUTION_STATUSES}
