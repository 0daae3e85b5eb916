"""Publish one run's staged outputs into the DuckDB database, in one transaction.

New facts are inserted, view deltas are upserted (summed into existing
(key, day) rows, so late data for published days adds up), the quarantine and
the run row are appended. Before committing, the touched days must reconcile
and every input record must be accounted for; otherwise the transaction is
rolled back, the previous published state stays intact, and only the run row
(and its check results) record what happened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa

from pipelines.errors import UserError
from pipelines.io.duckdb_sql import fetch_all, literal, table_names
from pipelines.io.staging import part_files
from schemas.outputs import (
    MEASURES,
    REVENUE_VIEWS,
    create_table_sql,
    output_ddl,
    reference_ddl,
    view_sql,
)
from schemas.publication import STORE_PRIMARY_KEYS, STORE_TABLES


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    mode: str
    started_at: dt.datetime


@dataclass
class RunSummary:
    """What a run did: the figures of its ``pipeline_runs`` row and more."""

    run_id: str
    status: str
    input_records: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    booked_revenue: Decimal = Decimal("0.00")
    unbalanced_days: list[dt.date] = field(default_factory=list)
    # Publication checks: (expectation, severity, success, observed).
    checks: list[tuple[str, str, bool, str]] = field(default_factory=list)
    # Data-quality suites run by the pipeline: (stage, suite, expectation, severity, success).
    quality: list[tuple[str, str, str, str, bool]] = field(default_factory=list)
    quality_page: Path | None = None

    @property
    def critical_failures(self) -> list[str]:
        publication = [e for e, severity, ok, _ in self.checks if severity == "critical" and not ok]
        staged = [
            f"{suite}.{e}"
            for _, suite, e, severity, ok in self.quality
            if severity == "critical" and not ok
        ]
        return publication + staged

    @property
    def warnings(self) -> list[str]:
        return [
            f"{suite}.{e}"
            for _, suite, e, severity, ok in self.quality
            if severity != "critical" and not ok
        ]

    @property
    def balanced(self) -> bool:
        return not self.unbalanced_days


# Whether stored quarantine row ``o`` and new row ``q`` (same place, reason and text) tell
# of the same record: the same detail, or, for a conflict, the same event id (its detail,
# ``event_id <id> has a different payload from <the version it lost to>``, changes once
# that version is published).
SAME_DETAIL = ("(o.detail IS NOT DISTINCT FROM q.detail OR (q.reason = 'conflicting_duplicate' "
               "AND split_part(o.detail, ' ', 2) = split_part(q.detail, ' ', 2)))")


def connect(db_path: str | Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the database, turning a lock conflict into a message that says what to do."""
    try:
        con = duckdb.connect(str(db_path), read_only=read_only)
        fetch_all(con, "SET enable_progress_bar = false")  # it would draw over the CLI's output
        return con
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            raise UserError(
                "the database is locked by another process",
                where=str(db_path),
                hint="close the other writer or BI connection and run again",
            ) from error
        raise UserError(f"cannot open the database: {error}", where=str(db_path)) from error


def _parquet(files: list[str]) -> str:
    return "read_parquet([" + ", ".join(literal(f) for f in files) + "])"


def replace_reference(con: duckdb.DuckDBPyConnection, reference: dict[str, pa.Table]) -> None:
    """Replace the reference snapshot tables with ``reference`` (in the caller's transaction)."""
    for name, table in reference.items():
        con.register("_reference_snapshot", table)
        fetch_all(con, f"DELETE FROM {name}")
        fetch_all(con, f"INSERT INTO {name} BY NAME SELECT * FROM _reference_snapshot")
        con.unregister("_reference_snapshot")


