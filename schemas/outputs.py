"""Output relations (CONTRACT.md section 3) and the DuckDB DDL derived from them.

Every table is defined once here as a pyarrow schema; ``create_table_sql`` turns
it into DuckDB DDL. The views are SQL over those tables, parameterised only by
the fiscal-year start month.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.events import EVENT_TIME_TYPE
from schemas.money import AMOUNT_TYPE, MONEY_SUM_TYPE, REPORTING_MONEY_TYPE
from schemas.reference import DEFAULT_SPLIT_ROLE, PERCENT_TYPE, REFERENCE_SCHEMAS, UNASSIGNED

ATTRIBUTION_STATUSES: tuple[str, ...] = (
    "attributed",
    "unknown_account",
    "no_account_manager",
    "no_territory",
    "no_territory_manager",
)

MONEY_MEASURES: tuple[str, ...] = ("booked_revenue", "pipeline_created", "refunds")
COUNT_MEASURES: tuple[str, ...] = ("won_deals", "lost_deals", "created_deals")
MEASURES: tuple[str, ...] = (
    "booked_revenue",
    "won_deals",
    "lost_deals",
    "created_deals",
    "pipeline_created",
    "refunds",
)


def _measure_fields() -> list[pa.Field]:
    return [
        pa.field(m, REPORTING_MONEY_TYPE if m in MONEY_MEASURES else pa.int64(), nullable=False)
        for m in MEASURES
    ]


ATTRIBUTED_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_time", EVENT_TIME_TYPE, nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("deal_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("amount", AMOUNT_TYPE, nullable=False),
        pa.field("booked_revenue", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("pipeline_created", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("account_manager_id", pa.string(), nullable=False),
        pa.field("territory_id", pa.string(), nullable=False),
        pa.field("territory_manager_id", pa.string(), nullable=False),
        pa.field("attribution_status", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        # Extensions beyond the contract's list: kept for reporting and for
        # telling an identical repeat from a conflicting one across runs.
        pa.field("stage", pa.string()),
        pa.field("product", pa.string()),
        pa.field("opportunity_owner_id", pa.string()),
        pa.field("amount_reporting", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("won_deals", pa.int64(), nullable=False),
        pa.field("lost_deals", pa.int64(), nullable=False),
        pa.field("created_deals", pa.int64(), nullable=False),
        pa.field("refunds", REPORTING_MONEY_TYPE, nullable=False),
    ]
)

TERRITORY_REVENUE_SCHEMA = pa.schema(
    [
        pa.field("territory_id", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
    ]
    + _measure_fields()
)
ACCOUNT_MANAGER_REVENUE_SCHEMA = pa.schema(
    [
        pa.field("account_manager_id", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
    ]
    + _measure_fields()
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),
        pa.field("raw", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("quarantined_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

DQ_RESULTS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("suite", pa.string(), nullable=False),
        pa.field("expectation", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("success", pa.bool_(), nullable=False),
        pa.field("observed", pa.string()),
        pa.field("checked_at", pa.timestamp("us", tz="UTC"), nullable=False),
        # Extension: a few failing values or rows, as JSON text.
        pa.field("examples", pa.string()),
    ]
)

# One check result as a step produces it, before the run stamps it into dq_results.
CHECK_RESULT_SCHEMA = pa.schema(
    [f for f in DQ_RESULTS_SCHEMA if f.name not in ("run_id", "checked_at")]
)

RUN_STATUSES: tuple[str, ...] = ("running", "succeeded", "unbalanced", "failed_checks", "failed")

PIPELINE_RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("mode", pa.string(), nullable=False),
        pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("finished_at", pa.timestamp("us", tz="UTC")),
        pa.field("input_records", pa.int64(), nullable=False),
        pa.field("accepted", pa.int64(), nullable=False),
        pa.field("duplicates", pa.int64(), nullable=False),
        pa.field("quarantined", pa.int64(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)

OUTPUT_TABLES: dict[str, pa.Schema] = {
    "attributed_events": ATTRIBUTED_EVENTS_SCHEMA,
    "territory_revenue": TERRITORY_REVENUE_SCHEMA,
    "account_manager_revenue": ACCOUNT_MANAGER_REVENUE_SCHEMA,
    "quarantine": QUARANTINE_SCHEMA,
    "dq_results": DQ_RESULTS_SCHEMA,
    "pipeline_runs": PIPELINE_RUNS_SCHEMA,
}

# The restated basis (CONTRACT extension, docs/contract.md "Two bases"): every account's
# credit under the assignments and territory model in force at ``as_of``. A snapshot
# derived from the reference, published with it; the ``*_restated`` views join it to
# the facts, so a realignment restates without re-reading any event.
RESTATED_ATTRIBUTION_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("account_manager_id", pa.string(), nullable=False),
        pa.field("territory_id", pa.string(), nullable=False),
        pa.field("territory_manager_id", pa.string(), nullable=False),
        pa.field("attribution_status", pa.string(), nullable=False),
        pa.field("as_of", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
# Every day's fiscal year, quarter, period and week under the run's fiscal calendar
# (``pipelines.rules.fiscal_calendar``); the ``*_fiscal`` views group by it.
FISCAL_CALENDAR_SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("fiscal_year", pa.int32(), nullable=False),
        pa.field("fiscal_quarter", pa.int32(), nullable=False),
        pa.field("fiscal_period", pa.int32(), nullable=False),  # 1..12
        pa.field("fiscal_week", pa.int32(), nullable=False),  # 1..53 (months: 1..54)
        pa.field("period_start", pa.date32(), nullable=False),
        pa.field("quarter_start", pa.date32(), nullable=False),
        pa.field("year_start", pa.date32(), nullable=False),
        pa.field("calendar", pa.string(), nullable=False),
    ]
)

# Account-team split credit (docs/contract.md "Account-team splits"): one row per member
# of the team valid at a fact's event_time, for the facts whose account has one
# (``pipelines.rules.splits``); written with the facts, never changed. The primary rows
# of an event sum exactly to its measures; overlay rows are credited in addition.
SPLIT_CREDIT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("day", pa.date32(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("person_id", pa.string(), nullable=False),
        pa.field("role", pa.string()),
        pa.field("split_type", pa.string(), nullable=False),
        pa.field("percent", PERCENT_TYPE, nullable=False),
        pa.field("booked_revenue", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("pipeline_created", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

# The restated basis of the account teams: every account's team at the restate moment
# (``pipelines.rules.splits.restated_teams``); a null person is the account's restated
# account manager (the 100% default where only overlays are valid).
RESTATED_SPLITS_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("person_id", pa.string()),
        pa.field("role", pa.string()),
        pa.field("split_type", pa.string(), nullable=False),
        pa.field("percent", PERCENT_TYPE, nullable=False),
        pa.field("as_of", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)

# An event whose primary split credit does not sum to its measures (the ``published``
# suite expects none).
SPLIT_MISMATCH_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("booked_revenue", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("primary_booked_revenue", MONEY_SUM_TYPE),
        pa.field("pipeline_created", REPORTING_MONEY_TYPE, nullable=False),
        pa.field("primary_pipeline_created", MONEY_SUM_TYPE),
    ]
)

# Snapshots derived from the reference (and the run's calendar), kept and published next
# to its tables.
DERIVED_SNAPSHOTS: dict[str, pa.Schema] = {
    "restated_attribution": RESTATED_ATTRIBUTION_SCHEMA,
    "fiscal_calendar": FISCAL_CALENDAR_SCHEMA,
    "restated_splits": RESTATED_SPLITS_SCHEMA,
}
BASES: tuple[str, ...] = ("as_booked", "restated")

# attributed_events is keyed by event_id too; the publisher enforces it without an
# index (an ART index on 5M string keys made every publication ~2x slower).
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "territory_revenue": ("territory_id", "day"),
    "account_manager_revenue": ("account_manager_id", "day"),
    "pipeline_runs": ("run_id",),
}

# The two parallel views: (table, key column).
REVENUE_VIEWS: dict[str, str] = {
    "territory_revenue": "territory_id",
    "account_manager_revenue": "account_manager_id",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB column type for a pyarrow type used in our schemas."""
    if pa.types.is_string(arrow_type):
        return "VARCHAR"
    if pa.types.is_int64(arrow_type):
        return "BIGINT"
    if pa.types.is_int32(arrow_type):
        return "INTEGER"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_date32(arrow_type):
        return "DATE"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_decimal(arrow_type):
        return f"DECIMAL({arrow_type.precision},{arrow_type.scale})"
    raise TypeError(f"no DuckDB mapping for {arrow_type}")


