"""The Beam graph on URLs (``revattrtest://``, a FileSystems scheme standing in for
gs://): events, reference and staging remote, the store local. Published tables equal
the embedded engine's on the same files; a second run finds every event published
(history read as data from the workers' copy of the published parts)."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines import batch
from pipelines.embedded import run as embedded
from pipelines.errors import UserError
from pipelines.generate import generate_dataset
from pipelines.io import files
from tests.fake_remote_fs import ROOT_ENV, to_local

pytestmark = pytest.mark.slow

FACTS = ("event_id, event_type, event_time, day, deal_id, account_id, currency, amount, "
         "booked_revenue, pipeline_created, account_manager_id, territory_id, "
         "territory_manager_id, attribution_status")


def tables(db: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return {
            "facts": con.execute(f"SELECT {FACTS} FROM attributed_events ORDER BY ALL").fetchall(),
            **{v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall()
               for v in ("territory_revenue", "account_manager_revenue")},
            "quarantine": con.execute(
                "SELECT regexp_extract(source, '[^/]+$'), position, reason, "
                "regexp_replace(detail, '\\S*/', '', 'g'), raw "  # file names, not folders
                "FROM quarantine ORDER BY ALL").fetchall(),
            "runs": con.execute("SELECT input_records, accepted, duplicates, quarantined "
                                "FROM pipeline_runs ORDER BY started_at").fetchall(),
        }


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(root))
    data = tmp_path / "data"
    generate_dataset(data, events=1500, seed=5, bad_rate=0.03)
    shutil.copytree(data / "events", to_local("revattrtest://events"))
    shutil.copytree(data / "reference", to_local("revattrtest://ref"))
    return data


def test_a_run_on_urls_publishes_what_the_engine_publishes_from_local_files(
        remote: Path, tmp_path: Path) -> None:
    flags = ["--checks=false", "--shards=4"]
    beam_db = tmp_path / "beam" / "revenue.duckdb"
    first = batch.run(["--events=revattrtest://events/*.jsonl", "--reference=revattrtest://ref",
                       f"--db={beam_db}", "--staging_dir=revattrtest://staging",
                       "--runner=FnApiRunner", *flags])
    engine_db = tmp_path / "engine" / "revenue.duckdb"
    embedded.run([f"--events={remote / 'events'}/*.jsonl", f"--reference={remote / 'reference'}",
                  f"--db={engine_db}", *flags])
    assert first.status == "succeeded" and first.accepted > 1000
    beam_tables, engine_tables = tables(beam_db), tables(engine_db)
    for name in beam_tables:
        assert beam_tables[name] == engine_tables[name], name
    # The run's remote staging is gone; the history copies stay for the next run.
    assert files.match("revattrtest://staging/" + first.run_id + "/**") == []

    again = batch.run(["--events=revattrtest://events/*.jsonl", "--reference=revattrtest://ref",
                       f"--db={beam_db}", "--staging_dir=revattrtest://staging",
                       "--runner=FnApiRunner", *flags])
    assert again.status == "succeeded"
    assert again.accepted == 0 and again.duplicates == first.accepted + first.duplicates
    assert files.match("revattrtest://staging/_history/*.parquet")


def test_the_embedded_engine_refuses_urls_with_what_to_do(remote: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="executor beam"):
        embedded.run(["--events=revattrtest://events/*.jsonl", f"--reference={remote}",
                      f"--db={tmp_path / 'x.duckdb'}"])
