"""The business steps of the embedded engine, as DuckDB SQL over the run's tables.

Each step reads and writes tables of one DuckDB connection. The rules are those
of ``pipelines/rules`` (the Beam graph's): where a step meets a row it is not
plainly sure of, it hands that row to the rule function itself, so both
executors give identical results by construction, and SQL only does the bulk:

* ``validate``: SQL accepts records that are plainly valid (every check of
  ``rules.validate`` passes in its simplest form); every other record goes
  through ``rules.validate.validate_events``, which accepts it or says why not.
* ``deduplicate``: SQL finds the contested event ids (repeated in the run or
  already published); ``rules.dedupe.deduplicate`` decides those rows only.
* ``convert``: exact FX on scaled integers, rounded half-even, with the rate
  rule of ``rules.fx``; rows without a rate or whose amount overflows are
  rejected by ``rules.fx.convert_to_reporting`` itself.
* ``enrich``: joins with the timelines of ``rules.enrich.EnrichmentTimelines``
  (the effective-dated reference resolved once by the rule functions).
* ``attribute`` / ``aggregate``: the signed effects of ``rules.effects.EFFECTS``;
  sums per (key, day).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.io.duckdb_sql import literal
from pipelines.io.events_reader import read_json_lines
from pipelines.rules.dedupe import DUPLICATE_SCHEMA, deduplicate
from pipelines.rules.effects import EFFECTS
from pipelines.rules.enrich import EnrichmentTimelines
from pipelines.rules.fx import convert_to_reporting, reporting_minor_units
from pipelines.rules.validate import validate_events
from schemas.events import (
    AMOUNT_SIGN_RULES,
    EVENT_FIELDS,
    EVENT_SCHEMA,
    EVENT_TYPES,
    ID_FIELDS,
    MAX_ID_LENGTH,
    RAW_EVENT_SCHEMA,
)
from schemas.money import CURRENCY_MINOR_UNITS
from schemas.outputs import MEASURES, MONEY_MEASURES, REVENUE_VIEWS
from schemas.reference import UNASSIGNED
from schemas.rejects import REJECT_SCHEMA

AMOUNT_SCALE = 3  # schemas.money.AMOUNT_TYPE
RATE_SCALE = 10  # schemas.money.FX_RATE_TYPE
OUTPUT_SCALE = 2  # schemas.money.REPORTING_MONEY_TYPE
_MAX_INT_DIGITS = 13
_SQL_SIGN = {">0": "> 0", ">=0": ">= 0", "!=0": "<> 0"}
# RFC 3339 in its plainest form: upper-case T and Z, at most microseconds, years that
# stay within 1..9999 in UTC whatever the offset. Anything else: the rule function.
_PLAIN_TIME = (
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_PLAIN_AMOUNT = r"-?[0-9]{1,%d}(\.[0-9]{1,%d})?" % (_MAX_INT_DIGITS, AMOUNT_SCALE)
_EVENT_COLUMNS = ", ".join(EVENT_SCHEMA.names)


def _in(values: list[str] | tuple[str, ...]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table) -> None:
    if data.num_rows:
        con.register("_incoming", data)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
        con.unregister("_incoming")


# --------------------------------------------------------------------------- validate


def validate(con: duckdb.DuckDBPyConnection, arrow_raw: list[pa.Table]) -> None:
    """``raw_text`` (+ records read by the Arrow reader) -> ``events`` (EVENT_SCHEMA
    columns) and ``rejects`` (REJECT_SCHEMA)."""
    currencies = ", ".join(f"({literal(c)}, {m})" for c, m in sorted(CURRENCY_MINOR_UNITS.items()))
    con.execute(f"CREATE OR REPLACE TEMP TABLE currencies (code VARCHAR, minor INTEGER); "
                f"INSERT INTO currencies VALUES {currencies}")
    sign = "CASE r.event_type " + " ".join(
        f"WHEN {literal(t)} THEN CAST(r.amount AS DECIMAL(16,{AMOUNT_SCALE})) "
        f"{_SQL_SIGN[AMOUNT_SIGN_RULES[t]]}" for t in EVENT_TYPES) + " END"
    ids = " AND ".join(
        f"strlen(r.{f}) BETWEEN 1 AND {MAX_ID_LENGTH} AND r.{f}[1] BETWEEN '!' AND '~'"
        for f in ID_FIELDS)
    fraction = ("CASE WHEN strpos(r.amount, '.') > 0 "
                "THEN length(r.amount) - strpos(r.amount, '.') ELSE 0 END")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        SELECT r.*, CASE WHEN plain THEN try_cast(r.event_time AS TIMESTAMPTZ) END AS ts,
               c.minor
        FROM (SELECT *, fast AND {ids.replace('r.', '')}
                        AND event_type IN {_in(EVENT_TYPES)}
                        AND regexp_full_match(event_time, {literal(_PLAIN_TIME)})
                        AND event_time[1:4] BETWEEN '0002' AND '9998'
                        AND regexp_full_match(amount, {literal(_PLAIN_AMOUNT)}) AS plain
              FROM raw_text) r
        LEFT JOIN currencies c ON c.code = r.currency
    """)
    con.execute(f"""
        CREATE OR REPLACE TABLE events AS
        SELECT r.event_id, r.event_type, r.ts AS event_time, r.deal_id, r.account_id,
               CAST(r.amount AS DECIMAL(16,{AMOUNT_SCALE})) AS amount, r.currency,
               nullif(r.stage, '') AS stage, nullif(r.product, '') AS product,
               nullif(r.opportunity_owner_id, '') AS opportunity_owner_id,
               r.source, r.position
        FROM checked r
        WHERE r.plain AND r.ts IS NOT NULL AND r.minor IS NOT NULL
          AND {fraction} <= r.minor AND {sign}
    """)
    con.execute(f"CREATE OR REPLACE TABLE rejects ({_ddl(REJECT_SCHEMA)})")
    # Everything else is judged by the rule functions, as the Beam graph judges it.
    doubtful = _arrow(con, f"""
        SELECT r.source, r.position, r.line, r.fast, {', '.join('r.' + f for f in EVENT_FIELDS)}
        FROM checked r ANTI JOIN events e ON e.source = r.source AND e.position = r.position
        ORDER BY r.source, r.position
    """)
    con.execute("DROP TABLE checked")
    for raw in [_raw_records(doubtful), *arrow_raw]:
        if raw.num_rows:
            events, rejects = validate_events(raw)
            _insert_arrow(con, "events", events)
            _insert_arrow(con, "rejects", rejects)