def create_table_sql(name: str, schema: pa.Schema, primary_key: tuple[str, ...] = ()) -> str:
    """``CREATE TABLE IF NOT EXISTS`` derived from a pyarrow schema."""
    columns = [f"{f.name} {duckdb_type(f.type)}{'' if f.nullable else ' NOT NULL'}" for f in schema]
    if primary_key:
        columns.append(f"PRIMARY KEY ({', '.join(primary_key)})")
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  " + ",\n  ".join(columns) + "\n)"


def output_ddl(exclude: tuple[str, ...] = ()) -> list[str]:
    """DDL for every output table but ``exclude`` (reference snapshots are replaced per run)."""
    return [
        create_table_sql(name, schema, PRIMARY_KEYS.get(name, ()))
        for name, schema in OUTPUT_TABLES.items()
        if name not in exclude
    ]


def reference_ddl() -> list[str]:
    """DDL for the reference snapshot tables (and those derived from them) published next
    to the views."""
    return [create_table_sql(name, schema)
            for name, schema in {**REFERENCE_SCHEMAS, **DERIVED_SNAPSHOTS}.items()]


def _sum_measures(prefix: str = "") -> str:
    return ", ".join(
        f"SUM({prefix}{f.name})::{duckdb_type(f.type)} AS {f.name}" for f in _measure_fields()
    )


