"""The embedded engine: read -> validate -> deduplicate -> convert -> enrich ->
attribute -> aggregate -> stage, as vectorised DuckDB SQL in this process.

``stage_embedded`` stages exactly what ``pipelines.batch.build_graph`` stages
(the same outputs, rows and rules; ``tests/embedded`` proves it), so the same
publisher publishes either. DuckDB runs every step on all cores; Python only
touches the few records a rule function must judge (see ``steps``). No Beam
import, no runner start-up.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from pipelines.embedded import steps
from pipelines.embedded.read import raw_relations, readable_by_duckdb
from pipelines.errors import UserError
from pipelines.io.duckdb_sql import literal
from pipelines.io.staging import INPUT_COUNT_SCHEMA, write_part
from pipelines.rules.dedupe import PUBLISHED_COLUMNS
from pipelines.rules.enrich import EnrichmentTimelines
from schemas.events import EVENT_SCHEMA
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from schemas.rejects import REJECT_SCHEMA

if TYPE_CHECKING:  # the Protocol lives with the Beam transform; no Beam import here
    from pipelines.transforms.deduplicate import History

MEMORY_LIMIT = os.environ.get("REVATTR_ENGINE_MEMORY", "768MB")


def connect_engine(scratch: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB on every core, spilling to ``scratch`` beyond its memory limit."""
    scratch.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"threads": os.cpu_count() or 1})
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute(f"SET temp_directory = {literal(scratch)}")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET TimeZone = 'UTC'")
    return con


def stage_embedded(
    paths: list[str],
    reference: dict[str, pa.Table],
    timelines: EnrichmentTimelines,
    staging: str | Path,
    run_id: str,
    *,
    reporting_currency: str = "USD",
    history: History | None = None,
    checks: bool = True,
    batch_rows: int = 65536,
    known_results: Mapping[str, pa.Table] | None = None,
) -> None:
    """Run the pipeline's steps on ``paths`` and stage the outputs under ``staging`` as
    ``build_graph`` does (for ``DuckDBPublisher.publish``).

    ``timelines`` is ``EnrichmentTimelines.build(reference)`` (built once per
    reference snapshot by the caller). ``known_results`` maps a suite whose inputs
    did not change (``reference`` in follow mode) to its results, staged as they are.
    """
    staging = Path(staging)
    con = connect_engine(staging / "_engine")
    try:
        _stage_all(con, paths, reference, timelines, staging, run_id, reporting_currency,
                   history, checks, batch_rows, known_results)
    except duckdb.OutOfMemoryException as error:
        raise UserError(
            f"the embedded engine ran out of memory ({MEMORY_LIMIT}): "
            f"{str(error).splitlines()[0]}",
            hint="set REVATTR_ENGINE_MEMORY higher (e.g. 2GB), or split the largest files",
        ) from None
    finally:
        con.close()


