"""The benchmark harness: the quick bench end to end (the real CLI against the tuned
reference), how it measures a process, its comparison catching a difference, the plan
and the targets."""

from __future__ import annotations

import csv
import os
import shutil
import stat
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines import bench
from pipelines.generate import generate_dataset
from pipelines.reference_tuned import compute_reference


@pytest.mark.slow
def test_quick_bench_is_equal_to_the_reference_and_writes_csv_rows(tmp_path):
    results = tmp_path / "results.csv"
    # JSONL (every quarantine reason, malformed included), checks on and off when the
    # CLI has the flag; Parquet is covered by the real bench and the end-to-end tests.
    rows = bench.run_bench(quick=True, data_dir=tmp_path / "data", results_csv=results,
                           formats=("jsonl",), checks=(False, True), say=lambda _m: None)

    modes = set(bench.checks_modes((False, True)))
    assert modes == {"off", "on"}
    assert {(r.size, r.format, r.checks) for r in rows} == {
        (bench.QUICK_SIZE, "jsonl", mode) for mode in modes}
    for row in rows:
        assert row.differences == []
        assert row.equal and row.pairs == 1
        assert len(row.pipeline_seconds) == len(row.reference_seconds) == 1
        assert row.peak_rss_mib and row.peak_rss_mib > 0
    on = next(r for r in rows if r.checks == "on")
    assert on.checks_ratio is not None and on.checks_ratio > 0
    with open(results, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench.CSV_COLUMNS
        written = list(reader)
    assert len(written) == len(rows)
    for record in written:
        assert record["equal"] == "yes"
        assert record["size"] == str(bench.QUICK_SIZE)
        assert record["pipeline"] == "revattr run" and record["reference"] == "tuned"
        assert float(record["pipeline_s_median"]) > 0
        assert float(record["ratio_median"]) > 0
        assert record["git_commit"] and record["host"] and record["cpus"]
        assert float(record["load_avg"]) >= 0
    assert not (tmp_path / "data" / "_runs").exists()  # per-run databases are cleaned up


# --- measuring one process --------------------------------------------------------


def test_spawn_reports_the_peak_rss_of_the_child_itself(tmp_path):
    big = [sys.executable, "-c", "x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096])"]
    code, seconds, rss = bench.spawn(big, tmp_path / "big.log", timeout=60)
    assert code == 0 and seconds > 0
    assert rss >= 300
    code, _, small = bench.spawn(["/bin/true"], tmp_path / "small.log", timeout=60)
    assert code == 0 and small < 50  # not the bench's own interpreter


def test_spawn_kills_a_run_at_its_timeout(tmp_path):
    code, seconds, _ = bench.spawn([sys.executable, "-c", "import time; time.sleep(30)"],
                                   tmp_path / "slow.log", timeout=0.5)
    assert code is None and seconds < 10
    code, _, _ = bench.spawn([sys.executable, "-c", "import sys; sys.exit(3)"],
                             tmp_path / "fail.log", timeout=30)
    assert code == 3


def fake_cli(directory: Path, help_text: str) -> Path:
    script = directory / "revattr"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{help_text}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_checks_modes_come_from_the_clis_help(tmp_path):
    with_flags = fake_cli(tmp_path, "--events TEXT\n--checks  --no-checks  Run the suites")
    assert bench.checks_modes((False, True), with_flags) == {
        "off": ["--no-checks"], "on": ["--checks"]}
    assert bench.checks_modes((False,), with_flags) == {"off": ["--no-checks"]}
    (tmp_path / "old").mkdir()
    without = fake_cli(tmp_path / "old", "--events TEXT\n--db PATH")
    assert bench.checks_modes((False, True), without) == {"n/a": []}


def test_the_pipeline_runs_the_real_cli_and_reads_pipeline_runs(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, events=300, seed=3, bad_rate=0.05)
    db = tmp_path / "out" / "revenue.duckdb"
    db.parent.mkdir()
    result = bench.run_pipeline(str(data / "events" / "*.jsonl"), data / "reference", db,
                                ["--no-checks"], tmp_path / "pipeline.log", timeout=300)
    assert result.ok, result.error
    assert result.data["status"] == "succeeded"
    assert result.data["input_records"] == 300
    assert result.rss_mib and result.rss_mib > 20
    reference = bench.run_reference(str(data / "events" / "*.jsonl"), data / "reference",
                                    tmp_path / "reference.duckdb", tmp_path / "ref.log", 300)
    assert reference.ok, reference.error
    assert {k: reference.data[k] for k in bench.expected_counts(data)} == (
        bench.expected_counts(data))
    assert bench.compare_outputs(db, tmp_path / "reference.duckdb") == []


def test_a_failing_cli_is_reported_with_its_log(tmp_path):
    failing = tmp_path / "revattr"
    failing.write_text("#!/bin/sh\necho 'error: no such file' >&2\nexit 2\n")
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    result = bench.run_pipeline("nothing/*.jsonl", tmp_path, tmp_path / "x.duckdb", [],
                                tmp_path / "pipeline.log", 30, revattr=failing)
    assert not result.ok
    assert "exit code 2" in result.error and "no such file" in result.error


# --- comparison -------------------------------------------------------------------


@pytest.fixture(scope="module")
def equal_databases(tmp_path_factory) -> tuple[Path, Path]:
    """A reference DB from the tuned reference and a 'pipeline' DB holding the same rows
    under the pipeline's relation names (no pipeline run needed)."""
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


# --- plan ---------------------------------------------------------------------------


def test_the_default_plan_is_trimmed_in_the_documented_order():
    cells = bench.make_cells((1_000_000, 10_000_000), ("parquet", "jsonl"), 3, ("off", "on"))

    def estimate(cs):  # seconds: one per thousand events per pipeline run
        return sum(c.size / 1000 * c.repeats * len(c.checks) for c in cs)

    def cell(size, fmt, repeats, checks=("off", "on")):
        return bench.Cell(size, fmt, repeats, checks)

    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=30_000)
    assert cuts == ["1 repeat at 10,000,000", "parquet only at 10,000,000",
                    "checks off only at 10,000,000"]
    assert fitted == [cell(1_000_000, "parquet", 3), cell(1_000_000, "jsonl", 3),
                      cell(10_000_000, "parquet", 1, ("off",))]
    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=14_000)
    assert cuts[3:] == ["checks off only for jsonl", "2 repeat(s) below 10,000,000",
                        "1 repeat(s) below 10,000,000"]
    assert fitted == [cell(1_000_000, "parquet", 1), cell(1_000_000, "jsonl", 1, ("off",)),
                      cell(10_000_000, "parquet", 1, ("off",))]
    fitted, cuts = bench.fit_to_budget(cells, estimate, budget_s=1_000)
    assert cuts[-1] == "no 10,000,000 run"
    assert fitted == [cell(1_000_000, "parquet", 1), cell(1_000_000, "jsonl", 1, ("off",))]
    assert bench.fit_to_budget(cells, estimate, budget_s=10**9) == (cells, [])


