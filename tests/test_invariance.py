"""Invariance: how events arrive does not change what is published.

One fixed event set (generated, with bad records, equivalent duplicates, several
currencies, every event type and events on as-of boundaries) is published once,
in order, from one JSONL file, in one run: the baseline. Hypothesis then draws
arrangements of the same events: a permutation, exact copies of some records
added anywhere, a split into one or two successive runs into the same store (the
second one "late": often older events than those already published), and per run
a split into 1-4 files, each JSONL, CSV or Parquet. Every arrangement must publish
the baseline's facts, both views and their derived views, and reconciliation.

What legitimately differs, and is therefore not compared as such:

* ``run_id`` (facts, quarantine, pipeline_runs) and the runs' timestamps;
* a quarantined record's ``source`` and ``position``: each row is mapped back to
  the record it came from through the arrangement's own layout, then compared;
* ``raw`` of a record not in a JSONL file (CSV: rebuilt row; Parquet: null);
* the counts of each run: an exact copy of an accepted event is a duplicate in the
  run that sees it, and an event with no FX rate is never published, so a copy of
  it in a later run is quarantined again (docs/contract.md section 4). The counts
  of every run are computed from the arrangement and compared exactly.

Records whose text only JSON can carry (malformed lines, non-string values, a
missing key) stay in JSONL files; the others may be written as CSV or Parquet.
Conflicting duplicates are order dependent by contract (the first occurrence by
``(source, position)`` wins, an already published one first): they are removed
from the fixed set and tested on their own at the end of this module.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import io
import json
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, note, settings
from hypothesis import strategies as st

from pipelines.generate import generate_dataset
from schemas.events import EVENT_FIELDS, EVENT_TYPES, REQUIRED_FIELDS

pytestmark = pytest.mark.slow

EVENTS = 800
SEED = 12
FORMATS = ("jsonl", "csv", "parquet")
POST_DEDUPE_REASONS = ("no_fx_rate", "conflicting_duplicate")
VIEWS = (
    "territory_revenue", "account_manager_revenue", "territory_revenue_rollup",
    "territory_revenue_monthly", "account_manager_revenue_monthly",
    "territory_revenue_quarterly", "account_manager_revenue_quarterly", "reconciliation",
)

# Events on the as-of boundaries of the generated reference: ACC-000001 changes account
# manager at 2026-02-10T14:30:00Z (valid_from inclusive); 2026-03-31T22:30:00-05:00 is a
# UTC day, month and quarter later than its local date.
_HAND = {"deal_id": "opp-hand", "account_id": "ACC-000001", "currency": "USD"}
HAND_LINES = [
    {"event_id": "hand-1", "event_type": "deal_won", "event_time": "2026-02-10T14:30:00Z",
     "amount": "1000.00"},
    {"event_id": "hand-2", "event_type": "deal_amended",
     "event_time": "2026-02-10T14:29:59.999999Z", "amount": "-250.50"},
    {"event_id": "hand-3", "event_type": "deal_refunded",
     "event_time": "2026-02-10T09:30:00-05:00", "amount": "100.00", "currency": "EUR"},
    {"event_id": "hand-4", "event_type": "deal_reopened",
     "event_time": "2026-03-31T22:30:00-05:00", "amount": "700"},
    {"event_id": "hand-5", "event_type": "deal_won", "event_time": "2026-03-31T23:59:59Z",
     "amount": "5000", "currency": "JPY"},
    {"event_id": "hand-6", "event_type": "deal_lost", "event_time": "2026-04-01T00:00:00+00:00",
     "amount": "0", "stage": "", "product": None},
]


# ----------------------------------------------------------------------------- records


class _Number(str):
    """The text of a JSON number (``amount`` may be one)."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    if len({k for k, _ in pairs}) != len(pairs):
        raise ValueError("a key given twice")
    return dict(pairs)


def _no_constants(name: str) -> None:
    raise ValueError(name)