def _raw_records(doubtful: pa.Table) -> pa.Table:
    """RAW_EVENT_SCHEMA rows for the doubtful records: JSONL lines read again by the
    reader's per-line code; rows of string Parquet files as DuckDB read them."""
    if doubtful.num_rows == 0:
        return RAW_EVENT_SCHEMA.empty_table()
    is_line = pc.is_valid(doubtful["line"])
    lines = doubtful.filter(is_line)
    rows = doubtful.filter(pc.invert(is_line))
    parts = []
    if lines.num_rows:
        parts.append(read_json_lines(
            lines["line"].to_pylist(), lines["source"].to_pylist(),
            lines["position"].to_pylist()))
    if rows.num_rows:
        n = rows.num_rows
        columns = {f: rows[f] for f in EVENT_FIELDS}
        columns.update(source=rows["source"], position=rows["position"],
                       raw=pa.nulls(n, pa.string()), reason=pa.nulls(n, pa.string()),
                       detail=pa.nulls(n, pa.string()))
        parts.append(pa.table(columns).cast(RAW_EVENT_SCHEMA))
    return pa.concat_tables(parts).cast(RAW_EVENT_SCHEMA)


# --------------------------------------------------------------------------- dedupe


def deduplicate_events(con: duckdb.DuckDBPyConnection, published: pa.Table | None) -> None:
    """``events`` -> ``unique_events``, ``duplicates`` (DUPLICATE_SCHEMA), conflicts into
    ``rejects``. ``published``: already published events (event_id + payload) whose id
    occurs in this run, or None."""
    published = published if published is not None and published.num_rows else None
    con.register("_published_ids", pa.table({
        "event_id": published["event_id"] if published is not None else pa.array([], pa.string())
    }))
    con.execute("""
        CREATE OR REPLACE TEMP TABLE contested_ids AS
        SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1
        UNION SELECT DISTINCT event_id FROM _published_ids
    """)
    con.unregister("_published_ids")
    contested = _arrow(con, f"SELECT {_EVENT_COLUMNS} FROM events SEMI JOIN contested_ids "
                            "USING (event_id)").cast(EVENT_SCHEMA)
    con.execute(f"""
        CREATE OR REPLACE TABLE unique_events AS
        SELECT {_EVENT_COLUMNS} FROM events ANTI JOIN contested_ids USING (event_id)
    """)
    con.execute(f"CREATE OR REPLACE TABLE duplicates ({_ddl(DUPLICATE_SCHEMA)})")
    if contested.num_rows:
        result = deduplicate(contested, published)
        _insert_arrow(con, "unique_events", result.unique.select(EVENT_SCHEMA.names))
        _insert_arrow(con, "duplicates", result.duplicates)
        _insert_arrow(con, "rejects", result.conflicts)
    con.execute("DROP TABLE contested_ids")


