"""The reader-facing ``--db`` file: a catalog of views over published Parquet files.

``--db out/revenue.duckdb`` is laid out as::

    out/revenue.duckdb                  catalog: views only; BI tools open it read-only
    out/revenue.duckdb.d/store.duckdb   the writer's private store (never opened by readers)
    out/revenue.duckdb.d/published/<relation>/pLLLLLLLLLLLL-HHHHHHHHHHHH.parquet
    out/revenue.duckdb.d/published/_commits/vNNNNNNNNNNNN.json

A Parquet part ``p<lo>-<hi>`` holds versions ``lo..hi`` of one relation (a
compaction merges consecutive parts into one covering their range). A version
is committed when its marker ``v<N>.json`` exists; markers are written after
every part of the version. Each view, at query time, takes the highest
committed version, the parts whose range ends at or before it, drops parts
covered by a wider one, and reads the rest. So a reader sees each relation at
one committed version, never half of one; the writer never opens the catalog
read-write (it is replaced by an atomic rename when its SQL changes), so no
reader ever blocks the writer and no writer ever blocks a reader.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.io.duckdb_sql import literal
from schemas.outputs import fiscal_view_sql, restated_view_sql, split_view_sql, view_sql
from schemas.publication import APPEND, PUBLISHED_RELATIONS, SNAPSHOT, UPSERT, PublishedRelation

PART_PATTERN = r"p(\d{12})-(\d{12})\.parquet$"
COMMIT_PATTERN = r"v(\d{12})\.json$"


def part_name(lo: int, hi: int) -> str:
    return f"p{lo:012d}-{hi:012d}.parquet"


def commit_name(version: int) -> str:
    return f"v{version:012d}.json"


@dataclass(frozen=True)
class Layout:
    """Where the catalog, the store and the published parts of one ``--db`` live."""

    catalog: Path

    @classmethod
    def of(cls, db: str | Path) -> Layout:
        return cls(Path(db).absolute())

    @property
    def root(self) -> Path:
        return self.catalog.with_name(self.catalog.name + ".d")

    @property
    def store(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def published(self) -> Path:
        return self.root / "published"

    @property
    def commits(self) -> Path:
        return self.published / "_commits"

    def relation_dir(self, name: str) -> Path:
        return self.published / name


def _glob(folder: Path, pattern: str) -> str:
    """A quoted DuckDB glob of ``pattern`` inside ``folder``, whose own name is taken literally.

    ``*``, ``?`` and ``[`` in the folder's path (``--db 'out/[prod]/revenue.duckdb'``)
    are put in a character class: unescaped, they would match nothing, or other folders.
    """
    escaped = "".join(f"[{c}]" if c in "*?[" else c for c in str(folder))
    return literal(f"{escaped}/{pattern}")


def _live_parts_sql(layout: Layout, relation: PublishedRelation) -> str:
    """CTEs ``committed``, ``files`` and ``live``: the parts readable at the committed version."""
    if relation.kind == SNAPSHOT:
        live = "SELECT file, hi FROM files ORDER BY hi DESC, lo LIMIT 1"
    else:  # a part covered by a wider committed part was merged into it
        live = (
            "SELECT f.file, f.hi FROM files f WHERE NOT EXISTS (SELECT 1 FROM files g "
            "WHERE g.lo <= f.lo AND g.hi >= f.hi AND g.hi - g.lo > f.hi - f.lo)"
        )
    return f"""WITH committed AS MATERIALIZED (
    SELECT coalesce(max(CAST(regexp_extract(file, '{COMMIT_PATTERN}', 1) AS BIGINT)), 0) AS v
    FROM glob({_glob(layout.commits, "v*.json")})),
files AS MATERIALIZED (
    SELECT file, lo, hi FROM (
        SELECT file,
               CAST(regexp_extract(file, '{PART_PATTERN}', 1) AS BIGINT) AS lo,
               CAST(regexp_extract(file, '{PART_PATTERN}', 2) AS BIGINT) AS hi
        FROM glob({_parts_glob(layout, relation)})) parts, committed
    WHERE hi <= committed.v),
live AS MATERIALIZED ({live})"""


def _parts_glob(layout: Layout, relation: PublishedRelation) -> str:
    return _glob(layout.relation_dir(relation.name), "p*.parquet")


def relation_view_sql(layout: Layout, relation: PublishedRelation) -> str:
    """``CREATE VIEW`` of one published relation."""
    ctes = _live_parts_sql(layout, relation)
    columns = ", ".join(relation.schema.names)
    scan = f"read_parquet({_parts_glob(layout, relation)}, filename = true)"
    if relation.kind in (APPEND, SNAPSHOT):
        body = f"SELECT {columns} FROM {scan} WHERE filename IN (SELECT file FROM live)"
    elif relation.kind == UPSERT:  # each key's row from the newest part holding it
        body = (
            f"SELECT {columns} FROM {scan} p JOIN live ON p.filename = live.file\n"
            f"QUALIFY row_number() OVER (PARTITION BY {', '.join(relation.key)} "
            "ORDER BY live.hi DESC) = 1"
        )
    else:
        raise ValueError(f"unknown relation kind {relation.kind!r}")
    return f"CREATE OR REPLACE VIEW {relation.name} AS\n{ctes}\n{body}"


def catalog_sql(layout: Layout, fiscal_year_start_month: int = 1) -> list[str]:
    """Every statement of the catalog: the relations, then the views derived from them."""
    statements = [relation_view_sql(layout, r) for r in PUBLISHED_RELATIONS.values()]
    statements.extend(
        s for s in view_sql(fiscal_year_start_month) if "VIEW reconciliation " not in s
    )
    statements.extend(restated_view_sql(fiscal_year_start_month))
    statements.extend(fiscal_view_sql())
    statements.extend(split_view_sql())
    return statements


def write_catalog(layout: Layout, fiscal_year_start_month: int = 1) -> bool:
    """(Re)write the catalog when missing or when its SQL changed; True if written.

    Written to a temporary file and renamed over the old one: a reader holding
    the old file open keeps working on it; new connections see the new views.
    The parts and commit markers must exist (the views are bound on creation).
    """
    statements = catalog_sql(layout, fiscal_year_start_month)
    signature = hashlib.sha256("\n;\n".join(statements).encode()).hexdigest()
    stamp = layout.root / "catalog.sha256"
    if layout.catalog.exists() and stamp.exists() and stamp.read_text() == signature:
        return False
    tmp = layout.catalog.with_name(f".{layout.catalog.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        for statement in statements:
            con.execute(statement).fetchall()
    finally:
        con.close()
    os.replace(tmp, layout.catalog)
    stamp.write_text(signature)
    return True
