"""Event files as SQL relations for the engine's DuckDB connection, all strings.

``raw_relations(paths)`` gives relations of ``source_id, position, line, line_bytes, fast,
<fields>``: one row per record (blank JSONL lines are not records), the contract fields
as text; ``source_id`` is the file's index in ``RawInput.duckdb_paths`` (a path per row
would be most of the memory a run's records take). A line longer than
``MAX_RECORD_BYTES`` is never parsed: ``line`` holds its capped text (``rules.raw_text``)
and ``line_bytes`` its size (null for other lines).
``fast`` says DuckDB's JSON parser read the record and it is plainly well formed (a flat
JSON object of contract fields, nothing the reader would judge: no repeated key, NaN,
trailing comma, escape or nesting); every other record is read again, by the reader's
own per-line code (``events_reader.read_json_lines``), so both executors judge a
doubtful line identically. Files DuckDB cannot read as such (CSV, Parquet with non-
string contract columns, non-UTF-8 text, and JSONL files larger than ``_GROUP_BYTES``,
which DuckDB would hold whole several times over) are read by
``events_reader.iter_raw_batches`` chunk by chunk and returned as Arrow tables instead.

DuckDB re-prints a JSON-number amount from a double; its exact text is taken from the
line with the reader's own regex (``events_reader.AMOUNT_NUMBER``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.io.duckdb_sql import literal
from pipelines.io.events_reader import AMOUNT_NUMBER, FORMATS, iter_raw_batches
from pipelines.rules.raw_text import cap_sql
from schemas.events import EVENT_FIELDS, MAX_RECORD_BYTES, RAW_EVENT_SCHEMA

_NUMERIC_JSON = ("UBIGINT", "BIGINT", "DOUBLE", "HUGEINT")
_GROUP_BYTES = 128 << 20  # JSONL bytes read at once per core (bounds the text in memory)


@dataclass
class RawInput:
    """Records per file read by the Arrow reader (and its batches), the files DuckDB reads."""

    records: dict[str, int] = field(default_factory=dict)
    arrow: list[pa.Table] = field(default_factory=list)  # RAW_EVENT_SCHEMA
    duckdb_paths: list[str] = field(default_factory=list)  # files read by DuckDB, by source_id


def raw_relations(paths: list[str], batch_rows: int, arrow_paths: set[str] = frozenset(),
                  ) -> tuple[list[str], RawInput]:
    """SQL relations yielding raw rows ``source_id, position, line, fast, <contract fields>``
    (one per group of files DuckDB reads itself), and what the Arrow reader read."""
    out = RawInput()
    relations: list[str] = []
    jsonl: list[str] = []
    parquet: list[str] = []
    for path in paths:
        kind = FORMATS.get(os.path.splitext(path)[1].lower())
        if path in arrow_paths:
            kind = None
        if kind == "jsonl" and os.path.getsize(path) <= _GROUP_BYTES:
            jsonl.append(path)
        elif kind == "parquet" and _plain_parquet(path):
            parquet.append(path)
        else:
            out.records[path] = _load_with_reader(path, batch_rows, out)
    if parquet:
        relations.append(_parquet_relation(parquet, base=0))
        out.duckdb_paths += parquet
    for group in _groups(jsonl):
        relations.append(_jsonl_relation(group, base=len(out.duckdb_paths)))
        out.duckdb_paths += group
    return relations, out


def readable_by_duckdb(con: duckdb.DuckDBPyConnection, path: str) -> bool:
    """Whether DuckDB reads this JSONL file as text (UTF-8, not too large)."""
    try:
        con.execute(f"SELECT length(content) FROM read_text({literal(path)})").fetchall()
        return True
    except (duckdb.InvalidInputException, duckdb.ConversionException,
            duckdb.OutOfMemoryException):
        return False


def _groups(paths: list[str]) -> Iterator[list[str]]:
    """JSONL files in groups judged side by side: one per core, balanced by size, none
    above ``_GROUP_BYTES`` (bounds the text held at once)."""
    if not paths:
        return
    sizes = {p: os.path.getsize(p) for p in paths}
    total = sum(sizes.values())
    count = max(min(len(paths), os.cpu_count() or 1), -(-total // _GROUP_BYTES))
    groups: list[list[str]] = [[] for _ in range(count)]
    loads = [0] * count
    for path in sorted(paths, key=lambda p: -sizes[p]):  # largest first, to the lightest
        k = loads.index(min(loads))
        groups[k].append(path)
        loads[k] += sizes[path]
    yield from (sorted(g) for g in groups if g)


def _load_with_reader(path: str, batch_rows: int, out: RawInput) -> int:
    n = 0
    for batch in iter_raw_batches(path, batch_rows=batch_rows):
        n += batch.num_rows
        out.arrow.append(pa.Table.from_batches([batch], schema=RAW_EVENT_SCHEMA))
    return n


def _plain_parquet(path: str) -> bool:
    """Every contract column present is a plain string column (the usual export). An
    unreadable file is not: the Arrow reader then reports it (file and reason)."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return False
    return all(
        pa.types.is_string(schema.field(name).type) or pa.types.is_large_string(
            schema.field(name).type)
        for name in EVENT_FIELDS if name in schema.names
    )


