"""stage_locally stages what the Beam graph (build_graph) stages, from the same inputs."""

from __future__ import annotations

import glob
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.batch import GraphSettings, build_graph
from pipelines.generate import generate_dataset
from pipelines.io.reference_loader import load_reference
from pipelines.io.staging import STAGED_OUTPUTS, part_files
from pipelines.local_run import stage_locally
from pipelines.rules.dedupe import PUBLISHED_SOURCE
from pipelines.rules.enrich import EnrichmentIndex
from schemas.events import PAYLOAD_FIELDS

pytestmark = pytest.mark.slow

RUN_ID = "20260301T120000Z-localrun"
BATCH_ROWS = 400  # several batches per file
DQ_COLUMNS = ["stage", "suite", "expectation", "severity", "success"]


class FakeHistory:
    """Already published events (``event_id`` + payload), looked up like PublishedEvents."""

    def __init__(self, published: pa.Table) -> None:
        self.published = published

    def lookup(self, event_ids: pa.Array) -> pa.Table | None:
        return self.published.filter(pc.is_in(self.published["event_id"], value_set=event_ids))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[list[str], str]:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root, events=3000, seed=5, bad_rate=0.03)
    return sorted(glob.glob(str(root / "events" / "*.jsonl"))), str(root / "reference")


def run_beam(paths: list[str], reference_dir: str, staging: Path, *, checks: bool,
             history: FakeHistory | None = None) -> Path:
    settings = GraphSettings(paths=paths, reference_dir=reference_dir, staging=str(staging),
                             run_id=RUN_ID, batch_rows=BATCH_ROWS, shards=4,
                             history=history, checks=checks)
    with beam.Pipeline() as p:
        build_graph(p, settings)
    return staging


def run_local(paths: list[str], reference_dir: str, staging: Path, *, checks: bool,
              history: FakeHistory | None = None) -> Path:
    reference = load_reference(reference_dir)
    stage_locally(paths, reference, EnrichmentIndex.build(reference), staging, RUN_ID,
                  history=history, checks=checks, batch_rows=BATCH_ROWS)
    return staging


def staged(root: Path, name: str) -> tuple[pa.Schema | None, list[tuple]]:
    """(schema of the parts, all rows sorted); (None, []) when nothing was staged."""
    tables = [pq.read_table(f) for f in part_files(root, name)]
    if not tables:
        return None, []
    schemas = {t.schema for t in tables}
    assert len(schemas) == 1, f"{name}: parts with different schemas"
    rows = [tuple(r.values()) for t in tables for r in t.to_pylist()]
    return tables[0].schema, sorted(rows, key=repr)


def assert_same_outputs(beam_root: Path, local_root: Path, names: tuple[str, ...]) -> None:
    for name in names:
        beam_schema, beam_rows = staged(beam_root, name)
        local_schema, local_rows = staged(local_root, name)
        assert local_schema == beam_schema, f"{name}: schema differs"
        assert local_rows == beam_rows, f"{name}: rows differ"


def dq_rows(root: Path) -> list[tuple]:
    table = pa.concat_tables([pq.read_table(f) for f in part_files(root, "dq_results")])
    return sorted(tuple(r.values()) for r in table.select(DQ_COLUMNS).to_pylist())


@pytest.fixture(scope="module")
def with_checks(dataset, tmp_path_factory) -> tuple[Path, Path]:
    paths, reference_dir = dataset
    root = tmp_path_factory.mktemp("checks")
    return (run_beam(paths, reference_dir, root / "beam", checks=True),
            run_local(paths, reference_dir, root / "local", checks=True))


def test_every_staged_output_equals_the_beam_graphs(with_checks):
    beam_root, local_root = with_checks
    data_outputs = tuple(n for n in STAGED_OUTPUTS if n != "dq_results")
    assert_same_outputs(beam_root, local_root, data_outputs)
    # The data set has every kind of row, so the comparison is not vacuous.
    for name in data_outputs:
        assert staged(local_root, name)[1], f"{name} is empty"
    quarantine = pq.read_table(part_files(local_root, "quarantine")[0])
    assert {"conflicting_duplicate", "no_fx_rate"} <= set(quarantine["reason"].to_pylist())


def test_check_results_equal_the_beam_graphs(with_checks):
    beam_root, local_root = with_checks
    assert dq_rows(local_root) == dq_rows(beam_root)
    local_schema, _ = staged(local_root, "dq_results")
    assert local_schema == staged(beam_root, "dq_results")[0]
    stages = {(r[0], r[1]) for r in dq_rows(local_root)}
    assert stages == {("reference", "reference"), ("parsed", "raw_events"),
                      ("enriched", "enriched_events"), ("aggregated", "reconciliation"),
                      ("aggregated", "territory_revenue"),
                      ("aggregated", "account_manager_revenue")}


def test_duplicates_of_published_events_are_found_as_by_the_beam_graph(
        dataset, with_checks, tmp_path):
    paths, reference_dir = dataset
    _, local_root = with_checks
    facts = pa.concat_tables([pq.read_table(f) for f in part_files(local_root,
                                                                   "attributed_events")])
    facts = facts.sort_by("event_id").select(["event_id", *PAYLOAD_FIELDS])
    same, changed = facts.slice(0, 20), facts.slice(20, 5)
    changed = changed.set_column(
        changed.schema.get_field_index("amount"), "amount",
        pc.add(changed["amount"], pa.scalar(1, changed.schema.field("amount").type)).cast(
            changed.schema.field("amount").type))
    history = FakeHistory(pa.concat_tables([same, changed.cast(same.schema)]))

    local = run_local(paths, reference_dir, tmp_path / "local", checks=False, history=history)
    beam_root = run_beam(paths, reference_dir, tmp_path / "beam", checks=False, history=history)
    assert_same_outputs(beam_root, local, STAGED_OUTPUTS)

    duplicates = pa.concat_tables([pq.read_table(f) for f in part_files(local, "duplicates")])
    assert set(same["event_id"].to_pylist()) <= set(duplicates["event_id"].to_pylist())
    assert PUBLISHED_SOURCE not in duplicates["source"].to_pylist()  # the repeats are listed
    quarantine = pa.concat_tables([pq.read_table(f) for f in part_files(local, "quarantine")])
    conflicts = quarantine.filter(pc.equal(quarantine["reason"], "conflicting_duplicate"))
    details = set(conflicts["detail"].to_pylist())
    for event_id in changed["event_id"].to_pylist():
        assert (f"event_id {event_id} has a different payload from the already published event"
                in details)
    attributed = pa.concat_tables([pq.read_table(f)
                                   for f in part_files(local, "attributed_events")])
    published_ids = history.published["event_id"]
    assert not pc.any(pc.is_in(attributed["event_id"], value_set=published_ids)).as_py()


def test_without_checks_no_dq_results_are_staged(with_checks, dataset, tmp_path):
    paths, reference_dir = dataset
    local = run_local(paths, reference_dir, tmp_path / "local", checks=False)
    assert part_files(local, "dq_results") == []
    assert_same_outputs(with_checks[1], local,
                        tuple(n for n in STAGED_OUTPUTS if n != "dq_results"))
