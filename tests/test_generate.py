"""The sample-data generator: determinism, contract shape, planted cases match the files.

The files are checked against an independent, plain-Python reading of the contract
(``_defects``, ``_attribution``), not against the generator's own code.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.generate import GenerationSummary, generate_dataset
from schemas.events import (
    AMOUNT_SIGN_RULES,
    EVENT_FIELDS,
    EVENT_TYPES,
    ID_FIELDS,
    MAX_ID_LENGTH,
    OPTIONAL_FIELDS,
    QUARANTINE_REASONS,
    REQUIRED_FIELDS,
)
from schemas.money import AMOUNT_MAX_ABS_EXCLUSIVE, CURRENCY_MINOR_UNITS
from schemas.reference import REFERENCE_FILE_COLUMNS

N_EVENTS = 4000
PERIOD_START = datetime(2026, 1, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 4, 1, tzinfo=UTC)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


# ----------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Record:
    """One event record as read: where it is, its text and its parsed object (or None)."""

    file: str
    position: int
    text: str
    obj: dict | None


def read_records(out: Path) -> list[Record]:
    """Every record of the events files, in file and line order."""
    records = []
    for path in sorted((out / "events").iterdir()):
        if path.suffix == ".parquet":
            for i, row in enumerate(pq.read_table(path).to_pylist(), start=1):
                obj = {k: v for k, v in row.items() if v is not None}
                records.append(Record(path.name, i, json.dumps(row), obj))
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").split("\n")[:-1], start=1):
            try:
                obj = json.loads(line, parse_float=Decimal, parse_int=Decimal)
            except ValueError:
                obj = None
            records.append(Record(path.name, i, line, obj))
    return records


def read_csv(out: Path, table: str) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "reference" / f"{table}.csv", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def instant(text: str) -> datetime | None:
    """Contract instant: empty = None, a date = midnight UTC, else an RFC 3339 timestamp."""
    if not text:
        return None
    if len(text) == 10:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    return datetime.fromisoformat(text).astimezone(UTC)


def valid_at(row: dict[str, str], moment: datetime) -> bool:
    start, end = instant(row["valid_from"]), instant(row["valid_to"])
    return (start is None or start <= moment) and (end is None or moment < end)


def _amount_defect(obj: dict) -> bool:
    value = obj.get("amount")
    if value is None or value == "" or not isinstance(value, str | Decimal):
        return False  # missing_field / bad_type, not an amount problem
    text = value if isinstance(value, str) else str(value)
    if not _DECIMAL.match(text):
        return True
    amount = Decimal(text)
    if abs(amount) >= AMOUNT_MAX_ABS_EXCLUSIVE:
        return True
    digits = CURRENCY_MINOR_UNITS.get(obj.get("currency"))
    if digits is not None and amount != amount.quantize(Decimal(1).scaleb(-digits),
                                                        rounding="ROUND_DOWN"):
        return True
    rule = AMOUNT_SIGN_RULES.get(obj.get("event_type"))
    return (rule == ">0" and amount <= 0) or (rule == ">=0" and amount < 0) or (
        rule == "!=0" and amount == 0)


def _timestamp_defect(text: object) -> bool:
    if not isinstance(text, str) or text == "":
        return False
    if not _TIMESTAMP.match(text):
        return True
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return True
    return False


def _defects(obj: dict | None, fx_currencies: set[str]) -> list[str]:
    """Every quarantine reason a record fails, each check on its own (contract order)."""
    if not isinstance(obj, dict):
        return ["malformed"]
    found = []
    if any(obj.get(f) in (None, "") for f in REQUIRED_FIELDS):
        found.append("missing_field")
    wrong_type = any(
        f in obj and obj[f] != "" and not (
            isinstance(obj[f], str) or (f == "amount" and isinstance(obj[f], Decimal)))
        for f in REQUIRED_FIELDS)
    too_long = any(isinstance(obj.get(f), str) and len(obj[f]) > MAX_ID_LENGTH for f in ID_FIELDS)
    if wrong_type or too_long:
        found.append("bad_type")
    event_type = obj.get("event_type")
    if isinstance(event_type, str) and event_type and event_type not in EVENT_TYPES:
        found.append("unknown_event_type")
    if _timestamp_defect(obj.get("event_time")):
        found.append("bad_timestamp")
    if _amount_defect(obj):
        found.append("bad_amount")
    currency = obj.get("currency")
    if isinstance(currency, str) and currency and currency not in CURRENCY_MINOR_UNITS:
        found.append("bad_currency")
    if currency in CURRENCY_MINOR_UNITS and currency != "USD" and currency not in fx_currencies:
        found.append("no_fx_rate")
    return found


def _payload(obj: dict) -> tuple:
    """Typed payload (every contract field but event_id) for duplicate comparison."""
    amount = obj["amount"] if isinstance(obj["amount"], Decimal) else Decimal(obj["amount"])
    optional = tuple(obj.get(f) or None for f in OPTIONAL_FIELDS)
    return (obj["event_type"], instant(obj["event_time"]), obj["deal_id"], obj["account_id"],
            amount, obj["currency"]) + optional


@dataclass
class Outcome:
    """What a contract-following pipeline makes of the files."""

    reasons: Counter
    accepted: list[Record]
    duplicates: int
    multi_defect: list[Record]


def evaluate(out: Path) -> Outcome:
    """Validate, then deduplicate by event_id (first occurrence in file/line order wins)."""
    fx = {row["currency"] for row in read_csv(out, "fx_rates")[1]}
    reasons: Counter = Counter()
    accepted, multi, first = [], [], {}
    duplicates = 0
    for record in read_records(out):
        found = _defects(record.obj, fx)
        if len(found) > 1:
            multi.append(record)
        if found:
            reasons[found[0]] += 1
            continue
        payload = _payload(record.obj)
        seen = first.get(record.obj["event_id"])
        if seen is None:
            first[record.obj["event_id"]] = payload
            accepted.append(record)
        elif seen == payload:
            duplicates += 1
        else:
            reasons["conflicting_duplicate"] += 1
    return Outcome(reasons, accepted, duplicates, multi)


def _matches(rule: dict[str, str], account: dict[str, str]) -> bool:
    for name in ("country", "region", "city"):
        want = rule[name].strip().casefold()
        if want and want != account[name].strip().casefold():
            return False
    prefix = rule["postal_prefix"].strip().upper()
    return not prefix or account["postal_code"].strip().upper().startswith(prefix)


def attribution(out: Path, events: list[Record]) -> Counter:
    """Expected non-attributed statuses, computed from the reference CSVs alone."""
    accounts = {row["account_id"]: row for row in read_csv(out, "accounts")[1]}
    assignments: dict[str, list[dict[str, str]]] = {}
    for row in read_csv(out, "account_assignments")[1]:
        assignments.setdefault(row["account_id"], []).append(row)
    rules = read_csv(out, "territory_rules")[1]
    statuses: Counter = Counter()
    for record in events:
        moment = instant(record.obj["event_time"])
        account = accounts.get(record.obj["account_id"])
        if account is None:
            statuses["unknown_account"] += 1
        elif not any(valid_at(r, moment) for r in assignments.get(account["account_id"], [])):
            statuses["no_account_manager"] += 1
        elif not any(valid_at(r, moment) and _matches(r, account) for r in rules):
            statuses["no_territory"] += 1
    return statuses


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GenerationSummary]:
    out = tmp_path_factory.mktemp("jsonl") / "data"
    return out, generate_dataset(out, events=N_EVENTS, seed=11, bad_rate=0.05, rule_tie=True)


@pytest.fixture(scope="module")
def outcome(generated: tuple[Path, GenerationSummary]) -> Outcome:
    return evaluate(generated[0])


@pytest.fixture(scope="module")
def manifest(generated: tuple[Path, GenerationSummary]) -> dict:
    return json.loads((generated[0] / "manifest.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- tests


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(tmp_path: Path) -> None:
    first = generate_dataset(tmp_path / "a", events=2500, seed=5, bad_rate=0.02)
    second = generate_dataset(tmp_path / "b", events=2500, seed=5, bad_rate=0.02)
    other = generate_dataset(tmp_path / "c", events=2500, seed=6, bad_rate=0.02)
    a, b = _tree_bytes(tmp_path / "a"), _tree_bytes(tmp_path / "b")
    assert first == second
    assert len(a) == 2 + 8 + 1  # two event files, eight tables, the manifest
    assert a == b
    c = _tree_bytes(tmp_path / "c")
    assert a["events/part-00000.jsonl"] != c["events/part-00000.jsonl"]
    assert other.events_written == 2500


def test_reference_files_have_exactly_the_contract_columns(generated: tuple) -> None:
    out, _ = generated
    assert sorted(p.name for p in (out / "reference").iterdir()) == sorted(
        f"{t}.csv" for t in REFERENCE_FILE_COLUMNS)
    for table, columns in REFERENCE_FILE_COLUMNS.items():
        header, rows = read_csv(out, table)
        assert tuple(header) == columns, table
        assert rows, f"{table} is empty"
        assert all(None not in row and len(row) == len(columns) for row in rows), table


def test_event_files_parse_and_count(generated: tuple, manifest: dict) -> None:
    out, summary = generated
    assert len(summary.files) >= 2
    assert [f"events/{p.name}" for p in sorted((out / "events").iterdir())] == list(
        summary.files)
    records = read_records(out)
    assert len(records) == summary.events_written == N_EVENTS
    assert manifest["events_written"] == N_EVENTS
    assert manifest["expected"]["input_records"] == N_EVENTS
    malformed = [r for r in records if not isinstance(r.obj, dict)]
    assert len(malformed) == summary.planted["malformed"] > 0


def test_every_quarantine_reason_is_planted_with_exact_counts(
        outcome: Outcome, manifest: dict, generated: tuple) -> None:
    expected = manifest["expected"]["quarantined_by_reason"]
    assert set(expected) == set(QUARANTINE_REASONS)
    assert all(expected[r] >= 1 for r in QUARANTINE_REASONS), expected
    assert dict(outcome.reasons) == {r: n for r, n in expected.items() if n}
    assert sum(outcome.reasons.values()) == manifest["expected"]["quarantined"]
    for reason in QUARANTINE_REASONS:
        assert generated[1].planted[reason] == expected[reason]


def test_each_bad_record_has_exactly_one_defect(outcome: Outcome) -> None:
    assert outcome.multi_defect == []


def test_duplicates_and_accepted_counts_match_the_manifest(
        outcome: Outcome, manifest: dict) -> None:
    expected = manifest["expected"]
    planted = manifest["planted"]
    assert outcome.duplicates == expected["duplicates"]
    assert expected["duplicates"] == planted["exact_duplicate"] + planted["equivalent_duplicate"]
    assert planted["exact_duplicate"] > 0 and planted["equivalent_duplicate"] > 0
    assert outcome.reasons["conflicting_duplicate"] == planted["conflicting_duplicate"] > 0
    assert len(outcome.accepted) == expected["accepted"]
    assert (expected["accepted"] + expected["duplicates"] + expected["quarantined"]
            == expected["input_records"])


def test_exact_duplicates_are_repeated_lines_some_across_files(generated: tuple) -> None:
    records = [r for r in read_records(generated[0]) if isinstance(r.obj, dict)]
    counts = Counter(r.text for r in records)
    files: dict[str, set[str]] = {}
    for record in records:
        if counts[record.text] > 1:
            files.setdefault(record.text, set()).add(record.file)
    assert sum(n - 1 for n in counts.values()) == generated[1].planted["exact_duplicate"]
    assert any(len(names) > 1 for names in files.values())


def test_attribution_statuses_match_an_independent_computation(
        generated: tuple, outcome: Outcome, manifest: dict) -> None:
    statuses = attribution(generated[0], outcome.accepted)
    planted = manifest["planted"]
    expected = manifest["expected"]["attribution_status"]
    for key in ("unknown_account", "no_account_manager", "no_territory"):
        assert planted[key] > 0, key
        assert statuses[key] == planted[key] == expected[key]
    assert expected["no_territory_manager"] == 0
    assert sum(expected.values()) == manifest["expected"]["accepted"]


def test_every_event_type_and_the_format_variety_are_present(outcome: Outcome) -> None:
    objs = [r.obj for r in outcome.accepted]
    texts = [r.text for r in outcome.accepted]
    assert {o["event_type"] for o in objs} == set(EVENT_TYPES)
    assert any(isinstance(o["amount"], Decimal) for o in objs)
    assert any(isinstance(o["amount"], str) for o in objs)
    times = [o["event_time"] for o in objs]
    for suffix in ("Z", "-05:00", "+01:00"):
        assert any(t.endswith(suffix) for t in times), suffix
    assert any("." in t for t in times)
    for name in OPTIONAL_FIELDS:
        assert any(name in o for o in objs) and any(name not in o for o in objs), name
    assert any("source_system" in o for o in objs) and any("crm_meta" in o for o in objs)
    assert any(t.startswith('{"event_type": ') for t in texts)  # another exporter's layout
    assert {o["currency"] for o in objs} == {"USD", "EUR", "GBP", "CAD", "JPY"}
    jpy = [str(o["amount"]) for o in objs if o["currency"] == "JPY"]
    assert jpy and all("." not in a for a in jpy)
    for o in objs:
        assert PERIOD_START <= instant(o["event_time"]) < PERIOD_END
        assert set(EVENT_FIELDS) >= set(o) - {"source_system", "crm_meta"}


def test_events_are_out_of_order_within_and_across_files(outcome: Outcome) -> None:
    by_file: dict[str, list[datetime]] = {}
    for record in outcome.accepted:
        by_file.setdefault(record.file, []).append(instant(record.obj["event_time"]))
    assert len(by_file) >= 2
    for moments in by_file.values():
        assert moments != sorted(moments)
    first, second = list(by_file.values())[:2]
    assert min(second) < max(first)


def test_territory_hierarchy_is_acyclic_with_one_global_root(generated: tuple) -> None:
    _, rows = read_csv(generated[0], "territories")
    parent = {r["territory_id"]: r["parent_territory_id"] for r in rows}
    assert len(parent) == len(rows)
    roots = [r for r in rows if r["parent_territory_id"] == ""]
    assert len(roots) == 1 and roots[0]["level"] == "global"
    assert {r["level"] for r in rows} == {"global", "country", "group", "state", "city"}
    assert {"T-US", "T-CA", "T-DE"} <= set(parent)
    for territory in parent:
        seen, node = set(), territory
        while parent[node]:
            assert node not in seen, f"cycle through {node}"
            seen.add(node)
            node = parent[node]
            assert node in parent, f"unknown parent {node}"
        assert node == roots[0]["territory_id"]


def test_reference_keys_resolve_and_people_are_complete(generated: tuple) -> None:
    out = generated[0]
    territories = {r["territory_id"] for r in read_csv(out, "territories")[1]}
    people = read_csv(out, "people")[1]
    person_ids = {p["person_id"] for p in people}
    managers = read_csv(out, "territory_managers")[1]
    assignments = read_csv(out, "account_assignments")[1]
    assert {r["territory_id"] for r in read_csv(out, "territory_rules")[1]} <= territories
    assert {r["territory_id"] for r in managers} <= territories
    assert {r["manager_id"] for r in managers} | {r["account_manager_id"] for r in assignments} \
        <= person_ids
    roles = {p["person_id"]: p["role"] for p in people}
    assert all(roles[r["manager_id"]] == "territory_manager" for r in managers)
    assert all(roles[r["account_manager_id"]] == "account_manager" for r in assignments)
    emails = [p["email"] for p in people]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"[a-z]+\.[a-z]+\d*@example\.com", e) for e in emails)
    assert all(p["reports_to"] in person_ids | {""} for p in people)
    assert sum(1 for p in people if p["reports_to"] == "") == 1


def test_rules_include_a_tie_realignments_and_odd_case(generated: tuple, manifest: dict) -> None:
    rules = read_csv(generated[0], "territory_rules")[1]

    def geography(rule: dict[str, str]) -> tuple[str, ...]:
        return tuple(rule[k].strip().casefold() for k in ("country", "region", "city",
                                                          "postal_prefix"))

    open_ended = [r for r in rules if not r["valid_from"] and not r["valid_to"]]
    ties = Counter(geography(r) for r in open_ended)
    tied = [g for g, n in ties.items() if n > 1]
    assert len(tied) == manifest["planted"]["rule_tie"] == 1
    assert tied[0][2] == manifest["reference"]["rule_tie"]["city"].casefold()
    ends = {(geography(r), r["valid_to"]) for r in rules if r["valid_to"]}
    starts = {(geography(r), r["valid_from"]) for r in rules if r["valid_from"]}
    assert ends & starts, "no rule handing over to another at the same instant"
    assert any(r["postal_prefix"] for r in rules)
    assert any(r["region"] != r["region"].strip() or r["city"] != r["city"].strip()
               or (r["city"] and r["city"] != r["city"].title()) for r in rules)


def test_validity_intervals_use_dates_and_mid_day_timestamps(generated: tuple) -> None:
    out = generated[0]
    texts = [r[k] for t in ("account_assignments", "territory_rules", "territory_managers")
             for r in read_csv(out, t)[1] for k in ("valid_from", "valid_to")]
    assert any(len(t) == 10 for t in texts)
    assert any(len(t) > 10 and instant(t).time() != datetime.min.time() for t in texts)
    inside = [instant(t) for t in texts if t]
    assert any(PERIOD_START < moment < PERIOD_END for moment in inside)


def test_boundaries_have_events_before_at_and_after(outcome: Outcome, manifest: dict) -> None:
    boundaries = [b for b in manifest["reference"]["boundaries"] if "at" in b]
    kinds = {b["kind"] for b in boundaries}
    assert {"account_reassignment", "territory_manager_change"} <= kinds
    for boundary in boundaries:
        moment = instant(boundary["at"])
        assert PERIOD_START < moment < PERIOD_END
        times = [instant(r.obj["event_time"]) for r in outcome.accepted
                 if r.obj["account_id"] == boundary["account_id"]]
        assert any(t < moment for t in times), boundary
        assert any(t == moment for t in times), boundary
        assert any(t > moment for t in times), boundary


def test_fx_rates_cover_the_period_with_gaps(generated: tuple, outcome: Outcome) -> None:
    rows = read_csv(generated[0], "fx_rates")[1]
    days: dict[str, list[date]] = {}
    for row in rows:
        days.setdefault(row["currency"], []).append(date.fromisoformat(row["rate_date"]))
        fraction = row["rate_to_reporting"].split(".")[1]
        assert 6 <= len(fraction) <= 10 and Decimal(row["rate_to_reporting"]) > 0
    used = {r.obj["currency"] for r in outcome.accepted} - {"USD"}
    assert used <= set(days)
    assert not {"CHF", "SEK", "AUD", "NOK"} & set(days)
    for dates in days.values():
        assert min(dates) <= PERIOD_START.date()
        assert max(dates) >= (PERIOD_END - timedelta(days=1)).date()
    gaps = sum(1 for dates in days.values() for a, b in zip(dates, dates[1:], strict=False)
               if (b - a).days > 1)
    assert gaps > 0


def test_parquet_events_carry_the_same_cases(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, events=2500, seed=3, bad_rate=0.05,
                               event_format="parquet")
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    paths = sorted((tmp_path / "events").iterdir())
    assert len(paths) >= 2 and all(p.suffix == ".parquet" for p in paths)
    schema = pq.read_schema(paths[0])
    assert set(EVENT_FIELDS) <= set(schema.names)
    assert str(schema.field("amount").type) == "string"
    result = evaluate(tmp_path)
    expected = manifest["expected"]
    assert sum(pq.read_metadata(p).num_rows for p in paths) == summary.events_written == 2500
    assert dict(result.reasons) == {r: n for r, n in expected["quarantined_by_reason"].items()
                                    if n}
    assert set(result.reasons) == set(QUARANTINE_REASONS) - {"malformed"}
    assert result.multi_defect == []
    assert result.duplicates == expected["duplicates"]
    assert len(result.accepted) == expected["accepted"]


@pytest.mark.parametrize("events", [1, 7, 150, 999])
def test_small_sizes_write_exactly_the_requested_records(tmp_path: Path, events: int) -> None:
    summary = generate_dataset(tmp_path, events=events, seed=1, bad_rate=0.1)
    assert summary.events_written == events == len(read_records(tmp_path))
    assert len(summary.files) == 2
    assert json.loads((tmp_path / "manifest.json").read_text())["expected"][
        "input_records"] == events


def test_larger_reference_sizes_are_honoured(tmp_path: Path) -> None:
    generate_dataset(tmp_path, events=300, seed=2, accounts=120, territories=500)
    assert len(read_csv(tmp_path, "accounts")[1]) == 120
    assert len(read_csv(tmp_path, "territories")[1]) == 500


def test_a_rerun_replaces_stale_event_files(tmp_path: Path) -> None:
    generate_dataset(tmp_path, events=300, seed=2, event_format="parquet")
    generate_dataset(tmp_path, events=300, seed=2)
    assert [p.suffix for p in (tmp_path / "events").iterdir()] == [".jsonl", ".jsonl"]


@pytest.mark.parametrize("kwargs", [{"events": 0}, {"bad_rate": 0.9}, {"event_format": "csv"}])
def test_invalid_arguments_are_rejected(tmp_path: Path, kwargs: dict) -> None:
    arguments = {"events": 10, "seed": 1, **kwargs}
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, **arguments)


def test_no_rule_tie_unless_asked(tmp_path: Path) -> None:
    summary = generate_dataset(tmp_path, events=500, seed=11)
    assert summary.planted["rule_tie"] == 0
    rules = read_csv(tmp_path, "territory_rules")[1]
    houston = [r for r in rules if r["city"].strip().casefold() == "houston"]
    assert len(houston) == 1
