"""The SQL reference, tuned: the same contract outputs as ``reference_sql``, several times faster.

``pipelines.reference_sql`` stays the independent, plainly written oracle (tests hold the
pipeline and this module to it). This module is the benchmark's yardstick: what a tuned
DuckDB script costs for the same work, with the same ``ref_*`` output tables, so
``pipelines.bench.compare_outputs`` reads either one.

    con = duckdb.connect()
    compute_reference(con, "sample/events/*.jsonl", "sample/reference")

It takes the contract restatement (fields, effects, regular expressions, quarantine
order) and the reference-data preparation from ``reference_sql``, and every decision
listed there, and does the event work differently:

* JSONL: ``read_json_objects`` (DuckDB's newline-delimited JSON reader, parallel) gives
  each non-blank line's text, or NULL when the line does not parse (malformed); one
  ``from_json`` per line takes the ten contract fields as JSON values, whose first
  character tells their kind. ``read_json`` with typed columns is not enough: it
  returns an unparseable line as a row of NULLs (the same as ``{}``), a VARCHAR column
  cannot tell ``"5"`` from ``5``, and a JSON number comes back re-printed from a double
  (``1e3`` as ``1000.0``, ``1234567890123.4567`` as ``1234567890123.4568``). The number's
  own text is taken from the line instead (one anchored regex, only for numeric amounts).
  The costly checks of the oracle (trailing commas, NaN/Infinity, a field given twice)
  run only on lines a cheap test flags.
* Parquet: one ``read_parquet`` per group of files with the same schema; CSV: the
  oracle's ``read_csv`` loader.
* Parsing, validation and typing in one pass; deduplication sorts only the event ids
  that occur more than once.
* Enrichment: the effective-dated reference tables are first cut into disjoint time
  segments per key (account, or leaf territory for the manager walk-up), each with its
  resolved value (smallest id on overlaps, most specific rule, nearest managed
  ancestor). Each event then matches at most one segment per lookup: plain hash joins,
  no per-event ranking.
* ``ref_attributed_events`` has the oracle's columns and types but no primary-key
  index (event ids are unique by construction).

Differences from the oracle, none of which ``compare_outputs`` sees: a JSONL record's
``position`` in ``ref_quarantine`` is its ordinal among the file's non-blank lines (the
oracle gives the line number; they differ after a blank line), and a line holding only a
vertical tab is skipped as blank by DuckDB's reader (the oracle calls it malformed).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.reference_sql import _TEMP_TABLES as _ORACLE_TEMP_TABLES
from pipelines.reference_sql import (
    AMOUNT_SCALE,
    ANCESTRY,
    EFFECTS,
    FIELDS,
    ID_FIELDS,
    JSON_NUMBER,
    JSON_STRING,
    MAX_ID_CHARS,
    MAX_INTEGER_DIGITS,
    MEASURE_COLUMNS,
    NOT_JSON,
    OPTIONAL,
    OUTPUT_SCALE,
    PLAIN_DECIMAL,
    RATE_SCALE,
    REQUIRED,
    RFC3339,
    UNASSIGNED,
    _event_files,
    _in_list,
    _lit,
    _load_csv,
    _load_reference,
    _prepare_reference,
    _raw_table,
    write_counts,
)
from schemas.money import CURRENCY_MINOR_UNITS
from schemas.outputs import (
    ACCOUNT_MANAGER_REVENUE_SCHEMA,
    ATTRIBUTED_EVENTS_SCHEMA,
    TERRITORY_REVENUE_SCHEMA,
    create_table_sql,
    duckdb_type,
)

THREADS = 2  # the bench machine's cores; ``compute_reference(threads=None)`` keeps the setting
NEG_INF, POS_INF = "'-infinity'::TIMESTAMPTZ", "'infinity'::TIMESTAMPTZ"
MAX_BIGINT = 2**63 - 1
# ord = file rank * 2^40 + record number: (source, position) order in one integer
ORD_SHIFT = 2**40
# The first "amount": <number> of a line: the oracle's choice when its value is the parsed one.
NUMBER_AT_AMOUNT = r'"amount"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'

_OWN_TABLES = (
    "ref__t_files", "ref__t_lines", "ref__t_checked", "ref__t_multi", "ref__t_repeats",
    "ref__t_outcome", "ref__t_rates", "ref__t_am_seg", "ref__t_tr_match", "ref__t_tr_seg",
    "ref__t_ancestry", "ref__t_tm_seg", "ref__t_acct_seg", "ref__t_sums",
)
_STRING_FIELDS = tuple(f for f in FIELDS if f != "amount")  # the amount may be a number


# --- loading: one SELECT per source group ----------------------------------------------
# Each gives: idx (the file's rank), seq (the record's order in it), malformed,
# kind_missing (a required field absent or null), kind_bad (a field of a type the
# oracle calls bad_type: not a string, or for the amount neither string nor number),
# and each field's value as text (a JSON string unquoted, a number as written).


def _jsonl_select(con: duckdb.DuckDBPyConnection, paths: list[str]) -> str:
    """The records of JSONL files: ``read_json_objects`` gives each non-blank line's text
    (NULL when it does not parse) in file order; one ``from_json`` per line takes the
    contract fields as JSON values, whose first character is their kind."""
    paths_sql = "[" + ", ".join(_lit(p) for p in paths) + "]"
    # Materialised in scan order (its rowid is the record order) so that what follows
    # runs on every thread; a row_number() over the scan would serialise it.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_lines AS
        SELECT filename AS source, CAST(json AS VARCHAR) AS j
        FROM read_json_objects({paths_sql}, format = 'newline_delimited',
                               ignore_errors = true, filename = true)
    """)
    struct = "{" + ", ".join(f'"{f}": "JSON"' for f in FIELDS) + "}"
    values = ", ".join(f"CAST(s.{f} AS VARCHAR) AS x_{f}" for f in FIELDS)
    present = " + ".join(f"CAST(x_{f} IS NOT NULL AS INTEGER)" for f in FIELDS)
    not_number = "('\"', '{', '[', 't', 'f')"  # first characters of the other JSON kinds
    kind_missing = " OR ".join(f"x_{f} IS NULL" for f in REQUIRED)
    kind_bad = " OR ".join([f"left(x_{f}, 1) <> '\"'" for f in _STRING_FIELDS]
                           + ["left(x_amount, 1) IN ('{', '[', 't', 'f')"])
    selects = []
    for f in FIELDS:
        x = f"x_{f}"
        # A JSON string without a backslash is its text between the quotes.
        value = (f"CASE WHEN NOT starts_with({x}, '\"') THEN {x} "
                 f"WHEN contains({x}, '\\') THEN json_extract_string({x}, '$') "
                 f"ELSE substr({x}, 2, length({x}) - 2) END")
        if f == "amount":
            # DuckDB re-prints a JSON number from its double (1e3 as 1000.0): take the
            # number's own text from the line, as the oracle does (its search only when
            # the first "amount" of the line is not the parsed value, e.g. a nested one).
            first = f"regexp_extract(j, {_lit(NUMBER_AT_AMOUNT)}, 1)"
            value = (
                f"CASE WHEN left({x}, 1) NOT IN {not_number} THEN (CASE "
                f"WHEN try_cast({first} AS DOUBLE) = try_cast({x} AS DOUBLE) THEN {first} "
                f"ELSE coalesce(list_filter(regexp_extract_all(j, {_lit(JSON_NUMBER)}, 1), "
                f"lambda y: try_cast(y AS DOUBLE) = try_cast({x} AS DOUBLE))[1], {x}) END) "
                f"ELSE {value} END"
            )
        if f == "event_id":  # kept for the quarantine when it is a string
            value = f"CASE WHEN starts_with({x}, '\"') THEN {value} END"
        selects.append(f"{value} AS {f}")
    # Malformed: unparseable, not an object, what DuckDB's parser takes but JSON does not
    # (a trailing comma, NaN/Infinity outside strings) or a contract field given twice.
    # Each exact test of the oracle runs only where cheaper ones fire: 'NaN', 'Infinity'
    # or ',]' anywhere; more keys than contract values, then more contract keys than
    # contract values (a repeat, or a field given as null).
    contract_keys = f"list_filter(keys, lambda k: k IN {_in_list(FIELDS)})"
    repeated = (f"CASE WHEN len(keys) <= {present} THEN false "
                f"WHEN len({contract_keys}) <= {present} THEN false "
                f"ELSE len({contract_keys}) > len(list_distinct({contract_keys})) END")
    return f"""
        SELECT f.idx, t.seq,
               CASE WHEN j IS NULL OR NOT starts_with(j, '{{') THEN true
                    WHEN (contains(j, 'NaN') OR contains(j, 'Infinity')
                          OR regexp_matches(j, ',\\s*[\\]}}]'))
                         AND regexp_matches(regexp_replace(j, {_lit(JSON_STRING)}, '""', 'g'),
                                            {_lit(NOT_JSON)}) THEN true
                    ELSE {repeated} END AS malformed,
               coalesce({kind_missing}, false) AS kind_missing,
               coalesce({kind_bad}, false) AS kind_bad, {', '.join(selects)}
        FROM (
            SELECT seq, source, j, {values},
                   CASE WHEN starts_with(j, '{{') THEN json_keys(j) END AS keys
            FROM (
                SELECT rowid AS seq, source, j,
                       CASE WHEN starts_with(j, '{{') THEN from_json(j, '{struct}') END AS s
                FROM ref__t_lines
            )
        ) t JOIN ref__t_files f ON f.source = t.source
    """


