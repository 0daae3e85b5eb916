"""FileSystems helpers of the Beam graph, on a local folder and on a URL scheme
(``revattrtest://``, a stand-in for gs:// with no network)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.io import files
from tests.fake_remote_fs import ROOT_ENV, to_local


@pytest.fixture(params=["local", "url"])
def base(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "local":
        return str(tmp_path / "base")
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    return "revattrtest://base"


def test_parts_are_written_whole_and_read_back(base: str) -> None:
    table = pa.table({"event_id": ["a", "b"], "n": [1, 2]})
    first = files.write_parquet_part(base, "facts", table)
    second = files.write_parquet_part(base, "facts", table.slice(1))
    assert files.write_parquet_part(base, "facts", table.slice(0, 0)) is None
    listed = files.match(files.join(base, "facts", "*"))
    assert listed == sorted([first, second])  # no temporary file left beside them
    assert files.read_parquet(first).equals(table)
    assert files.read_parquet(second, columns=["n"]).to_pydict() == {"n": [2]}


def test_copy_missing_copies_each_part_once(base: str, tmp_path: Path) -> None:
    source = files.write_parquet(files.join(base, "src", "p1-1.parquet"), pa.table({"x": [1]}))
    (copy,) = files.copy_missing([source], files.join(base, "mirror"))
    assert files.read_parquet(copy).to_pydict() == {"x": [1]}
    files.write_parquet(source, pa.table({"x": [2]}))  # parts are immutable: not recopied
    assert files.copy_missing([source], files.join(base, "mirror")) == [copy]
    assert files.read_parquet(copy).to_pydict() == {"x": [1]}


def test_a_folder_is_fetched_without_temporary_files_and_deleted(base: str,
                                                                 tmp_path: Path) -> None:
    files.write_parquet(files.join(base, "run", "views", "part-1.parquet"), pa.table({"x": [1]}))
    files.write_parquet(files.join(base, "run", "inputs", "part-2.parquet"), pa.table({"y": [2]}))
    files.write_atomically(files.join(base, "run", "views", "_tmp-x"), lambda h: h.write(b"?"))
    local = tmp_path / "fetched"
    files.fetch_folder(files.join(base, "run"), local)
    fetched = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert fetched == ["inputs/part-2.parquet", "views/part-1.parquet"]
    files.delete_folder(files.join(base, "run"))
    assert files.match(files.join(base, "run", "**")) == []


def test_local_folder_of_a_url_is_a_temporary_copy(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    remote = "revattrtest://ref"
    Path(to_local(remote)).mkdir()
    Path(to_local(remote), "people.csv").write_text("person_id\nP1\n", encoding="utf-8")
    with files.local_folder(remote, ["people.csv", "accounts.csv"]) as folder:
        assert folder != Path(to_local(remote))
        assert sorted(p.name for p in folder.iterdir()) == ["people.csv"]
        assert (folder / "people.csv").read_text(encoding="utf-8") == "person_id\nP1\n"
    assert not folder.exists()
    with files.local_folder(str(tmp_path), []) as same:
        assert same == tmp_path