def test_the_default_plan_covers_10m_and_fits_the_budget_with_built_in_rates(tmp_path):
    rates = bench.Rates()
    cells = bench.make_cells(bench.DEFAULT_SIZES, bench.DEFAULT_FORMATS, bench.DEFAULT_REPEATS,
                             ("off", "on"))
    fitted, _ = bench.fit_to_budget(
        cells, lambda cs: bench.estimate_seconds(cs, rates, tmp_path), 0.9 * 15 * 60)
    assert bench.estimate_seconds(fitted, rates, tmp_path) <= 0.9 * 15 * 60
    assert bench.Cell(10_000_000, "parquet", 1, ("off", "on")) in fitted
    assert all(c.checks == ("off", "on") for c in fitted if c.size == 1_000_000)


def test_the_estimate_uses_this_hosts_rows_of_the_same_pipeline_and_reference(tmp_path):
    path = tmp_path / "results.csv"
    base = {"host": "h", "format": "parquet", "checks": "off", "startup_s": "1",
            "pipeline": "revattr run", "reference": "tuned"}
    bench.append_results(path, [
        {**base, "size": "1000000", "pipeline_s_median": "2", "reference_s_median": "3.5"},
        {**base, "size": "10000000", "pipeline_s_median": "11", "reference_s_median": "30.5"},
        {**base, "host": "other", "size": "1000000", "pipeline_s_median": "100",
         "reference_s_median": "100"},
        # an older bench's row (Beam pipeline, plain oracle): not used
        {**base, "pipeline": "", "reference": "", "size": "1000000",
         "pipeline_s_median": "40", "reference_s_median": "35"},
    ])
    rates = bench.load_rates(path, "h")

    assert rates.pipeline_s(1_000_000, "parquet", "off") == pytest.approx(2)
    assert rates.pipeline_s(8_000_000, "parquet", "off") == pytest.approx(1 + 8 * 1)
    assert rates.reference_s(1_000_000, "parquet") == pytest.approx(3.5)
    assert rates.reference_s(10_000_000, "parquet") == pytest.approx(30.5)
    assert bench.load_rates(path, "h", reference="sql").reference_eps == {}
    assert bench.load_rates(path, "unknown").source == "built-in estimates"


