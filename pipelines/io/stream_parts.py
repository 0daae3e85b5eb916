"""The streaming pipeline's distributed sink: sink records as Parquet parts on a shared
filesystem, applied to the DuckDB store by a finaliser.

``WriteToDuckDB`` holds a DuckDB connection to a local file inside a DoFn: on
Dataflow or Flink workers that file is per VM and lost with it. ``WriteStreamParts``
writes the same ``(kind, value)`` records (see ``streaming_sink``'s docstring), one
Parquet *part* per bundle, through Beam's ``FileSystems`` only (local paths,
``gs://``, ``s3://`` alike); ``finalise_parts`` — the only writer of the store —
applies the committed parts with ``StreamingSink.apply``, so the semantics are
those of the DuckDB sink.

Layout under ``--parts_dir``::

    run=<run_id>/parts/<content hash>.parquet          committed parts
    run=<run_id>/_tmp/<content hash>-<random>.parquet  being written (or orphaned)

Idempotent by content: a bundle encodes its records, names the part after the
SHA-256 of its bytes, writes it under a temporary name and renames it into
``parts/`` (an object appears whole, or not at all). A retried bundle carries the
same records (Dataflow replays a work item's input; Pub/Sub redelivers the same
messages), so it writes the same name and replaces the part with identical bytes:
merged once. A crash between the write and the rename leaves an orphan in
``_tmp/``, which the finaliser never reads. The commit happens in the writing
bundle, with no shuffle after it: parts written by timers that fire when a job is
drained (the last closed days) would otherwise be dropped as late by the
shuffle's expired global window.

Content addressing needs every bundle's records to be distinct unless they are
the same work: facts, quarantine and duplicates rows name their message (source,
position, event_id), panes their window and index, closed days their day. The
message counts of the DuckDB sink (``inputs``: one number per micro-batch) do not:
two micro-batches of 100 clean messages would be one part. So the parts graph
counts messages with ``counted_messages`` instead: one row per message
(``source``, ``position``, ``records = 1``), the same sum for the sink.

The finaliser lists ``run=*/parts/*.parquet``, applies the parts not yet applied,
oldest first (time the part was committed, then name), one store transaction per
part — the DuckDB sink's one transaction per bundle — and records the part (name
and SHA-256 of its bytes) in ``stream_applied_parts`` in that same transaction. A
part already in the ledger is skipped, so re-running the finaliser, or a crash
between two parts, never applies one twice; a byte-identical copy under another
name is recorded as a ``duplicate`` and not applied.

A part's Parquet layout: one row per payload row, columns ``record`` (ordinal of
the record in the bundle), ``kind``, ``member`` (a pane's view, a reference
table's name), ``rows`` (the member's row count; 0: one marker row of an empty
table), ``pane`` (a pane's window and pane info), ``closed`` (a closed day) and
one struct column per payload (``facts``, ``quarantine``, ``duplicates``,
``inputs``, ``pane__<view>``, ``reference__<table>``). The payloads' Arrow schemas
are in the file's metadata, so every record reads back exactly as written::

    SELECT facts.* FROM 'parts/run=*/parts/*.parquet' WHERE kind = 'facts'
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from pipelines.io.duckdb_sql import fetch_all
from pipelines.io.streaming_sink import (
    KINDS,
    ApplyResult,
    BundleBuffer,
    StreamingSink,
    connect,
)
from pipelines.transforms.windowed_views import Pane
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA
from schemas.rejects import REJECT_SCHEMA

_LOG = logging.getLogger(__name__)

FORMAT = "revattr-stream-part/1"
PENDING, COMMITTED = "_tmp", "parts"
_META = b"revattr.stream_part"
_RUN_DIR = re.compile(r"(?:^|/)run=([^/]+)/" + COMMITTED + r"/([^/]+\.parquet)$")
_NAME_CHARS = 32  # hex digits of the content hash in a part's name

LEDGER_DDL = """CREATE TABLE IF NOT EXISTS stream_applied_parts (
  run_id VARCHAR NOT NULL,
  part VARCHAR NOT NULL,
  sha256 VARCHAR NOT NULL,
  status VARCHAR NOT NULL,
  records BIGINT NOT NULL,
  inserted_facts BIGINT NOT NULL,
  applied_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (run_id, part)
)"""

_PANE_INFO = pa.struct(
    [
        ("view", pa.string()),
        ("window_start", pa.int64()),
        ("window_end", pa.int64()),
        ("index", pa.int64()),
        ("timing", pa.string()),
        ("is_last", pa.bool_()),
    ]
)
_KNOWN_SCHEMAS = {"facts": ATTRIBUTED_EVENTS_SCHEMA, "quarantine": REJECT_SCHEMA}


# --------------------------------------------------------------------------- paths


def run_directory(parts_dir: str, run_id: str) -> str:
    return FileSystems.join(str(parts_dir), f"run={run_id}")


def counted_messages(raw: pa.Table) -> pa.Table:
    """A micro-batch's message count, one row per message (``RAW_EVENT_SCHEMA`` has one).

    ``('inputs', table)`` as the sink sums it (``records``), naming the messages so
    that two micro-batches' counts are never the same content.
    """
    return pa.table(
        {
            "source": raw["source"],
            "position": raw["position"],
            "records": pa.repeat(pa.scalar(1, pa.int64()), raw.num_rows),
        }
    )


# --------------------------------------------------------------------------- encoding


def _relaxed(schema: pa.Schema) -> pa.Schema:
    """Every field nullable: the struct column is null on the rows of other payloads."""
    return pa.schema([f.with_nullable(True) for f in schema])


def _segment(
    ordinal: int, kind: str, member: str | None, table: pa.Table | None,
    pane: dict | None = None, closed: dt.date | None = None,
) -> tuple[pa.Table, str | None, pa.Schema | None]:
    """The part rows of one member of one record (at least one row)."""
    n = table.num_rows if table is not None else 1
    length = max(n, 1)
    columns: dict[str, pa.Array] = {
        "record": pa.array([ordinal] * length, pa.int32()),
        "kind": pa.array([kind] * length, pa.string()),
        "member": pa.array([member] * length, pa.string()),
        "rows": pa.array([n] * length, pa.int64()),
        "pane": pa.array([pane] * length, _PANE_INFO),
        "closed": pa.array([closed] * length, pa.date32()),
    }
    if table is None:
        return pa.table(columns), None, None
    name = kind if member is None else f"{kind}__{member}"
    relaxed = _relaxed(table.schema)
    struct_type = pa.struct(list(relaxed))
    if n:
        arrays = [column.combine_chunks() for column in table.cast(relaxed).columns]
        columns[name] = pa.StructArray.from_arrays(arrays, fields=list(relaxed))
    else:
        columns[name] = pa.nulls(1, struct_type)
    return pa.table(columns), name, table.schema


def _members(kind: str, value: object) -> Iterator[tuple[str | None, pa.Table | None, dict]]:
    """(member, table, extra columns) of one sink record."""
    if kind == "pane":
        pane = value if isinstance(value, Pane) else Pane(*value)
        info = {k: getattr(pane, k) for k in ("view", "window_start", "window_end", "index",
                                               "timing", "is_last")}
        yield pane.view, pane.table, {"pane": info}
    elif kind == "closed":
        yield None, None, {"closed": value}
    elif kind == "reference":
        for name, table in value.items():
            yield name, table, {}
    elif kind in KINDS:
        table = value
        known = _KNOWN_SCHEMAS.get(kind)
        if known is not None:  # as the sink reads them
            table = table.select(known.names).cast(known)
        yield None, table, {}
    else:
        raise ValueError(f"unknown sink record kind {kind!r}")


def encode_part(
    records: list[tuple[str, object]], run_id: str, source_label: str
) -> pa.Table:
    """Sink records -> the part's table (its metadata carries the payload schemas)."""
    segments, schemas = [], {}
    for ordinal, (kind, value) in enumerate(records):
        for member, table, extra in _members(kind, value):
            segment, name, schema = _segment(ordinal, kind, member, table, **extra)
            segments.append(segment)
            if name is not None:
                schemas.setdefault(name, schema)
    part = pa.concat_tables(segments, promote_options="permissive")
    meta = {
        "format": FORMAT,
        "run_id": run_id,
        "source_label": source_label,
        "records": len(records),
        "schemas": {
            name: base64.b64encode(schema.serialize().to_pybytes()).decode()
            for name, schema in schemas.items()
        },
    }
    metadata = {**(part.schema.metadata or {}), _META: json.dumps(meta, sort_keys=True).encode()}
    return part.replace_schema_metadata(metadata)