def _period_views(view: str, key: str, fiscal_year_start_month: int) -> list[str]:
    """Monthly and fiscal-quarterly views of one revenue view.

    The fiscal year is named by the calendar year in which it ends (FY2027 starts
    in February 2026 when the fiscal year starts in February).
    """
    shift = (12 - (fiscal_year_start_month - 1)) % 12  # months to add to reach fiscal calendar
    fiscal = f"(day + INTERVAL {shift} MONTH)" if shift else "day"
    return [
        f"""CREATE OR REPLACE VIEW {view}_monthly AS
SELECT {key}, CAST(date_trunc('month', day) AS DATE) AS month, {_sum_measures()}
FROM {view} GROUP BY ALL""",
        f"""CREATE OR REPLACE VIEW {view}_quarterly AS
SELECT {key},
       CAST(year({fiscal}) AS INTEGER) AS fiscal_year,
       CAST(quarter({fiscal}) AS INTEGER) AS fiscal_quarter,
       CAST(date_trunc('quarter', {fiscal}) - INTERVAL {shift} MONTH AS DATE) AS quarter_start,
       {_sum_measures()}
FROM {view} GROUP BY ALL""",
    ]


def _reconciliation_sql(name: str, events: str, territory_view: str, manager_view: str) -> str:
    """The per-day reconciliation view ``name``: ``events`` (day, total) against the sums
    of the two revenue views."""
    return f"""CREATE OR REPLACE VIEW {name} AS
WITH e AS ({events}),
     t AS (SELECT day, SUM(booked_revenue) AS total FROM {territory_view} GROUP BY day),
     m AS (SELECT day, SUM(booked_revenue) AS total FROM {manager_view} GROUP BY day),
     days AS (SELECT day FROM e UNION SELECT day FROM t UNION SELECT day FROM m)
SELECT days.day,
       COALESCE(e.total, 0)::DECIMAL(18,2) AS events_total,
       COALESCE(t.total, 0)::DECIMAL(18,2) AS territory_total,
       COALESCE(m.total, 0)::DECIMAL(18,2) AS account_manager_total,
       (COALESCE(e.total, 0) = COALESCE(t.total, 0)
        AND COALESCE(e.total, 0) = COALESCE(m.total, 0)) AS balanced
FROM days LEFT JOIN e USING (day) LEFT JOIN t USING (day) LEFT JOIN m USING (day)"""


