"""Files of the Beam graph, through Beam's ``FileSystems``: a local path, ``gs://``,
``s3://`` alike, so the same graph runs on one machine and on Dataflow, Flink or Dask
workers that share only a filesystem.

Every file a transform reads or writes goes through these helpers; none keeps a
connection or a local file open between elements. Beam is imported on first use (the
embedded engine reads local files without it).
"""

from __future__ import annotations

import contextlib
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq


def _fs():  # noqa: ANN202 - apache_beam.io.filesystems.FileSystems, imported lazily
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _uncompressed():  # noqa: ANN202
    from apache_beam.io.filesystem import CompressionTypes

    return CompressionTypes.UNCOMPRESSED


def has_scheme(path: str) -> bool:
    """``gs://bucket/x`` and other URLs (not a local path)."""
    return "://" in str(path)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` in the base's own filesystem."""
    base = str(base)
    return _fs().join(base, *parts) if has_scheme(base) else posixpath.join(base, *parts)


def open_read(path: str) -> BinaryIO:
    """A seekable binary reader of ``path`` (FileSystems.open, never decompressed)."""
    return _fs().open(str(path), compression_type=_uncompressed())


def exists(path: str) -> bool:
    return _fs().exists(str(path))


def match(pattern: str) -> list[str]:
    """The paths of the files matching ``pattern`` (a glob), sorted; none: []."""
    result = _fs().match([str(pattern)])[0]
    return sorted(m.path for m in result.metadata_list)


def write_atomically(path: str, write: Callable[[BinaryIO], None]) -> str:
    """``write(handle)`` into a temporary file beside ``path``, then renamed to it: a
    reader listing the folder never sees a half-written file. Returns ``path``."""
    folder, name = posixpath.split(str(path)) if has_scheme(path) else (
        str(Path(path).parent), Path(path).name)
    tmp = join(folder, f"_tmp-{uuid.uuid4().hex}-{name}")
    handle = _fs().create(tmp, compression_type=_uncompressed())
    try:
        write(handle)
    finally:
        handle.close()
    _fs().rename([tmp], [str(path)])
    return str(path)


def write_parquet(path: str, table: pa.Table) -> str:
    """``table`` as the Parquet file ``path``, written atomically."""
    return write_atomically(path, lambda handle: pq.write_table(table, handle))


def write_parquet_part(root: str, name: str, table: pa.Table | pa.RecordBatch) -> str | None:
    """One uniquely named part ``<root>/<name>/part-<uuid>.parquet``; empty: nothing."""
    if table.num_rows == 0:
        return None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    return write_parquet(join(str(root), name, f"part-{uuid.uuid4().hex}.parquet"), table)


def read_parquet(path: str, columns: list[str] | None = None) -> pa.Table:
    with open_read(path) as handle:
        return pq.read_table(handle, columns=columns)


@contextlib.contextmanager
def local_folder(folder: str, names: list[str]) -> Iterator[Path]:
    """``folder`` as a local directory: itself when local, else a temporary copy of the
    files ``names`` found in it (removed on exit). For readers that need local paths
    (the reference loader), on small files."""
    if not has_scheme(folder):
        yield Path(folder)
        return
    scratch = Path(tempfile.mkdtemp(prefix="revattr-fetch-"))
    try:
        for name in names:
            source = join(folder, name)
            if exists(source):
                with open_read(source) as src, (scratch / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def copy_missing(paths: list[str], folder: str) -> list[str]:
    """Copies of ``paths`` (immutable files, named uniquely) under ``folder``: files
    already there are not copied again. Returns the copies' paths, in order."""
    copies = []
    for path in paths:
        target = join(folder, posixpath.basename(str(path)))
        if not exists(target):
            with open_read(path) as source:
                write_atomically(target, lambda handle, src=source: shutil.copyfileobj(src, handle))
        copies.append(target)
    return copies


def fetch_folder(folder: str, local: Path) -> None:
    """Every file under ``folder`` (any FileSystems path) copied to the local ``local``,
    keeping relative paths (temporary files skipped)."""
    prefix = str(folder).rstrip("/") + "/"
    for path in match(prefix + "**"):
        relative = path[len(prefix):]
        if not relative or posixpath.basename(relative).startswith("_tmp-"):
            continue
        target = local / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_read(path) as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)


def delete_folder(folder: str) -> None:
    """Remove ``folder`` and what it holds (any FileSystems path); absent: nothing."""
    if not has_scheme(folder):
        shutil.rmtree(folder, ignore_errors=True)
        return
    contents = match(str(folder).rstrip("/") + "/**")  # object stores have no folders
    if contents:
        _fs().delete(contents)
