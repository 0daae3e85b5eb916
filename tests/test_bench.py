"""The benchmark harness: the quick bench end to end, and its comparison catching a difference."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines import bench
from pipelines.generate import generate_dataset
from pipelines.reference_sql import compute_reference


@pytest.mark.slow
def test_quick_bench_is_equal_to_the_reference_and_writes_csv_rows(tmp_path):
    results = tmp_path / "results.csv"
    # JSONL (every quarantine reason, malformed included), checks on and off when the
    # pipeline has the flag; Parquet is covered by the real bench and the end-to-end tests.
    rows = bench.run_bench(quick=True, data_dir=tmp_path / "data", results_csv=results,
                           formats=("jsonl",), checks=(False, True), say=lambda _m: None)

    modes = set(bench.checks_modes((False, True)))
    assert {(r.size, r.format, r.checks) for r in rows} == {
        (bench.QUICK_SIZE, "jsonl", mode) for mode in modes}
    for row in rows:
        assert row.differences == []
        assert row.equal and row.pairs == 1
        assert len(row.pipeline_seconds) == len(row.reference_seconds) == 1
        assert row.peak_rss_mib and row.peak_rss_mib > 0
    with open(results, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench.CSV_COLUMNS
        written = list(reader)
    assert len(written) == len(rows)
    for record in written:
        assert record["equal"] == "yes"
        assert record["size"] == str(bench.QUICK_SIZE)
        assert float(record["pipeline_s_median"]) > 0
        assert float(record["ratio_median"]) > 0
        assert record["git_commit"] and record["host"] and record["cpus"]
    assert not (tmp_path / "data" / "_runs").exists()  # per-run databases are cleaned up


@pytest.fixture(scope="module")
def equal_databases(tmp_path_factory) -> tuple[Path, Path]:
    """A reference DB from the SQL reference and a 'pipeline' DB holding the same rows
    under the pipeline's relation names (no Beam run needed)."""
    root = tmp_path_factory.mktemp("compare")
    generate_dataset(root / "data", events=400, seed=3, bad_rate=0.05)
    reference_db, pipeline_db = root / "reference.duckdb", root / "pipeline.duckdb"
    with duckdb.connect(str(reference_db)) as con:
        compute_reference(con, str(root / "data" / "events" / "*.jsonl"),
                          str(root / "data" / "reference"))
    with duckdb.connect(str(pipeline_db)) as con:
        con.execute(f"ATTACH '{reference_db}' AS r (READ_ONLY)")
        con.execute("CREATE TABLE attributed_events AS "
                    "SELECT *, 'run-1' AS run_id FROM r.ref_attributed_events")
        for view in ("territory_revenue", "account_manager_revenue"):
            con.execute(f"CREATE TABLE {view} AS SELECT * FROM r.ref_{view}")
        con.execute("CREATE TABLE quarantine AS SELECT 'run-1' AS run_id, source, position, "
                    "reason FROM r.ref_quarantine")
    return pipeline_db, reference_db


def test_compare_outputs_finds_nothing_between_equal_outputs(equal_databases):
    assert bench.compare_outputs(*equal_databases) == []


def test_compare_outputs_reports_one_changed_cent(equal_databases, tmp_path):
    pipeline_db, reference_db = equal_databases
    changed = tmp_path / "pipeline.duckdb"
    shutil.copy(pipeline_db, changed)
    with duckdb.connect(str(changed)) as con:
        event_id = con.execute("SELECT min(event_id) FROM attributed_events "
                               "WHERE booked_revenue <> 0").fetchall()[0][0]
        con.execute("UPDATE attributed_events SET booked_revenue = booked_revenue + 0.01 "
                    "WHERE event_id = ?", [event_id])

    differences = bench.compare_outputs(changed, reference_db)

    assert len(differences) == 2  # one row each way; row counts still equal
    assert all(d.startswith("attributed_events: 1 row(s)") for d in differences)
    assert all(event_id in d for d in differences)