@dataclass(frozen=True)
class Part:
    """A decoded part: its sink records, in the order the bundle received them."""

    run_id: str
    source_label: str
    records: list[tuple[str, object]]


def decode_part(table: pa.Table) -> Part:
    """The inverse of ``encode_part``."""
    raw = (table.schema.metadata or {}).get(_META)
    if raw is None:
        raise ValueError("not a revattr stream part (no part metadata)")
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"unknown stream part format {meta.get('format')!r}")
    schemas = {
        name: pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
        for name, text in meta["schemas"].items()
    }
    ordinals = table["record"].to_numpy()
    starts = np.flatnonzero(np.r_[True, ordinals[1:] != ordinals[:-1]]) if len(ordinals) else []
    bounds = [*map(int, starts), len(ordinals)]
    records = []
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        rows = table.slice(begin, end - begin)
        kind = rows["kind"][0].as_py()
        members = _split_members(rows, kind, schemas)
        records.append((kind, _record_value(kind, rows, members)))
    return Part(meta["run_id"], meta["source_label"], records)


def _split_members(
    rows: pa.Table, kind: str, schemas: dict[str, pa.Schema]
) -> list[tuple[str | None, pa.Table | None, int]]:
    """(member, table, offset of its first row) of one record's rows, in order."""
    names = rows["member"].to_pylist()
    counts = rows["rows"].to_pylist()
    out, i = [], 0
    while i < len(names):
        member, n = names[i], counts[i]
        length = max(n, 1)
        column = kind if member is None else f"{kind}__{member}"
        if column in schemas:
            schema = schemas[column]
            if n:
                struct = rows[column].slice(i, n).combine_chunks()
                table = pa.Table.from_arrays(struct.flatten(), schema=_relaxed(schema))
                out.append((member, table.cast(schema), i))
            else:
                out.append((member, schema.empty_table(), i))
        else:
            out.append((member, None, i))
        i += length
    return out