_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE")


def _parquet_selects(con: duckdb.DuckDBPyConnection, paths: list[str]) -> list[str]:
    """One scan per group of Parquet files with the same column types (the oracle's
    typing of each column, known before the scan)."""
    groups: dict[tuple, list[str]] = {}
    for path in paths:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_lit(path)})").fetchall()
        groups.setdefault(tuple((r[0], r[1].upper()) for r in described), []).append(path)
    out = []
    for signature, group in groups.items():
        types = dict(signature)
        selects, missing, bad = [], [], []
        for f in FIELDS:
            if f not in types:
                selects.append(f"NULL::VARCHAR AS {f}")
                missing += ["true"] if f in REQUIRED else []
                continue
            t = types[f]
            value, ok = f"CAST(p.{f} AS VARCHAR)", False
            if t in ("VARCHAR", "BLOB"):
                ok = True
            elif f == "amount" and (t.startswith("DECIMAL") or t in _NUMERIC):
                ok = True
            elif f == "event_time" and t == "TIMESTAMP WITH TIME ZONE":
                value, ok = f"strftime(timezone('UTC', p.{f}), '%Y-%m-%dT%H:%M:%S.%fZ')", True
            elif f == "event_time" and t.startswith("TIMESTAMP"):
                value, ok = f"strftime(CAST(p.{f} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%f')", True
            elif f == "event_time" and t == "DATE":
                ok = True
            selects.append(f"{value if ok or f != 'event_id' else 'NULL::VARCHAR'} AS {f}")
            if f in REQUIRED:
                missing.append(f"p.{f} IS NULL")
            if not ok:
                bad.append(f"p.{f} IS NOT NULL")
        paths_sql = "[" + ", ".join(_lit(p) for p in group) + "]"
        out.append(f"""
            SELECT f.idx, p.file_row_number + 1 AS seq, false AS malformed,
                   {' OR '.join(missing) or 'false'} AS kind_missing,
                   {' OR '.join(bad) or 'false'} AS kind_bad, {', '.join(selects)}
            FROM read_parquet({paths_sql}, filename = true, file_row_number = true) p
            JOIN ref__t_files f ON f.source = p.filename
        """)
    return out