class DuckDBPublisher:
    """Applies staged run outputs to ``db_path``.

    ``published_facts``: the writer's store of a ``Publication``, which does not
    keep the facts (their published parts are the record): a function giving the
    SQL relation of the already published facts, read to refuse an event id
    published twice; per-day fact totals (``daily_facts``) are kept for the
    reconciliation instead. None: the facts are a table of ``db_path`` (the
    streaming sink's database).
    """

    def __init__(
        self,
        db_path: str | Path,
        fiscal_year_start_month: int = 1,
        published_facts: Callable[[], str] | None = None,
    ) -> None:
        self.db_path = Path(db_path)
        self.fiscal_year_start_month = fiscal_year_start_month
        self.published_facts = published_facts

    @property
    def facts_in_store(self) -> bool:
        return self.published_facts is None

    def ensure_schema(self, con: duckdb.DuckDBPyConnection) -> None:
        store = [create_table_sql(n, s, STORE_PRIMARY_KEYS[n]) for n, s in STORE_TABLES.items()]
        exclude = () if self.facts_in_store else ("attributed_events",)
        for statement in output_ddl(exclude) + reference_ddl() + store:
            fetch_all(con, statement)
        if not self.facts_in_store and "attributed_events" in table_names(con):
            # A store of revattr 0.2 kept the facts (also published): keep their totals.
            fetch_all(con, "INSERT INTO daily_facts SELECT day, sum(booked_revenue), count(*) "
                           "FROM attributed_events GROUP BY day ON CONFLICT DO NOTHING")
            fetch_all(con, "DROP TABLE attributed_events")
        daily = None if self.facts_in_store else "daily_facts"
        for statement in view_sql(self.fiscal_year_start_month, daily_facts=daily):
            fetch_all(con, statement)

    def publish(
        self,
        staging: str | Path,
        run: RunInfo,
        reference: dict[str, pa.Table] | None,
        record: Callable[[duckdb.DuckDBPyConnection, RunSummary], None] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> RunSummary:
        """Apply the run's staged outputs atomically and return its summary.

        ``record(con, summary)`` runs inside the transaction that records the run
        (whatever its status), e.g. to assign its version or mark its input applied.
        ``con``: an open read-write connection to the database to use (left open).
        """
        own = con is None
        if own:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            con = connect(self.db_path)
        began = committed = False
        try:
            fetch_all(con, "BEGIN TRANSACTION")
            began = True
            self.ensure_schema(con)
            summary = self._count(con, staging, run)
            if reference is not None:  # None: unchanged since the last run, the store has it
                replace_reference(con, reference)
            touched_days = self._apply(con, staging, run)
            summary.unbalanced_days = self._unbalanced_days(con, touched_days)
            summary.booked_revenue = self._booked_revenue(con, staging)
            summary.quality = self._staged_quality(con, staging)
            self._check(summary)
            if summary.status != "succeeded":
                fetch_all(con, "ROLLBACK")
                fetch_all(con, "BEGIN TRANSACTION")
                self.ensure_schema(con)
            self._record_run(con, run, summary, staging)
            if record is not None:
                record(con, summary)
            fetch_all(con, "COMMIT")
            committed = True
            return summary
        finally:
            if own:
                con.close()  # an uncommitted transaction is rolled back here
            elif began and not committed:  # the caller keeps the connection: undo here
                fetch_all(con, "ROLLBACK")

    # -- steps -------------------------------------------------------------
    def _count(
        self, con: duckdb.DuckDBPyConnection, staging: str | Path, run: RunInfo
    ) -> RunSummary:
        def rows(name: str) -> int:
            files = part_files(staging, name)
            return (
                con.execute(f"SELECT count(*) FROM {_parquet(files)}").fetchall()[0][0]
                if files
                else 0
            )

        inputs = part_files(staging, "inputs")
        input_records = (
            con.execute(f"SELECT coalesce(sum(records), 0) FROM {_parquet(inputs)}").fetchall()[0][
                0
            ]
            if inputs
            else 0
        )
        quarantine = part_files(staging, "quarantine")
        by_reason = (
            dict(
                con.execute(
                    f"SELECT reason, count(*) FROM {_parquet(quarantine)} GROUP BY 1 ORDER BY 1"
                ).fetchall()
            )
            if quarantine
            else {}
        )
        return RunSummary(
            run_id=run.run_id,
            status="succeeded",
            input_records=int(input_records),
            accepted=rows("attributed_events"),
            duplicates=rows("duplicates"),
            quarantined=sum(by_reason.values()),
            quarantined_by_reason=by_reason,
        )

    def _apply(
        self, con: duckdb.DuckDBPyConnection, staging: str | Path, run: RunInfo
    ) -> list[dt.date]:
        facts = part_files(staging, "attributed_events")
        touched: list[dt.date] = []
        if facts:
            self._guard_event_ids(con, facts)
            if self.facts_in_store:
                fetch_all(con, "INSERT INTO attributed_events BY NAME "
                               f"SELECT * FROM {_parquet(facts)}")
            else:
                fetch_all(
                    con,
                    "INSERT INTO daily_facts SELECT day, sum(booked_revenue), count(*) "
                    f"FROM {_parquet(facts)} GROUP BY day ON CONFLICT (day) DO UPDATE SET "
                    "booked_revenue = daily_facts.booked_revenue + excluded.booked_revenue, "
                    "events = daily_facts.events + excluded.events",
                )
            touched = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT day FROM {_parquet(facts)} ORDER BY day"
                ).fetchall()
            ]
        for view, key in REVENUE_VIEWS.items():
            parts = part_files(staging, view)
            if not parts:
                continue
            sums = ", ".join(f"SUM({m}) AS {m}" for m in MEASURES)
            updates = ", ".join(f"{m} = {view}.{m} + excluded.{m}" for m in MEASURES)
            # Summing first: ON CONFLICT drops repeated keys within one statement.
            fetch_all(
                con,
                f"INSERT INTO {view} SELECT {key}, day, {sums} FROM {_parquet(parts)} "
                f"GROUP BY {key}, day ON CONFLICT ({key}, day) DO UPDATE SET {updates}",
            )
        quarantine = part_files(staging, "quarantine")
        if quarantine:
            # Idempotent: a record quarantined by an earlier run is not added again (the
            # same place, reason, text and detail: another record at that place of a
            # reused file name is a new row; a conflict's detail names the version it lost
            # to, which changes once that one is published: its event id is compared).
            fetch_all(
                con,
                f"""INSERT INTO quarantine
                SELECT DISTINCT ?, q.source, q.position, q.raw, q.reason, q.detail, now()
                FROM {_parquet(quarantine)} q
                WHERE NOT EXISTS (
                    SELECT 1 FROM quarantine o WHERE o.source = q.source
                    AND o.position = q.position AND o.reason = q.reason
                    AND o.raw IS NOT DISTINCT FROM q.raw
                    AND {SAME_DETAIL})""",
                [run.run_id],
            )
        return touched

    def _guard_event_ids(self, con: duckdb.DuckDBPyConnection, facts: list[str]) -> None:
        """event_id is the key of attributed_events: no repeat in the run, none already published.

        Checked here instead of by a PRIMARY KEY, whose index made inserts ~2x slower.
        """
        published_facts = (
            "attributed_events" if self.facts_in_store else f"({self.published_facts()})"
        )
        staged, distinct, published = con.execute(
            f"""WITH s AS (SELECT event_id FROM {_parquet(facts)})
            SELECT (SELECT count(*) FROM s), (SELECT count(DISTINCT event_id) FROM s),
                   (SELECT count(*) FROM s SEMI JOIN {published_facts} a USING (event_id))"""
        ).fetchall()[0]
        if staged != distinct:
            raise RuntimeError(f"bug: {staged - distinct} repeated event_id(s) passed dedupe")
        if published:
            raise UserError(
                f"{published} event(s) of this run were published concurrently by another run",
                where=str(self.db_path),
                hint="run again: already published events are then counted as duplicates",
            )

    def _unbalanced_days(
        self, con: duckdb.DuckDBPyConnection, days: list[dt.date]
    ) -> list[dt.date]:
        if not days:
            return []
        touched = pa.table({"day": pa.array(days, pa.date32())})  # noqa: F841 (scanned by DuckDB)
        return [
            r[0]
            for r in con.execute(
                "SELECT day FROM reconciliation "
                "WHERE day IN (SELECT day FROM touched) AND NOT balanced "
                "ORDER BY day"
            ).fetchall()
        ]

    def _booked_revenue(self, con: duckdb.DuckDBPyConnection, staging: str | Path) -> Decimal:
        facts = part_files(staging, "attributed_events")
        if not facts:
            return Decimal("0.00")
        value = con.execute(f"SELECT sum(booked_revenue) FROM {_parquet(facts)}").fetchall()[0][0]
        return Decimal(value or 0).quantize(Decimal("0.01"))

    def _check(self, summary: RunSummary) -> None:
        accounted = summary.accepted + summary.duplicates + summary.quarantined
        accounted_ok = accounted == summary.input_records
        summary.checks = [
            (
                "input_records_accounted_for",
                "critical",
                accounted_ok,
                f"input {summary.input_records} = accepted {summary.accepted} + duplicates "
                f"{summary.duplicates} + quarantined {summary.quarantined} ({accounted})",
            ),
            (
                "touched_days_balanced",
                "critical",
                summary.balanced,
                f"{len(summary.unbalanced_days)} unbalanced day(s)"
                + (f", first {summary.unbalanced_days[0]}" if summary.unbalanced_days else ""),
            ),
        ]
        if not accounted_ok or any(
            severity == "critical" and not ok for _, _, _, severity, ok in summary.quality
        ):
            summary.status = "failed_checks"
        elif not summary.balanced:
            summary.status = "unbalanced"

    def _staged_quality(
        self,
        con: duckdb.DuckDBPyConnection,
        staging: str | Path,
    ) -> list[tuple[str, str, str, str, bool]]:
        files = part_files(staging, "dq_results")
        if not files:
            return []
        return [
            tuple(r)
            for r in con.execute(
                f"SELECT stage, suite, expectation, severity, success FROM {_parquet(files)} "
                "ORDER BY suite, expectation"
            ).fetchall()
        ]

    def run_results(self, run_id: str) -> pa.Table:
        """The check results of one run as stored in ``dq_results``."""
        con = connect(self.db_path, read_only=True)
        try:
            return con.sql(
                "SELECT stage, suite, expectation, severity, success, observed, examples "
                "FROM dq_results WHERE run_id = ?",
                params=[run_id],
            ).to_arrow_table()
        finally:
            con.close()

    def _record_run(
        self, con: duckdb.DuckDBPyConnection, run: RunInfo, summary: RunSummary, staging: str | Path
    ) -> None:
        fetch_all(
            con,
            "INSERT INTO pipeline_runs VALUES (?, ?, ?, now(), ?, ?, ?, ?, ?)",
            [
                run.run_id,
                run.mode,
                run.started_at,
                summary.input_records,
                summary.accepted,
                summary.duplicates,
                summary.quarantined,
                summary.status,
            ],
        )
        for expectation, severity, success, observed in summary.checks:
            fetch_all(
                con,
                "INSERT INTO dq_results "
                "VALUES (?, 'publish', 'publication', ?, ?, ?, ?, now(), NULL)",
                [run.run_id, expectation, severity, success, observed],
            )
        files = part_files(staging, "dq_results")
        if files:
            fetch_all(
                con,
                "INSERT INTO dq_results SELECT ?, stage, suite, expectation, severity, "
                f"success, observed, now(), examples FROM {_parquet(files)}",
                [run.run_id],
            )
