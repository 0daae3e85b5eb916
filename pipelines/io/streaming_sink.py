"""The streaming pipeline's DuckDB sink: idempotent upserts of facts, quarantine and
view panes, and the repair of days whose views no longer reconcile with the facts.

What the sink receives (one ``(kind, value)`` record each, all in the global window):

* ``facts``: ``attributed_events`` rows. Inserted if their event_id is new; an
  already published event_id (the stream's dedupe state expired or was lost in a
  restart, or a retried write) is not inserted again: an identical payload is
  counted as a duplicate, a different one is quarantined as
  ``conflicting_duplicate``. Facts are never windowed, so events later than the
  allowed lateness are written too.
* ``quarantine`` (REJECT_SCHEMA) and ``duplicates`` (counted), ``inputs`` (message
  counts), ``reference`` (a reference version: the snapshot tables are replaced).
* ``pane``: a ``windowed_views.Pane``. Its table holds the window's accumulated
  totals per (key, day). ``stream_view_panes`` keeps the last applied value per
  (view, key, day, window, run); the view row moves by the difference between the
  new value and the stored one. So a re-fired (accumulating) pane *replaces* its
  window's earlier contribution, a retried or stale pane (index not greater than
  the stored one) changes nothing, and what other runs (batch or stream) put into
  the row is kept.
* ``closed``: a UTC day whose windows the watermark has closed (plus the allowed
  lateness). From then on no pane will carry the day's new events: after every
  write, each closed day the write touched is checked against the facts and
  recomputed from them when it does not reconcile (``repair``). That is how
  too-late events reach the views, and how a pane that was still in flight when
  its day was repaired gets corrected.

Each record batch (one bundle) is applied in one transaction. Writers within one
process share a connection and a lock (DuckDB allows one writing process).
``pipeline_runs`` holds one ``mode = 'stream'`` row per run whose counts the sink
advances; facts and quarantine are counted by rows actually inserted (retry-safe),
message and duplicate counts are not (a retried bundle counts them again).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import apache_beam as beam
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from pipelines.errors import UserError
from pipelines.io.duckdb_publisher import SAME_DETAIL, DuckDBPublisher, replace_reference
from pipelines.io.duckdb_publisher import connect as _connect
from pipelines.io.duckdb_sql import fetch_all, table_names
from schemas.events import EVENT_FIELDS, PAYLOAD_FIELDS
from schemas.outputs import (
    ATTRIBUTED_EVENTS_SCHEMA,
    MEASURES,
    MONEY_MEASURES,
    REVENUE_VIEWS,
)
from schemas.rejects import REJECT_SCHEMA

_MEASURE_TYPES = {m: ("DECIMAL(18,2)" if m in MONEY_MEASURES else "BIGINT") for m in MEASURES}

STREAM_DDL: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS stream_view_panes (
  view VARCHAR NOT NULL,
  view_key VARCHAR NOT NULL,
  day DATE NOT NULL,
  window_start TIMESTAMPTZ NOT NULL,
  window_end TIMESTAMPTZ NOT NULL,
  run_id VARCHAR NOT NULL,
  pane_index BIGINT NOT NULL,
  pane_timing VARCHAR NOT NULL,
  {", ".join(f"{m} {t} NOT NULL" for m, t in _MEASURE_TYPES.items())},
  updated_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (view, view_key, day, window_start, run_id)
)""",
    """CREATE TABLE IF NOT EXISTS stream_closed_days (
  run_id VARCHAR NOT NULL,
  day DATE NOT NULL,
  closed_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (run_id, day)
)""",
    """CREATE TABLE IF NOT EXISTS view_repairs (
  day DATE NOT NULL,
  repaired_at TIMESTAMPTZ NOT NULL,
  repaired_by VARCHAR NOT NULL
)""",
)

_PANE_COLUMNS = (
    "view", "view_key", "day", "window_start", "window_end", "pane_index", "pane_timing",
    *MEASURES,
)

KINDS = ("reference", "inputs", "facts", "duplicates", "quarantine", "pane", "closed")


