"""``revattr check``: re-run the expectation suites on a published database.

Opens the DuckDB file read-only (BI readers may stay connected) and validates:

* ``attributed_events`` with the ``enriched_events`` suite,
* ``territory_revenue`` / ``account_manager_revenue`` with their suites (totals
  against all published facts),
* the reconciliation of every day, recomputed from the published facts and
  views, with the ``reconciliation`` suite,
* the reference data with the ``reference`` suite: the files of
  ``reference_dir`` when given, else the reference snapshot the last run
  published into the database.

Only the columns the suites read are fetched. The ``stage`` of each result row
is the relation checked (``reference`` for the reference data). ``runner``
picks the suite runner (``"gx"``, the default here, or ``"native"``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import connect
from pipelines.quality import stage_frames as sf
from pipelines.quality.results import DEFAULT_MAX_ROWS, runner_module
from pipelines.quality.suites import load_suite
from schemas.outputs import CHECK_RESULT_SCHEMA, MEASURES, REVENUE_VIEWS
from schemas.reference import REFERENCE_TABLES

# (stage, suite) in the order they are checked.
DATABASE_CHECKS: tuple[tuple[str, str], ...] = (
    ("attributed_events", "enriched_events"),
    ("territory_revenue", "territory_revenue"),
    ("account_manager_revenue", "account_manager_revenue"),
    ("reconciliation", "reconciliation"),
)


def _suite_columns(suite: str) -> set[str]:
    loaded = load_suite(suite)
    columns: set[str] = set()
    for expectation in loaded.expectations:
        columns |= expectation.columns()
    for batch in loaded.batches.values():
        columns |= set(batch.id_columns)
    return columns


def _relations(con) -> set[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() UNION SELECT view_name FROM duckdb_views()"
    ).fetchall()
    return {r[0] for r in rows}


def _read(con, relation: str, columns: list[str], schema: pa.Schema,
          db_path: str | Path) -> pa.Table:
    try:
        table = con.sql(f"SELECT {', '.join(columns)} FROM {relation}").to_arrow_table()
    except Exception as error:  # a database of another schema version
        raise UserError(f"cannot read {relation}: {str(error).splitlines()[0]}",
                        where=str(db_path),
                        hint="check a database written by this version of revattr") from None
    fields = [schema.field(c) for c in columns]
    return table.cast(pa.schema(fields))


def check_database(db_path: str | Path, reference_dir: str | None = None, *,
                   parameters: dict[str, dict] | None = None,
                   max_rows: int = DEFAULT_MAX_ROWS, runner: str = "gx") -> pa.Table:
    """Results (``CHECK_RESULT_SCHEMA``) of every suite on the published database.

    ``parameters`` maps a suite name to its run-time parameters, e.g.
    ``{"enriched_events": {"unassigned_share_max": 0.1}}``.
    """
    run_suite = runner_module(runner).run_suite
    db_path = Path(db_path)
    if not db_path.is_file():
        raise UserError("the database does not exist", where=str(db_path),
                        hint="run `revattr run` first, or pass --db")
    parameters = parameters or {}
    reference = None
    if reference_dir is not None:
        from pipelines.io.reference_loader import load_reference

        reference = load_reference(reference_dir)
    con = connect(db_path, read_only=True)
    try:
        present = _relations(con)
        needed = {"attributed_events", "reconciliation", *REVENUE_VIEWS}
        if reference is None:
            needed |= set(REFERENCE_TABLES)
        missing = sorted(needed - present)
        if missing:
            raise UserError(f"the database has no {', '.join(missing)}", where=str(db_path),
                            hint="is this a revattr database? `revattr run` creates them")
        facts_schema = sf.INPUT_SCHEMAS["attributed_events"]
        wanted = _suite_columns("enriched_events") | set(MEASURES) | {"event_type", "day"}
        fact_columns = sorted(wanted & set(facts_schema.names))
        facts = _read(con, "attributed_events", fact_columns, facts_schema, db_path)
        tables: dict[str, dict[str, pa.Table]] = {"enriched_events": {"attributed_events": facts}}
        for view in REVENUE_VIEWS:
            schema = sf.INPUT_SCHEMAS[view]
            tables[view] = {view: _read(con, view, schema.names, schema, db_path),
                            "attributed_events": facts}
        # Recomputed from the published facts and views, not read from the stored
        # reconciliation: a view edited after publication must show up here.
        tables["reconciliation"] = {"attributed_events": facts,
                                    **{view: tables[view][view] for view in REVENUE_VIEWS}}
        if reference is None:
            reference = {name: _read(con, name, sf.INPUT_SCHEMAS[name].names,
                                     sf.INPUT_SCHEMAS[name], db_path)
                         for name in REFERENCE_TABLES}
    finally:
        con.close()
    results = []
    for stage, suite in DATABASE_CHECKS:
        frames = _frames(suite, tables[suite])
        results.append(run_suite(stage, suite, frames, parameters.get(suite), max_rows=max_rows))
    results.append(run_suite("reference", "reference", sf.frames_from_tables(
        "reference", reference), parameters.get("reference"), max_rows=max_rows))
    return pa.concat_tables(results).cast(CHECK_RESULT_SCHEMA)


def _frames(suite: str, inputs: dict[str, pa.Table]) -> dict[str, pa.Table]:
    if suite == "enriched_events":
        # Only some columns were read: build the frame without conforming to the full schema.
        return {"events": sf.unassigned_flags(inputs["attributed_events"])}
    return sf.frames_from_tables(suite, inputs)
