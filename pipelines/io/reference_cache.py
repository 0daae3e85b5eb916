"""The resolved reference of one snapshot, cached on disk by its files' fingerprint.

Loading and typing the seven reference files and resolving their three as-of
timelines costs ~0.75 s for a 50k-account reference: most of ``revattr run``'s
start-up, paid again by every run against the same snapshot (backfills, follow-mode
restarts). A snapshot changes a few times a year, so the result is kept as Arrow IPC
files under ``$REVATTR_CACHE_DIR`` (default ``$XDG_CACHE_HOME/revattr``, else
``~/.cache/revattr``) and memory-mapped back.

The key is the sha256 of the files' names and bytes (``reference_fingerprint``) and of
the source of the code that reads and resolves them, so a changed file or a changed
rule never reads a stale entry. An entry is complete only once its folder is renamed
into place. ``REVATTR_CACHE_DIR=off`` disables the cache; a cache that cannot be
written is skipped (the run goes on, uncached).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import pyarrow as pa

from pipelines.io.files import local_folder
from pipelines.io.reference_loader import (
    load_reference,
    reference_file_names,
    reference_fingerprint,
)
from pipelines.rules.enrich import EnrichmentTimelines
from schemas.reference import REFERENCE_TABLES

CACHE_ENV = "REVATTR_CACHE_DIR"
KEPT_ENTRIES = 4  # older snapshots' entries are removed
_TABLE_PREFIX = "table-"
_TIMELINE_PREFIX = "timeline-"
_DERIVED_PREFIX = "derived-"
# Whatever decides the resolved tables: a change to any of these files changes the key.
_CODE = ("pipelines/io/reference_loader.py", "pipelines/rules", "schemas")


@dataclass(frozen=True)
class ResolvedReference:
    """The typed reference tables and their timelines (``EnrichmentTimelines.build``)."""

    tables: dict[str, pa.Table]
    timelines: EnrichmentTimelines
    entry: Path | None = None  # its cache entry (None: not cached)


def cache_root() -> Path | None:
    """Where entries live; None when the cache is off."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured.lower() == "off":
        return None
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base) / "revattr"


@functools.cache
def code_fingerprint(items: tuple[str, ...] = _CODE) -> str:
    """sha256 of the source files (``.py`` under a folder) of ``items``, paths from the
    project root (default: the files that read and resolve the reference)."""
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for item in items:
        path = root / item
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            digest.update(file.read_bytes() if file.is_file() else b"(absent)")
    return digest.hexdigest()


def resolve_reference(directory: str | Path,
                      say: Callable[[str], None] = lambda _message: None) -> ResolvedReference:
    """The resolved reference of ``directory`` (``gs://...`` too: fetched first): from the
    cache, else loaded, resolved and cached. A bad or missing file raises ``UserError``
    as ``load_reference`` does (only loads that succeeded are cached)."""
    with local_folder(str(directory), reference_file_names()) as folder:
        return _resolve_local(folder, say)


def _resolve_local(directory: Path, say: Callable[[str], None]) -> ResolvedReference:
    root = cache_root()
    if root is None or not Path(directory).is_dir():
        return _resolved(directory)
    key = hashlib.sha256(
        (reference_fingerprint(directory) + code_fingerprint()).encode()).hexdigest()
    entry = root / "reference" / key[:32]
    cached = _read_entry(entry)
    if cached is not None:
        os.utime(entry)  # recently used: kept by _prune
        return cached
    resolved = _resolved(directory)
    try:
        _write_entry(entry, resolved)
        _prune(entry.parent, keep=entry)
    except OSError as error:
        say(f"reference cache not written ({error.strerror or error}): {entry.parent}")
        return resolved
    return dataclasses.replace(resolved, entry=entry)


def read_derived(resolved: ResolvedReference, name: str) -> pa.Table | None:
    """A table derived from this snapshot and kept in its cache entry (``write_derived``);
    None when the reference is not cached or the table not (or no longer) there."""
    if resolved.entry is None:
        return None
    try:
        return _read_ipc(resolved.entry / f"{_DERIVED_PREFIX}{name}.arrow")
    except (OSError, pa.ArrowException):
        return None


def write_derived(resolved: ResolvedReference, name: str, table: pa.Table) -> None:
    """Keep ``table`` in this snapshot's cache entry under ``name`` (which must say what
    else it depends on, e.g. a hash of the code that made it); skipped when the reference
    is not cached or the entry cannot be written."""
    if resolved.entry is None:
        return
    tmp = resolved.entry / f"_tmp-{uuid.uuid4().hex}.arrow"
    try:
        _write_ipc(tmp, table)
        os.replace(tmp, resolved.entry / f"{_DERIVED_PREFIX}{name}.arrow")
    except OSError:
        tmp.unlink(missing_ok=True)


def _resolved(directory: str | Path) -> ResolvedReference:
    tables = load_reference(directory)
    return ResolvedReference(tables, EnrichmentTimelines.build(tables))


def _timeline_fields() -> list[str]:
    return [f.name for f in fields(EnrichmentTimelines)]


def _write_entry(entry: Path, resolved: ResolvedReference) -> None:
    tmp = entry.with_name(f"_tmp-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        for name, table in resolved.tables.items():
            _write_ipc(tmp / f"{_TABLE_PREFIX}{name}.arrow", table)
        for name in _timeline_fields():
            value = getattr(resolved.timelines, name)
            table = value if isinstance(value, pa.Table) else pa.table({"value": value})
            _write_ipc(tmp / f"{_TIMELINE_PREFIX}{name}.arrow", table)
        os.replace(tmp, entry)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not entry.is_dir():
            raise
    # Another process may have placed the same entry first: it holds the same content.


def _write_ipc(path: Path, table: pa.Table) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read_ipc(path: Path) -> pa.Table:
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).read_all()


def _read_entry(entry: Path) -> ResolvedReference | None:
    """The entry's content; None when absent or unreadable (it is then rebuilt)."""
    if not entry.is_dir():
        return None
    try:
        tables = {name: _read_ipc(entry / f"{_TABLE_PREFIX}{name}.arrow")
                  for name in REFERENCE_TABLES}
        parts = {}
        for name in _timeline_fields():
            table = _read_ipc(entry / f"{_TIMELINE_PREFIX}{name}.arrow")
            parts[name] = (table if name not in _ARRAY_FIELDS
                           else table["value"].combine_chunks())
    except (OSError, pa.ArrowException, KeyError):
        shutil.rmtree(entry, ignore_errors=True)
        return None
    return ResolvedReference(tables, EnrichmentTimelines(**parts), entry)


_ARRAY_FIELDS = frozenset(
    f.name for f in fields(EnrichmentTimelines) if "Array" in str(f.type))


def _prune(folder: Path, keep: Path) -> None:
    """Keep the ``KEPT_ENTRIES`` most recently used entries (``keep`` among them)."""
    os.utime(keep)
    entries = sorted((p for p in folder.iterdir() if p.is_dir()),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[KEPT_ENTRIES:]:
        if stale != keep:
            shutil.rmtree(stale, ignore_errors=True)