def view_sql(fiscal_year_start_month: int = 1, daily_facts: str | None = None) -> list[str]:
    """``CREATE OR REPLACE VIEW`` statements for every derived relation.

    ``daily_facts``: a table of per-day fact totals (``DAILY_FACTS_SCHEMA``) the
    reconciliation reads instead of summing ``attributed_events`` (the writer's
    store, which does not keep the facts themselves).
    """
    if not 1 <= fiscal_year_start_month <= 12:
        raise ValueError(f"fiscal year start month must be 1..12, got {fiscal_year_start_month}")
    rollup = f"""CREATE OR REPLACE VIEW territory_revenue_rollup AS
WITH RECURSIVE ancestry(territory_id, ancestor_id, depth) AS (
    SELECT territory_id, territory_id, 0 FROM territories
    UNION ALL
    SELECT a.territory_id, t.parent_territory_id, a.depth + 1
    FROM ancestry a JOIN territories t ON t.territory_id = a.ancestor_id
    WHERE t.parent_territory_id IS NOT NULL AND t.parent_territory_id <> '' AND a.depth < 64
),
leaf_to_ancestor AS (
    SELECT DISTINCT territory_id, ancestor_id FROM ancestry
    UNION ALL
    -- Leaves absent from the tree (UNASSIGNED, or a rule naming an unknown
    -- territory) still roll up into themselves, so nothing is lost.
    SELECT DISTINCT r.territory_id, r.territory_id FROM territory_revenue r
    WHERE r.territory_id NOT IN (SELECT territory_id FROM territories)
)
SELECT la.ancestor_id AS territory_id, r.day, {_sum_measures("r.")}
FROM territory_revenue r JOIN leaf_to_ancestor la ON la.territory_id = r.territory_id
GROUP BY ALL"""
    events = (f"SELECT day, booked_revenue AS total FROM {daily_facts}" if daily_facts else
              "SELECT day, SUM(booked_revenue) AS total FROM attributed_events GROUP BY day")
    reconciliation = _reconciliation_sql(
        "reconciliation", events, "territory_revenue", "account_manager_revenue")
    views = [rollup, reconciliation]
    for view, key in REVENUE_VIEWS.items():
        views.extend(_period_views(view, key, fiscal_year_start_month))
    return views


def fiscal_view_sql() -> list[str]:
    """Both revenue views of both bases by fiscal period of the published
    ``fiscal_calendar`` (``<view>_fiscal``: key, fiscal year, quarter, period, its first
    day, the measures), whatever the calendar: months or a 4-4-5 retail year."""
    views = []
    for view, key in REVENUE_VIEWS.items():
        for name in (view, f"{view}_restated"):
            views.append(f"""CREATE OR REPLACE VIEW {name}_fiscal AS
SELECT v.{key}, c.fiscal_year, c.fiscal_quarter, c.fiscal_period, c.period_start,
       {_sum_measures("v.")}
FROM {name} v JOIN fiscal_calendar c USING (day) GROUP BY ALL""")
    return views


# Who gets the credit of a fact on the restated basis (a fact whose account the
# restated snapshot does not know is unassigned, as on the booked basis).
_RESTATED_CREDIT = {
    "account_manager_id": f"coalesce(r.account_manager_id, '{UNASSIGNED}')",
    "territory_id": f"coalesce(r.territory_id, '{UNASSIGNED}')",
}
_RESTATED_FACTS = "attributed_events f LEFT JOIN restated_attribution r USING (account_id)"


def restated_view_sql(fiscal_year_start_month: int = 1) -> list[str]:
    """The restated basis, over the published facts and ``restated_attribution``: the two
    revenue views (and their monthly/quarterly views), their reconciliation, and
    ``restatement_moves``, which explains, per manager, the difference from the booked
    basis (restated = booked + moved in - moved out, for every measure)."""
    views = []
    for view, key in REVENUE_VIEWS.items():
        views.append(f"""CREATE OR REPLACE VIEW {view}_restated AS
SELECT {_RESTATED_CREDIT[key]} AS {key}, f.day, {_sum_measures("f.")}
FROM {_RESTATED_FACTS} GROUP BY ALL""")
        views.extend(_period_views(f"{view}_restated", key, fiscal_year_start_month))
    views.append(_reconciliation_sql(
        "reconciliation_restated",
        "SELECT day, SUM(booked_revenue) AS total FROM attributed_events GROUP BY day",
        "territory_revenue_restated", "account_manager_revenue_restated"))
    moves = []
    for kind, key in (("account_manager", "account_manager_id"),
                      ("territory_manager", "territory_manager_id")):
        restated = f"coalesce(r.{key}, '{UNASSIGNED}')"
        changed = f"""FROM {_RESTATED_FACTS} WHERE f.{key} <> {restated}"""
        for direction, manager, other in (("moved_out", f"f.{key}", restated),
                                          ("moved_in", restated, f"f.{key}")):
            moves.append(
                f"SELECT '{kind}' AS kind, {manager} AS manager_id, '{direction}' AS direction, "
                f"f.account_id, {other} AS other_manager_id, count(*) AS events, "
                f"{_sum_measures('f.')} {changed} GROUP BY ALL")
    views.append("CREATE OR REPLACE VIEW restatement_moves AS\n" + "\nUNION ALL\n".join(moves))
    return views


