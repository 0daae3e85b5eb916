"""The frames each expectation suite is validated on, built from Arrow tables.

Pure functions (pyarrow/numpy, no Beam, DuckDB or GX). A suite reads named
*inputs* (``INPUTS``), each reduced in one or more ways before its frames are
built (``build_frames``):

* ``rows``: the rows themselves (in the pipeline: a deterministic sample);
* ``totals``: exact sums of the six measures, one row per measure
  (``TOTALS_SCHEMA``), mergeable by summing;
* ``daily``: exact ``booked_revenue`` per ``day`` (``DAILY_SCHEMA``), mergeable.

``reduce_input``/``merge_reduced`` are what ``CheckStage`` combines batch by
batch; ``frames_from_tables`` does the same on whole tables (``revattr check``,
tests).

Frames per suite (the ``meta.batches`` of its file):

==========================  ==================================================
raw_events                  ``events``: parsed events (EVENT_SCHEMA)
enriched_events             ``events``: attributed events + ``is_unassigned_territory``
                            and ``is_unassigned_account_manager`` (0/1)
territory_revenue,          ``view``: the view's rows; ``totals``: per measure the
account_manager_revenue     facts' total and the view's total, side by side
reconciliation              ``days``: per day the three booked-revenue totals and
                            ``balanced`` recomputed to the cent
reference                   the seven tables, plus derived frames of offending
                            rows from ``pipelines.rules.reference_checks``
==========================  ==================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules import reference_checks as rc
from pipelines.rules.effects import EFFECTS
from schemas.events import EVENT_SCHEMA
from schemas.outputs import (
    ACCOUNT_MANAGER_REVENUE_SCHEMA,
    ATTRIBUTED_EVENTS_SCHEMA,
    DERIVED_SNAPSHOTS,
    MEASURES,
    REVENUE_VIEWS,
    SPLIT_MISMATCH_SCHEMA,
    TERRITORY_REVENUE_SCHEMA,
)
from schemas.reference import (
    OPTIONAL_REFERENCE_TABLES,
    REFERENCE_SCHEMAS,
    REFERENCE_TABLES,
    UNASSIGNED,
)

TOTAL_TYPE = pa.decimal128(38, 2)
TOTALS_SCHEMA = pa.schema([pa.field("measure", pa.string()), pa.field("total", TOTAL_TYPE)])
DAILY_SCHEMA = pa.schema([pa.field("day", pa.date32()), pa.field("booked_revenue", TOTAL_TYPE)])
VIEW_TOTALS_SCHEMA = pa.schema([
    pa.field("measure", pa.string()),
    pa.field("facts_total", TOTAL_TYPE),
    pa.field("view_total", TOTAL_TYPE),
])
RECONCILIATION_SCHEMA = pa.schema([
    pa.field("day", pa.date32()),
    pa.field("events_total", TOTAL_TYPE),
    pa.field("territory_total", TOTAL_TYPE),
    pa.field("account_manager_total", TOTAL_TYPE),
    pa.field("balanced", pa.bool_()),
])


def relaxed(schema: pa.Schema) -> pa.Schema:
    """The schema with every field nullable: frames must be able to hold the defects."""
    return pa.schema([f.with_nullable(True) for f in schema])


# The row schema of each input (frames on an empty input still have their columns).
INPUT_SCHEMAS: dict[str, pa.Schema] = {
    "events": relaxed(EVENT_SCHEMA),
    "attributed_events": relaxed(ATTRIBUTED_EVENTS_SCHEMA),
    "territory_revenue": relaxed(TERRITORY_REVENUE_SCHEMA),
    "account_manager_revenue": relaxed(ACCOUNT_MANAGER_REVENUE_SCHEMA),
    "reconciliation": relaxed(RECONCILIATION_SCHEMA),
    **{name: relaxed(schema) for name, schema in REFERENCE_SCHEMAS.items()},
    **{name: relaxed(schema) for name, schema in DERIVED_SNAPSHOTS.items()},
    "split_mismatches": relaxed(SPLIT_MISMATCH_SCHEMA),
}

# suite -> input -> reductions it needs.
INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw_events": {"events": ("rows",)},
    "enriched_events": {"attributed_events": ("rows",)},
    **{view: {view: ("rows", "totals"), "attributed_events": ("totals",)}
       for view in REVENUE_VIEWS},
    "reconciliation": {
        "attributed_events": ("daily",),
        "territory_revenue": ("daily",),
        "account_manager_revenue": ("daily",),
    },
    "reference": {table: ("rows",) for table in REFERENCE_TABLES},
    "published": {name: ("rows",) for name in (*DERIVED_SNAPSHOTS, "split_mismatches")},
}

# suite -> frame -> the inputs whose rows it is built from (for sampling notes).
FRAME_INPUTS: dict[str, dict[str, tuple[str, ...]]] = {
    "raw_events": {"events": ("events",)},
    "enriched_events": {"events": ("attributed_events",)},
    **{view: {"view": (view,), "totals": ()} for view in REVENUE_VIEWS},
    "reconciliation": {"days": ()},
    "reference": {
        **{table: (table,) for table in REFERENCE_TABLES},
        "assignment_overlaps": ("account_assignments",),
        "territory_manager_overlaps": ("territory_managers",),
        "territory_cycles": ("territories",),
        "territory_trees": ("territories",),
        "territory_unknown_parents": ("territories",),
        "rule_unknown_territories": ("territory_rules", "territories"),
        "manager_unknown_territories": ("territory_managers", "territories"),
        "assignment_unknown_accounts": ("account_assignments", "accounts"),
        "assignment_unknown_people": ("account_assignments", "people"),
        "manager_unknown_people": ("territory_managers", "people"),
        "rule_ties": ("territory_rules", "accounts"),
        "split_share_totals": ("account_splits",),
        "split_overlaps": ("account_splits",),
        "split_unknown_accounts": ("account_splits", "accounts"),
        "split_unknown_people": ("account_splits", "people"),
    },
    "published": {
        "restated_attribution": ("restated_attribution",),
        "fiscal_calendar": ("fiscal_calendar",),
        "fiscal_calendar_gaps": ("fiscal_calendar",),
        "split_mismatches": ("split_mismatches",),
    },
}


def reduced_name(input_name: str, kind: str) -> str:
    """Key of one reduction of one input, e.g. ``attributed_events:totals``."""
    return input_name if kind == "rows" else f"{input_name}:{kind}"


# ---------------------------------------------------------------- reductions


def conform(table: pa.Table, input_name: str) -> pa.Table:
    """An input table projected and cast onto its (nullable) input schema."""
    schema = INPUT_SCHEMAS[input_name]
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ValueError(f"{input_name} lacks column(s) {', '.join(missing)}")
    return table.select(schema.names).cast(schema)


_EFFECT_COLUMNS = ("booked_revenue", "won_deals", "lost_deals", "created_deals",
                   "pipeline_created", "refunds")  # the order of effects.EFFECTS' tuples


def measure_column(table: pa.Table, measure: str) -> pa.ChunkedArray | pa.Array:
    """A measure of facts or a view; a count measure the facts do not carry
    (``attributed_events`` has none) is derived from ``event_type`` with the
    contract's effect table (``pipelines.rules.effects.EFFECTS``)."""
    if measure in table.column_names:
        return table[measure]
    if "event_type" not in table.column_names:
        raise ValueError(f"no column {measure} and no event_type to derive it from")
    position = _EFFECT_COLUMNS.index(measure)
    types = list(EFFECTS)
    index = pc.index_in(table["event_type"], value_set=pa.array(types))
    coefficients = pa.array([EFFECTS[t][position] for t in types], pa.int64())
    return pc.fill_null(pc.take(coefficients, index), 0)


