"""Publication cost against the size of the history already published.

For each history size (default 0, 1M, 2M facts, grown in 1M-event steps from the
benchmark's cached 1M Parquet data set, with event ids made unique per step),
publishes ``--probes`` small batches (5,000 events, new ids, like one follow
poll) and reports the median seconds of each phase: staging the batch
in-process, applying it to the store (one transaction with its checks), and
exporting it to readers (Parquet parts + commit marker, compaction included).

    python -m pipelines.bench_publication [--history 0,1000000,2000000] [--probes 5]

Results are printed and appended to ``bench/publication_results.csv``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.bench import REPO_ROOT, append_results, ensure_dataset, machine_info
from pipelines.embedded.engine import stage_embedded
from pipelines.io.duckdb_publisher import RunInfo
from pipelines.io.publication import Publication, PublishedEvents
from pipelines.io.reference_loader import load_reference
from pipelines.rules.enrich import EnrichmentTimelines

PROBE_EVENTS = 5_000
STEP_EVENTS = 1_000_000
RESULTS = REPO_ROOT / "bench" / "publication_results.csv"


def _renamed(table: pa.Table, prefix: str) -> pa.Table:
    ids = pc.binary_join_element_wise(pa.scalar(prefix), table["event_id"], "")
    return table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)


def _publish(pub: Publication, paths: list[str], reference, index, work: Path, label: str):
    run = RunInfo(f"{label}-{time.time_ns()}", "bench", dt.datetime.now(dt.UTC))
    staging = work / "staging" / run.run_id
    started = time.perf_counter()
    stage_embedded(paths, reference, index, staging, run.run_id,
                  history=PublishedEvents(pub.layout.catalog), checks=False)
    staged = time.perf_counter() - started
    summary = pub.publish(staging, run, reference)
    if summary.status != "succeeded":
        raise RuntimeError(f"bench publication failed: {summary.status}")
    return {"stage": staged, **pub.timings}


def run(history: list[int], probes: int, work: Path) -> list[dict]:
    data = ensure_dataset(REPO_ROOT / "bench" / "data", STEP_EVENTS, "parquet")
    reference = load_reference(data / "reference")
    index = EnrichmentTimelines.build(reference)
    events = pa.concat_tables(
        pq.read_table(p) for p in sorted((data / "events").glob("*.parquet"))
    )
    pub = Publication(work / "revenue.duckdb")
    pub.prepare()
    published, step, rows = 0, 0, []
    for target in sorted(history):
        while published < target:
            path = work / f"history-{step}.parquet"
            pq.write_table(_renamed(events, f"h{step}-"), path)
            _publish(pub, [str(path)], reference, index, work, f"history{step}")
            path.unlink()
            published += events.num_rows
            step += 1
        timings = []
        for probe in range(probes):
            path = work / f"probe-{target}-{probe}.parquet"
            start = (probe * PROBE_EVENTS) % max(events.num_rows - PROBE_EVENTS, 1)
            pq.write_table(_renamed(events.slice(start, PROBE_EVENTS), f"p{target}-{probe}-"),
                           path)
            timings.append(_publish(pub, [str(path)], reference, index, work, "probe"))
        row = {"history_events": published, "probes": probes}
        for phase in ("stage", "store", "export"):
            row[f"{phase}_s"] = round(statistics.median(t[phase] for t in timings), 3)
        rows.append(row)
        print(f"history {published:>10,} events: stage {row['stage_s']:.3f} s, "
              f"store {row['store_s']:.3f} s, export {row['export_s']:.3f} s "
              f"(median of {probes} batches of {PROBE_EVENTS:,} events)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", default="0,1000000,2000000",
                        help="Comma-separated history sizes (events) to measure at.")
    parser.add_argument("--probes", type=int, default=5, help="Batches published per size.")
    args = parser.parse_args(argv)
    history = [int(x) for x in args.history.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="revattr-pubbench-") as tmp:
        rows = run(history, args.probes, Path(tmp))
    info = machine_info()
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    records = [{"timestamp": stamp, "commit": info["git_commit"], "host": info["host"],
                "cpus": info["cpus"], **{k: str(v) for k, v in row.items()}} for row in rows]
    append_results(RESULTS, records, list(records[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
