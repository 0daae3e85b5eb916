"""A reader of a followed ``--db`` catalog, run as a subprocess by tests/test_follow.py.

    python tests/follow_reader.py DB STOP_FILE OUT_JSON MODE SEED

Loops until ``STOP_FILE`` exists, opening the catalog read-only and querying the
published relations. ``MODE``: ``persistent`` keeps one connection for the whole
loop; ``reconnect`` opens a new connection for every query; ``mixed`` picks one
of the two at random for each round. Writes a JSON summary to ``OUT_JSON``:
queries, errors (and a few of their messages), imbalances (a reconciliation
that is not balanced), decreases (a count lower than one seen before) and the
last values seen.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import duckdb

QUERIES = {
    "events": "SELECT count(*) FROM attributed_events",
    "reconciliation": "SELECT count(*), bool_and(balanced) FROM reconciliation",
    "territory_revenue": "SELECT sum(booked_revenue) FROM territory_revenue",
}


def main(db: str, stop_file: str, out: str, mode: str, seed: int) -> None:
    rng = random.Random(seed)
    stop = Path(stop_file)
    summary = {
        "mode": mode,
        "rounds": 0,
        "queries": 0,
        "connections": 0,
        "errors": 0,
        "error_samples": [],
        "imbalances": 0,
        "imbalance_samples": [],
        "decreases": 0,
        "decrease_samples": [],
        "distinct_event_counts": [],
        "last": {},
    }
    highest = {"events": -1, "days": -1}
    seen_counts: set[int] = set()
    held: duckdb.DuckDBPyConnection | None = None

    def connection() -> tuple[duckdb.DuckDBPyConnection, bool]:
        """(connection, whether the caller must close it)."""
        nonlocal held
        persistent = mode == "persistent" or (mode == "mixed" and rng.random() < 0.5)
        if persistent:
            if held is None:
                held = duckdb.connect(db, read_only=True)
                summary["connections"] += 1
            return held, False
        summary["connections"] += 1
        return duckdb.connect(db, read_only=True), True

    def query(name: str) -> tuple:
        con, close = connection()
        try:
            summary["queries"] += 1
            return con.execute(QUERIES[name]).fetchall()[0]
        finally:
            if close:
                con.close()

    def note(kind: str, text: str) -> None:
        summary[kind + "s"] += 1
        samples = summary[kind + "_samples"]
        if len(samples) < 5:
            samples.append(text)

    while not stop.exists():
        summary["rounds"] += 1
        try:
            (events,) = query("events")
            days, balanced = query("reconciliation")
            (territory_total,) = query("territory_revenue")
        except Exception as error:  # noqa: BLE001 - every failure is what we count
            note("error", f"{type(error).__name__}: {error}"[:500])
            if held is not None:  # start again with a fresh connection
                try:
                    held.close()
                finally:
                    held = None
            continue
        if balanced is False:
            note("imbalance", f"round {summary['rounds']}: {days} day(s), not all balanced")
        if events < highest["events"]:
            note("decrease", f"attributed_events {highest['events']} -> {events}")
        if days < highest["days"]:
            note("decrease", f"reconciliation days {highest['days']} -> {days}")
        highest["events"] = max(highest["events"], events)
        highest["days"] = max(highest["days"], days)
        seen_counts.add(events)
        summary["last"] = {
            "events": events,
            "days": days,
            "territory_total": str(territory_total),
        }
        time.sleep(rng.uniform(0.01, 0.05))  # leave the writer some CPU
    if held is not None:
        held.close()
    summary["distinct_event_counts"] = sorted(seen_counts)
    Path(out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
