"""One published database and one full report run, shared by the report tests.

Session-scoped (built once per pytest worker) rather than module-scoped: the
figures, scoping and CLI modules all read the same run, which keeps the reports
tests well under a minute in total.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.batch import run
from pipelines.cli import app
from pipelines.generate import generate_dataset
from tests.reports.oracle import Oracle

PERIOD = "2026-03"  # the latest month of the generated data: the default period


@pytest.fixture(scope="session")
def published_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("report-data")
    generate_dataset(data, events=3000, seed=11, bad_rate=0.0)
    db = data / "out" / "revenue.duckdb"
    summary = run(
        [
            f"--events={data / 'events'}",
            f"--reference={data / 'reference'}",
            f"--db={db}",
            "--checks=false",
        ]
    )
    assert summary.status == "succeeded"
    return db


@pytest.fixture(scope="session")
def oracle(published_db: Path) -> Oracle:
    return Oracle.load(published_db)


@pytest.fixture(scope="session")
def report_dir(published_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``revattr report`` for every manager, default period (the latest month)."""
    out = tmp_path_factory.mktemp("reports")
    result = CliRunner().invoke(app, ["report", "--db", str(published_db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert PERIOD in result.output
    return out