def _record_value(kind: str, rows: pa.Table, members: list) -> object:
    if kind == "closed":
        return rows["closed"][0].as_py()
    if kind == "reference":
        return {member: table for member, table, _ in members}
    if kind == "pane":
        _, table, offset = members[0]
        info = rows["pane"][offset].as_py()
        return Pane(info["view"], info["window_start"], info["window_end"], info["index"],
                    info["timing"], info["is_last"], table)
    return members[0][1]


# --------------------------------------------------------------------------- writing


def part_bytes(records: list[tuple[str, object]], run_id: str, source_label: str) -> bytes:
    """The part file of ``records``: the same records give the same bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(encode_part(records, run_id, source_label), sink)
    return sink.getvalue().to_pybytes()


def write_part(
    parts_dir: str, run_id: str, source_label: str, records: list[tuple[str, object]]
) -> str:
    """Write one bundle's records as a committed part (temporary name, then renamed).

    Returns its path, ``run=<run_id>/parts/<content hash>.parquet``: writing the same
    records again (a retried bundle) replaces the part by the same bytes.
    """
    data = part_bytes(records, run_id, source_label)
    name = hashlib.sha256(data).hexdigest()[:_NAME_CHARS]
    run_dir = run_directory(parts_dir, run_id)
    pending = FileSystems.join(run_dir, PENDING, f"{name}-{uuid.uuid4().hex[:12]}.parquet")
    final = FileSystems.join(run_dir, COMMITTED, f"{name}.parquet")
    with FileSystems.create(pending) as handle:
        handle.write(data)
    try:
        FileSystems.mkdirs(FileSystems.join(run_dir, COMMITTED))
    except OSError:  # it exists (local); object stores have no directories
        pass
    FileSystems.rename([pending], [final])
    return final


class _WriteParts(BundleBuffer):
    """Writes a bundle's sink records as one committed part.

    Sample input: ``('facts', pyarrow.Table(attributed_events rows))``.
    """

    def __init__(self, parts_dir: str, run_id: str, source_label: str) -> None:
        super().__init__()
        self.parts_dir = parts_dir
        self.run_id = run_id
        self.source_label = source_label
        self.parts = Metrics.counter(self.__class__, "parts_written")

    def flush(self, records: list[tuple[str, object]]) -> None:
        write_part(self.parts_dir, self.run_id, self.source_label, records)
        self.parts.inc()


class WriteStreamParts(beam.PTransform):
    """Sink records ``(kind, value)`` -> one Parquet part per bundle under ``parts_dir``.

    The store is written by ``finalise_parts``. Count messages with
    ``counted_messages`` (see the module docstring).
    """

    def __init__(self, parts_dir: str, run_id: str, source_label: str) -> None:
        super().__init__()
        self.parts_dir = str(parts_dir)
        self.run_id = run_id
        self.source_label = source_label

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "WriteParts" >> beam.ParDo(
            _WriteParts(self.parts_dir, self.run_id, self.source_label)
        )


# --------------------------------------------------------------------------- finalising


def committed_parts(parts_dir: str, run_id: str | None = None) -> list[tuple[str, str, str]]:
    """(run_id, part name, path) of every committed part, oldest first (commit time, name)."""
    pattern = FileSystems.join(str(parts_dir), f"run={run_id or '*'}", COMMITTED, "*.parquet")
    found = []
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        match = _RUN_DIR.search(metadata.path.replace("\\", "/"))
        if match:
            found.append((metadata.last_updated_in_seconds or 0, match.group(2),
                          match.group(1), metadata.path))
    return [(run, name, path) for _, name, run, path in sorted(found)]


def read_part(path: str) -> tuple[Part, str]:
    """A committed part and the SHA-256 of its bytes."""
    with FileSystems.open(path) as handle:
        data = handle.read()
    return decode_part(pq.read_table(pa.BufferReader(data))), hashlib.sha256(data).hexdigest()


@dataclass
class FinaliseResult:
    """What one pass of the finaliser did."""

    applied: list[str] = field(default_factory=list)  # part names, in the order applied
    duplicates: list[str] = field(default_factory=list)  # byte-identical copies, not applied
    runs: list[str] = field(default_factory=list)
    totals: ApplyResult = field(default_factory=ApplyResult)


def finalise_parts(
    parts_dir: str,
    db: str | Path,
    run_id: str | None = None,
    fiscal_year_start_month: int = 1,
) -> FinaliseResult:
    """Apply every committed, not yet applied part (of ``run_id``, or of every run) to ``db``.

    One transaction per part: ``StreamingSink.apply`` over its records and its
    ledger row. Safe to run again at any time, and while the stream runs.
    """
    result = FinaliseResult()
    parts = committed_parts(parts_dir, run_id)
    if not parts:
        return result
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = connect(db)
    try:
        fetch_all(con, LEDGER_DDL)
        done = {(r, p) for r, p in fetch_all(con, "SELECT run_id, part FROM stream_applied_parts")}
        shas = {s for (s,) in fetch_all(con, "SELECT sha256 FROM stream_applied_parts")}
        prepared: set[str] = set()
        for run, name, path in parts:
            if (run, name) in done:
                continue
            part, sha = read_part(path)
            sink = StreamingSink(str(db), run, part.source_label, fiscal_year_start_month)
            fetch_all(con, "BEGIN TRANSACTION")
            try:
                if sha in shas:
                    status, applied = "duplicate", ApplyResult()
                else:
                    if run not in prepared:
                        sink.prepare(con)
                    status, applied = "applied", sink.apply(con, part.records)
                fetch_all(
                    con,
                    "INSERT INTO stream_applied_parts VALUES (?, ?, ?, ?, ?, ?, now())",
                    [run, name, sha, status, len(part.records), applied.inserted_facts],
                )
                fetch_all(con, "COMMIT")
            except BaseException:
                fetch_all(con, "ROLLBACK")
                raise
            prepared.add(run)
            shas.add(sha)
            (result.applied if status == "applied" else result.duplicates).append(name)
            if run not in result.runs:
                result.runs.append(run)
            _add(result.totals, applied)
    finally:
        con.close()
    return result


def _add(total: ApplyResult, one: ApplyResult) -> None:
    total.inserted_facts += one.inserted_facts
    total.duplicates += one.duplicates
    total.quarantined += one.quarantined
    total.inputs += one.inputs
    total.panes_applied += one.panes_applied
    total.closed_days.extend(one.closed_days)
    total.repaired_days.extend(one.repaired_days)


class PartsFinaliser:
    """Runs ``finalise_parts`` every ``interval_seconds`` in a background thread
    (the launcher's, while the pipeline runs); ``stop()`` ends it after its pass."""

    def __init__(
        self, parts_dir: str, db: str, run_id: str, fiscal_year_start_month: int = 1,
        interval_seconds: float = 10,
    ) -> None:
        self.args = (parts_dir, db, run_id, fiscal_year_start_month)
        self.interval_seconds = interval_seconds
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="revattr-finaliser", daemon=True)

    def start(self) -> PartsFinaliser:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                finalise_parts(*self.args)
                self.passes += 1
            except Exception as error:  # the next pass (or the final one) tries again
                _LOG.warning("stream finaliser pass failed: %s", error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
