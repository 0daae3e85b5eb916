"""The revattr command line: help, exit codes, one-line errors, the summary."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()


@pytest.mark.parametrize("verb", [[], ["generate"], ["run"], ["check"]])
def test_every_verb_has_help(verb):
    result = runner.invoke(app, [*verb, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_help_does_not_import_beam_or_great_expectations():
    code = (
        "import sys; from pipelines.cli import app; "
        "print(any(m.startswith(('apache_beam', 'great_expectations')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unreadable_reference_exits_2_with_one_line_naming_the_file(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_text('{"event_id": "e1"}\n')
    result = runner.invoke(
        app,
        [
            "run",
            "--events",
            str(events),
            "--reference",
            str(tmp_path / "nope"),
            "--db",
            str(tmp_path / "o.duckdb"),
        ],
    )
    assert result.exit_code == 2
    assert "nope" in result.output
    assert "Traceback" not in result.output


def test_no_matching_event_files_exits_2(tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            "--events",
            str(tmp_path / "*.jsonl"),
            "--reference",
            str(tmp_path),
            "--db",
            str(tmp_path / "o.duckdb"),
        ],
    )
    assert result.exit_code == 2
    assert "*.jsonl" in result.output


@pytest.mark.slow
def test_generate_then_run_prints_the_summary_and_exits_0(tmp_path):
    data = tmp_path / "data"
    assert (
        runner.invoke(
            app, ["generate", "--out", str(data), "--events", "2000", "--bad-rate", "0.02"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "run",
            "--events",
            str(data / "events"),
            "--reference",
            str(data / "reference"),
            "--db",
            str(tmp_path / "o.duckdb"),
        ],
    )
    assert result.exit_code == 0, result.output
    for line in (
        "events in",
        "accepted",
        "duplicates",
        "quarantined",
        "malformed",
        "booked revenue",
        "balanced",
        "yes",
    ):
        assert line in result.output