# --------------------------------------------------------------------------- convert


def convert(con: duckdb.DuckDBPyConnection, fx_rates: pa.Table, reporting_currency: str) -> None:
    """``unique_events`` -> ``converted`` (+ ``amount_reporting`` DECIMAL(18,2)); events
    without a rate, or too large once converted, rejected by the rule function."""
    digits = reporting_minor_units(reporting_currency)
    divisor = 10 ** (AMOUNT_SCALE + RATE_SCALE - digits)
    limit = 10 ** (18 - OUTPUT_SCALE + digits)  # |units| must stay below: decimal(18,2)
    con.register("_fx", fx_rates)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE fx AS
        SELECT currency, rate_date,
               CAST(rate_to_reporting * {10 ** RATE_SCALE} AS BIGINT) AS rate_units
        FROM _fx
    """)
    con.unregister("_fx")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE priced AS
        WITH r AS (
            SELECT e.*,
                   CASE WHEN e.currency = {literal(reporting_currency)}
                        THEN {10 ** RATE_SCALE}::BIGINT ELSE fx.rate_units END AS rate_units
            FROM (SELECT *, CAST(timezone('UTC', event_time) AS DATE) AS utc_day
                  FROM unique_events) e
            ASOF LEFT JOIN fx ON e.currency = fx.currency AND e.utc_day >= fx.rate_date
        ), p AS (
            SELECT *, CAST(amount * {10 ** AMOUNT_SCALE} AS BIGINT)::HUGEINT * rate_units
                      AS scaled
            FROM r
        ), q AS (
            SELECT *, abs(scaled) // {divisor} AS quotient, abs(scaled) % {divisor} AS rest
            FROM p
        )
        SELECT * EXCLUDE (scaled, quotient, rest, utc_day),
               sign(scaled) * (quotient + CASE
                   WHEN 2 * rest > {divisor} THEN 1
                   WHEN 2 * rest = {divisor} AND quotient % 2 = 1 THEN 1 ELSE 0 END) AS units
        FROM q
    """)
    scale_up = 10 ** (OUTPUT_SCALE - digits)
    con.execute(f"""
        CREATE OR REPLACE TABLE converted AS
        SELECT * EXCLUDE (rate_units, units),
               CAST(CAST(units * {scale_up} AS DECIMAL(38,0)) * 0.01 AS DECIMAL(18,2))
               AS amount_reporting
        FROM priced WHERE rate_units IS NOT NULL AND abs(units) < {limit}
    """)
    refused = _arrow(con, f"SELECT {_EVENT_COLUMNS} FROM priced "
                          f"WHERE rate_units IS NULL OR abs(units) >= {limit}")
    con.execute("DROP TABLE priced")
    con.execute("DROP TABLE unique_events")
    if refused.num_rows:
        accepted, rejects = convert_to_reporting(
            refused.cast(EVENT_SCHEMA), fx_rates, reporting_currency)
        if accepted.num_rows:
            raise RuntimeError(f"bug: {accepted.num_rows} event(s) the SQL conversion refused "
                               "were converted by the rule function")
        _insert_arrow(con, "rejects", rejects)