_MONEY = duckdb_type(REPORTING_MONEY_TYPE)

# Every fact's credit by account team (booked basis): the published ``split_credit`` rows,
# plus the facts whose account had no team at their time, wholly their account manager's.
_SPLIT_ROWS = f"""SELECT person_id, role, split_type, day, event_id, event_type,
       booked_revenue, pipeline_created FROM split_credit
UNION ALL
SELECT f.account_manager_id, '{DEFAULT_SPLIT_ROLE}', 'primary', f.day, f.event_id,
       f.event_type, f.booked_revenue, f.pipeline_created
FROM attributed_events f ANTI JOIN split_credit s USING (event_id)"""

_UNITS_PER_PERCENT = 10**PERCENT_TYPE.scale
_WHOLE = 100 * _UNITS_PER_PERCENT


def _restated_split_credit_sql() -> str:
    """``split_credit_restated``: every fact split by its account's team at the restate
    moment (``restated_splits``), the same rule as ``pipelines.rules.splits`` in SQL:
    largest remainder over the primary units in integer cents (ties: person, role; the
    default member first), overlays half-even, negative amounts split by magnitude."""
    cents = {m: f"CAST(abs(f.{m}) * 100 AS HUGEINT)" for m in ("booked_revenue",
                                                                 "pipeline_created")}
    sign = {m: f"(CASE WHEN {m} < 0 THEN -1 ELSE 1 END)" for m in cents}
    shares, overlays, ranks = [], [], []
    for m in cents:
        ranks.append(f"""{m}_cents - sum({m}_cents * units // total) OVER (PARTITION BY event_id)
                 AS {m}_left,
               row_number() OVER (PARTITION BY event_id ORDER BY {m}_cents * units % total DESC,
                                  person_sort, role_sort) AS {m}_rank""")
        shares.append(f"""CAST(CAST({sign[m]} * ({m}_cents * units // total
                     + CASE WHEN {m}_rank <= {m}_left THEN 1 ELSE 0 END) AS DECIMAL(38, 0))
                * 0.01 AS {_MONEY}) AS {m}""")
        q, r = f"({m}_cents * units // {_WHOLE})", f"({m}_cents * units % {_WHOLE})"
        overlays.append(f"""CAST(CAST({sign[m]} * ({q} + CASE WHEN 2 * {r} > {_WHOLE}
                 OR (2 * {r} = {_WHOLE} AND {q} % 2 = 1) THEN 1 ELSE 0 END) AS DECIMAL(38, 0))
                * 0.01 AS {_MONEY}) AS {m}""")
    members = f"""SELECT f.event_id, f.event_type, f.day, f.account_id,
       f.booked_revenue, f.pipeline_created,
       coalesce(s.person_id, r.account_manager_id, '{UNASSIGNED}') AS person_id, s.role,
       s.split_type, s.percent, CAST(s.percent * {_UNITS_PER_PERCENT} AS BIGINT) AS units,
       sum(CAST(s.percent * {_UNITS_PER_PERCENT} AS BIGINT))
           FILTER (WHERE s.split_type = 'primary') OVER (PARTITION BY f.event_id) AS total,
       coalesce(s.person_id, '') AS person_sort, coalesce(s.role, '') AS role_sort,
       {cents["booked_revenue"]} AS booked_revenue_cents,
       {cents["pipeline_created"]} AS pipeline_created_cents
FROM attributed_events f JOIN restated_splits s USING (account_id)
LEFT JOIN restated_attribution r USING (account_id)"""
    columns = "event_id, event_type, day, account_id, person_id, role, split_type, percent"
    return f"""CREATE OR REPLACE VIEW split_credit_restated AS
WITH m AS ({members}),
     p AS (SELECT *, {", ".join(ranks)} FROM m WHERE split_type = 'primary')
SELECT {columns}, {", ".join(shares)} FROM p
UNION ALL
SELECT {columns}, {", ".join(overlays)} FROM m WHERE split_type = 'overlay'"""