def connect(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the sink's database read-write; a catalog of ``revattr run``/``follow`` is refused.

    The stream sink writes its tables into the file itself; a catalog holds only
    views over published Parquet parts (``pipelines/io/catalog.py``).
    """
    if Path(f"{db_path}.d").is_dir():
        raise UserError(
            "this database is a catalog written by `revattr run` or `revattr follow`; "
            "the stream sink writes tables into its own file",
            where=str(db_path),
            hint="give `revattr stream` / `revattr repair` another --db",
        )
    return _connect(db_path)


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    return con.sql(sql, params=params).to_arrow_table()


def _micros_to_datetime(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


# --------------------------------------------------------------------------- repair


def _days_table(con: duckdb.DuckDBPyConnection, days: Iterable[dt.date] | None) -> str:
    """A WHERE clause restricting ``day`` to ``days`` (None: every day)."""
    if days is None:
        return ""
    con.register("_repair_days", pa.table({"day": pa.array(sorted(set(days)), pa.date32())}))
    return "WHERE day IN (SELECT day FROM _repair_days)"


def unbalanced_days(
    con: duckdb.DuckDBPyConnection, days: Iterable[dt.date] | None = None
) -> list[dt.date]:
    """Days (of ``days``, or all) where a view row differs from the facts' sums.

    Stricter than the ``reconciliation`` view (booked revenue per day): every
    measure of every (key, day) row of both views must equal the sums of
    ``attributed_events``, and every (key, day) with facts must have its row.
    """
    if days is not None:
        days = list(days)
        if not days:
            return []
    where = _days_table(con, days)
    found: set[dt.date] = set()
    for view, key in REVENUE_VIEWS.items():
        sums = ", ".join(f"SUM({m}) AS {m}" for m in MEASURES)
        measures = ", ".join(MEASURES)
        differs = " OR ".join(f"f.{m} IS DISTINCT FROM v.{m}" for m in MEASURES)
        rows = fetch_all(
            con,
            f"""WITH f AS (SELECT {key} AS k, day, {sums} FROM attributed_events {where}
                           GROUP BY ALL),
                     v AS (SELECT {key} AS k, day, {measures} FROM {view} {where})
                SELECT DISTINCT day FROM f FULL OUTER JOIN v USING (k, day) WHERE {differs}""",
        )
        found.update(r[0] for r in rows)
    return sorted(found)


def _recompute(con: duckdb.DuckDBPyConnection, days: list[dt.date], by: str) -> None:
    """Set both views' rows of ``days`` to the sums of ``attributed_events``."""
    where = _days_table(con, days)
    for view, key in REVENUE_VIEWS.items():
        sums = ", ".join(f"SUM({m})::{t} AS {m}" for m, t in _MEASURE_TYPES.items())
        updates = ", ".join(f"{m} = excluded.{m}" for m in MEASURES)
        fetch_all(
            con,
            f"INSERT INTO {view} SELECT {key}, day, {sums} FROM attributed_events {where} "
            f"GROUP BY ALL ON CONFLICT ({key}, day) DO UPDATE SET {updates}",
        )
        fetch_all(
            con,
            f"""DELETE FROM {view} v WHERE v.day IN (SELECT day FROM _repair_days)
                AND NOT EXISTS (SELECT 1 FROM attributed_events a
                                WHERE a.day = v.day AND a.{key} = v.{key})""",
        )
    fetch_all(
        con,
        "INSERT INTO view_repairs SELECT day, now(), ? FROM _repair_days",
        [by],
    )


def repair(
    con: duckdb.DuckDBPyConnection, days: Iterable[dt.date] | None = None, by: str = "repair"
) -> list[dt.date]:
    """Recompute the view rows of every unbalanced day (of ``days``, or all) from the facts.

    Runs inside the caller's transaction; returns the repaired days.
    """
    broken = unbalanced_days(con, days)
    if broken:
        _recompute(con, broken, by)
    return broken


def repair_days(db: str | Path, days: Iterable[dt.date] | None = None) -> list[dt.date]:
    """Find the days whose views no longer reconcile with ``attributed_events`` and
    recompute those days' rows of both views from the facts, in one transaction.

    Returns the repaired days (empty when everything reconciles). ``days`` limits
    the search; by default every day is checked.
    """
    path = Path(db)
    if not path.exists():
        raise UserError("database not found", where=str(db), hint="check the --db path")
    con = connect(path)
    try:
        tables = table_names(con)
        missing = {"attributed_events", *REVENUE_VIEWS} - tables
        if missing:
            raise UserError(
                f"not a revattr database (no {', '.join(sorted(missing))})",
                where=str(db),
                hint="point --db at a database written by `revattr run` or `revattr stream`",
            )
        fetch_all(con, "BEGIN TRANSACTION")
        for statement in STREAM_DDL:
            fetch_all(con, statement)
        repaired = repair(con, days, by="revattr repair")
        fetch_all(con, "COMMIT")
        return repaired
    finally:
        con.close()  # an uncommitted transaction is rolled back here


# --------------------------------------------------------------------------- shared connections


class _Shared:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.lock = threading.RLock()
        self.prepared: set[str] = set()  # run ids whose tables and run row are in place


_CONNECTIONS: dict[str, _Shared] = {}
_REGISTRY = threading.Lock()


def shared_connection(db_path: str) -> _Shared:
    """The process's writing connection to ``db_path`` (opened on first use) and its lock.

    DuckDB allows one writing process; within it, every sink step shares one
    connection and takes turns, so two bundles never race on the same rows.
    """
    key = str(Path(db_path).resolve())
    with _REGISTRY:
        shared = _CONNECTIONS.get(key)
        if shared is None:
            Path(key).parent.mkdir(parents=True, exist_ok=True)
            shared = _CONNECTIONS[key] = _Shared(connect(key))
        return shared


def close_connections() -> None:
    """Close every sink connection of this process (end of a run, tests)."""
    with _REGISTRY:
        for shared in _CONNECTIONS.values():
            with shared.lock:
                shared.con.close()
        _CONNECTIONS.clear()


# --------------------------------------------------------------------------- the sink


@dataclass
class ApplyResult:
    """What one write did (for logs and tests)."""

    inserted_facts: int = 0
    duplicates: int = 0
    quarantined: int = 0
    inputs: int = 0
    panes_applied: int = 0
    closed_days: list[dt.date] = field(default_factory=list)
    repaired_days: list[dt.date] = field(default_factory=list)


@dataclass(frozen=True)
class StreamingSink:
    """Where and as which run the streaming pipeline writes."""

    db_path: str
    run_id: str
    source_label: str
    fiscal_year_start_month: int = 1

    # -- set-up ------------------------------------------------------------
    def prepare(self, con: duckdb.DuckDBPyConnection) -> None:
        """Output tables, views, stream tables, and this run's ``pipeline_runs`` row."""
        DuckDBPublisher(self.db_path, self.fiscal_year_start_month).ensure_schema(con)
        for statement in STREAM_DDL:
            fetch_all(con, statement)
        fetch_all(
            con,
            "INSERT INTO pipeline_runs VALUES (?, 'stream', now(), NULL, 0, 0, 0, 0, 'running') "
            "ON CONFLICT (run_id) DO NOTHING",
            [self.run_id],
        )

    def write(
        self,
        con: duckdb.DuckDBPyConnection,
        records: list[tuple[str, object]],
        prepare: bool = True,
    ) -> ApplyResult:
        """Apply one batch of sink records in one transaction."""
        fetch_all(con, "BEGIN TRANSACTION")
        try:
            if prepare:
                self.prepare(con)
            result = self.apply(con, records)
            fetch_all(con, "COMMIT")
            return result
        except BaseException:
            fetch_all(con, "ROLLBACK")
            raise

    # -- one transaction's work -------------------------------------------
    def apply(
        self, con: duckdb.DuckDBPyConnection, records: list[tuple[str, object]]
    ) -> ApplyResult:
        result = ApplyResult()
        by_kind: dict[str, list] = {kind: [] for kind in KINDS}
        for kind, value in records:
            if kind not in by_kind:
                raise ValueError(f"unknown sink record kind {kind!r}")
            by_kind[kind].append(value)
        touched: set[dt.date] = set()

        for reference in by_kind["reference"][-1:]:  # the latest version wins
            replace_reference(con, reference)
        for table in by_kind["inputs"]:
            result.inputs += int(pc.sum(table["records"]).as_py() or 0)
        rejects = [t for t in by_kind["quarantine"] if t.num_rows]
        for facts in by_kind["facts"]:
            inserted, duplicates, conflicts, days = self._write_facts(con, facts)
            result.inserted_facts += inserted
            result.duplicates += duplicates
            rejects.extend([conflicts] if conflicts.num_rows else [])
            touched.update(days)
        for table in by_kind["duplicates"]:
            result.duplicates += table.num_rows
        if rejects:
            result.quarantined += self._write_quarantine(con, pa.concat_tables(rejects))
        if by_kind["pane"]:
            touched.update(self._write_panes(con, by_kind["pane"]))
            result.panes_applied += len(by_kind["pane"])
        for day in by_kind["closed"]:
            fetch_all(
                con,
                "INSERT INTO stream_closed_days VALUES (?, ?, now()) ON CONFLICT DO NOTHING",
                [self.run_id, day],
            )
            result.closed_days.append(day)
            touched.add(day)
        if touched:
            closed = self._closed_among(con, touched)
            if closed:
                result.repaired_days = repair(con, closed, by=f"stream {self.run_id}")
        fetch_all(
            con,
            """UPDATE pipeline_runs SET input_records = input_records + ?,
                   accepted = accepted + ?, duplicates = duplicates + ?,
                   quarantined = quarantined + ? WHERE run_id = ?""",
            [result.inputs, result.inserted_facts, result.duplicates, result.quarantined,
             self.run_id],
        )
        return result

    def _write_facts(
        self, con: duckdb.DuckDBPyConnection, facts: pa.Table
    ) -> tuple[int, int, pa.Table, set[dt.date]]:
        """Insert new facts.

        Returns (inserted, identical repeats, quarantine rows of conflicting repeats,
        days of the facts).
        """
        if facts.num_rows == 0:
            return 0, 0, REJECT_SCHEMA.empty_table(), set()
        facts = facts.select(ATTRIBUTED_EVENTS_SCHEMA.names).cast(ATTRIBUTED_EVENTS_SCHEMA)
        con.register("_facts", facts)
        same = " AND ".join(f"i.{f} IS NOT DISTINCT FROM a.{f}" for f in PAYLOAD_FIELDS)
        repeats = fetch_all(
            con,
            f"SELECT i.event_id, ({same}) FROM _facts i JOIN attributed_events a USING (event_id)",
        )
        inserted = len(
            fetch_all(
                con,
                """INSERT INTO attributed_events BY NAME SELECT * FROM _facts i
                   WHERE NOT EXISTS (SELECT 1 FROM attributed_events a
                                     WHERE a.event_id = i.event_id)
                   RETURNING 1""",
            )
        )
        conflicting = {event_id for event_id, equal in repeats if not equal}
        conflicts = self._conflict_rejects(facts, conflicting)
        con.unregister("_facts")
        days = set(pc.unique(facts["day"]).to_pylist())
        return inserted, len(repeats) - len(conflicting), conflicts, days

    def _conflict_rejects(self, facts: pa.Table, event_ids: set[str]) -> pa.Table:
        if not event_ids:
            return REJECT_SCHEMA.empty_table()
        wanted = pa.array(sorted(event_ids), pa.string())
        rows = facts.filter(pc.is_in(facts["event_id"], value_set=wanted))
        raws, details = [], []
        for row in rows.select(list(EVENT_FIELDS)).to_pylist():
            raws.append(json.dumps({k: (None if v is None else str(v)) for k, v in row.items()}))
            details.append(
                f"event_id {row['event_id']} has a different payload from the already "
                "published event (seen again after the stream's deduplication state had "
                "expired or was lost in a restart)"
            )
        n = rows.num_rows
        return pa.table(
            {
                "source": pa.repeat(pa.scalar(self.source_label), n),
                "position": pa.repeat(pa.scalar(0, pa.int64()), n),
                "raw": pa.array(raws, pa.string()),
                "reason": pa.repeat(pa.scalar("conflicting_duplicate"), n),
                "detail": pa.array(details, pa.string()),
            },
            schema=REJECT_SCHEMA,
        )

    def _write_quarantine(self, con: duckdb.DuckDBPyConnection, rejects: pa.Table) -> int:
        con.register("_rejects", rejects.select(REJECT_SCHEMA.names).cast(REJECT_SCHEMA))
        inserted = fetch_all(
            con,
            f"""INSERT INTO quarantine
               SELECT DISTINCT ?, q.source, q.position, q.raw, q.reason, q.detail, now()
               FROM _rejects q
               WHERE NOT EXISTS (
                   SELECT 1 FROM quarantine o WHERE o.source = q.source
                   AND o.position = q.position AND o.reason = q.reason
                   AND o.raw IS NOT DISTINCT FROM q.raw AND {SAME_DETAIL})
               RETURNING 1""",
            [self.run_id],
        )
        con.unregister("_rejects")
        return len(inserted)

    def _write_panes(self, con: duckdb.DuckDBPyConnection, panes: list) -> set[dt.date]:
        """Move each view row by (pane value - stored value of its window); store the panes.

        All panes of a write are applied together; of several panes of one window in
        the write, the latest (highest index) is the window's value.
        """
        from pipelines.transforms.windowed_views import Pane

        tables = []
        for pane in panes:
            pane = pane if isinstance(pane, Pane) else Pane(*pane)
            if pane.table.num_rows == 0:
                continue
            key = REVENUE_VIEWS[pane.view]
            table = pane.table.rename_columns(
                ["view_key" if c == key else c for c in pane.table.column_names]
            )
            n = table.num_rows
            constants = {
                "view": pa.scalar(pane.view),
                "window_start": pa.scalar(_micros_to_datetime(pane.window_start),
                                          pa.timestamp("us", tz="UTC")),
                "window_end": pa.scalar(_micros_to_datetime(pane.window_end),
                                        pa.timestamp("us", tz="UTC")),
                "pane_index": pa.scalar(pane.index, pa.int64()),
                "pane_timing": pa.scalar(pane.timing),
            }
            for name, value in constants.items():
                table = table.append_column(name, pa.repeat(value, n))
            tables.append(table.select(_PANE_COLUMNS))
        if not tables:
            return set()
        con.register("_incoming_panes", pa.concat_tables(tables))
        latest = _arrow(
            con,
            """SELECT * FROM _incoming_panes QUALIFY row_number() OVER (
                   PARTITION BY view, view_key, day, window_start ORDER BY pane_index DESC) = 1""",
        )
        con.unregister("_incoming_panes")
        con.register("_panes", latest)
        deltas = _arrow(
            con,
            f"""SELECT p.view, p.view_key, p.day,
                   {", ".join(f"(p.{m} - COALESCE(o.{m}, 0))::{t} AS {m}"
                              for m, t in _MEASURE_TYPES.items())}
                FROM _panes p LEFT JOIN stream_view_panes o
                  ON o.view = p.view AND o.window_start = p.window_start AND o.run_id = ?
                 AND o.view_key = p.view_key AND o.day = p.day
                WHERE o.pane_index IS NULL OR o.pane_index < p.pane_index""",
            [self.run_id],
        )
        if deltas.num_rows:
            con.register("_delta", deltas)
            for view, key in REVENUE_VIEWS.items():
                adds = ", ".join(f"{m} = {view}.{m} + excluded.{m}" for m in MEASURES)
                # Summed first: one window pair can add to one (key, day) twice.
                sums = ", ".join(f"SUM({m})::{t}" for m, t in _MEASURE_TYPES.items())
                fetch_all(
                    con,
                    f"INSERT INTO {view} ({key}, day, {', '.join(MEASURES)}) "
                    f"SELECT view_key, day, {sums} FROM _delta WHERE view = ? "
                    f"GROUP BY view_key, day ON CONFLICT ({key}, day) DO UPDATE SET {adds}",
                    [view],
                )
            con.unregister("_delta")
        replace = ", ".join(
            f"{c} = excluded.{c}" for c in ("pane_index", "pane_timing", *MEASURES, "updated_at")
        )
        fetch_all(
            con,
            f"""INSERT INTO stream_view_panes
                SELECT view, view_key, day, window_start, window_end, ?, pane_index,
                       pane_timing, {", ".join(MEASURES)}, now() FROM _panes
                ON CONFLICT (view, view_key, day, window_start, run_id) DO UPDATE SET {replace}
                WHERE excluded.pane_index > stream_view_panes.pane_index""",
            [self.run_id],
        )
        con.unregister("_panes")
        return set(pc.unique(latest["day"]).to_pylist())

    def _closed_among(self, con: duckdb.DuckDBPyConnection, days: set[dt.date]) -> list[dt.date]:
        con.register("_touched", pa.table({"day": pa.array(sorted(days), pa.date32())}))
        closed = fetch_all(
            con,
            "SELECT day FROM stream_closed_days WHERE run_id = ? "
            "AND day IN (SELECT day FROM _touched) ORDER BY day",
            [self.run_id],
        )
        con.unregister("_touched")
        return [r[0] for r in closed]


# --------------------------------------------------------------------------- the Beam step


class BundleBuffer(beam.DoFn):
    """Buffers a bundle's sink records; ``flush(records)`` writes them once, at its end
    (both stream sinks: one transaction, or one part, per bundle)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, object]] = []

    def start_bundle(self) -> None:
        self.records = []

    def process(self, record: tuple[str, object]) -> None:
        self.records.append(record)

    def finish_bundle(self) -> None:
        if self.records:
            self.flush(self.records)
        self.records = []

    def flush(self, records: list[tuple[str, object]]) -> None:
        raise NotImplementedError


class _WriteBundle(BundleBuffer):
    """Applies a bundle's sink records in one transaction."""

    def __init__(self, sink: StreamingSink) -> None:
        super().__init__()
        self.sink = sink
        self.writes = Metrics.counter(self.__class__, "transactions")
        self.repairs = Metrics.counter(self.__class__, "days_repaired")

    def flush(self, records: list[tuple[str, object]]) -> None:
        shared = shared_connection(self.sink.db_path)
        with shared.lock:
            first = self.sink.run_id not in shared.prepared
            result = self.sink.write(shared.con, records, prepare=first)
            shared.prepared.add(self.sink.run_id)
        self.writes.inc()
        self.repairs.inc(len(result.repaired_days))


class WriteToDuckDB(beam.PTransform):
    """Sink records ``(kind, value)`` -> DuckDB, one transaction per bundle."""

    def __init__(self, sink: StreamingSink) -> None:
        super().__init__()
        self.sink = sink

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "ApplyInOneTransaction" >> beam.ParDo(_WriteBundle(self.sink))


# --------------------------------------------------------------------------- run rows


@dataclass
class StreamRunSummary:
    run_id: str
    status: str
    input_records: int
    accepted: int
    duplicates: int
    quarantined: int
    quarantined_by_reason: dict[str, int]
    unbalanced_days: list[dt.date]
    repaired_days: list[dt.date]

    @property
    def balanced(self) -> bool:
        return not self.unbalanced_days


def finish_run(
    db: str | Path, run_id: str, fiscal_year_start_month: int = 1
) -> StreamRunSummary:
    """Close a stream run's ``pipeline_runs`` row (when the stream ended or was drained)."""
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    con = connect(db)
    try:
        fetch_all(con, "BEGIN TRANSACTION")
        StreamingSink(str(db), run_id, "", fiscal_year_start_month).prepare(con)
        row = fetch_all(
            con,
            "SELECT input_records, accepted, duplicates, quarantined FROM pipeline_runs "
            "WHERE run_id = ?",
            [run_id],
        )
        input_records, accepted, duplicates, quarantined = row[0] if row else (0, 0, 0, 0)
        days = [
            r[0]
            for r in fetch_all(
                con,
                """SELECT DISTINCT day FROM attributed_events WHERE run_id = ?
                   UNION SELECT DISTINCT day FROM stream_view_panes WHERE run_id = ?""",
                [run_id, run_id],
            )
        ]
        unbalanced = unbalanced_days(con, days)
        by_reason = dict(
            fetch_all(
                con,
                "SELECT reason, count(*) FROM quarantine WHERE run_id = ? GROUP BY 1 ORDER BY 1",
                [run_id],
            )
        )
        repaired = [
            r[0]
            for r in fetch_all(
                con,
                "SELECT DISTINCT day FROM view_repairs WHERE repaired_by = ? ORDER BY day",
                [f"stream {run_id}"],
            )
        ]
        accounted = accepted + duplicates + quarantined == input_records
        status = "succeeded" if accounted and not unbalanced else (
            "failed_checks" if not accounted else "unbalanced"
        )
        fetch_all(
            con,
            "UPDATE pipeline_runs SET finished_at = now(), status = ? WHERE run_id = ?",
            [status, run_id],
        )
        fetch_all(con, "COMMIT")
        return StreamRunSummary(
            run_id, status, input_records, accepted, duplicates, quarantined, by_reason,
            unbalanced, repaired,
        )
    finally:
        con.close()