def test_compare_outputs_reports_a_missing_view_row_and_quarantine_counts(equal_databases,
                                                                          tmp_path):
    pipeline_db, reference_db = equal_databases
    changed = tmp_path / "pipeline.duckdb"
    shutil.copy(pipeline_db, changed)
    with duckdb.connect(str(changed)) as con:
        con.execute("DELETE FROM territory_revenue WHERE (territory_id, day) IN "
                    "(SELECT (territory_id, day) FROM territory_revenue ORDER BY ALL LIMIT 1)")
        con.execute("DELETE FROM quarantine "
                    "WHERE position = (SELECT min(position) FROM quarantine)")

    text = "\n".join(bench.compare_outputs(changed, reference_db))

    assert "territory_revenue: 1 row(s) of the reference not in the pipeline" in text
    assert "territory_revenue: " in text and "rows in the pipeline" in text
    assert "quarantine by reason" in text


def test_the_default_plan_is_trimmed_in_the_documented_order():
    cells = bench.make_cells((1_000_000, 5_000_000), ("parquet", "jsonl"), 3, ("off", "on"))

    def estimate(cs):  # seconds: one per thousand events per pipeline run
        return sum(c.size / 1000 * c.repeats * len(c.checks) for c in cs)

    def cell(size, fmt, repeats, checks=("off", "on")):
        return bench.Cell(size, fmt, repeats, checks)

    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=17_000)
    assert cuts == ["1 repeat at 5,000,000", "parquet only at 5,000,000",
                    "checks off only at 5,000,000"]
    assert fitted == [cell(1_000_000, "parquet", 3), cell(1_000_000, "jsonl", 3),
                      cell(5_000_000, "parquet", 1, ("off",))]
    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=8_000)
    assert cuts[3:] == ["checks off only for jsonl", "2 repeat(s) below 5,000,000",
                        "1 repeat(s) below 5,000,000"]
    assert fitted == [cell(1_000_000, "parquet", 1), cell(1_000_000, "jsonl", 1, ("off",)),
                      cell(5_000_000, "parquet", 1, ("off",))]
    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=1_000)
    assert cuts[-1] == "no 5,000,000 run"
    assert fitted == [cell(1_000_000, "parquet", 1), cell(1_000_000, "jsonl", 1, ("off",))]
    assert bench.fit_to_budget(cells, estimate, budget_s=10**9) == (cells, [])


def test_targets_are_judged_per_row_and_rss_growth_against_the_1m_run():
    small = bench.BenchRow(1_000_000, "parquet", "n/a", 1, [2.0], [1.0], [1000.0], [900.0], 1.0)
    large = bench.BenchRow(5_000_000, "parquet", "n/a", 1, [4.0], [2.0], [1400.0], [900.0], 1.0)
    checks = {c.target: c for c in bench.evaluate_targets([small, large])}

    assert not checks["1M parquet checks n/a: >= 1,000k ev/s"].met  # 500k ev/s
    assert checks["5M parquet checks n/a: >= 1,000k ev/s"].met  # 1.25M ev/s
    assert checks["1M parquet checks n/a: pipeline/reference <= 5x"].met
    assert checks["5M parquet checks n/a: peak RSS <= 1.5 GiB"].met
    assert not checks["5M parquet checks n/a: peak RSS < 1.3x the 1M run"].met  # 1.4x


def test_results_csv_keeps_old_rows_when_the_columns_change(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("timestamp_utc,size,old_column\n2026-01-01T00:00:00Z,10,x\n")
    bench.append_results(path, [{"timestamp_utc": "2026-02-01T00:00:00Z", "size": "20"}])
    bench.append_results(path, [{"timestamp_utc": "2026-03-01T00:00:00Z", "size": "30"}])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench.CSV_COLUMNS
        assert [r["size"] for r in reader] == ["10", "20", "30"]


def test_the_estimate_uses_this_hosts_results_at_the_nearest_size(tmp_path):
    path = tmp_path / "results.csv"
    base = {"host": "h", "format": "parquet", "checks": "off", "startup_s": "10"}
    bench.append_results(path, [
        {**base, "size": "1000000", "pipeline_s_median": "30", "reference_s_median": "22"},
        {**base, "size": "5000000", "pipeline_s_median": "60", "reference_s_median": "102"},
        {**base, "host": "other", "size": "1000000", "pipeline_s_median": "1",
         "reference_s_median": "1"},
    ])
    rates = bench.load_rates(path, "h")

    assert rates.pipeline_s(1_000_000, "parquet", "off") == pytest.approx(30)
    assert rates.pipeline_s(4_000_000, "parquet", "off") == pytest.approx(10 + 4 * 10)
    assert rates.reference_s(1_000_000, "parquet") == pytest.approx(22)
    assert bench.load_rates(path, "unknown").source == "built-in estimates"