def portable_fields(line: bytes) -> dict[str, str | None] | None:
    """The contract fields of a JSONL line when CSV and Parquet can say exactly the same
    (strings, a JSON-number amount as its text, every required field non-empty, nothing
    a CSV cell would change); else None: the record stays in JSONL."""
    try:
        record = json.loads(line.decode("utf-8"), object_pairs_hook=_unique_keys,
                            parse_float=_Number, parse_int=_Number,
                            parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    fields: dict[str, str | None] = {}
    for name in EVENT_FIELDS:
        value = record.get(name)
        if name == "amount" and type(value) is _Number:
            value = str(value)
        if value is not None and type(value) is not str:
            return None
        if name in REQUIRED_FIELDS and not value:
            return None  # absent and empty are different details in JSON, not in CSV
        if value is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            return None
        fields[name] = value or None
    return fields


@dataclass(frozen=True)
class Record:
    line: bytes  # as generated, without the newline
    fields: dict[str, str | None] | None  # see portable_fields


@dataclass(frozen=True)
class EventFile:
    name: str
    fmt: str
    records: tuple[int, ...]  # indexes into the fixed set, in file order


def write_file(folder: Path, f: EventFile, records: list[Record]) -> Path:
    path = folder / f.name
    if f.fmt == "jsonl":
        path.write_bytes(b"".join(records[i].line + b"\n" for i in f.records))
    elif f.fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EVENT_FIELDS)
        for i in f.records:
            writer.writerow(["" if v is None else v for v in records[i].fields.values()])
        path.write_text(out.getvalue(), encoding="utf-8")
    else:
        rows = [records[i].fields for i in f.records]
        columns = {n: pa.array([r[n] for r in rows], pa.string()) for n in EVENT_FIELDS}
        pq.write_table(pa.table(columns), path)
    return path


def first_position(fmt: str) -> int:
    return 2 if fmt == "csv" else 1  # the CSV header is line 1


# ----------------------------------------------------------------------------- running


def run_embedded(events: Path, reference: Path, db: Path, batch_rows: int = 65536):
    from pipelines.embedded.run import run

    return run([f"--events={events}", f"--reference={reference}", f"--db={db}",
                "--checks=false", f"--batch_rows={batch_rows}"])


def run_beam(events: Path, reference: Path, db: Path, batch_rows: int = 65536):
    from pipelines.batch import run

    return run([f"--events={events}", f"--reference={reference}", f"--db={db}",
                "--checks=false", f"--batch_rows={batch_rows}", "--shards=4"])


def publish(runs: list[list[EventFile]], records: list[Record], reference: Path,
            root: Path, runner=run_embedded, batch_rows: tuple[int, ...] = ()
            ) -> tuple[Path, dict, list]:
    """Every run of an arrangement into one fresh store; (db, (source, position) ->
    (record, format), summaries)."""
    db = root / "revenue.duckdb"
    layout: dict[tuple[str, int], tuple[int, str]] = {}
    summaries = []
    for number, files in enumerate(runs, start=1):
        folder = root / f"run-{number}"
        folder.mkdir(parents=True)
        for f in files:
            path = write_file(folder, f, records)
            for offset, index in enumerate(f.records):
                layout[(str(path), first_position(f.fmt) + offset)] = (index, f.fmt)
        summaries.append(runner(folder, reference, db, *batch_rows[number - 1:number]))
    return db, layout, summaries


def published(db: Path) -> dict[str, list[tuple]]:
    """Facts (without run_id), every view, the quarantine and the runs, as rows."""
    with duckdb.connect(str(db), read_only=True) as con:
        out = {
            "facts": con.execute(
                "SELECT * EXCLUDE (run_id) FROM attributed_events ORDER BY event_id").fetchall(),
            **{v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall() for v in VIEWS},
            "quarantine": con.execute(
                "SELECT source, position, raw, reason, detail FROM quarantine").fetchall(),
            "runs": con.execute(
                "SELECT input_records, accepted, duplicates, quarantined, status"
                " FROM pipeline_runs ORDER BY started_at").fetchall(),
        }
    return out


