"""The embedded engine stages exactly what the Beam graph stages, on the same inputs.

Inputs mix every quarantine reason, duplicates (identical, equivalent and
conflicting, within the run and against published history), late and
out-of-order events, and the lines only the reader's own code can judge
(repeated keys, nesting, NaN, escapes, BOM, CRLF, blank lines, JSON-number
amounts), in JSONL, CSV and Parquet (string and typed columns).
"""

from __future__ import annotations

import glob
import json
from decimal import Decimal
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.batch import GraphSettings, build_graph
from pipelines.embedded.engine import stage_embedded
from pipelines.generate import generate_dataset
from pipelines.io.reference_loader import load_reference
from pipelines.io.staging import STAGED_OUTPUTS, part_files
from pipelines.rules.dedupe import PUBLISHED_SOURCE
from pipelines.rules.enrich import EnrichmentTimelines
from schemas.events import PAYLOAD_FIELDS

pytestmark = pytest.mark.slow

RUN_ID = "20260301T120000Z-engine"
BATCH_ROWS = 400  # several Beam bundles per file
DQ_COLUMNS = ["stage", "suite", "expectation", "severity", "success"]
DATA_OUTPUTS = tuple(n for n in STAGED_OUTPUTS if n != "dq_results")

GOOD = {"event_id": "h-1", "event_type": "deal_won", "event_time": "2026-01-05T10:00:00Z",
        "deal_id": "opp-1", "account_id": "ACC-000001", "amount": "100.00", "currency": "USD"}


def _line(**changes: object) -> str:
    record = {**GOOD, **changes}
    return json.dumps({k: v for k, v in record.items() if v is not _DROP})


_DROP = object()