def _split_revenue_sql(name: str, rows: str) -> str:
    return f"""CREATE OR REPLACE VIEW {name} AS
SELECT person_id, role, split_type, day,
       CAST(SUM(booked_revenue) AS {_MONEY}) AS booked_revenue,
       CAST(SUM(pipeline_created) AS {_MONEY}) AS pipeline_created,
       CAST(SUM(CASE WHEN event_type = 'deal_refunded' THEN -booked_revenue ELSE 0 END)
            AS {_MONEY}) AS refunds,
       count(*) AS events
FROM ({rows}) GROUP BY ALL"""


def _split_fiscal_sql(view: str) -> str:
    return f"""CREATE OR REPLACE VIEW {view}_fiscal AS
SELECT v.person_id, v.role, v.split_type, c.fiscal_year, c.fiscal_quarter, c.fiscal_period,
       c.period_start, CAST(SUM(v.booked_revenue) AS {_MONEY}) AS booked_revenue,
       CAST(SUM(v.pipeline_created) AS {_MONEY}) AS pipeline_created,
       CAST(SUM(v.refunds) AS {_MONEY}) AS refunds, CAST(SUM(v.events) AS BIGINT) AS events
FROM {view} v JOIN fiscal_calendar c USING (day) GROUP BY ALL"""


def _split_reconciliation_sql(name: str, view: str) -> str:
    return f"""CREATE OR REPLACE VIEW {name} AS
WITH facts AS (SELECT day, SUM(booked_revenue) AS total FROM attributed_events GROUP BY day),
     split AS (SELECT day,
                      SUM(booked_revenue) FILTER (WHERE split_type = 'primary') AS primary_total,
                      SUM(booked_revenue) FILTER (WHERE split_type = 'overlay') AS overlay_total
               FROM {view} GROUP BY day)
SELECT day, CAST(f.total AS {_MONEY}) AS events_total,
       CAST(coalesce(s.primary_total, 0) AS {_MONEY}) AS primary_total,
       CAST(coalesce(s.overlay_total, 0) AS {_MONEY}) AS overlay_total,
       f.total = coalesce(s.primary_total, 0) AS balanced
FROM facts f LEFT JOIN split s USING (day)"""


# The restated basis of the teams: the restated split credit, plus the facts of accounts
# without a team then, wholly their restated account manager's.
_RESTATED_SPLIT_ROWS = f"""SELECT person_id, role, split_type, day, event_id, event_type,
       booked_revenue, pipeline_created FROM split_credit_restated
UNION ALL
SELECT coalesce(r.account_manager_id, '{UNASSIGNED}'), '{DEFAULT_SPLIT_ROLE}', 'primary',
       f.day, f.event_id, f.event_type, f.booked_revenue, f.pipeline_created
FROM attributed_events f LEFT JOIN restated_attribution r USING (account_id)
WHERE f.account_id NOT IN (SELECT account_id FROM restated_splits)"""


def split_view_sql() -> list[str]:
    """Both bases of the account-team credit: ``split_revenue`` (booked) and
    ``split_revenue_restated`` (per person, role, split type and day: booked revenue,
    pipeline created, refunds, events), their ``_fiscal`` forms, the restated
    ``split_credit_restated`` per event, and ``reconciliation_splits`` /
    ``reconciliation_splits_restated``: per day, the facts' booked revenue against the
    primary split total (equal to the cent) and the overlay credit given in addition."""
    return [
        _split_revenue_sql("split_revenue", _SPLIT_ROWS),
        _split_fiscal_sql("split_revenue"),
        _split_reconciliation_sql("reconciliation_splits", "split_revenue"),
        _restated_split_credit_sql(),
        _split_revenue_sql("split_revenue_restated", _RESTATED_SPLIT_ROWS),
        _split_fiscal_sql("split_revenue_restated"),
        _split_reconciliation_sql("reconciliation_splits_restated", "split_revenue_restated"),
    ]
