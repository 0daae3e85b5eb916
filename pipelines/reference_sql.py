"""An independent reference implementation of the data contract, in DuckDB SQL.

Used as an oracle by the tests and by the benchmark: it reads the raw files
(events and reference directory) and computes what the pipeline must publish,
without any of the pipeline's code (nothing from ``pipelines.rules`` or
``pipelines.transforms``). Only column lists and ISO 4217 minor units come from
``schemas``; every rule is re-derived from ``CONTRACT.md`` sections 1 and 2.

    con = duckdb.connect()
    compute_reference(con, "sample/events/*.jsonl", "sample/reference")
    con.sql("SELECT * FROM ref_counts")

Tables created in ``con`` (replaced if they exist):

* ``ref_attributed_events``: ``ATTRIBUTED_EVENTS_SCHEMA`` without ``run_id``.
* ``ref_territory_revenue``, ``ref_account_manager_revenue``: the two views.
* ``ref_quarantine(source, position, event_id, reason)``: one row per record.
* ``ref_quarantine_counts(reason, n)``: reasons that occurred.
* ``ref_counts(input_records, accepted, duplicates, quarantined)``: one row.

Decisions where the contract leaves room (user-facing version: docs/contract.md):

* Records: a non-blank JSONL line (``position`` = line number; blank lines are
  skipped but counted), a CSV data row (``position`` = its line number, header
  = line 1, one line per record assumed), a Parquet row (``position`` = row
  number). ``malformed``: not a JSON object, a trailing comma or NaN/Infinity
  (DuckDB's parser takes them; JSON does not), a contract field given twice, a
  CSV row with the wrong number of fields.
* A required field that is absent, JSON ``null``, empty or only whitespace is
  ``missing_field``; an empty optional field is null. Nothing else is trimmed.
* Per-record checks, first failing wins: malformed, missing_field, bad_type,
  unknown_event_type, bad_timestamp, bad_currency, bad_amount. The currency is
  checked before the amount, whose digit limit depends on it (this reverses
  ``schemas.events.QUARANTINE_REASONS``, as ``pipelines.rules.validate`` does).
* Deduplication runs over records that passed those checks, before the FX
  lookup: an event's identity does not depend on reference data. The first
  occurrence (smallest ``(source, position)``) is kept; a later repeat whose
  payload (every contract field but ``event_id``, compared as typed values: the
  same instant, the same decimal amount) equals the first one's is a duplicate;
  any other later repeat is ``conflicting_duplicate``. The kept occurrence may
  then still be quarantined as ``no_fx_rate`` (or as ``bad_amount`` when the
  converted amount does not fit DECIMAL(18,2)).
* FX: ``amount x rate`` is computed exactly on scaled integers (HUGEINT: amount
  in 10^-3 units, rate in 10^-10 units) and rounded half-even to the reporting
  currency's minor unit (DuckDB's ROUND on DECIMAL rounds half away from zero).
  Two different rates for one (currency, date) raise ValueError.
* Interval lookups: ``valid_from <= t < valid_to``, nulls unbounded; overlapping
  rows (a reference-data error) resolve to the smallest id, like equally
  specific territory rules. Reference values are trimmed, empty meaning null.
* Keys are looked up independently (an unknown account may still have an
  account manager); ``attribution_status`` names the first problem in the order
  unknown_account, no_account_manager, no_territory, no_territory_manager.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import duckdb
import pyarrow as pa

from schemas.money import CURRENCY_MINOR_UNITS
from schemas.outputs import (
    ACCOUNT_MANAGER_REVENUE_SCHEMA,
    ATTRIBUTED_EVENTS_SCHEMA,
    TERRITORY_REVENUE_SCHEMA,
    create_table_sql,
    duckdb_type,
)
from schemas.reference import REFERENCE_FILE_COLUMNS

# --- the contract, restated (section 1) -------------------------------------------

REQUIRED = ("event_id", "event_type", "event_time", "deal_id", "account_id", "amount", "currency")
OPTIONAL = ("stage", "product", "opportunity_owner_id")
FIELDS = REQUIRED + OPTIONAL
ID_FIELDS = ("event_id", "deal_id", "account_id")
MAX_ID_CHARS = 128
MAX_INTEGER_DIGITS = 13  # abs(amount) < 10^13

# event_type -> (amount rule, booked, won, lost, created, pipeline, refunds)
# money columns are coefficients of the converted amount, counts are literal.
EFFECTS: dict[str, tuple[str, int, int, int, int, int, int]] = {
    "deal_created": (">= 0", 0, 0, 0, 1, 1, 0),
    "deal_stage_changed": (">= 0", 0, 0, 0, 0, 0, 0),
    "deal_won": ("> 0", 1, 1, 0, 0, 0, 0),
    "deal_lost": (">= 0", 0, 0, 1, 0, 0, 0),
    "deal_amended": ("<> 0", 1, 0, 0, 0, 0, 0),
    "deal_refunded": ("> 0", -1, 0, 0, 0, 0, 1),
    "deal_reopened": ("> 0", -1, -1, 0, 0, 0, 0),
}

QUARANTINE_ORDER = (
    "malformed", "missing_field", "bad_type", "unknown_event_type", "bad_timestamp",
    "bad_currency", "bad_amount", "no_fx_rate", "conflicting_duplicate",
)

UNASSIGNED = "UNASSIGNED"
AMOUNT_SCALE = 3  # DECIMAL(16,3)
RATE_SCALE = 10  # DECIMAL(18,10)
OUTPUT_SCALE = 2  # DECIMAL(18,2)

# RFC 3339 date-time with a mandatory offset ("T", "t" or, as RFC 3339 allows, a space
# between date and time; at most 9 fractional digits, truncated to microseconds);
# calendar validity is checked by a cast, the UTC year must be 1..9999.
RFC3339 = (
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
PLAIN_DECIMAL = r"^([+-]?)(\d+)(?:\.(\d+))?$"
JSON_STRING = r'"(?:[^"\\]|\\.)*"'
NOT_JSON = r",\s*[\]}]|NaN|Infinity"
JSON_NUMBER = r'"amount"\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)'
NUMERIC_JSON_TYPES = ("BIGINT", "UBIGINT", "HUGEINT", "UHUGEINT", "DOUBLE")

EVENT_FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".parquet": "parquet",
}


def _lit(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _in_list(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(_lit(v) for v in values) + ")"


def _instant(col: str) -> str:
    """SQL: a reference date or timestamp text as TIMESTAMPTZ (dates: midnight UTC;
    timestamps without an offset: UTC), independent of the session time zone."""
    return f"""(CASE
        WHEN {col} IS NULL THEN NULL
        WHEN regexp_full_match({col}, '\\d{{4}}-\\d{{2}}-\\d{{2}}')
            THEN timezone('UTC', CAST(CAST({col} AS DATE) AS TIMESTAMP))
        WHEN regexp_matches({col}, '([Zz]|[+-]\\d{{2}}(:?\\d{{2}})?)$')
            THEN CAST(upper({col}) AS TIMESTAMPTZ)
        ELSE timezone('UTC', CAST(upper({col}) AS TIMESTAMP)) END)"""


def _valid_at(alias: str, t: str) -> str:
    return (
        f"({alias}.valid_from IS NULL OR {alias}.valid_from <= {t}) "
        f"AND ({alias}.valid_to IS NULL OR {t} < {alias}.valid_to)"
    )


def _scaled_text_to_units(decimal_sql: str) -> str:
    """SQL: a DECIMAL(p,s) value as a HUGEINT count of 10^-s units, exactly (its text
    without the point: DuckDB prints every fractional digit of a DECIMAL)."""
    return f"CAST(replace(CAST({decimal_sql} AS VARCHAR), '.', '') AS HUGEINT)"


def _create(con: duckdb.DuckDBPyConnection, name: str, schema: pa.Schema,
            key: tuple[str, ...]) -> None:
    con.execute(f"DROP TABLE IF EXISTS {name}")
    con.execute(create_table_sql(name, schema, key))


# --- inputs ---------------------------------------------------------------------

def _event_files(events_glob: str) -> list[tuple[str, str]]:
    """(path, format) of each event file: a file, a directory (its visible files) or a
    glob; directories and globs keep the supported extensions only."""
    if os.path.isfile(events_glob):
        candidates = [events_glob]
    elif os.path.isdir(events_glob):
        candidates = [os.path.join(events_glob, n) for n in os.listdir(events_glob)
                      if not n.startswith((".", "_"))]
    else:
        candidates = glob.glob(events_glob, recursive=True)
    files = sorted(p for p in candidates if os.path.isfile(p)
                   and (Path(p).suffix.lower() in EVENT_FORMATS or p == events_glob))
    if not files:
        raise FileNotFoundError(f"no event files match {events_glob}")
    out = []
    for path in files:
        fmt = EVENT_FORMATS.get(Path(path).suffix.lower())
        if fmt is None:
            raise ValueError(f"{path}: unknown event file type (use .jsonl, .csv or .parquet)")
        out.append((path, fmt))
    return out


def _raw_table(con: duckdb.DuckDBPyConnection) -> None:
    columns = ["source VARCHAR", "position BIGINT", "malformed BOOLEAN"]
    for f in FIELDS:
        columns += [f"{f} VARCHAR", f"{f}__k VARCHAR"]  # value text, kind
    con.execute(f"CREATE OR REPLACE TEMP TABLE ref__raw ({', '.join(columns)})")


def _load_jsonl(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """Each non-blank line is a record; the amount keeps the text of a JSON number."""
    paths_sql = "[" + ", ".join(_lit(p) for p in paths) + "]"
    json_paths = "[" + ", ".join(_lit(f"$.{f}") for f in FIELDS) + "]"
    numeric = _in_list(NUMERIC_JSON_TYPES)
    selects = []
    for i, f in enumerate(FIELDS, start=1):
        kind = (f"CASE WHEN v[{i}] IS NULL OR t[{i}] = 'NULL' THEN NULL "
                f"WHEN t[{i}] = 'VARCHAR' THEN 'string' "
                f"WHEN t[{i}] IN {numeric} THEN 'number' ELSE 'other' END")
        value = f"json_extract_string(v[{i}], '$')"
        if f == "amount":
            # DuckDB parses JSON numbers as DOUBLE; take the number's text from the
            # line instead (the occurrence whose value is the parsed one).
            value = (
                f"CASE WHEN t[{i}] IN {numeric} THEN coalesce("
                f"list_filter(regexp_extract_all(line, {_lit(JSON_NUMBER)}, 1), "
                f"lambda x: try_cast(x AS DOUBLE) = CAST(v[{i}] AS DOUBLE))[1], {value}) "
                f"ELSE {value} END"
            )
        selects += [f"{value} AS {f}", f"{kind} AS {f}__k"]
    con.execute(f"""
        INSERT INTO ref__raw BY NAME
        WITH files AS (
            SELECT filename, string_split(content, chr(10)) AS lines FROM read_text({paths_sql})
        ), lines AS (
            -- unnest and generate_subscripts side by side stay aligned (and, unlike a
            -- lateral unnest, do not carry the whole file along with every line).
            SELECT filename AS source, CAST(generate_subscripts(lines, 1) AS BIGINT) AS position,
                   rtrim(unnest(lines), chr(13)) AS line
            FROM files
        ), unbommed AS (
            SELECT source, position,
                   CASE WHEN position = 1 AND starts_with(line, chr(65279)) THEN substr(line, 2)
                        ELSE line END AS line
            FROM lines
        ), records AS (
            SELECT *, CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END
                      AS is_object
            FROM unbommed WHERE NOT regexp_full_match(line, '\\s*')
        ), objects AS (
            SELECT source, position, line, is_object,
                   CASE WHEN is_object THEN json_extract(line, {json_paths}) END AS v,
                   CASE WHEN is_object THEN json_keys(line) END AS keys
            FROM records
        ), checked AS (
            -- DuckDB's parser also takes trailing commas and NaN/Infinity: not JSON
            -- (the costly look outside string literals only for suspicious lines).
            -- A contract field given twice is ambiguous: malformed too.
            SELECT *, NOT is_object
                OR CASE WHEN regexp_matches(line, {_lit(NOT_JSON)})
                        THEN regexp_matches(regexp_replace(line, {_lit(JSON_STRING)}, '""', 'g'),
                                            {_lit(NOT_JSON)})
                        ELSE false END
                OR len(list_filter(keys, lambda k: k IN {_in_list(FIELDS)}))
                   > len(list_filter(v, lambda x: x IS NOT NULL)) AS malformed
            FROM objects
        )
        SELECT source, position, malformed, {', '.join(selects)}
        FROM (SELECT *, list_transform(v, lambda x: json_type(x)) AS t FROM checked)
    """)


def _load_csv(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """Position = the record's line number (the header is line 1; assumes one line per
    record). Rows DuckDB cannot split into the header's columns are malformed."""
    con.execute("DROP TABLE IF EXISTS ref__csv_rejects")
    con.execute("DROP TABLE IF EXISTS ref__csv_scans")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__csv AS
        SELECT * FROM read_csv({_lit(path)}, all_varchar = true, header = true, delim = ',',
                               quote = '"', escape = '"', store_rejects = true,
                               rejects_table = 'ref__csv_rejects', rejects_scan = 'ref__csv_scans')
    """)
    present = {r[0] for r in con.execute("DESCRIBE ref__csv").fetchall()}
    selects = []
    for f in FIELDS:
        if f in present:
            selects += [f"c.{f} AS {f}",
                        f"CASE WHEN c.{f} IS NULL THEN NULL ELSE 'string' END AS {f}__k"]
    rejected = "SELECT DISTINCT CAST(line AS BIGINT) AS position FROM ref__csv_rejects"
    con.execute(f"""
        INSERT INTO ref__raw BY NAME
        WITH bad AS ({rejected}),
        total AS (SELECT (SELECT count(*) FROM ref__csv) + (SELECT count(*) FROM bad) AS n),
        free AS (
            SELECT row_number() OVER (ORDER BY g.generate_series) - 1 AS k,
                   g.generate_series AS position
            FROM generate_series(2, (SELECT n FROM total) + 1) g
            WHERE g.generate_series NOT IN (SELECT position FROM bad)
        )
        SELECT {_lit(path)} AS source, free.position, false AS malformed
               {''.join(', ' + s for s in selects)}
        FROM ref__csv c JOIN free ON free.k = c.rowid
        UNION ALL BY NAME
        SELECT {_lit(path)} AS source, position, true AS malformed FROM bad
    """)
    for t in ("ref__csv", "ref__csv_rejects", "ref__csv_scans"):
        con.execute(f"DROP TABLE IF EXISTS {t}")


def _load_parquet(con: duckdb.DuckDBPyConnection, path: str) -> None:
    """String columns as they are. A numeric ``amount`` column counts as a number (its
    text); a timestamp ``event_time`` column becomes RFC 3339 text (a naive one has no
    offset, so it fails validation as a JSON one would). Any other non-string typed
    value is bad_type."""
    scan = f"read_parquet({_lit(path)}, file_row_number = true)"
    types = {r[0]: r[1].upper() for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
    numeric = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
               "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE")
    selects = []
    for f in FIELDS:
        if f not in types:
            continue
        t = types[f]
        value, kind = f"CAST({f} AS VARCHAR)", "'other'"
        if t in ("VARCHAR", "BLOB"):
            kind = "'string'"
        elif f == "amount" and (t.startswith("DECIMAL") or t in numeric):
            kind = "'number'"
        elif f == "event_time" and t == "TIMESTAMP WITH TIME ZONE":
            value = f"strftime(timezone('UTC', {f}), '%Y-%m-%dT%H:%M:%S.%fZ')"
            kind = "'string'"
        elif f == "event_time" and t.startswith("TIMESTAMP"):
            value = f"strftime(CAST({f} AS TIMESTAMP), '%Y-%m-%dT%H:%M:%S.%f')"
            kind = "'string'"
        elif f == "event_time" and t == "DATE":
            kind = "'string'"
        selects += [f"{value} AS {f}",
                    f"CASE WHEN {f} IS NULL THEN NULL ELSE {kind} END AS {f}__k"]
    con.execute(f"""
        INSERT INTO ref__raw BY NAME
        SELECT {_lit(path)} AS source, file_row_number + 1 AS position, false AS malformed
               {''.join(', ' + s for s in selects)}
        FROM {scan}
    """)


def _load_reference(con: duckdb.DuckDBPyConnection, reference_dir: str) -> None:
    """``ref__in_<table>``: every file column as trimmed text, empty = null. A missing
    file is an empty table."""
    for table, columns in REFERENCE_FILE_COLUMNS.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE ref__in_{table} "
                    f"({', '.join(c + ' VARCHAR' for c in columns)})")
        csv_path = os.path.join(reference_dir, f"{table}.csv")
        parquet_path = os.path.join(reference_dir, f"{table}.parquet")
        if os.path.exists(csv_path):
            scan = f"read_csv({_lit(csv_path)}, all_varchar = true, header = true)"
        elif os.path.exists(parquet_path):
            scan = f"read_parquet({_lit(parquet_path)})"
        else:
            continue
        present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
        cols = [c for c in columns if c in present]
        if not cols:
            continue
        con.execute(f"""
            INSERT INTO ref__in_{table} BY NAME
            SELECT {', '.join(f"nullif(trim(CAST({c} AS VARCHAR)), '') AS {c}" for c in cols)}
            FROM {scan}
        """)


def _prepare_reference(con: duckdb.DuckDBPyConnection) -> None:
    """Typed, normalised, de-duplicated dimension tables."""
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ref__accounts AS
        SELECT account_id, lower(country) AS country, lower(region) AS region,
               lower(city) AS city, upper(postal_code) AS postal_code
        FROM ref__in_accounts WHERE account_id IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY account_id
                                   ORDER BY country, region, city, postal_code) = 1
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__assignments AS
        SELECT account_id, account_manager_id,
               {_instant('valid_from')} AS valid_from, {_instant('valid_to')} AS valid_to
        FROM ref__in_account_assignments
        WHERE account_id IS NOT NULL AND account_manager_id IS NOT NULL
    """)
    con.execute("""
        CREATE OR REPLACE TEMP TABLE ref__territories AS
        SELECT territory_id, min(parent_territory_id) AS parent_territory_id
        FROM ref__in_territories WHERE territory_id IS NOT NULL GROUP BY territory_id
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__rules AS
        SELECT territory_id, lower(country) AS country, lower(region) AS region,
               lower(city) AS city, upper(postal_prefix) AS postal_prefix,
               {_instant('valid_from')} AS valid_from, {_instant('valid_to')} AS valid_to
        FROM ref__in_territory_rules WHERE territory_id IS NOT NULL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__managers AS
        SELECT territory_id, manager_id,
               {_instant('valid_from')} AS valid_from, {_instant('valid_to')} AS valid_to
        FROM ref__in_territory_managers
        WHERE territory_id IS NOT NULL AND manager_id IS NOT NULL
    """)
    rate = _scaled_text_to_units(f"CAST(rate_to_reporting AS DECIMAL(18,{RATE_SCALE}))")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__fx AS
        SELECT currency, CAST(rate_date AS DATE) AS rate_date,
               min({rate}) AS rate_units, count(DISTINCT {rate}) AS n_rates
        FROM ref__in_fx_rates
        WHERE currency IS NOT NULL AND rate_date IS NOT NULL AND rate_to_reporting IS NOT NULL
        GROUP BY ALL
    """)
    conflicts = con.execute("SELECT currency, rate_date FROM ref__fx WHERE n_rates > 1 "
                            "ORDER BY ALL LIMIT 1").fetchall()
    if conflicts:
        raise ValueError(f"fx_rates: two different rates for {conflicts[0][0]} on "
                         f"{conflicts[0][1]}")
    rows = ", ".join(f"({_lit(c)}, {d})" for c, d in sorted(CURRENCY_MINOR_UNITS.items()))
    con.execute("CREATE OR REPLACE TEMP TABLE ref__currencies (code VARCHAR, minor INTEGER)")
    con.execute(f"INSERT INTO ref__currencies VALUES {rows}")


# --- rules ----------------------------------------------------------------------

def _validate(con: duckdb.DuckDBPyConnection) -> None:
    """``ref__checked``: every record with its first failing per-record check (or null)."""
    missing = " OR ".join(
        f"{f}__k IS NULL OR ({f}__k = 'string' AND regexp_full_match({f}, '\\s*'))"
        for f in REQUIRED
    )
    bad_type = " OR ".join(
        [f"{f}__k <> 'string'" for f in FIELDS if f != "amount"]
        + ["amount__k NOT IN ('string', 'number')"]
        + [f"length({f}) > {MAX_ID_CHARS}" for f in ID_FIELDS]
    )
    sign_rule = "CASE event_type " + " ".join(
        f"WHEN {_lit(t)} THEN amount_dec {rule[0]}" for t, rule in EFFECTS.items()
    ) + " END"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__checked AS
        WITH p AS (
            SELECT r.*, cur.minor AS currency_minor,
                   CASE WHEN regexp_full_match(r.event_time, {_lit(RFC3339)})
                        THEN try_cast(upper(r.event_time) AS TIMESTAMPTZ) END AS ts0,
                   regexp_extract(r.amount, {_lit(PLAIN_DECIMAL)}, ['s', 'i', 'f']) AS am
            FROM ref__raw r LEFT JOIN ref__currencies cur ON cur.code = r.currency
        ), q AS (
            SELECT *, CASE WHEN year(timezone('UTC', ts0)) BETWEEN 1 AND 9999 THEN ts0 END AS ts,
                   coalesce(am.i, '') <> '' AS am_plain,
                   ltrim(coalesce(am.i, ''), '0') AS am_int,
                   rtrim(coalesce(am.f, ''), '0') AS am_frac
            FROM p
        ), d AS (
            SELECT *,
                   CASE WHEN am_plain AND length(am_int) <= {MAX_INTEGER_DIGITS}
                             AND length(am_frac) <= {AMOUNT_SCALE}
                        THEN CAST((CASE am.s WHEN '-' THEN '-' ELSE '' END)
                                  || CASE WHEN am_int = '' THEN '0' ELSE am_int END
                                  || '.' || rpad(am_frac, {AMOUNT_SCALE}, '0')
                                  AS DECIMAL(16,{AMOUNT_SCALE})) END AS amount_dec
            FROM q
        )
        SELECT *,
            CASE
                WHEN malformed THEN 'malformed'
                WHEN {missing} THEN 'missing_field'
                WHEN {bad_type} THEN 'bad_type'
                WHEN event_type NOT IN {_in_list(list(EFFECTS))} THEN 'unknown_event_type'
                WHEN ts IS NULL THEN 'bad_timestamp'
                WHEN NOT regexp_full_match(currency, '[A-Z]{{3}}') OR currency_minor IS NULL
                    THEN 'bad_currency'
                WHEN amount_dec IS NULL OR length(am_frac) > currency_minor
                     OR NOT ({sign_rule}) THEN 'bad_amount'
            END AS reason
        FROM d
    """)


