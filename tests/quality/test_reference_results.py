"""The reference suite's results, once per snapshot (pipelines/quality/reference_results.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.io.reference_cache import CACHE_ENV, resolve_reference
from pipelines.quality import reference_results
from pipelines.quality.reference_results import reference_suite_results
from pipelines.quality.suites import SUITES_DIR_ENV, suites_dir
from tests.io.test_reference_loader import write as write_files


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The suites run_stage_check really ran."""
    ran: list[str] = []
    run = reference_results.run_stage_check

    def counting(stage, suite, *args, **kwargs):  # noqa: ANN001, ANN202
        ran.append(suite)
        return run(stage, suite, *args, **kwargs)

    monkeypatch.setattr(reference_results, "run_stage_check", counting)
    return ran


def reference_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "ref"
    folder.mkdir()
    write_files(folder, {})
    return folder


def test_a_cached_snapshot_is_checked_once_and_gives_the_same_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = reference_dir(tmp_path)
    first = reference_suite_results(resolve_reference(folder))
    again = reference_suite_results(resolve_reference(folder))  # another run, same files
    assert counted == ["reference"]
    assert first.num_rows > 0 and again.equals(first)


def test_a_changed_suite_file_checks_the_snapshot_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    folder = reference_dir(tmp_path)
    reference_suite_results(resolve_reference(folder))
    suites = tmp_path / "suites"
    shutil.copytree(suites_dir(), suites)
    path = suites / "reference.json"
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    monkeypatch.setenv(SUITES_DIR_ENV, str(suites))
    reference_suite_results(resolve_reference(folder))
    assert counted == ["reference", "reference"]


def test_without_the_cache_the_snapshot_is_checked_every_time(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted: list[str]) -> None:
    monkeypatch.setenv(CACHE_ENV, "off")
    folder = reference_dir(tmp_path)
    first = reference_suite_results(resolve_reference(folder))
    assert reference_suite_results(resolve_reference(folder)).equals(first)
    assert counted == ["reference", "reference"]
