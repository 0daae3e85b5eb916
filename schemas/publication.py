"""How the output relations are published to readers, and the writer's own ledgers.

Readers open the ``--db`` file: a small *catalog* DuckDB file holding only views
over immutable Parquet files (``pipelines/io/catalog.py``). Each relation below
is published with one of three kinds:

* ``append``: every version adds rows (facts, quarantine, check results, runs);
* ``upsert``: every version carries the current rows of the keys it touched;
  the view keeps each key's row from the newest version (the two revenue views
  and the daily reconciliation, exactly as the store computed them);
* ``snapshot``: a version replaces the whole relation (reference tables, and the
  restated attribution derived from them).

The writer keeps its state in a private DuckDB *store* (never opened by readers);
``STORE_TABLES`` are tables of that store. The facts (``attributed_events``) are
not in the store: their published parts are the record, written once per run (so is
their account-team split credit, ``split_credit``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from schemas.money import REPORTING_MONEY_TYPE
from schemas.outputs import DERIVED_SNAPSHOTS, OUTPUT_TABLES, REVENUE_VIEWS, SPLIT_CREDIT_SCHEMA
from schemas.reference import REFERENCE_SCHEMAS

APPEND = "append"
UPSERT = "upsert"
SNAPSHOT = "snapshot"

# The reconciliation of each day (the store's view of that name), published as a
# relation of its own: computed from one relation, a reader's reconciliation is
# always that of one committed version.
RECONCILIATION_SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("events_total", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("territory_total", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("account_manager_total", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("balanced", pa.bool_(), nullable=False),
    ]
)


@dataclass(frozen=True)
class PublishedRelation:
    """One relation readers see: its name, kind, schema and (for ``upsert``) key columns."""

    name: str
    kind: str
    schema: pa.Schema
    key: tuple[str, ...] = ()


def _relations() -> dict[str, PublishedRelation]:
    relations = {
        "attributed_events": PublishedRelation(
            "attributed_events", APPEND, OUTPUT_TABLES["attributed_events"]
        ),
        **{
            view: PublishedRelation(view, UPSERT, OUTPUT_TABLES[view], (key, "day"))
            for view, key in REVENUE_VIEWS.items()
        },
        "reconciliation": PublishedRelation(
            "reconciliation", UPSERT, RECONCILIATION_SCHEMA, ("day",)
        ),
        # Placed beside the facts by the publication (computed from them), like them
        # not kept in the store.
        "split_credit": PublishedRelation("split_credit", APPEND, SPLIT_CREDIT_SCHEMA),
        "quarantine": PublishedRelation("quarantine", APPEND, OUTPUT_TABLES["quarantine"]),
        "dq_results": PublishedRelation("dq_results", APPEND, OUTPUT_TABLES["dq_results"]),
        "pipeline_runs": PublishedRelation(
            "pipeline_runs", APPEND, OUTPUT_TABLES["pipeline_runs"]
        ),
    }
    for name, schema in {**REFERENCE_SCHEMAS, **DERIVED_SNAPSHOTS}.items():
        relations[name] = PublishedRelation(name, SNAPSHOT, schema)
    return relations


PUBLISHED_RELATIONS: dict[str, PublishedRelation] = _relations()

# One row per run recorded in the store, in commit order: the version readers see.
PUBLICATIONS_SCHEMA = pa.schema(
    [
        pa.field("version", pa.int64(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        # sha256 of the reference snapshot the run used: exported only when it changes.
        pa.field("reference_hash", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# Follow mode: one row per landing file applied (or quarantined whole), written
# in the same transaction as the run that applied it: the exactly-once ledger.
LANDING_FILES_SCHEMA = pa.schema(
    [
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
        pa.field("recorded_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# The store does not keep the facts (their published Parquet parts are the record):
# per day, the facts' booked revenue and count, for the reconciliation of each run.
DAILY_FACTS_SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("booked_revenue", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("events", pa.int64(), nullable=False),
    ]
)

STORE_TABLES: dict[str, pa.Schema] = {
    "publications": PUBLICATIONS_SCHEMA,
    "landing_files": LANDING_FILES_SCHEMA,
    "daily_facts": DAILY_FACTS_SCHEMA,
}
STORE_PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "publications": ("version",),
    "landing_files": ("file_name", "sha256"),
    "daily_facts": ("day",),
}
