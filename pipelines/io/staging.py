"""Per-run staging area: the pipeline writes Parquet parts, the publisher applies them.

This is the write-then-finalise pattern of Beam's file sinks: workers write
uniquely named part files in parallel; only the finaliser (the publisher) makes
them visible, in one transaction.

A run holds its staging folder (``claimed``) with a lock on ``<folder>/.lock``; a
run killed with SIGKILL cannot remove its folder, but its lock dies with it, so
the next run in the same place removes the folder.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# What the pipeline stages, by name.
STAGED_OUTPUTS: tuple[str, ...] = (
    "inputs",  # INPUT_COUNT_SCHEMA: records read per file
    "attributed_events",
    "duplicates",
    "quarantine",  # schemas.rejects.REJECT_SCHEMA
    "territory_revenue",
    "account_manager_revenue",
    "dq_results",  # pipelines.quality.gx_runner.CHECK_RESULT_SCHEMA
)

INPUT_COUNT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("records", pa.int64(), nullable=False),
    ]
)


LOCK = ".lock"


@contextmanager
def claimed(folder: str | Path) -> Iterator[Path]:
    """The run's staging ``folder``: created and locked for the run, removed after it.

    First, the sibling folders of runs that died (their lock is free) are removed.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = _lock(folder)
    try:
        remove_abandoned(folder.parent, keep=folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def _lock(folder: Path) -> int:
    """A locked ``folder/.lock`` (locked before it is named so: a sweeper never sees it free)."""
    tmp = folder / f"{LOCK}-{uuid.uuid4().hex}"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.replace(tmp, folder / LOCK)
    return fd


def remove_abandoned(parent: Path, keep: Path) -> list[Path]:
    """Remove the staging folders in ``parent`` whose run died (lock file there, not held).

    A folder without a lock file is left alone (a run creating it, or not ours).
    """
    removed = []
    for folder in parent.iterdir():
        if folder == keep or not (folder / LOCK).exists():
            continue
        try:
            fd = os.open(folder / LOCK, os.O_RDONLY)
        except FileNotFoundError:  # its run just finished
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its run is alive
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def write_part(root: str | Path, name: str, table: pa.Table | pa.RecordBatch) -> Path | None:
    """Write one part file of a staged output; empty tables write nothing."""
    if table.num_rows == 0:
        return None
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"part-{uuid.uuid4().hex}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)  # a reader of the folder never sees a half-written part
    return path


def part_files(root: str | Path, name: str) -> list[str]:
    """The part files of one staged output, sorted."""
    return sorted(str(p) for p in (Path(root) / name).glob("part-*.parquet"))


def read_staged(root: str | Path, name: str, schema: pa.Schema) -> pa.Table:
    """All parts of one staged output as one table (for tests and small outputs)."""
    files = part_files(root, name)
    if not files:
        return schema.empty_table()
    return pa.concat_tables([pq.read_table(f) for f in files]).cast(schema)