def measure_totals(table: pa.Table) -> pa.Table:
    """Exact sum of each measure over ``table`` (facts or a view)."""
    totals = []
    for measure in MEASURES:
        value = (pc.sum(measure_column(table, measure).cast(TOTAL_TYPE)).as_py()
                 if table.num_rows else None)
        totals.append(value if value is not None else Decimal("0.00"))
    return pa.table({"measure": pa.array(MEASURES, pa.string()),
                     "total": pa.array(totals, TOTAL_TYPE)}, schema=TOTALS_SCHEMA)


def merge_totals(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return measure_totals(pa.table({m: pa.array([], TOTAL_TYPE) for m in MEASURES}))
    merged = pa.concat_tables(tables).group_by("measure", use_threads=False).aggregate(
        [("total", "sum")])
    by_measure = dict(zip(merged["measure"].to_pylist(), merged["total_sum"].to_pylist(),
                          strict=True))
    return pa.table({"measure": pa.array(MEASURES, pa.string()),
                     "total": pa.array([by_measure.get(m, Decimal("0.00")) for m in MEASURES],
                                       TOTAL_TYPE)}, schema=TOTALS_SCHEMA)


def daily_booked(table: pa.Table) -> pa.Table:
    """Exact ``booked_revenue`` per ``day`` (facts or a view), sorted by day."""
    if table.num_rows == 0:
        return DAILY_SCHEMA.empty_table()
    rows = pa.table({"day": table["day"].cast(pa.date32()),
                     "booked_revenue": table["booked_revenue"].cast(TOTAL_TYPE)})
    grouped = rows.group_by("day", use_threads=False).aggregate([("booked_revenue", "sum")])
    grouped = grouped.rename_columns({"booked_revenue_sum": "booked_revenue"})
    grouped = grouped.select(DAILY_SCHEMA.names)
    return grouped.cast(DAILY_SCHEMA).sort_by("day")


def merge_daily(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return DAILY_SCHEMA.empty_table()
    return daily_booked(pa.concat_tables(tables))


def reduce_input(kind: str, table: pa.Table, input_name: str) -> pa.Table:
    """One batch (or a whole table) of an input -> its reduction of ``kind``."""
    if kind == "rows":
        return conform(table, input_name)
    if kind == "totals":
        return measure_totals(table)
    if kind == "daily":
        return daily_booked(table)
    raise ValueError(f"unknown reduction {kind!r}")


def merge_reduced(kind: str, tables: Iterable[pa.Table], input_name: str) -> pa.Table:
    if kind == "rows":
        tables = [t for t in tables if t.num_rows]
        return pa.concat_tables(tables) if tables else INPUT_SCHEMAS[input_name].empty_table()
    if kind == "totals":
        return merge_totals(tables)
    if kind == "daily":
        return merge_daily(tables)
    raise ValueError(f"unknown reduction {kind!r}")


def empty_reduced(kind: str, input_name: str) -> pa.Table:
    return merge_reduced(kind, [], input_name)


# -------------------------------------------------------------------- frames


def unassigned_flags(events: pa.Table) -> pa.Table:
    """Attributed events + ``is_unassigned_territory`` / ``is_unassigned_account_manager``.

    1 where the key is ``UNASSIGNED``, else 0 (a null key is 0: the not-null
    expectations report it). Their means are the UNASSIGNED shares.
    """
    out = events
    for column, flag in (("territory_id", "is_unassigned_territory"),
                         ("account_manager_id", "is_unassigned_account_manager")):
        hit = pc.fill_null(pc.equal(events[column], UNASSIGNED), False)
        out = out.append_column(flag, pc.cast(hit, pa.int8()))
    return out


def view_totals_frame(facts_totals: pa.Table, view_totals: pa.Table) -> pa.Table:
    """Per measure: the run's facts total next to the run's view total (must be equal)."""
    facts = dict(zip(facts_totals["measure"].to_pylist(), facts_totals["total"].to_pylist(),
                     strict=True))
    view = dict(zip(view_totals["measure"].to_pylist(), view_totals["total"].to_pylist(),
                    strict=True))
    return pa.table({
        "measure": pa.array(MEASURES, pa.string()),
        "facts_total": pa.array([facts.get(m, Decimal(0)) for m in MEASURES], TOTAL_TYPE),
        "view_total": pa.array([view.get(m, Decimal(0)) for m in MEASURES], TOTAL_TYPE),
    }, schema=VIEW_TOTALS_SCHEMA)


def reconciliation_frame(events_daily: pa.Table, territory_daily: pa.Table,
                         manager_daily: pa.Table) -> pa.Table:
    """Per day: the three booked-revenue totals (missing = 0) and ``balanced`` (exact)."""
    totals: dict = {}
    for position, daily in enumerate((events_daily, territory_daily, manager_daily)):
        for day, value in zip(daily["day"].to_pylist(), daily["booked_revenue"].to_pylist(),
                              strict=True):
            row = totals.setdefault(day, [Decimal(0), Decimal(0), Decimal(0)])
            row[position] += value if value is not None else Decimal(0)
    days = sorted(totals, key=lambda d: (d is None, d))
    frame = pa.table({
        "day": pa.array(days, pa.date32()),
        "events_total": pa.array([totals[d][0] for d in days], TOTAL_TYPE),
        "territory_total": pa.array([totals[d][1] for d in days], TOTAL_TYPE),
        "account_manager_total": pa.array([totals[d][2] for d in days], TOTAL_TYPE),
        "balanced": pa.array([totals[d][0] == totals[d][1] == totals[d][2] for d in days],
                             pa.bool_()),
    })
    return frame.cast(RECONCILIATION_SCHEMA)


def reconciliation_frame_from_view(view: pa.Table) -> pa.Table:
    """The published ``reconciliation`` view with ``balanced`` recomputed to the cent."""
    table = conform(view, "reconciliation")
    balanced = pc.and_(
        pc.equal(table["events_total"], table["territory_total"]),
        pc.equal(table["events_total"], table["account_manager_total"]),
    )
    return table.set_column(table.schema.get_field_index("balanced"), "balanced",
                            pc.fill_null(balanced, False))


def reference_frames(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """The reference tables plus the derived frames of offending rows (an optional table
    the caller lacks is empty)."""
    t = {name: conform(tables[name] if name in tables else INPUT_SCHEMAS[name].empty_table(),
                       name) for name in REFERENCE_TABLES}
    return {
        **t,
        "assignment_overlaps": rc.overlapping_intervals(t["account_assignments"], "account_id"),
        "territory_manager_overlaps": rc.overlapping_intervals(t["territory_managers"],
                                                               "territory_id"),
        "territory_cycles": rc.territory_cycles(t["territories"]),
        "territory_trees": rc.roots_per_tree(t["territories"]),
        "territory_unknown_parents": rc.orphan_references(
            t["territories"], "parent_territory_id", t["territories"], "territory_id"),
        "rule_unknown_territories": rc.orphan_references(
            t["territory_rules"], "territory_id", t["territories"], "territory_id"),
        "manager_unknown_territories": rc.orphan_references(
            t["territory_managers"], "territory_id", t["territories"], "territory_id"),
        "assignment_unknown_accounts": rc.orphan_references(
            t["account_assignments"], "account_id", t["accounts"], "account_id"),
        "assignment_unknown_people": rc.orphan_references(
            t["account_assignments"], "account_manager_id", t["people"], "person_id"),
        "manager_unknown_people": rc.orphan_references(
            t["territory_managers"], "manager_id", t["people"], "person_id"),
        "rule_ties": rc.equally_specific_rule_ties(t["accounts"], t["territory_rules"]),
        "split_share_totals": rc.split_share_totals(t["account_splits"]),
        "split_overlaps": rc.overlapping_intervals(
            t["account_splits"], ("account_id", "person_id", "role", "split_type")),
        "split_unknown_accounts": rc.orphan_references(
            t["account_splits"], "account_id", t["accounts"], "account_id"),
        "split_unknown_people": rc.orphan_references(
            t["account_splits"], "person_id", t["people"], "person_id"),
    }


def calendar_gaps(calendar: pa.Table) -> pa.Table:
    """Days missing from a ``fiscal_calendar`` between its first and last day, as rows
    (``day``): a fiscal view would silently drop the revenue of such a day."""
    days = pc.cast(calendar["day"], pa.int32()).to_numpy(zero_copy_only=False)
    if days.size == 0:
        return pa.table({"day": pa.array([], pa.date32())})
    present = np.zeros(int(days.max() - days.min()) + 1, dtype=bool)
    present[days - days.min()] = True
    missing = np.flatnonzero(~present).astype(np.int32) + np.int32(days.min())
    return pa.table({"day": pa.array(missing, pa.int32()).cast(pa.date32())})


def build_frames(suite: str, reduced: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Frames of ``suite`` from its reduced inputs (keys: ``reduced_name(input, kind)``)."""
    if suite == "raw_events":
        return {"events": reduced["events"]}
    if suite == "enriched_events":
        return {"events": unassigned_flags(reduced["attributed_events"])}
    if suite in REVENUE_VIEWS:
        return {
            "view": reduced[suite],
            "totals": view_totals_frame(reduced["attributed_events:totals"],
                                        reduced[f"{suite}:totals"]),
        }
    if suite == "reconciliation":
        if "reconciliation" in reduced:
            return {"days": reconciliation_frame_from_view(reduced["reconciliation"])}
        return {"days": reconciliation_frame(reduced["attributed_events:daily"],
                                             reduced["territory_revenue:daily"],
                                             reduced["account_manager_revenue:daily"])}
    if suite == "reference":
        return reference_frames(reduced)
    if suite == "published":
        return {"restated_attribution": reduced["restated_attribution"],
                "fiscal_calendar": reduced["fiscal_calendar"],
                "fiscal_calendar_gaps": calendar_gaps(reduced["fiscal_calendar"]),
                "split_mismatches": reduced["split_mismatches"]}
    raise ValueError(f"unknown suite {suite!r}; known: {', '.join(INPUTS)}")


def frames_from_tables(suite: str, tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Frames of ``suite`` from whole input tables (no sampling here: ``run_suite`` samples).

    For ``reconciliation`` a published ``reconciliation`` view may be given
    instead of the three daily inputs.
    """
    if suite == "reconciliation" and "reconciliation" in tables:
        return build_frames(suite, {"reconciliation": tables["reconciliation"]})
    needed = INPUTS.get(suite)
    if needed is None:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(INPUTS)}")
    tables = {**{t: INPUT_SCHEMAS[t].empty_table() for t in OPTIONAL_REFERENCE_TABLES
                 if t in needed}, **tables}
    missing = [name for name in needed if name not in tables]
    if missing:
        raise ValueError(f"suite {suite} needs the input(s) {', '.join(missing)}")
    reduced = {
        reduced_name(name, kind): reduce_input(kind, tables[name], name)
        for name, kinds in needed.items() for kind in kinds
    }
    return build_frames(suite, reduced)


def systematic_sample(table: pa.Table, max_rows: int) -> tuple[pa.Table, int]:
    """Every k-th row (rows 0, k, 2k, ...), at most ``max_rows`` of them; returns (sample, k)."""
    n = table.num_rows
    if max_rows <= 0 or n <= max_rows:
        return table, 1
    step = -(-n // max_rows)
    return table.take(pa.array(np.arange(0, n, step), pa.int64())), step