def test_results_csv_keeps_old_rows_when_the_columns_change(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("timestamp_utc,size,old_column\n2026-01-01T00:00:00Z,10,x\n")
    bench.append_results(path, [{"timestamp_utc": "2026-02-01T00:00:00Z", "size": "20"}])
    bench.append_results(path, [{"timestamp_utc": "2026-03-01T00:00:00Z", "size": "30"}])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bench.CSV_COLUMNS
        assert [r["size"] for r in reader] == ["10", "20", "30"]


# --- targets ------------------------------------------------------------------------


def row(size, fmt, checks, pipeline_s, reference_s, rss, startup=0.5):
    return bench.BenchRow(size, fmt, checks, 1, [pipeline_s], [reference_s], [rss], [900.0],
                          startup)


def test_each_target_is_judged_on_its_rows():
    rows = [
        row(1_000_000, "parquet", "off", 0.8, 1.0, 1000.0),  # 1.25M ev/s, ratio 0.8
        row(1_000_000, "parquet", "on", 1.4, 1.0, 1100.0, startup=2.0),  # 1.75x checks off
        row(1_000_000, "jsonl", "off", 4.0, 2.0, 1000.0),  # 250k ev/s, ratio 2.0
        row(1_000_000, "jsonl", "on", 5.0, 2.0, 1000.0),  # 1.25x checks off
        row(10_000_000, "parquet", "off", 9.0, 8.0, 1400.0),  # 1.11M ev/s, RSS 1.4x the 1M
        row(10_000_000, "jsonl", "off", 30.0, 25.0, 1800.0),  # over 1.5 GiB
    ]
    bench.relate_rows(rows)
    checks = {c.target: c.met for c in bench.evaluate_targets(rows)}

    assert checks == {
        "1M parquet checks off: >= 1,000k ev/s": True,
        "1M parquet checks off: pipeline/reference <= 1.5x": True,
        "1M jsonl checks off: >= 300k ev/s": False,
        "1M jsonl checks off: pipeline/reference <= 1.5x": False,
        "10M parquet checks off: >= 1,000k ev/s": True,
        "10M parquet checks off: pipeline/reference <= 1.5x": True,
        "10M jsonl checks off: >= 300k ev/s": True,
        "10M jsonl checks off: pipeline/reference <= 1.5x": True,
        "start-up jsonl checks off: < 1.5 s": True,
        "start-up jsonl checks on: < 1.5 s": True,
        "start-up parquet checks off: < 1.5 s": True,
        "start-up parquet checks on: < 1.5 s": False,
        "10M parquet checks off: peak RSS <= 1.5 GiB": True,
        "10M parquet checks off: peak RSS < 1.3x the 1M run": False,
        "10M jsonl checks off: peak RSS <= 1.5 GiB": False,
        "10M jsonl checks off: peak RSS < 1.3x the 1M run": False,
        "1M parquet checks on: time <= 1.5x checks off": False,
        "1M jsonl checks on: time <= 1.5x checks off": True,
    }
    assert bench.unmeasured_targets(rows) == []
    assert rows[4].rss_growth == pytest.approx(1.4)
    assert rows[1].checks_ratio == pytest.approx(1.75)


def test_targets_without_rows_are_listed_as_not_measured():
    rows = [row(1_000_000, "parquet", "off", 0.8, 1.0, 1000.0)]
    bench.relate_rows(rows)
    missing = bench.unmeasured_targets(rows)
    assert any("10M" in m for m in missing)
    assert any("checks on/off" in m for m in missing)
    assert any(m.startswith("jsonl") for m in missing)


def test_the_table_prints_the_targets(capsys):
    from rich.console import Console

    rows = [row(1_000_000, "parquet", "off", 0.8, 1.0, 1000.0),
            row(1_000_000, "parquet", "on", 1.0, 1.0, 1000.0)]
    bench.relate_rows(rows)
    bench.print_rows(rows, Console(width=220, force_terminal=False, no_color=True))
    out = capsys.readouterr().out
    assert "1,250,000 (≥1,000k met)" in out
    assert "1.25x" in out  # checks on/off
    assert "not measured: peak RSS at 10M" in out


@pytest.mark.slow
def test_the_reference_alone(tmp_path, capsys):
    assert bench.main(["reference", "--sizes", "2k", "--formats", "jsonl",
                       "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2,000 jsonl run 1:" in out and "ev/s" in out and "peak RSS" in out
    assert not (tmp_path / "_reference_runs").exists()
    assert os.path.isfile(tmp_path / "jsonl-2000" / "manifest.json")
