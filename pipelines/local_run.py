"""The batch pipeline's steps run in-process, without a Beam runner (follow mode).

Same steps, order, rules and staged outputs as ``pipelines.batch.build_graph``:
read -> parse -> deduplicate (whole input, against history) -> convert -> enrich
-> attribute -> aggregate -> stage, plus the ``pipelines.quality.stages`` checks.
Only the split of rows into part files differs (one part per output here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.io.events_reader import iter_raw_batches
from pipelines.io.staging import INPUT_COUNT_SCHEMA, write_part
from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA
from pipelines.quality.stage_check import run_stage_check
from pipelines.quality.stage_frames import INPUTS
from pipelines.quality.stages import STAGE_CHECKS
from pipelines.rules.aggregate import VIEW_SCHEMAS, aggregate_view, merge_partials
from pipelines.rules.dedupe import deduplicate
from pipelines.rules.effects import apply_effects, to_attributed_events
from pipelines.rules.enrich import EnrichmentIndex, enrich
from pipelines.rules.fx import convert_to_reporting
from pipelines.rules.validate import validate_events
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from schemas.rejects import REJECT_SCHEMA

if TYPE_CHECKING:  # the Protocol lives with the Beam transform; no Beam import here
    from pipelines.transforms.deduplicate import History


def stage_locally(
    paths: list[str],
    reference: dict[str, pa.Table],
    index: EnrichmentIndex,
    staging: str | Path,
    run_id: str,
    *,
    reporting_currency: str = "USD",
    history: History | None = None,
    checks: bool = True,
    batch_rows: int = 65536,
    known_results: Mapping[str, pa.Table] | None = None,
) -> None:
    """Run the batch pipeline on ``paths`` in this process and stage its outputs under
    ``staging`` exactly as ``build_graph`` does (for ``DuckDBPublisher.publish``).

    ``index`` is ``EnrichmentIndex.build(reference)``, built once by the caller.
    Deduplication sees every event of every path at once (and ``history``); the
    steps after it run per slice of ``batch_rows`` events. ``known_results`` maps a
    suite whose inputs did not change (``reference`` in follow mode) to its results,
    staged instead of running it again.
    """
    known_results = known_results or {}
    counts = []
    events: list[pa.Table] = []
    quarantine: list[pa.Table] = []
    for path in paths:
        total = 0
        for batch in iter_raw_batches(path, batch_rows=batch_rows):
            total += batch.num_rows
            parsed, rejects = validate_events(batch)
            events += _non_empty(parsed)
            quarantine += _non_empty(rejects)
        counts.append({"source": path, "records": total})

    duplicates: list[pa.Table] = []
    attributed: list[pa.Table] = []
    if events:
        everything = pa.concat_tables(events).combine_chunks()
        published = None
        if history is not None:
            published = history.lookup(pc.unique(everything["event_id"]))
        deduped = deduplicate(everything, published)
        duplicates += _non_empty(deduped.duplicates)
        quarantine += _non_empty(deduped.conflicts)
        for unique in _slices(deduped.unique, batch_rows):
            converted, rejects = convert_to_reporting(
                unique, reference["fx_rates"], reporting_currency
            )
            quarantine += _non_empty(rejects)
            if converted.num_rows:
                enriched = enrich(converted, index)
                attributed.append(to_attributed_events(apply_effects(enriched), run_id))

    views = {
        view: merge_partials([aggregate_view(t, view) for t in attributed], view)
        for view in VIEW_SCHEMAS
    }
    staged: dict[str, list[pa.Table]] = {
        "inputs": [pa.Table.from_pylist(counts, schema=INPUT_COUNT_SCHEMA)],
        "attributed_events": attributed,
        "duplicates": duplicates,
        "quarantine": quarantine,
        **{view: [table] for view, table in views.items()},
    }
    if checks:
        batches = {
            "events": events,
            "attributed_events": attributed,
            **{view: [table] for view, table in views.items()},
            **{name: [reference[name]] for name in INPUTS["reference"]},
        }
        staged["dq_results"] = [
            known_results[check.suite]
            if check.suite in known_results
            else run_stage_check(
                check.stage,
                check.suite,
                {name: batches[name] for name in INPUTS[check.suite]},
                check.sample_rows_per_batch,
            )
            for check in STAGE_CHECKS
        ]
    schemas = {
        "attributed_events": ATTRIBUTED_EVENTS_SCHEMA,
        "quarantine": REJECT_SCHEMA,
        "dq_results": CHECK_RESULT_SCHEMA,
    }
    for name, tables in staged.items():
        schema = schemas.get(name)
        if schema is not None:  # as StageOutput does
            tables = [t.select(schema.names).cast(schema) for t in tables]
        tables = [t for t in tables if t.num_rows]
        if tables:
            write_part(staging, name, pa.concat_tables(tables))


def _non_empty(table: pa.Table) -> list[pa.Table]:
    return [table] if table.num_rows else []


def _slices(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, table.num_rows, rows):
        yield table.slice(start, rows)
