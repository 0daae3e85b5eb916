"""The Beam graph on a real distributed engine: Beam's DaskRunner on a dask.distributed
cluster of two worker processes, and the DirectRunner's multi-processing mode. Same held
inputs, published tables identical to the FnApiRunner's and to the embedded engine's
(facts, both views, quarantine with reasons, run counts), then a second run whose events
are all found in the published history.

The DaskRunner defects of Beam 2.77 that the runner glue works around are pinned here
too: if a Beam upgrade fixes one, its test says so."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import apache_beam as beam
import duckdb
import pytest
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from pipelines import batch
from pipelines.embedded import run as embedded
from pipelines.generate import generate_dataset
from pipelines.transforms._outputs import with_outputs
from pipelines.transforms._runner import run_to_completion

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
FACTS = ("event_id, event_type, event_time, day, deal_id, account_id, currency, amount, "
         "booked_revenue, pipeline_created, account_manager_id, territory_id, "
         "territory_manager_id, attribution_status, run_id")


@pytest.fixture(scope="module")
def cluster_address() -> Iterator[str]:
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    try:
        with distributed.Client(cluster) as client:
            pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # two other processes
        yield cluster.scheduler_address
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("held")
    generate_dataset(root, events=3000, seed=13, bad_rate=0.03)
    return root


def published(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            "facts": con.execute(f"SELECT {FACTS} FROM attributed_events ORDER BY ALL").fetchall(),
            **{v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall()
               for v in ("territory_revenue", "account_manager_revenue")},
            "quarantine": con.execute("SELECT source, position, reason, detail, raw "
                                      "FROM quarantine ORDER BY ALL").fetchall(),
            "runs": con.execute("SELECT run_id, status, input_records, accepted, duplicates, "
                                "quarantined FROM pipeline_runs ORDER BY run_id").fetchall(),
        }


def run_twice(executor: str, held: Path, db: Path, runner_flags: list[str]) -> dict:
    """Two runs of the same files (the second: every event already published)."""
    for n in (1, 2):
        flags = [f"--events={held / 'events'}/*.jsonl", f"--reference={held / 'reference'}",
                 f"--db={db}", "--checks=false", "--shards=4", f"--run_id=run-{n}"]
        summary = (embedded.run(flags) if executor == "embedded"
                   else batch.run([*flags, *runner_flags]))
        assert summary.status == "succeeded", summary
    return published(db)


@pytest.fixture(scope="module")
def fnapi_tables(held: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    db = tmp_path_factory.mktemp("fnapi") / "revenue.duckdb"
    tables = run_twice("beam", held, db, ["--runner=FnApiRunner"])
    first, second = tables["runs"]
    assert first[3] > 2000 and second[3] == 0 and second[4] == first[3] + first[4]
    assert {r[2] for r in tables["quarantine"]} >= {"malformed", "bad_type", "missing_field"}
    return tables


def test_the_embedded_engine_publishes_what_the_fnapi_runner_publishes(
        held: Path, fnapi_tables: dict, tmp_path: Path) -> None:
    assert run_twice("embedded", held, tmp_path / "revenue.duckdb", []) == fnapi_tables


def test_the_dask_runner_on_two_worker_processes_publishes_what_the_fnapi_runner_publishes(
        held: Path, fnapi_tables: dict, cluster_address: str, tmp_path: Path) -> None:
    tables = run_twice("beam", held, tmp_path / "revenue.duckdb",
                       [f"--runner={DASK_RUNNER}", f"--dask_client_address={cluster_address}"])
    for name, rows in fnapi_tables.items():
        assert tables[name] == rows, name


def test_the_direct_runner_in_multi_processing_mode_publishes_what_the_fnapi_runner_publishes(
        held: Path, fnapi_tables: dict, tmp_path: Path) -> None:
    tables = run_twice("beam", held, tmp_path / "revenue.duckdb",
                       ["--runner=FnApiRunner", "--direct_running_mode=multi_processing",
                        "--direct_num_workers=2"])
    for name, rows in fnapi_tables.items():
        assert tables[name] == rows, name


# ------------------------------------------------- DaskRunner defects (Beam 2.77)


class _Split(beam.DoFn):
    def process(self, x: int) -> Iterator:
        yield x if x % 2 else pvalue.TaggedOutput("even", x)


def _write(x: int, folder: str, label: str) -> None:
    with FileSystems.create(f"{folder}/{label}-{x}") as handle:
        handle.write(b"")


def outputs_on_dask(address: str, folder: Path, build) -> set[str]:  # noqa: ANN001
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    p = beam.Pipeline(argv=[f"--runner={DASK_RUNNER}", f"--dask_client_address={address}"])
    build(p, str(folder))
    run_to_completion(p)
    return {name for name in os.listdir(folder)}


def test_dask_runner_mixes_tagged_outputs_which_the_with_outputs_glue_avoids(
        cluster_address: str, tmp_path: Path) -> None:
    def idiom(p: beam.Pipeline, folder: str) -> None:
        split = p | beam.Create([1, 2]) | beam.ParDo(_Split()).with_outputs("even", main="odd")
        split.even | beam.Map(_write, folder, "even")

    def glue(p: beam.Pipeline, folder: str) -> None:
        split = with_outputs(p | beam.Create([1, 2]), "Split", _Split(), tags=["even"],
                             main="odd")
        split.even | beam.Map(_write, folder, "even")

    # The defect: the odd element reaches the consumer of the "even" output.
    assert outputs_on_dask(cluster_address, tmp_path / "idiom", idiom) == {"even-1", "even-2"}
    assert outputs_on_dask(cluster_address, tmp_path / "glue", glue) == {"even-2"}


def test_dask_runner_computes_only_the_last_leaf_so_the_graph_ends_in_one(
        cluster_address: str, tmp_path: Path) -> None:
    def two_leaves(p: beam.Pipeline, folder: str) -> None:
        numbers = p | beam.Create([1])
        numbers | "First" >> beam.Map(_write, folder, "first")
        numbers | "Second" >> beam.Map(_write, folder, "second")

    def one_leaf(p: beam.Pipeline, folder: str) -> None:
        numbers = p | beam.Create([1])
        written = [numbers | "First" >> beam.Map(_write, folder, "first"),
                   numbers | "Second" >> beam.Map(_write, folder, "second")]
        written | "Done" >> beam.Flatten()

    assert outputs_on_dask(cluster_address, tmp_path / "two", two_leaves) == {"second-1"}
    assert outputs_on_dask(cluster_address, tmp_path / "one", one_leaf) == {"first-1",
                                                                           "second-1"}
