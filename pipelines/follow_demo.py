"""A 30-second demo of follow mode: files land, a reader with one open connection sees them.

    python -m pipelines.follow_demo            # or: make follow-demo
    python -m pipelines.follow_demo --files 10 --interval 0.5

Under ``out/follow-demo/``: a small data set is generated once (``data/``), then,
starting from an empty landing folder and database every time:

* ``revattr follow --landing out/follow-demo/landing --db out/follow-demo/revenue.duckdb``
  runs in a subprocess (its log: ``out/follow-demo/follower.log``);
* a producer drops one JSONL file per second (``name.jsonl.tmp``, then renamed);
* a reader opens the catalog read-only ONCE and, every second, prints the top
  territories by booked revenue, the events published and whether every day's
  reconciliation is balanced.

At the end the follower is stopped with SIGTERM (it finishes its batch) and the
demo prints how to query the database. Ctrl-C stops everything cleanly too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ROOT = Path("out/follow-demo")
FILES = 30
EVENTS_PER_FILE = 1_000
INTERVAL = 1.0
SEED, BAD_RATE = 7, 0.01
TOP = 5

TOP_SQL = f"""
SELECT r.territory_id, any_value(t.territory_name) AS name, sum(r.booked_revenue) AS booked
FROM territory_revenue r LEFT JOIN territories t USING (territory_id)
GROUP BY r.territory_id ORDER BY booked DESC, r.territory_id LIMIT {TOP}"""
TOTALS_SQL = """
SELECT (SELECT count(*) FROM attributed_events),
       (SELECT count(*) FROM quarantine),
       (SELECT count(*) FROM pipeline_runs),
       (SELECT count(*) FILTER (WHERE NOT balanced) FROM reconciliation),
       (SELECT count(*) FROM reconciliation)"""


def ensure_data(root: Path, events: int, say) -> Path:  # noqa: ANN001
    """``root/data``: ``generate_dataset(events, seed 7, 1% bad)``, generated once."""
    data = root / "data"
    manifest = data / "manifest.json"
    if manifest.is_file():
        recorded = json.loads(manifest.read_text())
        args = recorded.get("args", {})
        if (args.get("events") == events and recorded.get("seed") == SEED
                and args.get("bad_rate") == BAD_RATE):
            return data
    from pipelines.generate import generate_dataset

    say(f"generating {events:,} events into {data} ...")
    shutil.rmtree(data, ignore_errors=True)
    generate_dataset(data, events=events, seed=SEED, bad_rate=BAD_RATE)
    return data


def split_lines(data: Path, files: int, per_file: int) -> list[bytes]:
    manifest = json.loads((data / "manifest.json").read_text())
    lines: list[bytes] = []
    for name in manifest["files"]:
        lines += (data / name).read_bytes().splitlines(keepends=True)
    return [b"".join(lines[i * per_file:(i + 1) * per_file]) for i in range(files)]


class Producer(threading.Thread):
    """Drops ``chunks`` into ``landing``, one per ``interval``; ``stop`` ends it early."""

    def __init__(self, landing: Path, chunks: list[bytes], interval: float) -> None:
        super().__init__(daemon=True)
        self.landing, self.chunks, self.interval = landing, chunks, interval
        self.dropped = 0
        self.stop = threading.Event()

    def run(self) -> None:
        for n, chunk in enumerate(self.chunks):
            if self.stop.wait(self.interval if n else 0):
                return
            final = self.landing / f"demo-{n:04d}.jsonl"
            tmp = final.with_name(final.name + ".tmp")
            tmp.write_bytes(chunk)
            os.replace(tmp, final)
            self.dropped += 1


def applied_count(landing: Path) -> int:
    folder = landing / "applied"
    return sum(1 for p in folder.iterdir() if p.suffix == ".jsonl") if folder.is_dir() else 0


def quarantined_count(landing: Path) -> int:
    folder = landing / "quarantine"
    return sum(1 for p in folder.iterdir() if p.suffix == ".jsonl") if folder.is_dir() else 0


def snapshot(con) -> tuple[list[tuple], tuple]:  # noqa: ANN001 (duckdb connection)
    return con.execute(TOP_SQL).fetchall(), con.execute(TOTALS_SQL).fetchall()[0]


def render(top: list[tuple], totals: tuple, elapsed: float, dropped: int, applied: int):  # noqa: ANN201
    from rich.table import Table

    facts, quarantined, versions, unbalanced, days = totals
    balanced = "all balanced" if not unbalanced else f"[red]{unbalanced} day(s) unbalanced[/]"
    table = Table(title=f"t+{elapsed:4.0f}s  files dropped {dropped}, applied {applied}  |  "
                        f"version {versions}, {facts:,} events, {quarantined:,} quarantined  |  "
                        f"reconciliation: {balanced} ({days} days)",
                  title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("territory")
    table.add_column("name")
    table.add_column("booked revenue (USD)", justify="right")
    for rank, (territory, name, booked) in enumerate(top, 1):
        table.add_row(str(rank), territory, name or "", f"{booked:,.2f}")
    return table


def plain(top: list[tuple], totals: tuple, elapsed: float, dropped: int, applied: int) -> str:
    facts, quarantined, versions, unbalanced, days = totals
    leaders = ", ".join(f"{t} {b:,.0f}" for t, _, b in top) or "(nothing yet)"
    state = "all balanced" if not unbalanced else f"{unbalanced} day(s) UNBALANCED"
    return (f"t+{elapsed:3.0f}s dropped {dropped:2d} applied {applied:2d} | v{versions} "
            f"{facts:,} events, {quarantined} quarantined, reconciliation {state} | "
            f"top: {leaders}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.follow_demo",
                                     description="A short visual demo of revattr follow.")
    parser.add_argument("--root", default=str(ROOT), help="working folder (default %(default)s)")
    parser.add_argument("--files", type=int, default=FILES)
    parser.add_argument("--events-per-file", type=int, default=EVENTS_PER_FILE)
    parser.add_argument("--interval", type=float, default=INTERVAL,
                        help="seconds between two files, and between two reader refreshes")
    parser.add_argument("--plain", action="store_true", help="plain lines, no live table")
    args = parser.parse_args(argv)
    import duckdb
    from rich.console import Console
    from rich.live import Live

    console = Console(highlight=False)
    say = console.print
    root = Path(args.root)
    landing, db = root / "landing", root / "revenue.duckdb"
    data = ensure_data(root, args.files * args.events_per_file, say)
    chunks = split_lines(data, args.files, args.events_per_file)
    for stale in (landing, db.with_name(db.name + ".d")):  # every demo starts from nothing
        shutil.rmtree(stale, ignore_errors=True)
    db.unlink(missing_ok=True)
    landing.mkdir(parents=True)
    log_path = root / "follower.log"
    command = [sys.executable, "-m", "pipelines.cli", "follow", f"--landing={landing}",
               f"--reference={data / 'reference'}", f"--db={db}", "--poll-seconds=0.2"]
    say(f"[bold]follow demo[/]: {args.files} files of {args.events_per_file:,} events, one "
        f"every {args.interval:g}s\n  follower: revattr follow --landing {landing} "
        f"--reference {data / 'reference'} --db {db}  (log: {log_path})")
    log = open(log_path, "wb")  # noqa: SIM115 (closed in finally)
    follower = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    producer = Producer(landing, chunks, args.interval)
    con = None
    started = time.monotonic()
    interrupted = False
    try:
        # Ready: the catalog exists and the reference is loaded (and checked).
        while not (db.exists() and b"reference loaded" in log_path.read_bytes()):
            if follower.poll() is not None:
                say(f"[red]the follower exited with code {follower.returncode}[/]; "
                    f"see {log_path}")
                return 1
            if time.monotonic() - started > 120:
                say("[red]the follower did not start within 120 s[/]")
                return 1
            time.sleep(0.1)
        con = duckdb.connect(str(db), read_only=True)  # one connection for the whole demo
        say(f"  reader: one read-only connection to {db}, refreshed every {args.interval:g}s\n")
        producer.start()
        started = time.monotonic()
        live = console.is_terminal and not args.plain
        deadline = None
        with Live(console=console, auto_refresh=False) if live else _Null() as view:
            while True:
                top, totals = snapshot(con)
                elapsed = time.monotonic() - started
                applied = applied_count(landing)
                if live:
                    view.update(render(top, totals, elapsed, producer.dropped, applied),
                                refresh=True)
                else:
                    print(plain(top, totals, elapsed, producer.dropped, applied), flush=True)
                finished = applied + quarantined_count(landing) >= len(chunks)
                if finished and totals[2] and not producer.is_alive():
                    break
                if follower.poll() is not None:
                    say(f"[red]the follower exited with code {follower.returncode}[/]; "
                        f"see {log_path}")
                    break
                if not producer.is_alive():
                    deadline = deadline or time.monotonic() + 60
                    if time.monotonic() > deadline:
                        say("[red]the follower did not apply every file within 60 s[/]")
                        break
                time.sleep(args.interval)
    except KeyboardInterrupt:
        interrupted = True
        say("\ninterrupted: stopping")
    finally:
        producer.stop.set()
        if producer.is_alive():
            producer.join(5)
        if follower.poll() is None:
            follower.terminate()  # SIGTERM: the follower finishes its batch and exits
            try:
                follower.wait(60)
            except subprocess.TimeoutExpired:
                follower.kill()
                follower.wait()
        log.close()
        if con is not None:
            con.close()
    say(f"\nfollower stopped (exit code {follower.returncode}); its log: {log_path}")
    if db.exists():
        _explain(say, db)
    return 0 if follower.returncode == 0 and not interrupted else 1


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def _explain(say, db: Path) -> None:  # noqa: ANN001
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path.cwd())
    except ValueError:
        pass
    query = ("SELECT territory_id, sum(booked_revenue) AS booked FROM territory_revenue "
             "GROUP BY 1 ORDER BY 2 DESC LIMIT 5")
    say(f"""[bold]the database:[/] {db}  (a catalog of views over {db}.d/published/)
query it read-only, even while a follower is running:
  duckdb CLI (if installed, same major version as the duckdb Python package):
    duckdb -readonly {db} "{query}"
  Python:
    {python} -c "import duckdb; con = duckdb.connect('{db}', read_only=True); \\
print(con.sql('{query}'))"
relations: attributed_events, territory_revenue, account_manager_revenue, reconciliation,
  quarantine, pipeline_runs, dq_results, territory_revenue_rollup and the reference tables""",
        soft_wrap=True)


if __name__ == "__main__":
    sys.exit(main())
