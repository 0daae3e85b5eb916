"""The cost of a restatement after a territory realignment, against the facts published.

Publishes the benchmark's cached Parquet data set (default 1M events) with
``revattr run --no-checks``, realigns its reference (every tenth account changes
manager, every fifth territory-manager row changes hands, from 2026-03-01), then
measures, whole process as a user runs it, ``revattr restate --as-of 2026-04-01``, and
the queries a BI tool would make on the restated basis (each restated view summed per
key, ``restatement_moves`` per manager, the restated reconciliation).

    python -m pipelines.bench_restate [--size 1000000]

Results are printed and appended to ``bench/restate_results.csv``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import tempfile
import time
from pathlib import Path

import duckdb

from pipelines.bench import (
    REPO_ROOT,
    append_results,
    ensure_dataset,
    events_glob,
    machine_info,
    revattr_path,
    run_pipeline,
    spawn,
)

RESULTS = REPO_ROOT / "bench" / "restate_results.csv"
COLUMNS = ("timestamp_utc", "git_commit", "host", "cpus", "facts", "accounts",
           "moved_accounts", "run_s", "restate_s", "restate_rss_mib", "query_s",
           "moved_revenue", "balanced")
QUERIES = (
    "SELECT account_manager_id, sum(booked_revenue) FROM account_manager_revenue_restated "
    "GROUP BY 1",
    "SELECT territory_id, sum(booked_revenue) FROM territory_revenue_restated GROUP BY 1",
    "SELECT manager_id, direction, sum(booked_revenue) FROM restatement_moves GROUP BY ALL",
    "SELECT bool_and(balanced) FROM reconciliation_restated",
)


def realign(reference: Path, target: Path, day: str = "2026-03-01") -> int:
    """A copy of ``reference`` where every tenth account with an open assignment moves to
    another manager from ``day``, and every fifth territory-manager row changes hands;
    returns the number of accounts moved."""
    shutil.copytree(reference, target)

    def rewrite(name: str, key: str, every: int) -> int:
        path = target / f"{name}.csv"
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        values = sorted({r[key] for r in rows})
        out, moved = [], 0
        for i, row in enumerate(rows):
            if i % every == 0 and not row["valid_to"] and row["valid_from"][:10] < day:
                other = values[(values.index(row[key]) + 1) % len(values)]
                out += [{**row, "valid_to": day}, {**row, key: other, "valid_from": day}]
                moved += 1
            else:
                out.append(row)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(out)
        return moved

    rewrite("territory_managers", "manager_id", 5)
    return rewrite("account_assignments", "account_manager_id", 10)


def measure(size: int, work: Path) -> dict[str, str]:
    dataset = ensure_dataset(REPO_ROOT / "bench" / "data", size, "parquet")
    db = work / "revenue.duckdb"
    ran = run_pipeline(events_glob(dataset, "parquet"), dataset / "reference", db,
                       ["--no-checks"], work / "run.log", timeout=3600)
    if not ran.ok:
        raise SystemExit(f"the run failed: {ran.error}")
    moved = realign(dataset / "reference", work / "realigned")
    code, restate_s, rss = spawn(
        [str(revattr_path()), "restate", f"--reference={work / 'realigned'}", f"--db={db}",
         "--as-of=2026-04-01"], work / "restate.log", 3600)
    if code != 0:
        raise SystemExit(f"the restatement failed; see {work / 'restate.log'}")
    with duckdb.connect(str(db), read_only=True) as con:
        started = time.perf_counter()
        answers = [con.execute(sql).fetchall() for sql in QUERIES]
        query_s = time.perf_counter() - started
        facts, accounts = con.execute(
            "SELECT (SELECT count(*) FROM attributed_events), "
            "(SELECT count(*) FROM restated_attribution)").fetchone()
    moved_revenue = sum(amount for _, direction, amount in answers[2]
                        if direction == "moved_in")
    info = machine_info()
    return {**{k: info[k] for k in ("timestamp_utc", "git_commit", "host", "cpus")},
            "facts": str(facts), "accounts": str(accounts), "moved_accounts": str(moved),
            "run_s": f"{ran.seconds:.2f}", "restate_s": f"{restate_s:.2f}",
            "restate_rss_mib": f"{rss or 0:.0f}", "query_s": f"{query_s:.2f}",
            "moved_revenue": str(moved_revenue), "balanced": str(answers[3][0][0])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="revattr-bench-restate-") as folder:
        row = measure(args.size, Path(folder))
    for key in COLUMNS:
        print(f"{key:>16}: {row[key]}")
    append_results(RESULTS, [row], COLUMNS)


if __name__ == "__main__":
    main()