def _csv_select(con: duckdb.DuckDBPyConnection, paths: list[str]) -> str:
    """CSV backfills: the oracle's ``read_csv`` loader (into its raw table)."""
    _raw_table(con)
    for path in paths:
        _load_csv(con, path)
    kind_missing = " OR ".join(f"r.{f}__k IS NULL" for f in REQUIRED)
    kind_bad = " OR ".join([f"r.{f}__k <> 'string'" for f in _STRING_FIELDS]
                           + ["r.amount__k NOT IN ('string', 'number')"])
    return (f"SELECT f.idx, r.position AS seq, r.malformed, {kind_missing} AS kind_missing, "
            f"{kind_bad} AS kind_bad, {', '.join(f'r.{f}' for f in FIELDS[1:])}, "
            f"CASE WHEN r.event_id__k = 'string' THEN r.event_id END AS event_id "
            f"FROM ref__raw r JOIN ref__t_files f ON f.source = r.source")


# --- validation, in one pass over the raw records --------------------------------------


def _validate(con: duckdb.DuckDBPyConnection, raw_sql: str) -> None:
    """``ref__t_checked``: every record with its first failing check (or null) and its
    typed values: the oracle's ``_validate`` rules in cheaper, equivalent expressions."""
    # '\s*' only matches a string that is empty or starts below '!': test that first.
    blank = " OR ".join(f"({f} < '!' AND regexp_full_match({f}, '\\s*'))" for f in REQUIRED)
    too_long = " OR ".join(f"(strlen({f}) > {MAX_ID_CHARS} AND length({f}) > {MAX_ID_CHARS})"
                           for f in ID_FIELDS)
    sign_rule = "CASE event_type " + " ".join(
        f"WHEN {_lit(t)} THEN amount_dec {rule[0]}" for t, rule in EFFECTS.items()
    ) + " END"
    currencies = ", ".join(f"({_lit(c)}, {d})" for c, d in sorted(CURRENCY_MINOR_UNITS.items()))
    optional = ", ".join(f"nullif({f}, '') AS {f}" for f in OPTIONAL)
    day_us = 86_400_000_000
    epoch = "epoch_us(ts)"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_checked AS
        WITH r AS ({raw_sql}),
        p AS (
            SELECT r.*, cur.minor AS currency_minor,
                   CASE WHEN regexp_full_match(r.event_time, {_lit(RFC3339)})
                        THEN try_cast(upper(r.event_time) AS TIMESTAMPTZ) END AS ts0,
                   regexp_extract(r.amount, {_lit(PLAIN_DECIMAL)}, ['s', 'i', 'f']) AS am
            FROM r LEFT JOIN (VALUES {currencies}) cur(code, minor) ON cur.code = r.currency
        ), q AS (
            -- the UTC year must be 1..9999
            SELECT *, CASE WHEN ts0 BETWEEN '0001-01-01 00:00:00+00'::TIMESTAMPTZ
                                        AND '9999-12-31 23:59:59.999999+00'::TIMESTAMPTZ
                           THEN ts0 END AS ts,
                   ltrim(am.i, '0') AS am_int, rtrim(am.f, '0') AS am_frac
            FROM p
        ), d AS (
            -- a plain decimal within the digit limits casts exactly
            SELECT *, CASE WHEN am.i <> '' AND length(am_int) <= {MAX_INTEGER_DIGITS}
                                AND length(am_frac) <= {AMOUNT_SCALE}
                           THEN CAST(amount AS DECIMAL(16,{AMOUNT_SCALE})) END AS amount_dec
            FROM q
        ), v AS (
            SELECT *,
                CASE
                    WHEN malformed THEN 'malformed'
                    WHEN kind_missing OR {blank} THEN 'missing_field'
                    WHEN kind_bad OR {too_long} THEN 'bad_type'
                    WHEN event_type NOT IN {_in_list(list(EFFECTS))} THEN 'unknown_event_type'
                    WHEN ts IS NULL THEN 'bad_timestamp'
                    WHEN currency_minor IS NULL THEN 'bad_currency'
                    WHEN amount_dec IS NULL OR length(am_frac) > currency_minor
                         OR NOT ({sign_rule}) THEN 'bad_amount'
                END AS reason
            FROM d
        )
        SELECT idx, seq, CAST(idx AS BIGINT) * {ORD_SHIFT} + seq AS ord, reason,
               event_id,
               CASE WHEN reason IS NULL THEN event_type END AS event_type,
               CASE WHEN reason IS NULL THEN ts END AS event_time,
               CASE WHEN reason IS NULL THEN CAST(DATE '1970-01-01' + CAST(
                   ({epoch} - (({epoch} % {day_us}) + {day_us}) % {day_us}) // {day_us}
                   AS INTEGER) AS DATE) END AS day,
               deal_id, account_id, amount_dec AS amount,
               CAST(CAST(amount_dec AS DECIMAL(19,{AMOUNT_SCALE})) * {10 ** AMOUNT_SCALE} AS BIGINT)
               AS amount_units, currency, {optional}
        FROM v
    """)


# --- deduplication ----------------------------------------------------------------------

_PAYLOAD = ("event_type", "event_time", "deal_id", "account_id", "amount", "currency",
            *OPTIONAL)


def _deduplicate(con: duckdb.DuckDBPyConnection) -> None:
    """``ref__t_outcome``: each later occurrence of a repeated valid id, ``duplicate`` or
    ``conflicting_duplicate`` against the first one (only repeated ids are sorted)."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ref__t_multi AS
        SELECT event_id FROM ref__t_checked WHERE reason IS NULL
        GROUP BY event_id HAVING count(*) > 1
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_repeats AS
        SELECT idx, seq, ord, event_id, {', '.join(_PAYLOAD)},
               row_number() OVER (PARTITION BY event_id ORDER BY ord) AS rn
        FROM ref__t_checked
        WHERE reason IS NULL AND event_id IN (SELECT event_id FROM ref__t_multi)
    """)
    same = " AND ".join(f"r.{f} IS NOT DISTINCT FROM w.{f}" for f in _PAYLOAD)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_outcome AS
        SELECT r.idx, r.seq, r.ord, r.event_id,
               CASE WHEN {same} THEN 'duplicate' ELSE 'conflicting_duplicate' END AS outcome
        FROM ref__t_repeats r JOIN ref__t_repeats w ON w.event_id = r.event_id AND w.rn = 1
        WHERE r.rn > 1
    """)