# --------------------------------------------------------------------------- enrich


def attribute(con: duckdb.DuckDBPyConnection, timelines: EnrichmentTimelines,
              run_id: str) -> None:
    """``converted`` -> ``facts`` (ATTRIBUTED_EVENTS_SCHEMA): as-of enrichment through the
    resolved timelines, then the signed effect of each event type."""
    for name in ("account_managers", "account_territories", "territory_managers"):
        con.register(f"_tl_{name}", getattr(timelines, name))
    con.register("_known", pa.table({"account_id": timelines.known_accounts}))

    def holds(alias: str) -> str:
        return (f"({alias}.valid_from IS NULL OR {alias}.valid_from <= e.event_time) AND "
                f"({alias}.valid_to IS NULL OR e.event_time < {alias}.valid_to)")

    measures = []
    for position, measure in enumerate(MEASURES):
        cases = " ".join(f"WHEN {literal(t)} THEN {c[position]}" for t, c in EFFECTS.items()
                         if c[position])
        coefficient = f"(CASE e.event_type {cases} ELSE 0 END)"
        if measure in MONEY_MEASURES:
            measures.append(f"CAST({coefficient} * e.amount_reporting AS DECIMAL(18,2)) "
                            f"AS {measure}")
        else:
            measures.append(f"CAST({coefficient} AS BIGINT) AS {measure}")
    u = literal(UNASSIGNED)
    con.execute(f"""
        CREATE OR REPLACE TABLE facts AS
        SELECT e.event_id, e.event_type, e.event_time,
               CAST(timezone('UTC', e.event_time) AS DATE) AS day,
               e.deal_id, e.account_id, e.currency, e.amount,
               {', '.join(measures)},
               coalesce(am.value, {u}) AS account_manager_id,
               coalesce(terr.value, {u}) AS territory_id,
               coalesce(tmgr.value, {u}) AS territory_manager_id,
               CASE WHEN k.account_id IS NULL THEN 'unknown_account'
                    WHEN am.value IS NULL THEN 'no_account_manager'
                    WHEN terr.value IS NULL THEN 'no_territory'
                    WHEN tmgr.value IS NULL THEN 'no_territory_manager'
                    ELSE 'attributed' END AS attribution_status,
               {literal(run_id)} AS run_id,
               e.stage, e.product, e.opportunity_owner_id, e.amount_reporting
        FROM converted e
        LEFT JOIN (SELECT DISTINCT account_id FROM _known) k ON k.account_id = e.account_id
        LEFT JOIN _tl_account_managers am ON am.key = e.account_id AND {holds('am')}
        LEFT JOIN _tl_account_territories terr ON terr.key = e.account_id AND {holds('terr')}
        LEFT JOIN _tl_territory_managers tmgr ON tmgr.key = terr.value AND {holds('tmgr')}
    """)
    for name in ("account_managers", "account_territories", "territory_managers"):
        con.unregister(f"_tl_{name}")
    con.unregister("_known")
    con.execute("DROP TABLE converted")


def aggregate_sql(view: str) -> str:
    """SQL: one view's rows (key, day, the six measures) summed from ``facts``."""
    key = REVENUE_VIEWS[view]
    sums = ", ".join(
        f"CAST(sum({m}) AS {'DECIMAL(18,2)' if m in MONEY_MEASURES else 'BIGINT'}) AS {m}"
        for m in MEASURES)
    return f"SELECT {key}, day, {sums} FROM facts GROUP BY {key}, day"


def _ddl(schema: pa.Schema) -> str:
    from schemas.outputs import duckdb_type

    return ", ".join(f"{f.name} {duckdb_type(f.type)}" for f in schema)