def _deduplicate(con: duckdb.DuckDBPyConnection) -> None:
    """``ref__dedup``: valid records with ``outcome`` first / duplicate / conflicting_duplicate."""
    optional = ", ".join(f"nullif({f}, '') AS {f}" for f in OPTIONAL)
    payload = ("event_type", "event_time", "deal_id", "account_id", "amount", "currency",
               *OPTIONAL)
    same = " AND ".join(f"r.{f} IS NOT DISTINCT FROM w.{f}" for f in payload)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__valid AS
        SELECT source, position, event_id, event_type, ts AS event_time,
               CAST(timezone('UTC', ts) AS DATE) AS day, deal_id, account_id,
               amount_dec AS amount, {_scaled_text_to_units('amount_dec')} AS amount_units,
               currency, {optional},
               row_number() OVER (PARTITION BY event_id ORDER BY source, position) AS rn
        FROM ref__checked WHERE reason IS NULL
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__dedup AS
        SELECT r.*, CASE WHEN r.rn = 1 THEN 'first' WHEN {same} THEN 'duplicate'
                         ELSE 'conflicting_duplicate' END AS outcome
        FROM ref__valid r JOIN ref__valid w ON w.event_id = r.event_id AND w.rn = 1
    """)


def _convert(con: duckdb.DuckDBPyConnection, reporting_currency: str, minor: int) -> None:
    """``ref__converted``: first occurrences with ``amount_reporting`` (null: no rate).

    Exact product on scaled integers (10^-13 units), then half-even to ``minor`` digits.
    """
    divisor = 10 ** (AMOUNT_SCALE + RATE_SCALE - minor)
    to_output_units = 10 ** (OUTPUT_SCALE - minor)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__converted AS
        WITH r AS (
            SELECT d.*,
                   CASE WHEN d.currency = {_lit(reporting_currency)}
                        THEN CAST({10 ** RATE_SCALE} AS HUGEINT)
                        ELSE fx.rate_units END AS rate_units
            FROM (SELECT * FROM ref__dedup WHERE outcome = 'first') d
            ASOF LEFT JOIN ref__fx fx ON d.currency = fx.currency AND d.day >= fx.rate_date
        ), p AS (
            SELECT *, amount_units * rate_units AS scaled_product FROM r
        ), q AS (
            SELECT *, abs(scaled_product) // {divisor} AS quotient,
                      abs(scaled_product) % {divisor} AS remainder
            FROM p
        ), h AS (
            SELECT *,
                sign(scaled_product) * (quotient + CASE
                    WHEN 2 * remainder > {divisor} THEN 1
                    WHEN 2 * remainder = {divisor} AND quotient % 2 = 1 THEN 1
                    ELSE 0 END) AS reporting_units
            FROM q
        )
        SELECT *,
            CASE WHEN rate_units IS NULL THEN 'no_fx_rate'
                 -- does not fit the published DECIMAL(18,{OUTPUT_SCALE})
                 WHEN abs(reporting_units) * {to_output_units} >= {10 ** 18} THEN 'bad_amount'
            END AS fx_reason
        FROM h
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__accepted AS
        SELECT *, CAST(CAST(reporting_units * {to_output_units} AS DECIMAL(38,0))
                       * CAST('0.{'0' * (OUTPUT_SCALE - 1)}1' AS DECIMAL(38,{OUTPUT_SCALE}))
                       AS DECIMAL(18,{OUTPUT_SCALE})) AS amount_reporting
        FROM ref__converted WHERE fx_reason IS NULL
    """)


