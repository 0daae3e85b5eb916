"""Event files into the engine's DuckDB connection: ``raw_text`` rows, all strings.

``load_raw(con, paths)`` fills ``raw_text(source, position, line, fast, <fields>)``:
one row per record (blank JSONL lines are not records), the contract fields as
text. ``fast`` says DuckDB's JSON parser read the record and it is plainly well
formed (a flat JSON object of contract fields, nothing the reader would judge:
no repeated key, NaN, trailing comma, escape or nesting); every other record is
read again, by the reader's own per-line code (``events_reader.read_json_lines``),
so both executors judge a doubtful line identically. Files DuckDB cannot read as
such (CSV, Parquet with non-string contract columns, non-UTF-8 text) are read by
``events_reader.iter_raw_batches`` and returned as Arrow tables instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io.duckdb_sql import literal
from pipelines.io.events_reader import FORMATS, iter_raw_batches
from schemas.events import EVENT_FIELDS, RAW_EVENT_SCHEMA

# The reader's regex for a JSON-number amount (events_reader._AMOUNT_NUMBER): its text.
AMOUNT_NUMBER = (
    r'"amount"[ \t]*:[ \t]*(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)[ \t]*[,}]'
)
_NUMERIC_JSON = ("UBIGINT", "BIGINT", "DOUBLE", "HUGEINT")
_GROUP_BYTES = 512 << 20  # JSONL bytes loaded per statement (bounds memory)


@dataclass
class RawInput:
    """What ``load_raw`` read: records per file and the files read by the Arrow reader."""

    records: dict[str, int] = field(default_factory=dict)
    arrow: list[pa.Table] = field(default_factory=list)  # RAW_EVENT_SCHEMA


def create_raw_table(con: duckdb.DuckDBPyConnection) -> None:
    fields = ", ".join(f"{name} VARCHAR" for name in EVENT_FIELDS)
    con.execute(
        "CREATE OR REPLACE TABLE raw_text (source VARCHAR, position BIGINT, line VARCHAR, "
        f"fast BOOLEAN, {fields})"
    )


def load_raw(con: duckdb.DuckDBPyConnection, paths: list[str], batch_rows: int) -> RawInput:
    create_raw_table(con)
    out = RawInput()
    jsonl: list[str] = []
    for path in paths:
        kind = FORMATS.get(os.path.splitext(path)[1].lower())
        if kind == "jsonl":
            jsonl.append(path)
        elif kind == "parquet" and _plain_parquet(path):
            out.records[path] = _load_parquet(con, path)
        else:
            out.records[path] = _load_with_reader(path, batch_rows, out)
    for group in _groups(jsonl):
        try:
            out.records.update(_load_jsonl(con, group))
        except (duckdb.InvalidInputException, duckdb.ConversionException):
            # Not UTF-8, or too large for one string: the Arrow reader says why / reads it.
            for path in group:
                try:
                    out.records.update(_load_jsonl(con, [path]))
                except (duckdb.InvalidInputException, duckdb.ConversionException):
                    out.records[path] = _load_with_reader(path, batch_rows, out)
    return out


def _groups(paths: list[str]) -> Iterator[list[str]]:
    group: list[str] = []
    size = 0
    for path in paths:
        length = os.path.getsize(path)
        if group and size + length > _GROUP_BYTES:
            yield group
            group, size = [], 0
        group.append(path)
        size += length
    if group:
        yield group


def _load_with_reader(path: str, batch_rows: int, out: RawInput) -> int:
    n = 0
    for batch in iter_raw_batches(path, batch_rows=batch_rows):
        n += batch.num_rows
        out.arrow.append(pa.Table.from_batches([batch], schema=RAW_EVENT_SCHEMA))
    return n


def _plain_parquet(path: str) -> bool:
    """Every contract column present is a plain string column (the usual export)."""
    schema = pq.read_schema(path)
    return all(
        pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(
            schema.field(name).type)
        for name in EVENT_FIELDS if name in schema.names
    )


def _load_parquet(con: duckdb.DuckDBPyConnection, path: str) -> int:
    present = set(pq.read_schema(path).names)
    fields = ", ".join(
        (name if name in present else f"NULL::VARCHAR AS {name}") for name in EVENT_FIELDS
    )
    return con.execute(
        f"INSERT INTO raw_text SELECT {literal(path)}, file_row_number + 1, NULL, true, {fields} "
        f"FROM read_parquet({literal(path)}, file_row_number = true)"
    ).fetchall()[0][0]


def _load_jsonl(con: duckdb.DuckDBPyConnection, paths: list[str]) -> dict[str, int]:
    files = "[" + ", ".join(literal(p) for p in paths) + "]"
    json_paths = "[" + ", ".join(literal(f"$.{name}") for name in EVENT_FIELDS) + "]"
    numeric = "(" + ", ".join(literal(t) for t in _NUMERIC_JSON) + ")"
    amount = EVENT_FIELDS.index("amount") + 1
    values = []
    types_ok = []
    for i, name in enumerate(EVENT_FIELDS, start=1):
        if name == "amount":
            values.append(
                f"CASE WHEN json_type(v[{i}]) IN {numeric} "
                f"THEN regexp_extract(line, {literal(AMOUNT_NUMBER)}, 1) "
                f"ELSE json_extract_string(v[{i}], '$') END AS {name}"
            )
            types_ok.append(f"coalesce(json_type(v[{i}]) IN ('VARCHAR', 'NULL') "
                            f"OR json_type(v[{i}]) IN {numeric}, true)")
        else:
            values.append(f"json_extract_string(v[{i}], '$') AS {name}")
            types_ok.append(f"coalesce(json_type(v[{i}]) IN ('VARCHAR', 'NULL'), true)")
    present = " + ".join(f"(v[{i}] IS NOT NULL)::INT" for i in range(1, len(EVENT_FIELDS) + 1))
    # A flat object the reader reads the same way: checks that cost a byte scan, not a parse.
    plain = (
        "starts_with(line, '{') AND ends_with(line, '}') AND NOT contains(line[2:], '{') "
        "AND NOT contains(line, '[') AND NOT contains(line, 'NaN') "
        "AND NOT contains(line, 'Infinity') AND NOT contains(line, '\\') "
        "AND NOT ends_with(rtrim(line[:-2], ' \t'), ',') AND json_valid(line)"
    )
    con.execute(f"""
        INSERT INTO raw_text
        WITH files AS (
            SELECT filename AS source, string_split(content, chr(10)) AS lines
            FROM read_text({files})
        ), split AS (
            SELECT source, generate_subscripts(lines, 1)::BIGINT AS position,
                   unnest(lines) AS text FROM files
        ), cleaned AS (
            SELECT source, position,
                   CASE WHEN position = 1 AND starts_with(t, chr(65279)) THEN t[2:] ELSE t END
                   AS line
            FROM (SELECT source, position,
                         CASE WHEN ends_with(text, chr(13)) THEN text[:-2] ELSE text END AS t
                  FROM split)
        ), records AS (
            SELECT source, position, line,
                   CASE WHEN {plain} THEN json_extract(line, {json_paths}) END AS v
            FROM cleaned WHERE NOT regexp_full_match(line, '[ \t\r]*')
        ), typed AS (
            SELECT source, position, line, v,
                   v IS NOT NULL AND {' AND '.join(types_ok)}
                   AND len(json_keys(line)) = {present} AS fast
            FROM records
        )
        SELECT source, position, line, fast,
               {', '.join(f"CASE WHEN fast THEN {v.rsplit(' AS ', 1)[0]} END" for v in values)}
        FROM typed
    """)
    del amount
    rows = con.execute(
        f"SELECT source, count(*) FROM raw_text WHERE source IN {_in(paths)} GROUP BY source"
    ).fetchall()
    counts = dict.fromkeys(paths, 0)
    counts.update({source: n for source, n in rows})
    return counts


def _in(values: list[str]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"