def _stage_all(
    con: duckdb.DuckDBPyConnection,
    paths: list[str],
    reference: dict[str, pa.Table],
    timelines: EnrichmentTimelines,
    staging: Path,
    run_id: str,
    reporting_currency: str,
    history: History | None,
    checks: bool,
    batch_rows: int,
    known_results: Mapping[str, pa.Table] | None,
) -> None:
    """``stage_embedded`` on its open connection."""
    relations, raw = raw_relations(paths, batch_rows)
    try:
        raw.records.update(steps.validate(con, relations, raw.duckdb_paths, raw.arrow))
    except (duckdb.InvalidInputException, duckdb.ConversionException):
        # A JSONL file DuckDB cannot read as text (not UTF-8): the Arrow reader's.
        refused = [p for p in raw.duckdb_paths if not readable_by_duckdb(con, p)]
        if not refused:
            raise
        relations, raw = raw_relations(paths, batch_rows, arrow_paths=set(refused))
        raw.records.update(steps.validate(con, relations, raw.duckdb_paths, raw.arrow))
    for path in paths:
        raw.records.setdefault(path, 0)
    published = None
    if history is not None:
        ids = con.sql("SELECT DISTINCT event_id FROM events").to_arrow_table()["event_id"]
        published = history.lookup(ids.combine_chunks()) if len(ids) else None
        if published is not None:
            published = published.select(list(PUBLISHED_COLUMNS))
    steps.deduplicate_events(con, published)
    steps.convert(con, reference["fx_rates"], reporting_currency)
    facts = staging / "_engine" / "facts.parquet"
    accepted = steps.attribute(con, timelines, run_id, facts)
    _stage(con, staging, raw.records)
    if checks:
        results = _check(con, reference, batch_rows, known_results or {})
        write_part(staging, "dq_results", pa.concat_tables(results))
    if accepted:  # the staged facts part (published as it is: see Publication)
        (staging / "attributed_events").mkdir(parents=True, exist_ok=True)
        os.replace(facts, staging / "attributed_events" / f"part-{uuid.uuid4().hex}.parquet")


def _stage(con: duckdb.DuckDBPyConnection, staging: Path, records: dict[str, int]) -> None:
    counts = [{"source": source, "records": n} for source, n in records.items()]
    write_part(staging, "inputs", pa.Table.from_pylist(counts, schema=INPUT_COUNT_SCHEMA))
    outputs = {
        "duplicates": "SELECT event_id, source, position FROM duplicates",
        "quarantine": f"SELECT {', '.join(REJECT_SCHEMA.names)} FROM rejects "
                      "ORDER BY source, position",
        **{view: steps.aggregate_sql(view) for view in ("territory_revenue",
                                                        "account_manager_revenue")},
    }
    for name, sql in outputs.items():
        folder = staging / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"_tmp-{uuid.uuid4().hex}"
        if con.execute(f"COPY ({sql}) TO {literal(tmp)} (FORMAT parquet)").fetchall()[0][0]:
            os.replace(tmp, folder / f"part-{uuid.uuid4().hex}.parquet")
        else:  # empty outputs stage nothing, as write_part does
            tmp.unlink()


def _check(
    con: duckdb.DuckDBPyConnection,
    reference: dict[str, pa.Table],
    batch_rows: int,
    known_results: Mapping[str, pa.Table],
) -> list[pa.Table]:
    """The ``quality.stages`` suites on this run's tables, streamed in ``batch_rows`` slices
    (each slice sampled as one Beam bundle is)."""
    from pipelines.quality.stage_check import run_stage_check
    from pipelines.quality.stage_frames import INPUTS
    from pipelines.quality.stages import STAGE_CHECKS

    sources = {
        "events": (f"SELECT {', '.join(EVENT_SCHEMA.names)} FROM events", EVENT_SCHEMA),
        "attributed_events": (f"SELECT {', '.join(ATTRIBUTED_EVENTS_SCHEMA.names)} FROM facts",
                              ATTRIBUTED_EVENTS_SCHEMA),
        **{view: (steps.aggregate_sql(view), None)
           for view in ("territory_revenue", "account_manager_revenue")},
    }

    class Batches:
        """One input's batches; iterable again for each reduction that reads it."""

        def __init__(self, name: str) -> None:
            self.name = name

        def __iter__(self) -> Iterator[pa.Table]:
            if self.name in reference:
                yield reference[self.name]
                return
            sql, schema = sources[self.name]
            for batch in con.sql(sql).to_arrow_reader(batch_rows):
                table = pa.Table.from_batches([batch])
                yield table.cast(schema) if schema is not None else table

    results = []
    for check in STAGE_CHECKS:
        if check.suite in known_results:
            results.append(known_results[check.suite])
            continue
        results.append(run_stage_check(
            check.stage, check.suite, {name: Batches(name) for name in INPUTS[check.suite]},
            check.sample_rows_per_batch))
    return results