# (line text) for the hard-cases file: each judged by the reader's code or the SQL fast path.
HARD_LINES: list[str] = [
    _line(event_id="h-plain"),
    _line(event_id="h-number", amount=12.5).replace('"amount": 12.5', '"amount": 12.50'),
    '{"event_id": "h-num3", "event_type": "deal_won", "event_time": "2026-01-05T10:00:00Z", '
    '"deal_id": "d", "account_id": "ACC-000002", "amount": 9999999999999.999, "currency": "OMR"}',
    _line(event_id="h-exp").replace('"100.00"', "1e3"),
    _line(event_id="h-dup-key")[:-1] + ', "event_id": "h-dup-key"}',
    _line(event_id="h-dup-extra")[:-1] + ', "x": 1, "x": 2}',
    _line(event_id="h-nested")[:-1] + ', "meta": {"a": 1, "b": [1, 2]}}',
    _line(event_id="h-nested-dup")[:-1] + ', "meta": {"a": 1, "a": 2}}',
    _line(event_id="h-nan")[:-1] + ', "x": NaN}',
    _line(event_id="h-trailing")[:-1] + ', }',
    _line(event_id="h-escape", deal_id="d\u00e9\\u00e9"),
    _line(event_id="h-surrogate").replace('"opp-1"', '"\\ud800"'),
    _line(event_id="h-lower-t", event_time="2026-01-05t10:00:00z"),
    _line(event_id="h-space-t", event_time="2026-01-05 10:00:00+02:00"),
    _line(event_id="h-nanos", event_time="2026-01-05T10:00:00.123456789Z"),
    _line(event_id="h-leap", event_time="2026-06-30T23:59:60Z"),
    _line(event_id="h-feb30", event_time="2026-02-30T10:00:00Z"),
    _line(event_id="h-no-offset", event_time="2026-01-05T10:00:00"),
    _line(event_id="h-year1", event_time="0001-01-01T00:30:00+01:00"),
    _line(event_id="h-year9999", event_time="9999-12-31T23:30:00-01:00"),
    _line(event_id="h-offset", event_time="2026-01-05T23:30:00-05:00"),
    _line(event_id="h-plus", amount="+5.00"),
    _line(event_id="h-zeros", amount="007.50"),
    _line(event_id="h-trailing-zeros", amount="7.5000"),
    _line(event_id="h-jpy", currency="JPY", amount="100.50"),
    _line(event_id="h-jpy-ok", currency="JPY", amount="100.00"),
    _line(event_id="h-huge", amount="12345678901234.00"),
    _line(event_id="h-sign", event_type="deal_refunded", amount="-5.00"),
    _line(event_id="h-zero-amend", event_type="deal_amended", amount="0.00"),
    _line(event_id="h-neg-amend", event_type="deal_amended", amount="-3.25"),
    _line(event_id="h-blank-id", deal_id="   "),
    _line(event_id="h-nbsp-id", deal_id="\u00a0"),
    _line(event_id="h-tab-id", deal_id="\t"),
    _line(event_id="h-unicode-id", account_id="ÄCC-1"),
    _line(event_id="h-" + "x" * 126),
    _line(event_id="h-" + "x" * 127),
    _line(event_id="h-bool", deal_id=True),
    _line(event_id="h-null", stage=None, product=""),
    _line(event_id="h-missing", currency=_DROP),
    _line(event_id="h-currency", currency="usd"),
    _line(event_id="h-unknown-currency", currency="XYZ"),
    _line(event_id="h-type", event_type="deal_closed"),
    _line(event_id="h-no-rate", currency="EUR", event_time="1990-01-01T00:00:00Z"),
    "[1, 2, 3]",
    "null",
    '{"event_id": "h-truncated", "event_ty',
    "   ",
    "",
    _line(event_id="h-crlf") + "\r",
    _line(event_id="h-plain"),  # identical repeat: duplicate
    _line(event_id="h-plain", amount="100.0"),  # equivalent repeat: duplicate
    _line(event_id="h-plain", amount="101.00"),  # conflicting repeat
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[list[str], str]:
    root = tmp_path_factory.mktemp("data")
    generate_dataset(root / "gen", events=3000, seed=5, bad_rate=0.05)
    generate_dataset(root / "pq", events=600, seed=6, bad_rate=0.05, event_format="parquet")
    events = root / "events"
    events.mkdir()
    for path in glob.glob(str(root / "gen" / "events" / "*.jsonl")):
        Path(path).rename(events / Path(path).name)
    for i, path in enumerate(sorted(glob.glob(str(root / "pq" / "events" / "*.parquet")))):
        table = pq.read_table(path)
        table = table.set_column(  # other ids than the JSONL set's, same reference
            0, "event_id", pc.binary_join_element_wise("pq-", table["event_id"], ""))
        pq.write_table(table, events / f"strings-{i}.parquet")
    (events / "hard.jsonl").write_bytes(
        b"\xef\xbb\xbf" + "\n".join(HARD_LINES).encode() + b"\r\n")
    typed = pa.table({
        "event_id": ["t-1", "t-2", "t-3"], "event_type": ["deal_won"] * 3,
        "event_time": pa.array([1767607200000000, 1767607200000000, None],
                               pa.timestamp("us", tz="UTC")),
        "deal_id": ["d", "d", "d"], "account_id": ["ACC-000001"] * 3,
        "amount": pa.array([Decimal("10.50"), Decimal("0.01"), Decimal("3")],
                           pa.decimal128(12, 2)),
        "currency": ["USD", "EUR", "USD"], "stage": pa.array([1, None, 3], pa.int32()),
    })
    pq.write_table(typed, events / "typed.parquet")
    header = "event_id,event_type,event_time,deal_id,account_id,amount,currency,stage\n"
    (events / "rows.csv").write_text(
        header
        + "c-1,deal_won,2026-01-05T10:00:00Z,d,ACC-000001,5.00,USD,\n"
        + "c-2,deal_won,2026-01-05T10:00:00Z,d,ACC-000001,5.00,USD,\"a, quoted\"\n"
        + "c-3,deal_won,not a time,d,ACC-000001,5.00,USD,\n"
        + "c-4,deal_won,2026-01-05T10:00:00Z,d\n"
        + "h-plain,deal_won,2026-01-05T10:00:00Z,opp-1,ACC-000001,100.00,USD,\n")
    return sorted(str(p) for p in events.iterdir()), str(root / "gen" / "reference")


class FakeHistory:
    """Already published events (``event_id`` + payload), looked up like PublishedEvents."""

    def __init__(self, published: pa.Table) -> None:
        self.published = published

    def lookup(self, event_ids: pa.Array) -> pa.Table | None:
        return self.published.filter(pc.is_in(self.published["event_id"], value_set=event_ids))


def run_beam(paths, reference_dir, staging: Path, *, checks: bool,
             history: FakeHistory | None = None) -> Path:
    """The Beam graph; ``history`` reaches it as data: a published facts part file."""
    parts: tuple[str, ...] = ()
    if history is not None:
        part = staging.parent / f"{staging.name}-published.parquet"
        pq.write_table(history.published, part)
        parts = (str(part),)
    settings = GraphSettings(paths=paths, reference_dir=reference_dir, staging=str(staging),
                             run_id=RUN_ID, batch_rows=BATCH_ROWS, shards=4,
                             history_parts=parts, checks=checks)
    with beam.Pipeline(runner="FnApiRunner") as p:
        build_graph(p, settings)
    return staging


def run_engine(paths, reference_dir, staging: Path, *, checks: bool, history=None) -> Path:
    reference = load_reference(reference_dir)
    stage_embedded(paths, reference, EnrichmentTimelines.build(reference), staging, RUN_ID,
                   history=history, checks=checks, batch_rows=BATCH_ROWS)
    return staging


def staged(root: Path, name: str) -> tuple[list[tuple[str, pa.DataType]], list[tuple]]:
    """(column names and types, all rows sorted); ([], []) when nothing was staged."""
    tables = [pq.read_table(f) for f in part_files(root, name)]
    if not tables:
        return [], []
    columns = [(f.name, f.type) for f in tables[0].schema]
    rows = [tuple(r.values()) for t in tables for r in t.to_pylist()]
    return columns, sorted(rows, key=repr)


def assert_same_outputs(beam_root: Path, engine_root: Path, names=DATA_OUTPUTS) -> None:
    for name in names:
        beam_columns, beam_rows = staged(beam_root, name)
        engine_columns, engine_rows = staged(engine_root, name)
        assert engine_columns == beam_columns, f"{name}: columns differ"
        if name in ("territory_revenue", "account_manager_revenue"):  # partial sums per part
            beam_rows, engine_rows = _summed(beam_rows), _summed(engine_rows)
        missing = [r for r in beam_rows if r not in engine_rows]
        extra = [r for r in engine_rows if r not in beam_rows]
        assert not missing and not extra, f"{name}: missing {missing[:3]}, extra {extra[:3]}"


def _summed(rows: list[tuple]) -> list[tuple]:
    sums: dict[tuple, list] = {}
    for row in rows:
        key, values = row[:2], list(row[2:])
        sums[key] = [a + b for a, b in zip(sums[key], values, strict=True)] if key in sums \
            else values
    return sorted((k + tuple(v) for k, v in sums.items()), key=repr)


@pytest.fixture(scope="module")
def with_checks(inputs, tmp_path_factory) -> tuple[Path, Path]:
    paths, reference_dir = inputs
    root = tmp_path_factory.mktemp("checks")
    return (run_beam(paths, reference_dir, root / "beam", checks=True),
            run_engine(paths, reference_dir, root / "engine", checks=True))


def test_every_staged_output_equals_the_beam_graphs(with_checks):
    beam_root, engine_root = with_checks
    assert_same_outputs(beam_root, engine_root)
    for name in DATA_OUTPUTS:  # every kind of row is there: the comparison is not vacuous
        assert staged(engine_root, name)[1], f"{name} is empty"


def test_every_quarantine_reason_is_staged_with_file_and_line(with_checks):
    _, engine_root = with_checks
    quarantine = pa.concat_tables([pq.read_table(f) for f in part_files(engine_root,
                                                                          "quarantine")])
    reasons = set(quarantine["reason"].to_pylist())
    assert reasons == {"malformed", "missing_field", "bad_type", "unknown_event_type",
                       "bad_timestamp", "bad_amount", "bad_currency", "no_fx_rate",
                       "conflicting_duplicate"}
    hard = quarantine.filter(pc.ends_with(quarantine["source"], "hard.jsonl"))
    by_line = {r["position"]: r for r in hard.to_pylist()}
    for position, text in enumerate(HARD_LINES, start=1):
        if '"h-dup-key"' in text:
            assert by_line[position]["reason"] == "malformed"
            assert by_line[position]["raw"] == text
    assert by_line[len(HARD_LINES)]["reason"] == "conflicting_duplicate"  # the last line


def test_check_results_equal_the_beam_graphs(with_checks):
    beam_root, engine_root = with_checks

    def rows(root: Path) -> list[tuple]:
        table = pa.concat_tables([pq.read_table(f) for f in part_files(root, "dq_results")])
        return sorted(tuple(r.values()) for r in table.select(DQ_COLUMNS).to_pylist())

    assert rows(engine_root) == rows(beam_root)
    assert len(rows(engine_root)) > 50


def test_duplicates_of_published_events_are_found_as_by_the_beam_graph(
        inputs, with_checks, tmp_path):
    paths, reference_dir = inputs
    _, engine_root = with_checks
    facts = pa.concat_tables([pq.read_table(f) for f in part_files(engine_root,
                                                                   "attributed_events")])
    facts = facts.sort_by("event_id").select(["event_id", *PAYLOAD_FIELDS])
    same, changed = facts.slice(0, 20), facts.slice(20, 5)
    amount_type = changed.schema.field("amount").type
    changed = changed.set_column(changed.schema.get_field_index("amount"), "amount",
                                 pc.add(changed["amount"], pa.scalar(1, amount_type))
                                 .cast(amount_type))
    history = FakeHistory(pa.concat_tables([same, changed.cast(same.schema)]))

    engine = run_engine(paths, reference_dir, tmp_path / "engine", checks=False,
                        history=history)
    beam_root = run_beam(paths, reference_dir, tmp_path / "beam", checks=False,
                         history=history)
    assert_same_outputs(beam_root, engine)
    duplicates = pa.concat_tables([pq.read_table(f) for f in part_files(engine, "duplicates")])
    assert set(same["event_id"].to_pylist()) <= set(duplicates["event_id"].to_pylist())
    assert PUBLISHED_SOURCE not in duplicates["source"].to_pylist()
    attributed = pa.concat_tables([pq.read_table(f)
                                   for f in part_files(engine, "attributed_events")])
    assert not pc.any(pc.is_in(attributed["event_id"],
                               value_set=history.published["event_id"])).as_py()


def test_without_checks_no_dq_results_are_staged(inputs, with_checks, tmp_path):
    paths, reference_dir = inputs
    engine = run_engine(paths, reference_dir, tmp_path / "engine", checks=False)
    assert part_files(engine, "dq_results") == []
    assert_same_outputs(with_checks[1], engine)