# ----------------------------------------------------------------------------- the fixed set


@dataclass
class Baseline:
    records: list[Record]
    reference: Path
    snapshot: dict[str, list[tuple]]
    outcome: list[str]  # per record: "rejected" (by the checks), "no_fx_rate" or "event"
    event_id: list[str | None]  # per record that passed the checks
    rejected: dict[int, tuple[str, str, str | None]]  # record -> (reason, detail, raw)
    no_fx: dict[str, str]  # event_id -> detail
    event_time: dict[str, dt.datetime]  # event_id -> time, for published events


def _lines(folder: Path) -> list[bytes]:
    lines = []
    for path in sorted(folder.glob("*.jsonl")):
        lines += [line for line in path.read_bytes().split(b"\n") if line.strip()]
    return lines


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Baseline:
    root = tmp_path_factory.mktemp("invariance")
    generate_dataset(root / "gen", events=EVENTS, seed=SEED, bad_rate=0.05)
    reference = root / "gen" / "reference"
    lines = _lines(root / "gen" / "events")
    lines += [json.dumps({**_HAND, **h}).encode() for h in HAND_LINES]

    # The generated conflicting duplicates are order dependent by design: out.
    probe = root / "probe"
    probe.mkdir()
    (probe / "events.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    run_embedded(probe, reference, probe / "revenue.duckdb")
    conflicts = {position for _, position, _, reason, _ in
                 published(probe / "revenue.duckdb")["quarantine"]
                 if reason == "conflicting_duplicate"}
    assert conflicts, "the fixed set should have held a conflicting duplicate"
    lines = [line for n, line in enumerate(lines, start=1) if n not in conflicts]
    records = [Record(line, portable_fields(line)) for line in lines]

    runs = [[EventFile("events.jsonl", "jsonl", tuple(range(len(records))))]]
    db, layout, _ = publish(runs, records, reference, root / "baseline")
    snapshot = published(db)
    outcome, rejected, no_fx = ["event"] * len(records), {}, {}
    event_id: list[str | None] = [None] * len(records)
    for source, position, raw, reason, detail in snapshot["quarantine"]:
        index, _ = layout[(source, position)]
        if reason in POST_DEDUPE_REASONS:
            outcome[index] = reason
        else:
            outcome[index] = "rejected"
            rejected[index] = (reason, detail, raw)
    for index, record in enumerate(records):
        if outcome[index] != "rejected":
            event_id[index] = json.loads(record.line)["event_id"]
            if outcome[index] == "no_fx_rate":
                no_fx[event_id[index]] = next(
                    d for s, p, _, r, d in snapshot["quarantine"]
                    if layout[(s, p)][0] == index)
    event_time = {row[0]: row[2] for row in snapshot["facts"]}
    return Baseline(records, reference, snapshot, outcome, event_id, rejected, no_fx,
                    event_time)


def test_the_fixed_set_has_every_hard_case(baseline):
    facts = baseline.snapshot["facts"]
    assert {row[1] for row in facts} == set(EVENT_TYPES)
    assert len({row[6] for row in facts}) >= 5  # currencies
    reasons = {r for r, _, _ in baseline.rejected.values()}
    assert reasons >= {"malformed", "missing_field", "bad_type", "unknown_event_type",
                       "bad_timestamp", "bad_currency", "bad_amount"}
    assert baseline.no_fx
    ids = [i for i in baseline.event_id if i is not None]
    assert len(ids) > len(set(ids))  # duplicates, an equivalent one among them
    assert {"hand-1", "hand-2", "hand-4"} <= set(baseline.event_time)
    portable = sum(r.fields is not None for r in baseline.records)
    assert portable > 0.9 * len(baseline.records)
    assert [r[:4] for r in baseline.snapshot["runs"]] == [
        (len(baseline.records), len(facts),
         len(ids) - len(set(ids)), len(baseline.rejected) + len(baseline.no_fx))]


# ----------------------------------------------------------------------------- arrangements


@dataclass(frozen=True)
class Arrangement:
    runs: list[list[EventFile]]
    copies: int  # exact copies added
    late: str  # how the second run was chosen ("none" = one run)
    batch_rows: tuple[int, ...]  # of each run: how the readers chunk the files
    descents: int  # records placed right after a later record of the fixed set


@st.composite
def arrangements(draw, records: list[Record], event_time: dict, event_ids: list) -> Arrangement:
    n = len(records)
    order = list(draw(st.permutations(range(n))))
    copies = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=40))
    for index in copies:  # each copy lands anywhere: another file, the other run
        order.insert(draw(st.integers(0, len(order))), index)

    late = draw(st.sampled_from(["tail", "older", "none"]))
    if late == "tail":  # the last records of the arrangement arrive in a second run
        cut = draw(st.integers(1, len(order) - 1))
        batches = [order[:cut], order[cut:]]
    elif late == "older":  # the second run brings events older than published ones
        times = sorted(event_time.values())
        cutoff = times[draw(st.integers(len(times) // 10, len(times) * 9 // 10))]

        def is_old(i: int) -> bool:
            t = event_time.get(event_ids[i])
            return t is not None and t < cutoff

        batches = [[i for i in order if not is_old(i)], [i for i in order if is_old(i)]]
    else:
        batches = [order]

    runs, batch_rows = [], []
    for number, batch in enumerate(batches, start=1):
        batch_rows.append(draw(st.sampled_from([65536, 50, 7])))
        n_files = draw(st.sampled_from([3, 1, 4, 2]))
        cuts = sorted(draw(st.lists(st.integers(0, len(batch)), min_size=n_files - 1,
                                    max_size=n_files - 1)))
        chunks = [batch[a:b] for a, b in zip([0, *cuts], [*cuts, len(batch)], strict=True)]
        files, spill = [], []
        for k, chunk in enumerate(chunks):
            fmt = draw(st.sampled_from(FORMATS if k else FORMATS[::-1]))
            if fmt != "jsonl":  # what only JSON can say stays in JSONL
                spill += [i for i in chunk if records[i].fields is None]
                chunk = [i for i in chunk if records[i].fields is not None]
            # Names sort in another order than the chunks.
            name = f"{number}-{draw(st.integers(0, 99)):02d}-{k}.{fmt}"
            if chunk:
                files.append(EventFile(name, fmt, tuple(chunk)))
        if spill:
            files.append(EventFile(f"{number}-spill.jsonl", "jsonl", tuple(spill)))
        runs.append(files)
    descents = sum(a > b for a, b in zip(order, order[1:], strict=False))
    return Arrangement(runs, len(copies), late, tuple(batch_rows), descents)


def expected_runs(baseline: Baseline, runs: list[list[EventFile]]) -> list[tuple]:
    """(input, accepted, duplicates, quarantined) of each run, from the contract."""
    out, published_ids = [], set()
    for files in runs:
        seen: set[str] = set()
        counts = collections.Counter()
        for index in (i for f in files for i in f.records):
            counts["input"] += 1
            eid = baseline.event_id[index]
            if baseline.outcome[index] == "rejected":
                counts["quarantined"] += 1
            elif eid in published_ids or eid in seen:
                counts["duplicates"] += 1
            else:
                seen.add(eid)
                counts["quarantined" if eid in baseline.no_fx else "accepted"] += 1
        published_ids |= seen - set(baseline.no_fx)
        out.append((counts["input"], counts["accepted"], counts["duplicates"],
                    counts["quarantined"]))
    return out


TALLY: collections.Counter = collections.Counter()


def check_against_baseline(baseline: Baseline, arrangement: Arrangement, got: dict,
                           layout: dict) -> None:
    for name in ("facts", *VIEWS):
        assert got[name] == baseline.snapshot[name], f"{name} differs from the baseline"

    # Every quarantined record is one the baseline quarantined, for the same reason.
    rows, copies = set(), collections.Counter()
    for source, position, raw, reason, detail in got["quarantine"]:
        index, fmt = layout[(source, position)]
        if reason in POST_DEDUPE_REASONS:
            assert reason == "no_fx_rate", f"{reason} for record {index}"
            rows.add((baseline.event_id[index], reason, detail))
        else:
            rows.add((index, reason, detail))
            copies[index] += 1
            if fmt == "jsonl":
                assert raw == baseline.rejected[index][2], f"raw of record {index}"
    want = {(i, r, d) for i, (r, d, _) in baseline.rejected.items()}
    want |= {(eid, "no_fx_rate", d) for eid, d in baseline.no_fx.items()}
    assert rows == want
    placed = collections.Counter(i for files in arrangement.runs for f in files
                                 for i in f.records)
    assert copies == {i: placed[i] for i in baseline.rejected}  # each copy, once

    runs = got["runs"]
    assert [r[:4] for r in runs] == expected_runs(baseline, arrangement.runs)
    for input_records, accepted, duplicates, quarantined, status in runs:
        assert input_records == accepted + duplicates + quarantined
        assert status == "succeeded"
    assert sum(r[1] for r in runs) == len(baseline.snapshot["facts"])


def describe(arrangement: Arrangement, baseline: Baseline) -> None:
    """Notes for a failing example; tallies for the closing note."""
    TALLY["arrangements"] += 1
    TALLY["runs"] += len(arrangement.runs)
    TALLY["copies"] += arrangement.copies
    TALLY["shuffled (over a third of the records out of order)"] += (
        arrangement.descents > len(baseline.records) // 3)
    note(f"batch_rows {arrangement.batch_rows}, {arrangement.descents} descents")
    TALLY[f"late={arrangement.late}"] += 1
    for number, files in enumerate(arrangement.runs, start=1):
        TALLY["files"] += len(files)
        for f in files:
            TALLY[f"format={f.fmt}"] += 1
        note(f"run {number}: " + ", ".join(f"{f.name}[{len(f.records)}]" for f in files))
    if len(arrangement.runs) == 2:
        first = [baseline.event_time.get(baseline.event_id[i]) for f in arrangement.runs[0]
                 for i in f.records]
        second = [baseline.event_time.get(baseline.event_id[i]) for f in arrangement.runs[1]
                  for i in f.records]
        newest = max((t for t in first if t is not None), default=None)
        if newest and any(t is not None and t < newest for t in second):
            TALLY["late runs with events older than published ones"] += 1
            event("late run with events older than published ones")
    event(f"{sum(len(r) for r in arrangement.runs)} files in {len(arrangement.runs)} run(s)")


@pytest.fixture(scope="module", autouse=True)
def _report_tally():
    yield
    if TALLY:
        print("\ninvariance arrangements:", dict(sorted(TALLY.items())))


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)  # 800-record examples: no shrinking


@settings(max_examples=18, deadline=None, derandomize=True, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_any_arrangement_publishes_the_baseline(baseline, data):
    arrangement = data.draw(arrangements(baseline.records, baseline.event_time,
                                         baseline.event_id), label="arrangement")
    describe(arrangement, baseline)
    with tempfile.TemporaryDirectory(prefix="invariance-") as folder:
        db, layout, _ = publish(arrangement.runs, baseline.records, baseline.reference,
                                Path(folder), batch_rows=arrangement.batch_rows)
        got = published(db)
    check_against_baseline(baseline, arrangement, got, layout)


# ----------------------------------------------------------------------------- conflicts
#
# A repeat of an event_id with another payload is not invariant, by contract
# (docs/contract.md section 4): the first occurrence wins, an already published event
# first, else the smallest (source path, position). Which version is published thus
# depends on file names, lines and runs, and is tested as such; what does not depend
# on them: one version published, the others quarantined, the counts balanced, and the
# way the files are chunked.

WON = {"event_type": "deal_won", "event_time": "2026-03-02T10:00:00Z", **_HAND}
ONE = {**WON, "event_id": "c-1", "amount": "100.00"}
OTHER = {**WON, "event_id": "c-1", "amount": "250.00"}


def publish_records(baseline: Baseline, root: Path, runs: list[dict[str, list[dict]]],
                    batch_rows: int = 65536) -> dict[str, list[tuple]]:
    """Hand-written records, ``{file name: records}`` per run, into one fresh store."""
    db = root / "revenue.duckdb"
    for number, files in enumerate(runs, start=1):
        folder = root / f"run-{number}"
        folder.mkdir(parents=True)
        for name, rows in files.items():
            (folder / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        run_embedded(folder, baseline.reference, db, batch_rows)
    got = published(db)
    for input_records, accepted, duplicates, quarantined, status in got["runs"]:
        assert input_records == accepted + duplicates + quarantined
        assert status == "succeeded"
    return got


def winner_and_losers(got: dict[str, list[tuple]]) -> tuple[str, list[tuple[str, int]]]:
    [fact] = [row for row in got["facts"] if row[0] == "c-1"]
    losers = sorted((Path(s).name, p) for s, p, _, reason, _ in got["quarantine"]
                    if reason == "conflicting_duplicate")
    return str(fact[7]), losers


@pytest.mark.parametrize(("lines", "winner"), [((ONE, OTHER), "100.000"),
                                                ((OTHER, ONE), "250.000")])
def test_in_one_file_the_first_line_of_a_conflicting_pair_wins(baseline, tmp_path,
                                                               lines, winner):
    got = publish_records(baseline, tmp_path, [{"e.jsonl": list(lines)}])
    assert winner_and_losers(got) == (winner, [("e.jsonl", 2)])


@pytest.mark.parametrize("batch_rows", [1, 65536])
def test_across_files_the_smallest_path_wins_however_the_files_are_chunked(
        baseline, tmp_path, batch_rows):
    runs = [{"b.jsonl": [ONE, ONE], "a.jsonl": [{**ONE, "event_id": "x"}, OTHER]}]
    got = publish_records(baseline, tmp_path, runs, batch_rows)
    # a.jsonl:2 sorts before b.jsonl:1; the exact copy of the loser conflicts too.
    assert winner_and_losers(got) == ("250.000", [("b.jsonl", 1), ("b.jsonl", 2)])
    assert [r[:4] for r in got["runs"]] == [(4, 2, 0, 2)]


@pytest.mark.parametrize(("first", "second"), [(ONE, OTHER), (OTHER, ONE)])
def test_an_already_published_version_wins_over_any_later_file(baseline, tmp_path,
                                                               first, second):
    runs = [{"z.jsonl": [first]}, {"a.jsonl": [second]}]  # a.jsonl would sort first
    got = publish_records(baseline, tmp_path, runs)
    assert winner_and_losers(got) == (f"{Decimal(first['amount']):.3f}", [("a.jsonl", 1)])
    assert [r[:4] for r in got["runs"]] == [(1, 1, 0, 0), (1, 0, 0, 1)]
    booked = [row for row in got["territory_revenue"] if row[1] == dt.date(2026, 3, 2)]
    assert sum(row[2] for row in booked) == Decimal(first["amount"])


def test_a_version_without_fx_rate_is_not_published_so_a_later_run_publishes_another(
        baseline, tmp_path):
    """Only a *published* event counts as the first occurrence: the same two records in
    one run publish nothing (no FX rate, conflict), in two runs the second one."""
    no_rate = {**ONE, "currency": "CHF"}
    together = publish_records(baseline, tmp_path / "one", [{"e.jsonl": [no_rate, OTHER]}])
    assert not [row for row in together["facts"] if row[0] == "c-1"]
    assert sorted(q[3] for q in together["quarantine"]) == ["conflicting_duplicate",
                                                             "no_fx_rate"]
    apart = publish_records(baseline, tmp_path / "two",
                            [{"e.jsonl": [no_rate]}, {"e.jsonl": [OTHER]}])
    assert winner_and_losers(apart) == ("250.000", [])


def test_equivalent_repeats_are_duplicates_within_a_run_and_across_runs(baseline, tmp_path):
    """Same payload as typed values, other text: never a conflict, wherever it arrives."""
    base = {**WON, "event_id": "e-1", "event_time": "2026-03-02T15:00:00+05:00",
            "amount": "1500.5", "stage": "", "currency": "USD"}
    variants = [
        {**base, "event_time": "2026-03-02T10:00:00Z", "amount": "1500.500"},
        {**base, "event_time": "2026-03-02 10:00:00.000000+00:00", "amount": "+1500.50",
         "stage": None},
        {k: v for k, v in base.items() if k != "stage"},
    ]
    together = publish_records(baseline, tmp_path / "one", [{"e.jsonl": [base, *variants]}])
    apart = publish_records(baseline, tmp_path / "two",
                            [{"e.jsonl": [base]}, {"e.jsonl": variants}])
    for got in (together, apart):
        assert not got["quarantine"]
    assert [r[:4] for r in together["runs"]] == [(4, 1, 3, 0)]
    assert [r[:4] for r in apart["runs"]] == [(1, 1, 0, 0), (3, 0, 3, 0)]
    for name in ("facts", *VIEWS):
        assert together[name] == apart[name], name


# ----------------------------------------------------------------------------- Beam


def provenance_rows(got: dict[str, list[tuple]], root: Path) -> list[tuple]:
    """The quarantine with its file (relative to the arrangement's folder) and line."""
    prefix = f"{root}/"
    return sorted((s.removeprefix(prefix), p, raw, reason, d.replace(prefix, ""))
                  for s, p, raw, reason, d in got["quarantine"])


@settings(max_examples=2, deadline=None, derandomize=True, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_the_beam_graph_publishes_what_the_engine_does_for_an_arrangement(baseline, data):
    arrangement = data.draw(arrangements(baseline.records, baseline.event_time,
                                         baseline.event_id), label="arrangement")
    # Beam's two examples are worth it only shuffled and late (drawn again otherwise).
    assume(len(arrangement.runs) == 2 and arrangement.descents > len(baseline.records) // 3)
    describe(arrangement, baseline)
    TALLY["arrangements through Beam"] += 1
    batch_rows = (128,) * len(arrangement.runs)  # several Beam bundles, not hundreds
    got, layouts = {}, {}
    with tempfile.TemporaryDirectory(prefix="invariance-") as folder:
        for name, runner in (("engine", run_embedded), ("beam", run_beam)):
            root = Path(folder) / name
            db, layouts[name], _ = publish(arrangement.runs, baseline.records,
                                           baseline.reference, root, runner, batch_rows)
            got[name] = published(db)
            got[name]["quarantine rows"] = provenance_rows(got[name], root)
    for name in ("facts", *VIEWS, "quarantine rows"):
        assert got["beam"][name] == got["engine"][name], f"{name}: Beam differs"
    assert [r[:4] for r in got["beam"]["runs"]] == [r[:4] for r in got["engine"]["runs"]]
    check_against_baseline(baseline, arrangement, got["beam"], layouts["beam"])


# ----------------------------------------------------------------------------- reused file names


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_a_late_run_through_the_same_landing_file_keeps_every_quarantined_record(
        baseline, tmp_path, fmt):
    """Two different records with no FX rate, at line 1 of ``landing/events.<fmt>``, one
    per run: both must be quarantined (in one run they are), as pipeline_runs says."""
    db, landing = tmp_path / "revenue.duckdb", tmp_path / "landing"
    landing.mkdir()
    for event_id in ("q-1", "q-2"):
        fields = {name: None for name in EVENT_FIELDS}
        fields.update({**ONE, "event_id": event_id, "currency": "CHF"})
        records = [Record(json.dumps(fields).encode(), fields)]
        for old in landing.iterdir():
            old.unlink()
        write_file(landing, EventFile(f"events.{fmt}", fmt, (0,)), records)
        run_embedded(landing, baseline.reference, db)
    got = published(db)
    assert [r[:4] for r in got["runs"]] == [(1, 0, 0, 1), (1, 0, 0, 1)]
    assert len(got["quarantine"]) == 2
