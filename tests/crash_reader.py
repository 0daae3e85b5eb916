"""A BI-style reader of a ``--db`` catalog while runs are killed, run as a subprocess by
tests/test_crash_anywhere.py.

    python tests/crash_reader.py DB STOP_FILE OUT_JSON SEED ALLOWED_JSON

Loops until ``STOP_FILE`` exists. Each round ("snapshot") opens the catalog read-only
(a fresh connection, or one kept open across rounds, at random) and checks what a
reader must always see, whatever the writer is doing or however it died:

* single relations, always: ``reconciliation`` has no unbalanced day; every
  ``pipeline_runs`` row is a complete, succeeded run with ``input_records =
  accepted + duplicates + quarantined``; the facts' (count, booked revenue) is one
  of ``ALLOWED_JSON``'s states (those of the uninterrupted run's versions);
* across relations, when no version was committed while the round ran (the
  highest commit marker is the same before and after it; relations are read at
  query time, so two of them may otherwise be read at consecutive versions): the
  two views and the facts tie out to the cent with the reconciliation, every
  visible run's facts are all there (per run, facts = ``accepted``) and its
  quarantine is no larger than its ``quarantined`` count.

A missing catalog (a first run not yet prepared) is counted, not an error.
Writes a JSON summary to ``OUT_JSON``: snapshots, cross-checked snapshots,
errors and violations (with a few samples each).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from decimal import Decimal
from pathlib import Path

import duckdb

COMMIT = re.compile(r"v(\d{12})\.json$")
# One DuckDB thread: a reader's small queries cost a quarter less CPU than on every core,
# CPU the writer it watches (and the other tests of a 2-core machine) then has.
ONE_THREAD = {"threads": 1}


def highest_marker(commits: Path) -> int:
    try:
        names = [p.name for p in commits.iterdir()]
    except FileNotFoundError:
        return -1
    return max((int(m[1]) for n in names if (m := COMMIT.search(n))), default=-1)


def snapshot(con: duckdb.DuckDBPyConnection) -> dict:
    def one(sql: str) -> tuple:
        return con.execute(sql).fetchall()[0]

    facts, booked = one("SELECT count(*), coalesce(sum(booked_revenue), 0) FROM attributed_events")
    (territory,) = one("SELECT coalesce(sum(booked_revenue), 0) FROM territory_revenue")
    (manager,) = one("SELECT coalesce(sum(booked_revenue), 0) FROM account_manager_revenue")
    days, unbalanced, events_total = one(
        "SELECT count(*), count(*) FILTER (WHERE NOT balanced), coalesce(sum(events_total), 0) "
        "FROM reconciliation")
    runs = con.execute(
        "SELECT run_id, input_records, accepted, duplicates, quarantined, status "
        "FROM pipeline_runs").fetchall()
    facts_by_run = dict(con.execute(
        "SELECT run_id, count(*) FROM attributed_events GROUP BY run_id").fetchall())
    quarantine_by_run = dict(con.execute(
        "SELECT run_id, count(*) FROM quarantine GROUP BY run_id").fetchall())
    return {"facts": facts, "booked": Decimal(booked), "territory": Decimal(territory),
            "manager": Decimal(manager), "days": days, "unbalanced": unbalanced,
            "events_total": Decimal(events_total), "runs": runs, "facts_by_run": facts_by_run,
            "quarantine_by_run": quarantine_by_run}


def violations(s: dict, allowed: set[tuple[int, str]], cross: bool) -> list[str]:
    found = []
    if s["unbalanced"]:
        found.append(f"{s['unbalanced']} unbalanced day(s) in reconciliation")
    for run_id, records, accepted, duplicates, quarantined, status in s["runs"]:
        if status != "succeeded":
            found.append(f"run {run_id} visible with status {status}")
        if records != accepted + duplicates + quarantined:
            found.append(f"run {run_id}: {records} != {accepted}+{duplicates}+{quarantined}")
    if (s["facts"], str(s["booked"])) not in allowed:
        found.append(f"facts state ({s['facts']}, {s['booked']}) is no committed version's")
    if not cross:
        return found
    totals = {s["booked"], s["territory"], s["manager"], s["events_total"]}
    if len(totals) != 1:
        found.append(f"views do not tie out: facts {s['booked']}, territory {s['territory']}, "
                     f"manager {s['manager']}, reconciliation {s['events_total']}")
    accepted = {r[0]: r[2] for r in s["runs"]}
    for run_id, count in s["facts_by_run"].items():
        if accepted.get(run_id) != count:
            found.append(f"run {run_id}: {count} facts visible, run row says "
                         f"{accepted.get(run_id)}")
    missing = [r for r, n in accepted.items() if n and r not in s["facts_by_run"]]
    if missing:
        found.append(f"runs {missing} visible without their facts")
    quarantined = {r[0]: r[4] for r in s["runs"]}
    for run_id, count in s["quarantine_by_run"].items():
        if count > quarantined.get(run_id, -1):
            found.append(f"run {run_id}: {count} quarantine rows, run row says "
                         f"{quarantined.get(run_id)}")
    return found


def main(db: str, stop_file: str, out: str, seed: int, allowed_json: str) -> None:
    rng = random.Random(seed)
    allowed = {(n, b) for n, b in json.loads(Path(allowed_json).read_text())}
    catalog, stop = Path(db), Path(stop_file)
    commits = catalog.with_name(catalog.name + ".d") / "published" / "_commits"
    summary = {"snapshots": 0, "cross_checked": 0, "absent": 0, "errors": 0,
               "violations": 0, "samples": [], "versions_seen": []}
    versions: set[int] = set()
    held: duckdb.DuckDBPyConnection | None = None

    def note(kind: str, text: str) -> None:
        summary[kind] += 1
        if len(summary["samples"]) < 10:
            summary["samples"].append(f"{kind}: {text}"[:600])

    while not stop.exists():
        if not catalog.exists():
            summary["absent"] += 1
            time.sleep(0.01)
            continue
        before = highest_marker(commits)
        try:
            if held is None and rng.random() < 0.5:
                held = duckdb.connect(str(catalog), read_only=True, config=ONE_THREAD)
            con = held or duckdb.connect(str(catalog), read_only=True, config=ONE_THREAD)
            try:
                s = snapshot(con)
            finally:
                if con is not held:
                    con.close()
        except Exception as error:  # noqa: BLE001 - every failure is what we count
            note("errors", f"{type(error).__name__}: {error}")
            if held is not None:
                held.close()
                held = None
            continue
        after = highest_marker(commits)
        summary["snapshots"] += 1
        cross = before == after
        summary["cross_checked"] += cross
        if cross:
            versions.add(after)
        for problem in violations(s, allowed, cross):
            note("violations", problem)
        if held is not None and rng.random() < 0.2:  # now and then, a new held connection
            held.close()
            held = None
        time.sleep(rng.uniform(0.03, 0.08))  # leave the writer some CPU
    if held is not None:
        held.close()
    summary["versions_seen"] = sorted(versions)
    Path(out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