# Every territory (tree or rules) with each of its ancestors (itself at depth 0), as a
# recursive CTE named ``ancestry(leaf, node, depth)``; chains are cut at depth 64.
ANCESTRY = """WITH RECURSIVE nodes AS (
            SELECT territory_id FROM ref__territories
            UNION SELECT territory_id FROM ref__rules
        ), ancestry(leaf, node, depth) AS (
            SELECT territory_id, territory_id, 0 FROM nodes
            UNION ALL
            SELECT a.leaf, t.parent_territory_id, a.depth + 1
            FROM ancestry a JOIN ref__territories t ON t.territory_id = a.node
            WHERE t.parent_territory_id IS NOT NULL AND a.depth < 64
        )"""


def _enrich(con: duckdb.DuckDBPyConnection) -> None:
    """Account manager, leaf territory and territory manager as of each event's time."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__account_manager AS
        SELECT e.event_id, a.account_manager_id
        FROM ref__accepted e JOIN ref__assignments a
          ON a.account_id = e.account_id AND {_valid_at('a', 'e.event_time')}
        QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY a.account_manager_id) = 1
    """)
    # Location matching does not depend on time: accounts x rules first, then intervals.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__territory AS
        WITH matches AS (
            SELECT ac.account_id, r.territory_id, r.valid_from, r.valid_to,
                   length(coalesce(r.postal_prefix, '')) AS prefix_len,
                   r.city IS NOT NULL AS has_city, r.region IS NOT NULL AS has_region,
                   r.country IS NOT NULL AS has_country
            FROM ref__accounts ac JOIN ref__rules r
              ON (r.country IS NULL OR r.country = ac.country)
             AND (r.region IS NULL OR r.region = ac.region)
             AND (r.city IS NULL OR r.city = ac.city)
             AND (r.postal_prefix IS NULL OR starts_with(ac.postal_code, r.postal_prefix))
        )
        SELECT e.event_id, m.territory_id
        FROM ref__accepted e JOIN matches m
          ON m.account_id = e.account_id AND {_valid_at('m', 'e.event_time')}
        QUALIFY row_number() OVER (
            PARTITION BY e.event_id
            ORDER BY m.prefix_len DESC, m.has_city DESC, m.has_region DESC, m.has_country DESC,
                     m.territory_id) = 1
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__territory_manager AS
        {ANCESTRY}
        SELECT e.event_id, m.manager_id
        FROM ref__accepted x
        JOIN ref__territory e ON e.event_id = x.event_id
        JOIN ancestry a ON a.leaf = e.territory_id
        JOIN ref__managers m ON m.territory_id = a.node AND {_valid_at('m', 'x.event_time')}
        QUALIFY row_number() OVER (PARTITION BY e.event_id ORDER BY a.depth, m.manager_id) = 1
    """)


MEASURE_COLUMNS = ("booked_revenue", "won_deals", "lost_deals", "created_deals",
                   "pipeline_created", "refunds")  # EFFECTS positions 1..6


def _measure(name: str) -> str:
    """SQL: one measure of event ``e`` from its type (contract effect table)."""
    position = MEASURE_COLUMNS.index(name) + 1
    cases = " ".join(f"WHEN {_lit(t)} THEN {rule[position]}" for t, rule in EFFECTS.items()
                     if rule[position] != 0)
    coefficient = f"CASE e.event_type {cases} ELSE 0 END"
    if name in ("booked_revenue", "pipeline_created", "refunds"):
        return f"CAST({coefficient} * e.amount_reporting AS DECIMAL(18,{OUTPUT_SCALE}))"
    return f"CAST({coefficient} AS BIGINT)"


def _publish(con: duckdb.DuckDBPyConnection) -> None:
    # Every attributed event with all six measures; the published shape takes the
    # columns of ATTRIBUTED_EVENTS_SCHEMA (without run_id) from it.
    measures = ", ".join(f"{_measure(m)} AS {m}" for m in MEASURE_COLUMNS)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE ref__attributed AS
        SELECT e.event_id, e.event_type, e.event_time, e.day, e.deal_id, e.account_id,
               e.currency, e.amount, e.stage, e.product, e.opportunity_owner_id,
               e.amount_reporting, {measures},
               coalesce(am.account_manager_id, {_lit(UNASSIGNED)}) AS account_manager_id,
               coalesce(tr.territory_id, {_lit(UNASSIGNED)}) AS territory_id,
               coalesce(tm.manager_id, {_lit(UNASSIGNED)}) AS territory_manager_id,
               CASE WHEN ac.account_id IS NULL THEN 'unknown_account'
                    WHEN am.account_manager_id IS NULL THEN 'no_account_manager'
                    WHEN tr.territory_id IS NULL THEN 'no_territory'
                    WHEN tm.manager_id IS NULL THEN 'no_territory_manager'
                    ELSE 'attributed' END AS attribution_status
        FROM ref__accepted e
        LEFT JOIN ref__accounts ac ON ac.account_id = e.account_id
        LEFT JOIN ref__account_manager am ON am.event_id = e.event_id
        LEFT JOIN ref__territory tr ON tr.event_id = e.event_id
        LEFT JOIN ref__territory_manager tm ON tm.event_id = e.event_id
    """)
    events_schema = pa.schema([f for f in ATTRIBUTED_EVENTS_SCHEMA if f.name != "run_id"])
    _create(con, "ref_attributed_events", events_schema, ("event_id",))
    con.execute(f"INSERT INTO ref_attributed_events BY NAME "
                f"SELECT {', '.join(events_schema.names)} FROM ref__attributed")

    for table, schema, key in (
        ("ref_territory_revenue", TERRITORY_REVENUE_SCHEMA, "territory_id"),
        ("ref_account_manager_revenue", ACCOUNT_MANAGER_REVENUE_SCHEMA, "account_manager_id"),
    ):
        _create(con, table, schema, (key, "day"))
        sums = ", ".join(f"CAST(sum({f.name}) AS {duckdb_type(f.type)}) AS {f.name}"
                         for f in schema if f.name not in (key, "day"))
        con.execute(f"INSERT INTO {table} BY NAME SELECT {key}, day, {sums} "
                    f"FROM ref__attributed GROUP BY {key}, day")

    con.execute("DROP TABLE IF EXISTS ref_quarantine")
    con.execute("""
        CREATE TABLE ref_quarantine AS
        SELECT source, position, CASE WHEN event_id__k = 'string' THEN event_id END AS event_id,
               reason
        FROM ref__checked WHERE reason IS NOT NULL
        UNION ALL
        SELECT source, position, event_id, outcome FROM ref__dedup
        WHERE outcome = 'conflicting_duplicate'
        UNION ALL
        SELECT source, position, event_id, fx_reason FROM ref__converted
        WHERE fx_reason IS NOT NULL
        ORDER BY source, position
    """)
    write_counts(con, "ref__raw", "SELECT * FROM ref__dedup WHERE outcome = 'duplicate'")