def _parquet_relation(paths: list[str], base: int) -> str:
    files = "[" + ", ".join(literal(p) for p in paths) + "]"
    present = set().union(*(pq.read_schema(p).names for p in paths))
    fields = ", ".join(
        (name if name in present else f"NULL::VARCHAR AS {name}") for name in EVENT_FIELDS
    )
    return (
        f"SELECT {base} + file_index::INTEGER AS source_id, file_row_number + 1 AS position, "
        "NULL::VARCHAR AS line, "
        f"NULL::BIGINT AS line_bytes, true AS fast, {fields} "
        f"FROM read_parquet({files}, filename = true, file_row_number = true, "
        "union_by_name = true)"
    )


def _jsonl_relation(paths: list[str], base: int) -> str:
    """Each line parsed by DuckDB's JSON functions: one list of texts and one of types for
    the ten contract paths, the top-level keys for the repeated-key check."""
    files = "[" + ", ".join(literal(p) for p in paths) + "]"
    json_paths = "[" + ", ".join(literal(f"$.{name}") for name in EVENT_FIELDS) + "]"
    numeric = "(" + ", ".join(literal(t) for t in _NUMERIC_JSON) + ")"
    amount = EVENT_FIELDS.index("amount") + 1
    values = []
    for i, name in enumerate(EVENT_FIELDS, start=1):
        if name == "amount":  # a JSON number keeps its text, as the reader keeps it
            values.append(f"CASE WHEN t[{i}] IN {numeric} "
                          f"THEN regexp_extract(line, {literal(AMOUNT_NUMBER)}, 2) "
                          f"ELSE s[{i}] END AS {name}")
        else:
            values.append(f"s[{i}] AS {name}")
    # Types the reader takes as they are: strings (a number for amount) or null/absent.
    types_ok = " AND ".join(
        f"coalesce(t[{i}] IN ('VARCHAR', 'NULL'"
        + (", " + numeric[1:-1] if i == amount else "") + "), true)"
        for i in range(1, len(EVENT_FIELDS) + 1))
    present = " + ".join(f"(t[{i}] IS NOT NULL)::INT" for i in range(1, len(EVENT_FIELDS) + 1))
    # A flat object the reader reads the same way: checks that cost a byte scan, not a parse.
    # Trailing commas and NaN/Infinity are not JSON (DuckDB's parser takes them), an escape
    # may be a lone surrogate: such lines go to the reader's code.
    plain = (
        f"strlen(line) <= {MAX_RECORD_BYTES} "
        "AND starts_with(line, '{') AND ends_with(line, '}') AND NOT ends_with(line, ',}') "
        "AND NOT ends_with(line, ', }') AND NOT contains(line, ',\t') "
        "AND NOT contains(line, ',\r') AND NOT contains(line, ',  ') "
        "AND NOT contains(line, ', \t') AND NOT contains(line, ', \r') "
        "AND NOT contains(line, 'NaN') AND NOT contains(line, 'Infinity') "
        "AND NOT contains(line, '\\') AND NOT contains(line, '[') "
        # flat: one brace, so no nested object (and no repeated key below the top level)
        "AND length(line) - length(replace(line, '{', '')) = 1 AND json_valid(line)"
    )
    return f"""
        WITH files AS (
            SELECT {base} + file_index::INTEGER AS source_id,
                   string_split(content, chr(10)) AS lines
            FROM read_text({files})
        ), split AS (
            SELECT source_id, generate_subscripts(lines, 1)::BIGINT AS position,
                   unnest(lines) AS text FROM files
        ), cleaned AS (
            SELECT source_id, position,
                   CASE WHEN position = 1 AND starts_with(t, chr(65279)) THEN t[2:] ELSE t END
                   AS line
            FROM (SELECT source_id, position,
                         CASE WHEN ends_with(text, chr(13)) THEN text[:-2] ELSE text END AS t
                  FROM split)
            WHERE NOT regexp_full_match(t, '[ \t\r]*')
        ), parsed AS (
            SELECT source_id, position, line, p,
                   CASE WHEN p THEN json_type(line, {json_paths}) END AS t,
                   CASE WHEN p THEN json_extract_string(line, {json_paths}) END AS s
            FROM (SELECT *, {plain} AS p FROM cleaned)
        ), judged AS (
            SELECT *, coalesce(p AND {types_ok}
                -- no repeated key: as many key separators as contract fields (no other
                -- key; a separator inside a value only sends the line to the keys check),
                -- or distinct top-level keys
                AND CASE WHEN NOT p THEN false
                         WHEN (length(line) - length(replace(line, '":', ''))) // 2 = {present}
                         THEN true
                         ELSE list_unique(json_keys(line)) = len(json_keys(line)) END,
                false) AS fast
            FROM parsed
        )
        SELECT source_id, position,
               CASE WHEN strlen(line) > {MAX_RECORD_BYTES} THEN {cap_sql("line")} ELSE line END
               AS line,
               CASE WHEN strlen(line) > {MAX_RECORD_BYTES} THEN strlen(line) END AS line_bytes,
               fast,
               {', '.join(f"CASE WHEN fast THEN {v.rsplit(' AS ', 1)[0]} END AS {n}"
                         for v, n in zip(values, EVENT_FIELDS, strict=True))}
        FROM judged
    """