# --- FX: one rate per (currency, day) that occurs; the oracle's exact half-even product --


def _rates(con: duckdb.DuckDBPyConnection, reporting_currency: str) -> None:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_rates AS
        WITH k AS (SELECT DISTINCT currency, day FROM ref__t_checked WHERE reason IS NULL),
        r AS (
            SELECT k.currency, k.day,
                   CAST(CASE WHEN k.currency = {_lit(reporting_currency)} THEN {10 ** RATE_SCALE}
                             ELSE fx.rate_units END AS BIGINT) AS rate_units
            FROM k ASOF LEFT JOIN ref__fx fx ON k.currency = fx.currency AND k.day >= fx.rate_date
        )
        SELECT *, CASE WHEN rate_units = 0 THEN {MAX_BIGINT}
                       ELSE {MAX_BIGINT} // abs(rate_units) END AS max_amount_units
        FROM r WHERE rate_units IS NOT NULL
    """)


def _reporting_units(minor: int) -> str:
    """SQL: ``amount_units x rate_units`` (10^-13 units) rounded half-even to ``minor``
    digits, in BIGINT when the product fits (``max_amount_units``), else in HUGEINT."""
    divisor = 10 ** (AMOUNT_SCALE + RATE_SCALE - minor)

    def rounded(product: str) -> str:
        q, r = f"(abs({product}) // {divisor})", f"(abs({product}) % {divisor})"
        return (f"sign({product}) * ({q} + CASE WHEN 2 * {r} > {divisor} THEN 1 "
                f"WHEN 2 * {r} = {divisor} AND {q} % 2 = 1 THEN 1 ELSE 0 END)")

    return (f"CASE WHEN abs(amount_units) <= max_amount_units "
            f"THEN CAST({rounded('(amount_units * rate_units)')} AS HUGEINT) "
            f"ELSE {rounded('(CAST(amount_units AS HUGEINT) * rate_units)')} END")


def _firsts(minor: int) -> str:
    """SQL: the first occurrences of the valid records, with their rate (NULL: none),
    ``reporting_units`` and ``fx_reason``."""
    return f"""
        SELECT *, CASE WHEN rate_units IS NULL THEN 'no_fx_rate'
                       WHEN abs(reporting_units) * {10 ** (OUTPUT_SCALE - minor)} >= {10 ** 18}
                       THEN 'bad_amount' END AS fx_reason
        FROM (
            SELECT c.*, rt.rate_units,
                   CASE WHEN rt.rate_units IS NOT NULL THEN {_reporting_units(minor)} END
                   AS reporting_units
            FROM ref__t_checked c
            ANTI JOIN ref__t_outcome o ON o.ord = c.ord
            LEFT JOIN ref__t_rates rt ON rt.currency = c.currency AND rt.day = c.day
            WHERE c.reason IS NULL
        )
    """


# --- enrichment: the effective-dated lookups cut into disjoint segments ------------------


def _disjoint(source: str, key: str, resolve: str, order: str) -> str:
    """SQL: per ``key``, the intervals ``[lo, hi)`` of ``source`` cut at every bound into
    disjoint segments, each with ``resolve`` from the first row by ``order`` among those
    covering it (segments covered by none are left out)."""
    return f"""
        WITH c AS ({source}),
        b AS (SELECT {key}, lo AS t FROM c UNION SELECT {key}, hi FROM c),
        s AS (SELECT {key}, t AS lo, lead(t) OVER (PARTITION BY {key} ORDER BY t) AS hi FROM b)
        SELECT s.{key}, s.lo, s.hi, {resolve}
        FROM s JOIN c ON c.{key} = s.{key} AND c.lo <= s.lo AND s.hi <= c.hi
        WHERE s.hi IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY s.{key}, s.lo ORDER BY {order}) = 1
    """


def _enrichment(con: duckdb.DuckDBPyConnection) -> None:
    """``ref__t_acct_seg``: per account, disjoint time segments covering all time, each
    with whether the account is known, its account manager, its leaf territory (most
    specific rule) and that territory's manager (nearest managed ancestor)."""
    bounds = f"coalesce(valid_from, {NEG_INF}) AS lo, coalesce(valid_to, {POS_INF}) AS hi"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_am_seg AS
        {_disjoint(f"SELECT account_id, account_manager_id, {bounds} FROM ref__assignments",
                   "account_id", "c.account_manager_id", "c.account_manager_id")}
    """)
    # Location matching does not depend on time: accounts x rules, as equi-joins on the
    # fields each kind of rule names (country, region, city; the postal prefix after).
    match = f"""ac.account_id, r.territory_id,
        coalesce(r.valid_from, {NEG_INF}) AS lo, coalesce(r.valid_to, {POS_INF}) AS hi,
        length(coalesce(r.postal_prefix, '')) AS prefix_len, r.city IS NOT NULL AS has_city,
        r.region IS NOT NULL AS has_region, r.country IS NOT NULL AS has_country"""
    prefix = "(r.postal_prefix IS NULL OR starts_with(ac.postal_code, r.postal_prefix))"
    kinds = []
    for named in ((), ("country",), ("region",), ("city",), ("country", "region"),
                  ("country", "city"), ("region", "city"), ("country", "region", "city")):
        rules = " AND ".join(f"{c} {'IS NOT NULL' if c in named else 'IS NULL'}"
                             for c in ("country", "region", "city"))
        on = " AND ".join([f"r.{c} = ac.{c}" for c in named] + [prefix])
        kinds.append(f"SELECT {match} FROM ref__accounts ac "
                     f"JOIN (SELECT * FROM ref__rules WHERE {rules}) r ON {on}")
    con.execute("CREATE OR REPLACE TEMP TABLE ref__t_tr_match AS " + " UNION ALL ".join(kinds))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_tr_seg AS
        {_disjoint("SELECT * FROM ref__t_tr_match", "account_id", "c.territory_id",
                   "c.prefix_len DESC, c.has_city DESC, c.has_region DESC, "
                   "c.has_country DESC, c.territory_id")}
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_ancestry AS
        {ANCESTRY}
        SELECT * FROM ancestry
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_tm_seg AS
        {_disjoint(f'''SELECT a.leaf, a.depth, m.manager_id, {bounds}
                       FROM ref__t_ancestry a JOIN ref__managers m ON m.territory_id = a.node''',
                   "leaf", "c.manager_id", "c.depth, c.manager_id")}
    """)
    # Every account that is known or assigned, cut at every bound of its lookups (and
    # of its territories' managers within them): each segment lies within at most one
    # segment of each lookup.
    inner_tm = """FROM ref__t_tr_seg s JOIN ref__t_tm_seg m ON m.leaf = s.territory_id
                  AND m.{b} > s.lo AND m.{b} < s.hi"""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_acct_seg AS
        WITH u AS (SELECT account_id FROM ref__accounts
                   UNION SELECT account_id FROM ref__assignments),
        b AS (
            SELECT account_id, {NEG_INF} AS t FROM u UNION SELECT account_id, {POS_INF} FROM u
            UNION SELECT account_id, lo FROM ref__t_am_seg
            UNION SELECT account_id, hi FROM ref__t_am_seg
            UNION SELECT account_id, lo FROM ref__t_tr_seg
            UNION SELECT account_id, hi FROM ref__t_tr_seg
            UNION SELECT s.account_id, m.lo {inner_tm.format(b='lo')}
            UNION SELECT s.account_id, m.hi {inner_tm.format(b='hi')}
        ),
        s AS (SELECT account_id, t AS lo, lead(t) OVER (PARTITION BY account_id ORDER BY t) AS hi
              FROM b)
        SELECT s.account_id, s.lo, s.hi, ac.account_id IS NOT NULL AS known,
               am.account_manager_id AS am_id, tr.territory_id AS tr_id, tm.manager_id AS tm_id
        FROM s
        LEFT JOIN ref__accounts ac ON ac.account_id = s.account_id
        LEFT JOIN ref__t_am_seg am ON am.account_id = s.account_id
             AND am.lo <= s.lo AND s.lo < am.hi
        LEFT JOIN ref__t_tr_seg tr ON tr.account_id = s.account_id
             AND tr.lo <= s.lo AND s.lo < tr.hi
        LEFT JOIN ref__t_tm_seg tm ON tm.leaf = tr.territory_id
             AND tm.lo <= s.lo AND s.lo < tm.hi
        WHERE s.hi IS NOT NULL
    """)


# --- publication -------------------------------------------------------------------------


def _measure(name: str) -> str:
    position = MEASURE_COLUMNS.index(name) + 1
    cases = " ".join(f"WHEN {_lit(t)} THEN {rule[position]}" for t, rule in EFFECTS.items()
                     if rule[position] != 0)
    coefficient = f"CASE e.event_type {cases} ELSE 0 END"
    if name in ("booked_revenue", "pipeline_created", "refunds"):
        return f"CAST({coefficient} * e.amount_reporting AS DECIMAL(18,{OUTPUT_SCALE}))"
    return f"CAST({coefficient} AS BIGINT)"


def _insert_facts(con: duckdb.DuckDBPyConnection, minor: int) -> None:
    """Insert the accepted first occurrences, converted and enriched, with their measures."""
    to_output_units = 10 ** (OUTPUT_SCALE - minor)
    unit = f"CAST('0.{'0' * (OUTPUT_SCALE - 1)}1' AS DECIMAL(3,{OUTPUT_SCALE}))"
    measures = ", ".join(f"{_measure(m)} AS {m}" for m in MEASURE_COLUMNS)
    con.execute(f"""
        INSERT INTO ref_attributed_events BY NAME
        WITH e AS (
            SELECT c.*, CAST(CAST(CAST(c.reporting_units AS BIGINT) * {to_output_units}
                                  AS DECIMAL(18,0)) * {unit} AS DECIMAL(18,{OUTPUT_SCALE}))
                        AS amount_reporting,
                   coalesce(g.known, false) AS known, g.am_id, g.tr_id, g.tm_id
            FROM ({_firsts(minor)}) c
            LEFT JOIN ref__t_acct_seg g ON g.account_id = c.account_id
                 AND g.lo <= c.event_time AND c.event_time < g.hi
            WHERE c.fx_reason IS NULL
        )
        SELECT e.event_id, e.event_type, e.event_time, e.day, e.deal_id, e.account_id,
               e.currency, e.amount, e.stage, e.product, e.opportunity_owner_id,
               e.amount_reporting, {measures},
               coalesce(e.am_id, {_lit(UNASSIGNED)}) AS account_manager_id,
               coalesce(e.tr_id, {_lit(UNASSIGNED)}) AS territory_id,
               coalesce(e.tm_id, {_lit(UNASSIGNED)}) AS territory_manager_id,
               CASE WHEN NOT e.known THEN 'unknown_account'
                    WHEN e.am_id IS NULL THEN 'no_account_manager'
                    WHEN e.tr_id IS NULL THEN 'no_territory'
                    WHEN e.tm_id IS NULL THEN 'no_territory_manager'
                    ELSE 'attributed' END AS attribution_status
        FROM e
    """)


def _publish(con: duckdb.DuckDBPyConnection, minor: int, jsonl_ranks: list[int]) -> None:
    events_schema = pa.schema([f for f in ATTRIBUTED_EVENTS_SCHEMA if f.name != "run_id"])
    con.execute("DROP TABLE IF EXISTS ref_attributed_events")
    con.execute(create_table_sql("ref_attributed_events", events_schema))
    # DuckDB would build the join's hash table on the million events rather than on the
    # segments (a cardinality misestimate): keep the written sides for this statement.
    previous = con.execute("SELECT current_setting('disabled_optimizers')").fetchall()[0][0]
    con.execute("SET disabled_optimizers = " + _lit(
        ",".join(filter(None, [previous, "build_side_probe_side"]))))
    try:
        _insert_facts(con, minor)
    finally:
        con.execute("SET disabled_optimizers = " + _lit(previous))
    # Both views from one scan of the facts (grouping sets), then each from that.
    measures = [f for f in TERRITORY_REVENUE_SCHEMA if f.name not in ("territory_id", "day")]
    sums = ", ".join(f"CAST(sum({f.name}) AS {duckdb_type(f.type)}) AS {f.name}"
                     for f in measures)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__t_sums AS
        SELECT territory_id, account_manager_id, day, GROUPING(territory_id) AS by_manager,
               {sums}
        FROM ref_attributed_events
        GROUP BY GROUPING SETS ((territory_id, day), (account_manager_id, day))
    """)
    for table, schema, key in (
        ("ref_territory_revenue", TERRITORY_REVENUE_SCHEMA, "territory_id"),
        ("ref_account_manager_revenue", ACCOUNT_MANAGER_REVENUE_SCHEMA, "account_manager_id"),
    ):
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(create_table_sql(table, schema))
        con.execute(f"INSERT INTO {table} BY NAME SELECT {key}, day, "
                    f"{', '.join(f.name for f in measures)} FROM ref__t_sums "
                    f"WHERE by_manager = {int(key == 'account_manager_id')}")

    # A JSONL record's position is its ordinal among the file's non-blank lines.
    ranks = ", ".join(str(r) for r in jsonl_ranks) or "NULL"
    con.execute("DROP TABLE IF EXISTS ref_quarantine")
    con.execute(f"""
        CREATE TABLE ref_quarantine AS
        WITH q AS (
            SELECT idx, seq, event_id, reason FROM ref__t_checked WHERE reason IS NOT NULL
            UNION ALL
            SELECT idx, seq, event_id, outcome FROM ref__t_outcome
            WHERE outcome = 'conflicting_duplicate'
            UNION ALL
            SELECT idx, seq, event_id, fx_reason FROM ({_firsts(minor)})
            WHERE fx_reason IS NOT NULL
        ), base AS (
            SELECT idx, min(seq) - 1 AS base FROM ref__t_checked WHERE idx IN ({ranks})
            GROUP BY idx
        )
        SELECT f.source, q.seq - coalesce(b.base, 0) AS position, q.event_id, q.reason
        FROM q JOIN ref__t_files f ON f.idx = q.idx LEFT JOIN base b ON b.idx = q.idx
        ORDER BY f.source, position
    """)
    write_counts(con, "ref__t_checked",
                 "SELECT * FROM ref__t_outcome WHERE outcome = 'duplicate'")