def write_counts(con: duckdb.DuckDBPyConnection, records: str, duplicates: str) -> None:
    """``ref_quarantine_counts`` and ``ref_counts`` from ``ref_quarantine`` and
    ``ref_attributed_events``; ``records`` is a table of every input record,
    ``duplicates`` a query of the duplicate ones. They must balance."""
    order = "CASE reason " + " ".join(
        f"WHEN {_lit(r)} THEN {i}" for i, r in enumerate(QUARANTINE_ORDER)) + " END"
    con.execute("DROP TABLE IF EXISTS ref_quarantine_counts")
    con.execute(f"""
        CREATE TABLE ref_quarantine_counts AS
        SELECT reason, count(*)::BIGINT AS n FROM ref_quarantine
        GROUP BY reason ORDER BY {order}
    """)
    con.execute("DROP TABLE IF EXISTS ref_counts")
    con.execute(f"""
        CREATE TABLE ref_counts AS SELECT
            (SELECT count(*) FROM {records})::BIGINT AS input_records,
            (SELECT count(*) FROM ref_attributed_events)::BIGINT AS accepted,
            (SELECT count(*) FROM ({duplicates}))::BIGINT AS duplicates,
            (SELECT count(*) FROM ref_quarantine)::BIGINT AS quarantined
    """)
    total, accepted, dups, quarantined = con.execute("SELECT * FROM ref_counts").fetchall()[0]
    if total != accepted + dups + quarantined:
        raise AssertionError(
            f"reference does not balance: {total} != {accepted} + {dups} + {quarantined}")


