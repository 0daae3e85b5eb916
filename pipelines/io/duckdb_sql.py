"""Small DuckDB helpers shared by the modules that write or read our databases."""

from __future__ import annotations

from pathlib import Path

import duckdb


def fetch_all(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list:
    """Execute and fetch every row (DuckDB 2 refuses new work until a result is consumed)."""
    return con.execute(sql, params).fetchall()


def literal(text: str | Path) -> str:
    """A SQL string literal, for the places parameters cannot go (COPY, table functions)."""
    return "'" + str(text).replace("'", "''") + "'"


def in_list(values: list[str] | tuple[str, ...]) -> str:
    """A SQL list of string literals, for ``x IN (...)``."""
    return "(" + ", ".join(literal(v) for v in values) + ")"


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The base tables of the connected database."""
    return {r[0] for r in fetch_all(con, "SELECT table_name FROM duckdb_tables()")}
