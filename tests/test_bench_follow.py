"""The follow-mode benchmark: its quick mode end to end, and its arithmetic."""

from __future__ import annotations

import csv
import json

import pytest

from pipelines import bench_follow as bf


@pytest.mark.slow
def test_quick_mode_applies_every_file_and_reports_latency(tmp_path, capsys):
    results = tmp_path / "follow_results.csv"

    code = bf.main(["--quick", "--checks=on", "--seconds=5", f"--data-dir={tmp_path / 'data'}",
                    f"--results={results}"])

    out = capsys.readouterr().out
    assert code == 0, out
    for label in ("latency median (s)", "latency p95 (s)", "latency max (s)",
                  "achieved throughput (ev/s)", "s per batch, first -> last"):
        assert label in out
    assert "problem" not in out
    with open(results, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["reader_errors"] == "0"
    assert int(row["files"]) == 10  # 5 s, one file every 0.5 s
    assert row["files_applied"] == row["files"]
    assert row["files_never_visible"] == "0" and row["files_quarantined"] == "0"
    per_file = int(bf.DEFAULT_RATE * bf.DEFAULT_INTERVAL)  # 10,000 at 20k ev/s
    assert int(row["records_applied"]) == int(row["events_offered"]) == 10 * per_file
    for column in ("latency_median_s", "latency_p95_s", "latency_max_s", "throughput_eps"):
        assert float(row[column]) > 0
    assert int(row["versions"]) >= 1


def test_probes_are_ids_that_occur_once_in_the_whole_stream():
    def line(event_id):
        return json.dumps({"event_id": event_id, "amount": 1}).encode() + b"\n"

    chunks = [line("a") + line("b") + b"{not json\n", line("b") + line("c") + line("d")]

    probes = bf.choose_probes(chunks, per_file=2)

    assert probes == {0: ["a"], 1: ["c", "d"]}


def test_first_and_last_windows_never_overlap():
    result = bf.RunResult("off", bf.Settings())
    result.batches = [{"poll_s": float(i), "accepted": 10} for i in range(5)]
    assert list(result._window(False)) == [0, 1] and list(result._window(True)) == [3, 4]
    assert result.edge("poll_s", False) == 0.5 and result.edge("poll_s", True) == 3.5
    assert result.facts_at(False) == 20 and result.facts_at(True) == 50
    result.batches = result.batches[:1]
    assert list(result._window(False)) == list(result._window(True)) == [0]


def test_latency_percentiles_and_never_visible_files():
    result = bf.RunResult("on", bf.Settings())
    result.landed = [100.0 + i for i in range(20)]
    result.visible = {i: 100.0 + i + 0.1 * (i + 1) for i in range(19)}  # the last never
    assert result.never_visible == 1
    assert bf._median(result.latencies) == pytest.approx(1.0)
    assert bf._pct(result.latencies, 95) == pytest.approx(1.9)  # nearest rank: 19th of 19
    assert bf._pct([1.0, 2.0, 3.0, 4.0], 50) == 2.0


def test_results_csv_keeps_old_rows_when_the_columns_change(tmp_path):
    path = tmp_path / "follow_results.csv"
    path.write_text("timestamp_utc,checks,old\n2026-01-01T00:00:00Z,on,x\n")
    bf.append_results(path, [{"timestamp_utc": "2026-02-01T00:00:00Z", "checks": "off"}])
    bf.append_results(path, [{"timestamp_utc": "2026-03-01T00:00:00Z", "checks": "on"}])
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == bf.CSV_COLUMNS
        assert [r["checks"] for r in reader] == ["on", "off", "on"]