_TEMP_TABLES = (
    "ref__raw", "ref__checked", "ref__valid", "ref__dedup", "ref__converted", "ref__accepted",
    "ref__attributed",
    "ref__account_manager", "ref__territory", "ref__territory_manager", "ref__accounts",
    "ref__assignments", "ref__territories", "ref__rules", "ref__managers", "ref__fx",
    "ref__currencies", "ref__csv", "ref__csv_rejects", "ref__csv_scans",
    *(f"ref__in_{t}" for t in REFERENCE_FILE_COLUMNS),
)


def compute_reference(
    con: duckdb.DuckDBPyConnection,
    events_glob: str,
    reference_dir: str,
    reporting_currency: str = "USD",
) -> None:
    """Compute the contract's outputs for the raw files into ``ref_*`` tables of ``con``.

    ``events_glob``: a glob (or a directory) of ``.jsonl``/``.csv``/``.parquet`` event
    files; ``reference_dir``: ``<table>.csv`` or ``<table>.parquet`` per reference table.
    """
    minor = CURRENCY_MINOR_UNITS.get(reporting_currency)
    if minor is None:
        raise ValueError(f"unknown reporting currency {reporting_currency!r}")
    if minor > OUTPUT_SCALE:
        raise ValueError(f"{reporting_currency} has {minor} minor digits; outputs are "
                         f"DECIMAL(18,{OUTPUT_SCALE})")
    files = _event_files(events_glob)
    try:
        _load_reference(con, reference_dir)
        _prepare_reference(con)
        _raw_table(con)
        jsonl = [p for p, fmt in files if fmt == "jsonl"]
        if jsonl:
            _load_jsonl(con, jsonl)
        for path, fmt in files:
            if fmt == "csv":
                _load_csv(con, path)
            elif fmt == "parquet":
                _load_parquet(con, path)
        _validate(con)
        _deduplicate(con)
        _convert(con, reporting_currency, minor)
        _enrich(con)
        _publish(con)
    finally:
        for table in _TEMP_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {table}")
