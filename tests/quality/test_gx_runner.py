"""run_suite mechanics: sampling, empty frames, missing columns, lazy GX, result shape."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.quality import gx_runner
from pipelines.quality.gx_runner import CHECK_RESULT_SCHEMA, run_suite
from pipelines.quality.stage_frames import frames_from_tables, unassigned_flags
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from tests import quality as c

ROOT = Path(__file__).resolve().parents[2]


def by_name(results: pa.Table) -> dict[str, dict]:
    return {r["expectation"]: r for r in results.to_pylist()}


def test_great_expectations_is_not_imported_by_importing_our_modules():
    code = (
        "import sys\n"
        "import pipelines.quality.gx_runner, pipelines.quality.check, pipelines.quality.page\n"
        "import pipelines.quality.stage_frames, pipelines.quality.suites\n"
        "import pipelines.transforms.check_stage, pipelines.rules.reference_checks\n"
        "assert 'great_expectations' not in sys.modules, 'GX imported eagerly'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_one_context_per_process_is_reused():
    run_suite("s", "reconciliation", frames_from_tables("reconciliation",
                                                        c.reconciliation_inputs()))
    state = gx_runner._STATE
    run_suite("s", "reconciliation", frames_from_tables("reconciliation",
                                                        c.reconciliation_inputs()))
    assert gx_runner._STATE is state and state is not None


def test_results_follow_the_suite_file_and_schema():
    results = run_suite("attribute", "enriched_events",
                        frames_from_tables("enriched_events",
                                           {"attributed_events": c.attributed_events()}))
    assert results.schema == CHECK_RESULT_SCHEMA
    assert set(results["stage"].to_pylist()) == {"attribute"}
    assert results["expectation"].to_pylist()[:2] == ["account_manager_id_not_null",
                                                      "territory_id_not_null"]


def test_large_frames_are_sampled_every_kth_row_but_row_counts_are_exact():
    events = pa.concat_tables([c.attributed_events()] * 5)  # 50 rows, ids repeat every 10
    frames = {"events": unassigned_flags(events)}
    results = by_name(run_suite("s", "enriched_events", frames, max_rows=5))
    # every 10th row: e01 five times
    assert results["event_id_unique"]["success"] is False
    observed = results["event_id_unique"]["observed"]
    assert "validated on a sample: every 10th row, 5 of 50 rows" in observed
    tree = frames_from_tables("reference", c.reference())
    cycle = pa.table({"territory_id": [f"T{i}" for i in range(30)],
                      "parent_territory_id": [None] * 30, "cycle": ["x"] * 30})
    tree["territory_cycles"] = cycle
    results = by_name(run_suite("s", "reference", tree, max_rows=4))
    assert results["territory_tree_acyclic"]["observed"] == "30 row(s)"
    assert len(json.loads(results["territory_tree_acyclic"]["examples"])) == 5


def test_empty_frames_do_not_crash():
    empty = frames_from_tables("enriched_events",
                               {"attributed_events": ATTRIBUTED_EVENTS_SCHEMA.empty_table()})
    results = by_name(run_suite("s", "enriched_events", empty))
    assert all(r["success"] for r in results.values())
    assert results["unassigned_territory_share"]["observed"] == "not evaluated: no rows"
    reference = frames_from_tables("reference", {n: t.slice(0, 0)
                                                 for n, t in c.reference().items()})
    results = by_name(run_suite("s", "reference", reference))
    assert all(r["success"] for r in results.values())
    assert results["rule_ties_absent"]["observed"] == "0 row(s)"


def test_a_frame_missing_a_column_is_a_failed_check_not_a_crash():
    frames = frames_from_tables("enriched_events", {"attributed_events": c.attributed_events()})
    frames["events"] = frames["events"].drop_columns(["territory_manager_id"])
    results = by_name(run_suite("s", "enriched_events", frames))
    row = results["territory_manager_id_not_null"]
    assert row["success"] is False and "no column(s) territory_manager_id" in row["observed"]
    assert results["territory_id_not_null"]["success"] is True


def test_a_missing_frame_is_a_programming_error():
    with pytest.raises(ValueError, match="needs frame"):
        run_suite("s", "territory_revenue", {"view": c.view("territory_revenue")})


def test_notes_are_appended_to_observed():
    frames = frames_from_tables("reconciliation", c.reconciliation_inputs())
    results = by_name(run_suite("s", "reconciliation", frames, notes={"days": "from a sample"}))
    assert results["every_day_balanced"]["observed"].endswith("; from a sample")


def test_a_suite_from_another_directory_can_check_the_columns_themselves(tmp_path):
    suite = {
        "name": "reconciliation",
        "meta": {"batches": {"days": {"id_columns": ["day"]}}},
        "expectations": [
            {"type": "expect_table_columns_to_match_set",
             "kwargs": {"column_set": ["day", "events_total", "territory_total",
                                       "account_manager_total", "balanced", "extra"]},
             "meta": {"name": "columns", "batch": "days", "severity": "warning"}},
            {"type": "expect_column_to_exist", "kwargs": {"column": "balanced"},
             "meta": {"name": "has_balanced", "batch": "days", "severity": "critical"}},
        ],
    }
    (tmp_path / "reconciliation.json").write_text(json.dumps(suite))
    frames = frames_from_tables("reconciliation", c.reconciliation_inputs())
    results = by_name(run_suite("s", "reconciliation", frames, suites_dir=tmp_path))
    assert results["columns"]["success"] is False
    assert not results["columns"]["observed"].startswith("error")
    assert results["has_balanced"]["success"] is True
