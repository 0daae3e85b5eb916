"""Resolved-reference cache: a hit equals a fresh resolution; any change misses."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from pipelines.errors import UserError
from pipelines.io import reference_cache
from pipelines.io.reference_cache import CACHE_ENV, KEPT_ENTRIES, resolve_reference
from pipelines.rules.enrich import EnrichmentTimelines
from tests.io.test_reference_loader import write as write_files


def write(directory: Path, overrides: dict[str, str | None] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return write_files(directory, overrides)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    return root


def entries(root: Path) -> list[Path]:
    folder = root / "reference"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def assert_same(left: reference_cache.ResolvedReference,
                right: reference_cache.ResolvedReference) -> None:
    assert left.tables.keys() == right.tables.keys()
    for name, table in left.tables.items():
        assert table.equals(right.tables[name], check_metadata=True), name
    for f in fields(EnrichmentTimelines):
        assert getattr(left.timelines, f.name).equals(getattr(right.timelines, f.name)), f.name


def test_second_resolution_reads_the_entry_and_equals_a_fresh_one(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write(tmp_path / "ref")
    first = resolve_reference(folder)
    assert len(entries(cache)) == 1

    def no_load(_directory: object) -> None:
        raise AssertionError("loaded again although cached")

    monkeypatch.setattr(reference_cache, "load_reference", no_load)
    second = resolve_reference(folder)
    assert_same(first, second)
    monkeypatch.undo()
    monkeypatch.setenv(CACHE_ENV, "off")
    assert_same(first, resolve_reference(folder))


def test_a_changed_file_is_a_new_entry(tmp_path: Path, cache: Path) -> None:
    folder = write(tmp_path / "ref")
    before = resolve_reference(folder)
    (folder / "account_assignments.csv").write_text(
        "account_id,account_manager_id,valid_from,valid_to\nA1,AM9,,\n", encoding="utf-8")
    after = resolve_reference(folder)
    assert len(entries(cache)) == 2
    assert after.timelines.account_managers["value"].to_pylist() == ["AM9"]
    assert before.timelines.account_managers["value"].to_pylist() != ["AM9"]


def test_changed_code_is_a_new_entry(tmp_path: Path, cache: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write(tmp_path / "ref")
    resolve_reference(folder)
    monkeypatch.setattr(reference_cache, "code_fingerprint", lambda: "other code")
    resolve_reference(folder)
    assert len(entries(cache)) == 2


def test_a_damaged_entry_is_rebuilt(tmp_path: Path, cache: Path) -> None:
    folder = write(tmp_path / "ref")
    fresh = resolve_reference(folder)
    (entry,) = entries(cache)
    victim = entry / "timeline-account_managers.arrow"
    victim.write_bytes(victim.read_bytes()[:40])
    assert_same(fresh, resolve_reference(folder))
    assert (entry / "timeline-account_managers.arrow").stat().st_size > 40


def test_a_bad_reference_is_an_error_and_not_cached(tmp_path: Path, cache: Path) -> None:
    folder = write(tmp_path / "ref", {"people": None})
    with pytest.raises(UserError, match="missing reference file"):
        resolve_reference(folder)
    with pytest.raises(UserError, match="does not exist"):
        resolve_reference(tmp_path / "nowhere")
    assert entries(cache) == []


def test_an_unwritable_cache_is_skipped_with_a_message(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    said: list[str] = []
    resolved = resolve_reference(write(tmp_path / "ref"), said.append)
    assert resolved.tables["accounts"].num_rows == 1
    assert len(said) == 1 and "reference cache not written" in said[0]


def test_old_entries_are_pruned(tmp_path: Path, cache: Path) -> None:
    folder = write(tmp_path / "ref")
    for n in range(KEPT_ENTRIES + 2):
        (folder / "fx_rates.csv").write_text(
            f"currency,rate_date,rate_to_reporting\nEUR,2026-01-0{n + 1},1.08\n",
            encoding="utf-8")
        latest = resolve_reference(folder)
    assert len(entries(cache)) == KEPT_ENTRIES
    assert latest.tables["fx_rates"].num_rows == 1