def compute_reference(
    con: duckdb.DuckDBPyConnection,
    events_glob: str,
    reference_dir: str,
    reporting_currency: str = "USD",
    threads: int | None = THREADS,
) -> None:
    """Compute the contract's outputs for the raw files into ``ref_*`` tables of ``con``:
    the tables, arguments and errors of ``reference_sql.compute_reference``.

    ``threads``: DuckDB threads for the run (default 2, the bench machine's cores);
    None keeps the connection's setting.
    """
    minor = CURRENCY_MINOR_UNITS.get(reporting_currency)
    if minor is None:
        raise ValueError(f"unknown reporting currency {reporting_currency!r}")
    if minor > OUTPUT_SCALE:
        raise ValueError(f"{reporting_currency} has {minor} minor digits; outputs are "
                         f"DECIMAL(18,{OUTPUT_SCALE})")
    files = _event_files(events_glob)
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    try:
        _load_reference(con, reference_dir)
        _prepare_reference(con)
        rows = ", ".join(f"({i}, {_lit(p)}, {_lit(fmt)})" for i, (p, fmt) in enumerate(files))
        con.execute("CREATE OR REPLACE TEMP TABLE ref__t_files AS SELECT * FROM "
                    f"(VALUES {rows}) t(idx, source, format)")
        by_format: dict[str, list[str]] = {}
        for path, fmt in files:
            by_format.setdefault(fmt, []).append(path)
        selects = []
        if "jsonl" in by_format:
            selects.append(_jsonl_select(con, by_format["jsonl"]))
        if "parquet" in by_format:
            selects += _parquet_selects(con, by_format["parquet"])
        if "csv" in by_format:
            selects.append(_csv_select(con, by_format["csv"]))
        _validate(con, " UNION ALL BY NAME ".join(f"SELECT * FROM ({s})" for s in selects))
        con.execute("DROP TABLE IF EXISTS ref__raw")
        con.execute("DROP TABLE IF EXISTS ref__t_lines")
        _deduplicate(con)
        _rates(con, reporting_currency)
        _enrichment(con)
        _publish(con, minor, [i for i, (_, fmt) in enumerate(files) if fmt == "jsonl"])
    finally:
        for table in (*_OWN_TABLES, *_ORACLE_TEMP_TABLES):
            con.execute(f"DROP TABLE IF EXISTS {table}")
