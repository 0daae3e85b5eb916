"""Suite files: conventions checked on load; a broken file is a UserError naming it."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.quality.gx_runner import check_suite_definitions
from pipelines.quality.suites import (
    DEFAULT_SUITES_DIR,
    SUITES,
    coerce_parameter,
    load_suite,
    parse_suite,
)
from schemas.events import AMOUNT_SIGN_RULES, EVENT_TYPES
from schemas.outputs import ATTRIBUTION_STATUSES

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("name", SUITES)
def test_every_shipped_suite_loads_and_great_expectations_accepts_it(name):
    suite = load_suite(name)
    assert suite.name == name and suite.expectations
    assert all(e.severity in ("critical", "warning") for e in suite.expectations)
    check_suite_definitions(suite)


def test_suite_files_agree_with_the_schemas():
    raw = {e.name: e for e in load_suite("raw_events").expectations}
    assert raw["event_type_known"].kwargs["value_set"] == list(EVENT_TYPES)
    enriched = {e.name: e for e in load_suite("enriched_events").expectations}
    assert enriched["attribution_status_known"].kwargs["value_set"] == list(ATTRIBUTION_STATUSES)
    by_rule: dict[str, set[str]] = {}
    for name in ("amount_positive_for_won_refunded_reopened",
                 "amount_non_negative_for_created_changed_lost", "amount_nonzero_for_amended"):
        condition = raw[name].kwargs["row_condition"]
        types = condition["parameter"]
        rule = {"amount_positive_for_won_refunded_reopened": ">0",
                "amount_non_negative_for_created_changed_lost": ">=0",
                "amount_nonzero_for_amended": "!=0"}[name]
        by_rule[rule] = set(types if isinstance(types, list) else [types])
    expected: dict[str, set[str]] = {}
    for event_type, rule in AMOUNT_SIGN_RULES.items():
        expected.setdefault(rule, set()).add(event_type)
    assert by_rule == expected


def test_won_deals_may_go_negative_but_no_suite_says_otherwise():
    for view in ("territory_revenue", "account_manager_revenue"):
        columns = {e.kwargs.get("column") for e in load_suite(view).expectations}
        assert "won_deals" not in columns


def _write(directory: Path, name: str, document) -> Path:
    path = directory / f"{name}.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _minimal(**expectation_meta) -> dict:
    meta = {"name": "event_id_not_null", "batch": "events", "severity": "critical",
            **expectation_meta}
    return {"name": "raw_events", "meta": {"batches": {"events": {}}},
            "expectations": [{"type": "expect_column_values_to_not_be_null",
                              "kwargs": {"column": "event_id"}, "meta": meta}]}


@pytest.mark.parametrize("document, message", [
    ('{"name": "raw_events", "expectations": [', "not valid JSON"),
    ({**_minimal(), "name": "other"}, "suite's name"),
    ({**_minimal(), "expectations": []}, "no expectations"),
    (_minimal(severity="fatal"), "meta.severity"),
    (_minimal(batch="nowhere"), "meta.batch"),
    (_minimal(name="Bad Name"), "meta.name"),
    ({**_minimal(), "meta": {"batches": {"events": {}}, "parameters": {"x": {"type": "number"}}}},
     "parameter 'x'"),
])
def test_a_broken_suite_file_is_a_user_error_naming_the_file(tmp_path, document, message):
    path = _write(tmp_path, "raw_events", document)
    with pytest.raises(UserError, match=message) as caught:
        load_suite("raw_events", tmp_path)
    assert str(path) in str(caught.value)


def test_undeclared_parameters_and_repeated_names_are_refused(tmp_path):
    document = _minimal()
    document["expectations"][0]["kwargs"]["mostly"] = {"$PARAMETER": "share"}
    with pytest.raises(UserError, match="undeclared parameter"):
        parse_suite(json.dumps(document), tmp_path / "raw_events.json", "raw_events")
    document = _minimal()
    document["expectations"].append(document["expectations"][0])
    with pytest.raises(UserError, match="used twice"):
        parse_suite(json.dumps(document), tmp_path / "raw_events.json", "raw_events")


def test_an_expectation_great_expectations_refuses_is_named(tmp_path):
    document = _minimal()
    document["expectations"][0]["type"] = "expect_column_values_to_be_teleported"
    _write(tmp_path, "raw_events", document)
    with pytest.raises(UserError, match=r"expectation #1 \(event_id_not_null\)"):
        check_suite_definitions(load_suite("raw_events", tmp_path))


def test_a_missing_suite_file_says_where_suites_live(tmp_path):
    with pytest.raises(UserError, match="no expectation suite file"):
        load_suite("raw_events", tmp_path)


def test_a_changed_file_is_read_again(tmp_path):
    shutil.copy(DEFAULT_SUITES_DIR / "reconciliation.json", tmp_path / "reconciliation.json")
    first = load_suite("reconciliation", tmp_path)
    assert load_suite("reconciliation", tmp_path) is first
    document = json.loads((tmp_path / "reconciliation.json").read_text())
    document["expectations"] = document["expectations"][:1]
    _write(tmp_path, "reconciliation", json.dumps(document, indent=4))
    assert len(load_suite("reconciliation", tmp_path).expectations) == 1


def test_parameters_resolve_defaults_and_overrides():
    suite = load_suite("raw_events")
    values = suite.resolve_parameters(None, now=NOW)
    assert values == {"event_time_min": dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
                      "event_time_max": NOW + dt.timedelta(days=1)}
    values = suite.resolve_parameters({"event_time_min": "2026-01-01",
                                       "event_time_max": "2026-03-01T09:00:00-05:00"}, now=NOW)
    assert values["event_time_min"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert values["event_time_max"] == dt.datetime(2026, 3, 1, 14, tzinfo=dt.UTC)
    with pytest.raises(UserError, match="unknown parameter"):
        suite.resolve_parameters({"event_time_mix": "now"})
    with pytest.raises(UserError, match="event_time_max"):
        suite.resolve_parameters({"event_time_max": "2026-03-01T09:00:00"})  # no offset


@pytest.mark.parametrize("kind, value, expected", [
    ("number", "0.25", 0.25),
    ("number", 1, 1.0),
    ("timestamp", "now-2h", NOW - dt.timedelta(hours=2)),
    ("timestamp", "NOW", NOW),
    ("timestamp", dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, tzinfo=dt.UTC)),
    ("timestamp", "2026-01-02T00:00:00Z", dt.datetime(2026, 1, 2, tzinfo=dt.UTC)),
])
def test_parameter_values_are_coerced(kind, value, expected):
    assert coerce_parameter(kind, value, NOW) == expected


@pytest.mark.parametrize("kind, value", [("number", "lots"), ("number", True),
                                         ("timestamp", "yesterday"), ("timestamp", 5)])
def test_bad_parameter_values_are_refused(kind, value):
    with pytest.raises(ValueError):
        coerce_parameter(kind, value, NOW)
