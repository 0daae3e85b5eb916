"""The numbers behind the manager reports: SQL over the published relations only.

Reads ``attributed_events`` and the reference snapshot (``accounts``,
``territories``, ``people``, ``account_assignments``, ``territory_managers``,
``territory_rules``; ``pipeline_runs`` if present) from a database written by
``revattr run``, opened read-only (attached to an in-memory DuckDB that holds the
scratch tables). Nothing here imports the pipeline's rules: the reports show
what was published.

Scope (who may see which rows; see docs/reports.md):

* **Territory manager M**: an event is in M's scope when M managed its leaf
  territory or any ancestor of it (``territories.parent_territory_id``) *at the
  event's time* (a ``territory_managers`` row of M whose interval holds
  ``event_time``). That is the subtree M manages, effective-dated, including
  parts that have their own manager below M (a region manager sees the states
  whose managers report to them). The walk-up credit of the contract
  (``attributed_events.territory_manager_id``) is shown next to it: "credited to
  you" is the part of the scope whose nearest manager is M.
  Plus, in a separate section and never in the headline figures, the
  ``UNASSIGNED`` revenue that touches M's geography, to chase: events without
  a territory (``no_territory``) whose account's ``country`` is named by a
  territory rule in a subtree M managed at the event's time, and, for a
  manager of a root territory, every event without a territory or with an
  unknown account. Events *in* M's scope without an account manager are flagged
  too (they are part of the headline).
* **Account manager A**: the events on accounts whose ``account_assignments``
  row holding the event's time is A's (overlapping rows: the smallest manager id,
  as the pipeline resolves them). Not the published ``account_manager_id``: facts
  attributed under an earlier reference snapshot keep their old credit.
  "Their accounts" are the accounts with an assignment of A overlapping the period.
* The comparison periods (previous period, same period last year) use the same
  rule: an event of February counts for M only if M managed its territory in
  February. A manager new to a territory sees nothing before their start.

"Active in the period" means a ``territory_managers`` row (territory managers)
or an ``account_assignments`` row (account managers) overlapping the period.

On the **restated** basis (``--basis restated``, docs/contract.md "Two bases") the
same rules are applied to the restated credit of ``restated_attribution``, at its
``as_of`` moment instead of each event's time:

* **Territory manager M**: the events whose account's restated territory is, or lies
  below, a territory M manages at ``as_of`` (a ``territory_managers`` row holding it).
* **Account manager A**: the events whose account ``restated_attribution`` credits to A.
* **Moves** (current period only): the events that entered M's or A's scope with the
  restatement (``moved_in``, from their booked-basis holder) or left it (``moved_out``,
  to their restated holder), where "booked" is the booked-basis scope above. So a
  restated report equals the booked report + moved in - moved out, and a manager only
  sees a moved-out event they were entitled to on the booked basis.

**Split credit** (account-team splits, docs/contract.md "Account-team splits"), in the
account manager's report of person P: the published split rows whose ``person_id`` is P
(``split_credit``; restated: ``split_credit_restated``) for events P is entitled to — on
the account's team at the event's time (an ``account_splits`` row of P; restated: a
``restated_splits`` row) or in P's account-manager scope above — plus, as the
``split_revenue`` views do, the events of P's account-manager scope without a team,
wholly P's primary credit. A person on an account team without an account assignment
gets an account manager's report for it (with no accounts of their own).

All of it is decided in ``ReportData._build_scope`` (tables ``grants``,
``report_scope`` and ``split_scope``); the per-report queries read only those, through
``cur``, ``cur_moves``, ``cur_splits`` and ``cur_grants``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb

from pipelines.errors import UserError
from pipelines.reports.periods import FiscalLabel, FiscalPeriod, Period, month_of

UNASSIGNED = "UNASSIGNED"
BASES = ("as_booked", "restated")  # as schemas.outputs.BASES
MOVES = ("moved_in", "moved_out")
SPLITS = ("split_primary", "split_overlay")
DEFAULT_SPLIT_ROLE = "account_manager"  # as schemas.reference: the 100% default's role
REQUIRED = (
    "attributed_events",
    "accounts",
    "territories",
    "people",
    "account_assignments",
    "territory_managers",
    "territory_rules",
)
ROLES = ("current", "previous", "year_ago")
ZERO = Decimal("0.00")

# Columns of the CSV behind each report, in order (see docs/reports.md).
CSV_COLUMNS = (
    "period",
    "period_role",
    "scope",
    "event_id",
    "event_time",
    "day",
    "event_type",
    "deal_id",
    "account_id",
    "account_name",
    "account_country",
    "account_city",
    "territory_id",
    "territory_name",
    "managed_territory_id",
    "child_territory_id",
    "territory_manager_id",
    "territory_manager_name",
    "account_manager_id",
    "account_manager_name",
    "attribution_status",
    "currency",
    "amount",
    "booked_revenue",
    "pipeline_created",
    "won_deals",
    "lost_deals",
    "created_deals",
    "refunds",
    "split_role",
    "split_percent",
)
# The restated basis adds who an event moved from (moved_in) or to (moved_out).
RESTATED_CSV_COLUMNS = (*CSV_COLUMNS, "other_manager_id", "other_manager_name")

_MEASURES = """
    count(*) AS events,
    coalesce(sum(booked_revenue), 0) AS booked,
    coalesce(sum(pipeline_created), 0) AS pipeline,
    coalesce(sum(created_deals), 0) AS created,
    count(*) FILTER (WHERE event_type = 'deal_won') AS won_events,
    coalesce(sum(won_deals), 0) AS net_won,
    coalesce(sum(lost_deals), 0) AS lost,
    coalesce(sum(refunds), 0) AS refunds,
    count(*) FILTER (WHERE event_type = 'deal_refunded') AS refund_count,
    count(*) FILTER (WHERE event_type = 'deal_reopened') AS reopens,
    coalesce(-sum(booked_revenue) FILTER (WHERE event_type = 'deal_reopened'), 0) AS reopened
"""


@dataclass(frozen=True)
class Measures:
    """Sums over a set of events (reporting currency)."""

    events: int = 0
    booked: Decimal = ZERO
    pipeline: Decimal = ZERO
    created: int = 0
    won_events: int = 0  # deal_won events
    net_won: int = 0  # sum(won_deals): wins minus reopens, as in the views
    lost: int = 0
    refunds: Decimal = ZERO  # positive
    refund_count: int = 0
    reopens: int = 0
    reopened: Decimal = ZERO  # booked revenue reversed by reopens, positive

    @property
    def win_rate(self) -> Decimal | None:
        """deal_won / (deal_won + deal_lost) events, or None without any."""
        decided = self.won_events + self.lost
        return Decimal(self.won_events) / Decimal(decided) if decided else None

    @classmethod
    def from_row(cls, row: dict) -> Measures:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Person:
    person_id: str
    name: str | None
    email: str | None
    role: str | None

    @property
    def display(self) -> str:
        return self.name or self.person_id


@dataclass(frozen=True)
class Comparison:
    role: str  # previous | year_ago
    period: Period
    measures: Measures
    same_as_previous: bool = False  # a year's previous period is the same year last year


@dataclass
class ManagerReport:
    """Everything one report shows; ``kind`` is ``territory_manager`` or ``account_manager``."""

    kind: str
    person: Person
    period: Period | FiscalPeriod
    current: Measures
    comparisons: list[Comparison]
    series: list[tuple[dt.date, Decimal]]  # booked revenue per chart bucket
    csv_rows: list[tuple]
    # territory managers
    credited: Decimal = ZERO
    managed: list[dict] = field(default_factory=list)
    by_child: list[dict] = field(default_factory=list)
    by_account_manager: list[dict] = field(default_factory=list)
    top_accounts: list[dict] = field(default_factory=list)
    accounts_in_scope: int = 0
    no_account_manager: Measures = field(default_factory=Measures)
    unassigned: list[dict] = field(default_factory=list)
    unassigned_total: Measures = field(default_factory=Measures)
    # account managers
    accounts: list[dict] = field(default_factory=list)
    months: list[dt.date] = field(default_factory=list)
    by_territory: list[dict] = field(default_factory=list)
    recredited: int = 0  # current events published with another account manager's credit
    # the basis: as_booked, or restated as of ``as_of`` with the moves that explain it
    basis: str = "as_booked"
    as_of: dt.datetime | None = None
    moves: list[dict] = field(default_factory=list)  # per (direction, account, other manager)
    moved_in: Measures = field(default_factory=Measures)
    moved_out: Measures = field(default_factory=Measures)
    csv_columns: tuple[str, ...] = CSV_COLUMNS
    # account managers: split credit (when the database publishes it)
    has_splits: bool = False
    splits: list[dict] = field(default_factory=list)  # per (split type, account, role, %)
    split_primary: Measures = field(default_factory=Measures)
    split_overlay: Measures = field(default_factory=Measures)

    @property
    def booked_basis(self) -> Decimal:
        """Restated: the booked revenue of the same manager and period on the as_booked
        basis (restated - moved in + moved out)."""
        return self.current.booked - self.moved_in.booked + self.moved_out.booked

    @property
    def folder(self) -> str:
        return "territory_managers" if self.kind == "territory_manager" else "account_managers"

    def comparison(self, role: str) -> Comparison | None:
        return next((c for c in self.comparisons if c.role == role), None)


def _ts(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


class ReportData:
    """A read-only view of one published database, prepared for one period."""

    def __init__(self, db: Path) -> None:
        db = Path(db)
        if not db.is_file():
            raise UserError(
                "no such database", where=str(db), hint="run `revattr run` first or pass --db"
            )
        self.db = db
        self.con = duckdb.connect()
        try:
            self.con.execute("SET TimeZone = 'UTC'")
            self.con.execute(f"ATTACH '{_sql_text(str(db))}' AS pub (READ_ONLY)")
        except duckdb.Error as error:
            self.con.close()
            raise UserError(
                f"cannot open the database read-only: {str(error).splitlines()[0]}",
                where=str(db),
                hint="is a `revattr run` writing it right now? try again when it has finished",
            ) from error
        present = {
            r[0]
            for r in self.con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'pub'"
            ).fetchall()
        }
        missing = [name for name in REQUIRED if name not in present]
        if missing:
            self.close()
            raise UserError(
                f"not a published revattr database: missing {', '.join(missing)}",
                where=str(db),
                hint="run `revattr run` into it first",
            )
        self.has_runs = "pipeline_runs" in present
        self.present = present
        self.has_splits = "split_credit" in present
        self.has_restated_splits = {"split_credit_restated", "restated_splits"} <= present
        self.period: Period | FiscalPeriod | None = None
        self.basis = "as_booked"
        self.as_of: dt.datetime | None = None

    # ------------------------------------------------------------------ basics

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> ReportData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[dict]:
        cursor = self.con.execute(sql, list(params))
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def latest_month(self) -> Period:
        """The latest month with an event: the default period."""
        rows = self.con.execute("SELECT max(day) FROM pub.attributed_events").fetchall()
        if not rows or rows[0][0] is None:
            raise UserError(
                "the database has no events", where=str(self.db), hint="nothing to report"
            )
        return month_of(rows[0][0])

    def data_as_of(self) -> dt.datetime | None:
        """When the last successful run finished (shown in the reports)."""
        if not self.has_runs:
            return None
        rows = self.con.execute(
            "SELECT max(finished_at) FROM pub.pipeline_runs WHERE status = 'succeeded'"
        ).fetchall()
        return rows[0][0] if rows else None

    def restated_as_of(self) -> dt.datetime:
        """The ``as_of`` of the published restated basis; UserError without one."""
        rows = (
            self.con.execute("SELECT max(as_of) FROM pub.restated_attribution").fetchall()
            if "restated_attribution" in self.present
            else []
        )
        if not rows or rows[0][0] is None:
            raise UserError(
                "the database has no restated basis (restated_attribution)",
                where=str(self.db),
                hint="publish one with `revattr run ... --restate-as-of DATE` or "
                "`revattr restate`, or use --basis as_booked",
            )
        return rows[0][0]

    def fiscal_period(self, label: FiscalLabel) -> FiscalPeriod:
        """``label`` resolved to its days in the published ``fiscal_calendar``, with its
        previous period and the same period a fiscal year earlier; UserError if the
        calendar does not have it."""
        if "fiscal_calendar" not in self.present:
            raise UserError(
                f"unknown period {label.label!r}: the database has no fiscal_calendar",
                where=str(self.db),
                hint="re-run `revattr run` to publish it, or use a calendar period (2026-Q1)",
            )
        calendar, first, last = self.con.execute(
            """WITH years AS (
                   SELECT fiscal_year, min(day) = min(year_start) AS whole
                   FROM pub.fiscal_calendar GROUP BY fiscal_year)
               SELECT (SELECT min(calendar) FROM pub.fiscal_calendar),
                      min(fiscal_year) FILTER (WHERE whole),
                      -- the last year may be cut at the calendar's last day
                      max(fiscal_year) FILTER (WHERE whole) - 1
               FROM years"""
        ).fetchone()
        missing = None
        resolved = []
        for wanted in (label, label.previous(), label.year_ago()):
            found = self._fiscal(wanted) if first <= wanted.fiscal_year <= last else None
            if found is None:
                missing = wanted
                break
            resolved.append(found)
        if missing is not None:
            what = "" if missing == label else f" (its comparison period {missing.label})"
            raise UserError(
                f"unknown period {label.label!r}{what}: not in the published fiscal_calendar "
                f"({calendar}, FY{first}–FY{last})",
                hint="use a year (2026), quarter (2026-Q1) or month (2026-03), or a fiscal "
                "year (FY2027), quarter (FY2027-Q1) or period (FY2027-P03)",
            )
        main, previous, year_ago = resolved
        return FiscalPeriod(
            main.kind,
            main.fiscal_year,
            main.index,
            main.start,
            main.end,
            main.periods,
            calendar,
            prev=previous,
            ago=year_ago,
        )

    def _fiscal(self, label: FiscalLabel) -> FiscalPeriod | None:
        column = {"quarter": "fiscal_quarter", "period": "fiscal_period"}.get(label.kind)
        where = "fiscal_year = ?" + (f" AND {column} = ?" if column else "")
        params = [label.fiscal_year, *([label.index] if column else [])]
        rows = self.con.execute(
            f"""SELECT period_start, min(fiscal_period), min(day), max(day), count(*)
                FROM pub.fiscal_calendar WHERE {where} GROUP BY period_start ORDER BY 1""",
            params,
        ).fetchall()
        if not rows:
            return None
        start, end = rows[0][2], rows[-1][3] + dt.timedelta(days=1)
        if sum(r[4] for r in rows) != (end - start).days:
            raise UserError(
                f"the published fiscal_calendar has gaps in {label.label}",
                where=str(self.db),
                hint="re-run `revattr run` to publish it again",
            )
        periods = tuple((r[0], r[1]) for r in rows)
        return FiscalPeriod(label.kind, label.fiscal_year, label.index, start, end, periods)

    # ------------------------------------------------------------------ preparation

    def prepare(self, period: Period | FiscalPeriod, basis: str = "as_booked") -> None:
        """Build the scratch tables for ``period`` on ``basis`` (``as_booked`` or
        ``restated``): windows, lookups, the scope, report rows."""
        if basis not in BASES:
            raise UserError(f"unknown basis {basis!r}", hint="use as_booked or restated")
        self.period = period
        self.basis = basis
        self.as_of = self.restated_as_of() if basis == "restated" else None
        self._windows(period)
        self._lookups()
        self._build_scope()
        self._report_rows()

    def _windows(self, period: Period) -> None:
        """``win``: the current period and the comparison periods (role, start, end)."""
        windows = [("current", period), ("previous", period.previous())]
        if period.year_ago() != period.previous():
            windows.append(("year_ago", period.year_ago()))
        self.windows = dict(windows)
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE win (role VARCHAR, start_day DATE, end_day DATE)"
        )
        for role, p in windows:
            self.con.execute("INSERT INTO win VALUES (?, ?, ?)", [role, p.start, p.end])

    def _lookups(self) -> None:
        """Reference lookups, the territory closure and ``ev`` (the windows' events)."""
        con = self.con
        # One row per key (the reference checks forbid duplicates; min() keeps a
        # report deterministic even if they were published).
        con.execute("""
            CREATE OR REPLACE TEMP TABLE terr AS
            SELECT territory_id, min(territory_name) AS territory_name,
                   min(parent_territory_id) AS parent_territory_id, min(level) AS level
            FROM pub.territories GROUP BY territory_id""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE acc AS
            SELECT account_id, min(account_name) AS account_name, min(country) AS country,
                   min(city) AS city
            FROM pub.accounts GROUP BY account_id""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE ppl AS
            SELECT person_id, min(name) AS name, min(email) AS email, min(role) AS role
            FROM pub.people GROUP BY person_id""")
        # (ancestor, descendant, depth): every territory with itself (0) and its ancestors.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE closure AS
            WITH RECURSIVE c(ancestor, descendant, depth) AS (
                SELECT territory_id, territory_id, 0 FROM terr
                UNION ALL
                SELECT t.parent_territory_id, c.descendant, c.depth + 1
                FROM c JOIN terr t ON t.territory_id = c.ancestor
                WHERE t.parent_territory_id IS NOT NULL AND c.depth < 64
            )
            SELECT ancestor, descendant, min(depth) AS depth FROM c GROUP BY ALL""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE roots AS
            SELECT territory_id FROM terr
            WHERE parent_territory_id IS NULL
               OR parent_territory_id NOT IN (SELECT territory_id FROM terr)""")
        # Countries named by a rule anywhere in each territory's subtree.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE subtree_countries AS
            SELECT DISTINCT c.ancestor AS territory_id, upper(trim(r.country)) AS country
            FROM pub.territory_rules r JOIN closure c ON c.descendant = r.territory_id
            WHERE r.country IS NOT NULL""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE ev AS
            SELECT e.*, w.role
            FROM pub.attributed_events e
            JOIN win w ON e.day >= w.start_day AND e.day < w.end_day""")

    def _build_scope(self) -> None:
        """The one place that decides who sees what (docs/reports.md, "Scope").

        * ``grants``: the tenures (territory managers) and assignments (account
          managers) that entitle a manager: on the as_booked basis as published in the
          reference snapshot, with their validity; on the restated basis the tenures
          holding ``as_of`` and the accounts ``restated_attribution`` credits, valid for
          every event;
        * ``report_scope``: the events each manager may see, per period role, derived
          from ``grants`` alone: (kind, manager_id, role, scope, event_id,
          managed_territory, child_territory, other_manager_id); on the restated basis
          also the current period's moves between the two bases (scope ``moved_in`` /
          ``moved_out``, ``other_manager_id`` the holder on the other basis);
        * ``ev_basis``: the windows' events with the credit of the basis (on the restated
          basis: territory, territory manager, account manager and status of
          ``restated_attribution``; an account it does not know is unassigned).

        An account manager's events are found through the assignments, never through
        the published ``account_manager_id``: facts attributed under an earlier
        reference snapshot keep their old credit, and trusting it showed accounts to
        managers they were never assigned to (issue 12). Moves compare the two bases'
        scopes, not the published credit, for the same reason. Every later query reads
        these tables (through ``cur`` / ``cur_moves`` / ``cur_grants``), nothing else of
        the reference.
        """
        con = self.con
        # Account teams entitle their members to their split credit (kind account_team).
        teams = (
            """UNION ALL
            SELECT 'account_team', person_id, account_id, valid_from, valid_to
            FROM pub.account_splits WHERE person_id IS NOT NULL"""
            if self.has_splits and "account_splits" in self.present
            else ""
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE grants_as_booked AS
            SELECT 'territory_manager' AS kind, manager_id, territory_id AS object_id,
                   valid_from, valid_to
            FROM pub.territory_managers
            WHERE manager_id IS NOT NULL AND manager_id <> '{UNASSIGNED}'
            UNION ALL
            SELECT 'account_manager', account_manager_id, account_id, valid_from, valid_to
            FROM pub.account_assignments
            WHERE account_manager_id IS NOT NULL AND account_manager_id <> '{UNASSIGNED}'
            {teams}""")
        self._scope_of("ev", "grants_as_booked", "scope_as_booked")
        if self.basis == "as_booked":
            con.execute("CREATE OR REPLACE TEMP TABLE grants AS SELECT * FROM grants_as_booked")
            con.execute("CREATE OR REPLACE TEMP VIEW ev_basis AS SELECT * FROM ev")
            con.execute("""
                CREATE OR REPLACE TEMP TABLE report_scope AS
                SELECT *, CAST(NULL AS VARCHAR) AS other_manager_id FROM scope_as_booked""")
            self._split_scope(
                "split_credit" if self.has_splits else "", "scope_as_booked", "ev.event_time"
            )
            return
        assert self.as_of is not None
        as_of = f"TIMESTAMPTZ '{self.as_of.isoformat()}'"
        # One row per account (published one per account; min() keeps it deterministic).
        con.execute("""
            CREATE OR REPLACE TEMP TABLE restated AS
            SELECT account_id, min(account_manager_id) AS account_manager_id,
                   min(territory_id) AS territory_id,
                   min(territory_manager_id) AS territory_manager_id,
                   min(attribution_status) AS attribution_status
            FROM pub.restated_attribution GROUP BY account_id""")
        restated_teams = (
            """UNION ALL
            SELECT 'account_team', person_id, account_id, NULL, NULL
            FROM pub.restated_splits WHERE person_id IS NOT NULL"""
            if self.has_restated_splits
            else ""
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE ev_restated AS
            SELECT ev.* REPLACE (
                       coalesce(r.account_manager_id, '{UNASSIGNED}') AS account_manager_id,
                       coalesce(r.territory_id, '{UNASSIGNED}') AS territory_id,
                       coalesce(r.territory_manager_id, '{UNASSIGNED}') AS territory_manager_id,
                       coalesce(r.attribution_status, 'unknown_account') AS attribution_status)
            FROM ev LEFT JOIN restated r ON r.account_id = ev.account_id""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE grants AS
            SELECT 'territory_manager' AS kind, manager_id, territory_id AS object_id,
                   CAST(NULL AS TIMESTAMPTZ) AS valid_from, CAST(NULL AS TIMESTAMPTZ) AS valid_to
            FROM pub.territory_managers t
            WHERE manager_id IS NOT NULL AND manager_id <> '{UNASSIGNED}'
              AND {_holds("t", as_of)}
            UNION ALL
            SELECT 'account_manager', account_manager_id, account_id, NULL, NULL
            FROM restated
            WHERE account_manager_id IS NOT NULL AND account_manager_id <> '{UNASSIGNED}'
            {restated_teams}""")
        self._scope_of("ev_restated", "grants", "scope_restated")
        con.execute("CREATE OR REPLACE TEMP VIEW ev_basis AS SELECT * FROM ev_restated")
        same = """s.kind = o.kind AND s.manager_id = o.manager_id AND s.role = o.role
                  AND s.scope = o.scope AND s.event_id = o.event_id"""
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE report_scope AS
            SELECT *, CAST(NULL AS VARCHAR) AS other_manager_id FROM scope_restated
            UNION ALL
            -- moved in: in the restated scope, not in the booked one; from its booked holder
            SELECT s.kind, s.manager_id, s.role, 'moved_in', s.event_id, s.managed_territory,
                   s.child_territory,
                   CASE s.kind WHEN 'account_manager' THEN coalesce(b.manager_id, '{UNASSIGNED}')
                        ELSE e.territory_manager_id END
            FROM scope_restated s
            JOIN ev e ON e.event_id = s.event_id AND e.role = s.role
            LEFT JOIN scope_as_booked b ON b.kind = 'account_manager' AND b.scope = 'account'
             AND b.event_id = s.event_id AND b.role = s.role
            WHERE s.role = 'current' AND s.scope IN ('territory', 'account')
              AND NOT EXISTS (SELECT 1 FROM scope_as_booked o WHERE {same})
            UNION ALL
            -- moved out: in the booked scope, not in the restated one; to its restated holder
            SELECT s.kind, s.manager_id, s.role, 'moved_out', s.event_id, s.managed_territory,
                   s.child_territory,
                   CASE s.kind WHEN 'account_manager' THEN x.account_manager_id
                        ELSE x.territory_manager_id END
            FROM scope_as_booked s
            JOIN ev_restated x ON x.event_id = s.event_id AND x.role = s.role
            WHERE s.role = 'current' AND s.scope IN ('territory', 'account')
              AND NOT EXISTS (SELECT 1 FROM scope_restated o WHERE {same})""")
        self._split_scope(
            "split_credit_restated" if self.has_restated_splits else "", "scope_restated", as_of
        )

    def _split_scope(self, credit: str, scope: str, moment: str) -> None:
        """Part of ``_build_scope`` (and called from it only): ``split_scope``, each person's
        split credit of the current period (manager_id, event_id, scope ``split_primary`` /
        ``split_overlay``, split_role, split_percent, booked_revenue, pipeline_created).

        The rows of ``credit`` (the published split rows of the basis) whose person is on
        the event's account team at ``moment`` (an ``account_team`` grant) or has the event
        in their account-manager scope (``scope``); plus, as the ``split_revenue`` views, the
        account-manager scope's events without a team, wholly their primary credit. A
        database without split credit has none.
        """
        con = self.con
        if not credit:
            con.execute("""
                CREATE OR REPLACE TEMP TABLE split_scope (
                    manager_id VARCHAR, event_id VARCHAR, scope VARCHAR, split_role VARCHAR,
                    split_percent DECIMAL(7, 4), booked_revenue DECIMAL(18, 2),
                    pipeline_created DECIMAL(18, 2))""")
            return
        teamless = (
            "NOT EXISTS (SELECT 1 FROM pub.split_credit c WHERE c.event_id = a.event_id)"
            if credit == "split_credit"
            else "ev.account_id NOT IN (SELECT account_id FROM pub.restated_splits)"
        )
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE split_scope AS
            SELECT s.person_id AS manager_id, s.event_id, 'split_' || s.split_type AS scope,
                   s.role AS split_role, CAST(s.percent AS DECIMAL(7, 4)) AS split_percent,
                   s.booked_revenue, s.pipeline_created
            FROM pub.{credit} s
            JOIN ev ON ev.event_id = s.event_id AND ev.role = 'current'
            WHERE s.split_type IN ('primary', 'overlay')
              AND (EXISTS (SELECT 1 FROM grants g
                           WHERE g.kind = 'account_team' AND g.manager_id = s.person_id
                             AND g.object_id = s.account_id AND {_holds("g", moment)})
                   OR EXISTS (SELECT 1 FROM {scope} a
                              WHERE a.kind = 'account_manager' AND a.scope = 'account'
                                AND a.role = 'current' AND a.manager_id = s.person_id
                                AND a.event_id = s.event_id))
            UNION ALL
            SELECT a.manager_id, a.event_id, 'split_primary', '{DEFAULT_SPLIT_ROLE}', 100,
                   ev.booked_revenue, ev.pipeline_created
            FROM {scope} a JOIN ev ON ev.event_id = a.event_id AND ev.role = a.role
            WHERE a.kind = 'account_manager' AND a.scope = 'account' AND a.role = 'current'
              AND {teamless}""")

    def _scope_of(self, events: str, grants: str, out: str) -> None:
        """Part of ``_build_scope`` (and called from it only): ``out`` = the events of
        ``events`` each grant of ``grants`` entitles its manager to, by the rules of the
        module docstring, with the credit columns of ``events``."""
        con = self.con
        holds = _holds("g", "ev.event_time")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE tm_hits AS
            SELECT g.manager_id, ev.event_id, ev.role, c.ancestor AS managed_territory, c.depth
            FROM {events} ev
            JOIN closure c ON c.descendant = ev.territory_id
            JOIN {grants} g ON g.kind = 'territory_manager' AND g.object_id = c.ancestor
             AND {holds}
            WHERE ev.territory_id <> '{UNASSIGNED}'
            QUALIFY row_number() OVER (
                PARTITION BY g.manager_id, ev.event_id, ev.role
                ORDER BY c.depth DESC, c.ancestor) = 1""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE {out} AS
            SELECT 'territory_manager' AS kind, h.manager_id, h.role, 'territory' AS scope,
                   h.event_id, h.managed_territory,
                   CASE WHEN h.depth = 0 THEN h.managed_territory ELSE ch.ancestor END
                       AS child_territory
            FROM tm_hits h
            JOIN {events} ev ON ev.event_id = h.event_id AND ev.role = h.role
            LEFT JOIN closure ch ON ch.descendant = ev.territory_id AND ch.depth = h.depth - 1
            UNION ALL
            SELECT 'territory_manager', g.manager_id, ev.role, 'unassigned_nearby',
                   ev.event_id, min(g.object_id), NULL
            FROM {events} ev
            LEFT JOIN acc a ON a.account_id = ev.account_id
            JOIN {grants} g ON g.kind = 'territory_manager' AND {holds}
            WHERE ev.territory_id = '{UNASSIGNED}'
              AND (g.object_id IN (SELECT territory_id FROM roots)
                   OR (a.country IS NOT NULL AND EXISTS (
                        SELECT 1 FROM subtree_countries s
                        WHERE s.territory_id = g.object_id
                          AND s.country = upper(trim(a.country)))))
            GROUP BY g.manager_id, ev.role, ev.event_id
            UNION ALL
            SELECT * FROM (
                SELECT 'account_manager', g.manager_id, ev.role, 'account', ev.event_id,
                       NULL, NULL
                FROM {events} ev
                JOIN {grants} g ON g.kind = 'account_manager' AND g.object_id = ev.account_id
                 AND {holds}
                -- overlapping assignments resolve to the smallest manager id, as published
                QUALIFY row_number() OVER (
                    PARTITION BY ev.event_id, ev.role ORDER BY g.manager_id) = 1)""")

    def _report_rows(self) -> None:
        """``report_rows``: the scoped events with the columns of the CSV (and, for moves,
        who the event moved from or to)."""
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE report_rows AS
            SELECT s.kind, s.manager_id, s.role, s.scope, s.managed_territory, s.child_territory,
                   e.event_id, e.event_time, e.day, e.event_type, e.deal_id, e.account_id,
                   a.account_name, a.country AS account_country, a.city AS account_city,
                   e.territory_id, t.territory_name, e.territory_manager_id,
                   tp.name AS territory_manager_name, e.account_manager_id,
                   ap.name AS account_manager_name, e.attribution_status, e.currency, e.amount,
                   e.booked_revenue, e.pipeline_created, e.won_deals, e.lost_deals,
                   e.created_deals, e.refunds, CAST(NULL AS VARCHAR) AS split_role,
                   CAST(NULL AS DECIMAL(7, 4)) AS split_percent, s.other_manager_id,
                   op.name AS other_manager_name
            FROM report_scope s
            JOIN ev_basis e ON e.event_id = s.event_id AND e.role = s.role
            LEFT JOIN acc a ON a.account_id = e.account_id
            LEFT JOIN terr t ON t.territory_id = e.territory_id
            LEFT JOIN ppl tp ON tp.person_id = e.territory_manager_id
            LEFT JOIN ppl ap ON ap.person_id = e.account_manager_id
            LEFT JOIN ppl op ON op.person_id = s.other_manager_id
            ORDER BY s.kind, s.manager_id, e.event_time, e.event_id""")
        # Split credit: the event's columns, the person's share of its money.
        self.con.execute("""
            CREATE OR REPLACE TEMP TABLE split_rows AS
            SELECT 'account_manager' AS kind, s.manager_id, 'current' AS role, s.scope,
                   CAST(NULL AS VARCHAR) AS managed_territory,
                   CAST(NULL AS VARCHAR) AS child_territory,
                   e.event_id, e.event_time, e.day, e.event_type, e.deal_id, e.account_id,
                   a.account_name, a.country AS account_country, a.city AS account_city,
                   e.territory_id, t.territory_name, e.territory_manager_id,
                   tp.name AS territory_manager_name, e.account_manager_id,
                   ap.name AS account_manager_name, e.attribution_status, e.currency, e.amount,
                   s.booked_revenue, s.pipeline_created, e.won_deals, e.lost_deals,
                   e.created_deals,
                   CAST(CASE WHEN e.event_type = 'deal_refunded' THEN -s.booked_revenue
                             ELSE 0 END AS DECIMAL(18, 2)) AS refunds,
                   s.split_role, s.split_percent, CAST(NULL AS VARCHAR) AS other_manager_id,
                   CAST(NULL AS VARCHAR) AS other_manager_name
            FROM split_scope s
            JOIN ev_basis e ON e.event_id = s.event_id AND e.role = 'current'
            LEFT JOIN acc a ON a.account_id = e.account_id
            LEFT JOIN terr t ON t.territory_id = e.territory_id
            LEFT JOIN ppl tp ON tp.person_id = e.territory_manager_id
            LEFT JOIN ppl ap ON ap.person_id = e.account_manager_id""")

    # ------------------------------------------------------------------ who gets a report

    def _overlap(self) -> list[dt.datetime]:
        assert self.period is not None, "call prepare() first"
        return [_ts(self.period.end), _ts(self.period.start)]

    def person(self, person_id: str) -> Person:
        rows = self._rows("SELECT * FROM ppl WHERE person_id = ?", [person_id])
        if not rows:
            return Person(person_id, None, None, None)
        r = rows[0]
        return Person(person_id, r["name"], r["email"], r["role"])

    def active_territory_managers(self) -> list[str]:
        return self._active("territory_manager")

    def active_account_managers(self) -> list[str]:
        return self._active("account_manager")

    def _active(self, kind: str) -> list[str]:
        """Managers of ``kind`` with a grant overlapping the period, sorted (account
        managers: also the members of an account team, for their split credit)."""
        kinds = ["account_manager", "account_team"] if kind == "account_manager" else [kind]
        return [
            r["manager_id"]
            for r in self._rows(
                f"""SELECT DISTINCT manager_id FROM grants g
                    WHERE kind IN ({", ".join("?" for _ in kinds)}) AND {_OVERLAPS}
                    ORDER BY manager_id""",
                [*kinds, *self._overlap()],
            )
        ]

    # ------------------------------------------------------------------ shared pieces

    def _focus(self, kind: str, manager_id: str) -> None:
        """``cur``: this report's rows; ``cur_moves``: its moves between the bases (restated
        basis only); ``cur_splits``: its split credit (account managers); ``cur_grants``: its
        grants overlapping the period.

        The per-report queries read only these (and the lookups), so what a
        report shows cannot go beyond what ``_build_scope`` decided.
        """
        moves = ", ".join(f"'{m}'" for m in MOVES)
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE cur AS SELECT * FROM report_rows "
            f"WHERE kind = ? AND manager_id = ? AND scope NOT IN ({moves})",
            [kind, manager_id],
        )
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE cur_moves AS SELECT * FROM report_rows "
            f"WHERE kind = ? AND manager_id = ? AND scope IN ({moves})",
            [kind, manager_id],
        )
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE cur_splits AS SELECT * FROM split_rows "
            "WHERE kind = ? AND manager_id = ?",
            [kind, manager_id],
        )
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE cur_grants AS
                SELECT * FROM grants g WHERE kind = ? AND manager_id = ? AND {_OVERLAPS}""",
            [kind, manager_id, *self._overlap()],
        )

    def _measures(self, kind: str, manager_id: str, scope: str, extra: str = "") -> dict:
        rows = self._rows(
            f"""SELECT role, {_MEASURES} FROM cur
                WHERE kind = ? AND manager_id = ? AND scope = ? {extra} GROUP BY role""",
            [kind, manager_id, scope],
        )
        return {r["role"]: Measures.from_row(r) for r in rows}

    def _comparisons(self, by_role: dict[str, Measures]) -> list[Comparison]:
        out = [
            Comparison("previous", self.windows["previous"], by_role.get("previous", Measures()))
        ]
        if "year_ago" in self.windows:
            out.append(
                Comparison(
                    "year_ago", self.windows["year_ago"], by_role.get("year_ago", Measures())
                )
            )
        else:
            out.append(
                Comparison(
                    "year_ago",
                    self.windows["previous"],
                    by_role.get("previous", Measures()),
                    same_as_previous=True,
                )
            )
        return out

    def _series(self, kind: str, manager_id: str, scope: str) -> list[tuple[dt.date, Decimal]]:
        assert self.period is not None
        daily = self._rows(
            """SELECT day, sum(booked_revenue) AS booked FROM cur
               WHERE kind = ? AND manager_id = ? AND scope = ? AND role = 'current'
               GROUP BY day""",
            [kind, manager_id, scope],
        )
        buckets = {start: ZERO for start in self.period.buckets()}
        for r in daily:
            buckets[self.period.bucket_of(r["day"])] += r["booked"]
        return sorted(buckets.items())

    @property
    def csv_columns(self) -> tuple[str, ...]:
        return RESTATED_CSV_COLUMNS if self.basis == "restated" else CSV_COLUMNS

    def _csv_rows(self, kind: str, manager_id: str) -> list[tuple]:
        labels = {role: p.label for role, p in self.windows.items()}
        columns = self.csv_columns
        rows = self.con.execute(
            f"""SELECT role, scope, {", ".join(columns[3:14])}, managed_territory,
                       child_territory, {", ".join(columns[16:])}
                FROM (SELECT * FROM cur UNION ALL BY NAME SELECT * FROM cur_moves
                      UNION ALL BY NAME SELECT * FROM cur_splits)
                WHERE kind = ? AND manager_id = ?
                ORDER BY CASE role WHEN 'current' THEN 0 WHEN 'previous' THEN 1 ELSE 2 END,
                         scope, event_time, event_id""",
            [kind, manager_id],
        ).fetchall()
        return [(labels[r[0]], *r) for r in rows]

    def _moves(self) -> dict:
        """The report's moves between the bases (restated basis; empty otherwise): one row
        per (direction, account, other manager), and the totals moved in and out."""
        rows = self._rows(
            f"""SELECT scope AS direction, account_id, account_name, other_manager_id,
                       other_manager_name, {_MEASURES}
                FROM cur_moves GROUP BY ALL
                ORDER BY direction, abs(booked) DESC, account_id, other_manager_id"""
        )
        for row in rows:
            row["m"] = Measures.from_row(row)
        totals = {
            r["direction"]: Measures.from_row(r)
            for r in self._rows(
                f"SELECT scope AS direction, {_MEASURES} FROM cur_moves GROUP BY scope"
            )
        }
        return {
            "basis": self.basis,
            "as_of": self.as_of,
            "moves": rows,
            "moved_in": totals.get("moved_in", Measures()),
            "moved_out": totals.get("moved_out", Measures()),
            "csv_columns": self.csv_columns,
        }

    # ------------------------------------------------------------------ territory managers

    def territory_manager_report(self, manager_id: str) -> ManagerReport:
        assert self.period is not None
        kind = "territory_manager"
        self._focus(kind, manager_id)
        in_scope = self._measures(kind, manager_id, "territory")
        current = in_scope.get("current", Measures())
        credited = self._rows(
            """SELECT coalesce(sum(booked_revenue), 0) AS booked FROM cur
               WHERE kind = ? AND manager_id = ? AND scope = 'territory' AND role = 'current'
                 AND territory_manager_id = manager_id""",
            [kind, manager_id],
        )[0]["booked"]
        no_am = self._measures(
            kind, manager_id, "territory", f"AND account_manager_id = '{UNASSIGNED}'"
        ).get("current", Measures())
        nearby = self._measures(kind, manager_id, "unassigned_nearby").get("current", Measures())
        managed = self._rows(
            f"""SELECT m.object_id AS territory_id, t.territory_name, t.level, m.valid_from,
                       m.valid_to,
                       (SELECT count(*) - 1 FROM closure c WHERE c.ancestor = m.object_id)
                           AS descendants,
                       (SELECT count(DISTINCT g.object_id) FROM closure c
                          JOIN grants g ON g.kind = 'territory_manager'
                           AND g.object_id = c.descendant
                         WHERE c.ancestor = m.object_id AND c.depth > 0 AND {_OVERLAPS})
                           AS sub_managed
                FROM cur_grants m LEFT JOIN terr t ON t.territory_id = m.object_id
                ORDER BY m.valid_from NULLS FIRST, m.object_id""",
            self._overlap(),
        )
        for row in managed:
            row["from_in_period"] = _inside(row["valid_from"], self.period)
            row["to_in_period"] = _inside(row["valid_to"], self.period)
        by_child = self._rows(
            f"""SELECT managed_territory, mt.territory_name AS managed_name,
                       child_territory, ct.territory_name AS child_name, ct.level AS child_level,
                       child_territory = managed_territory AS is_self,
                       string_agg(DISTINCT coalesce(territory_manager_name, territory_manager_id),
                                  ', ' ORDER BY coalesce(territory_manager_name,
                                                         territory_manager_id)) AS credited_to,
                       {_MEASURES}
                FROM cur r
                LEFT JOIN terr mt ON mt.territory_id = r.managed_territory
                LEFT JOIN terr ct ON ct.territory_id = r.child_territory
                WHERE kind = ? AND manager_id = ? AND scope = 'territory' AND role = 'current'
                GROUP BY ALL ORDER BY booked DESC, child_territory""",
            [kind, manager_id],
        )
        by_am = self._rows(
            f"""SELECT account_manager_id, account_manager_name,
                       count(DISTINCT account_id) AS accounts, {_MEASURES}
                FROM cur
                WHERE kind = ? AND manager_id = ? AND scope = 'territory' AND role = 'current'
                GROUP BY ALL ORDER BY booked DESC, account_manager_id""",
            [kind, manager_id],
        )
        top = self._rows(
            f"""SELECT account_id, account_name, account_country, account_city,
                       string_agg(DISTINCT territory_name, ', ' ORDER BY territory_name)
                           AS territories,
                       string_agg(DISTINCT coalesce(account_manager_name, account_manager_id),
                                  ', ' ORDER BY coalesce(account_manager_name,
                                                         account_manager_id)) AS account_managers,
                       {_MEASURES}
                FROM cur
                WHERE kind = ? AND manager_id = ? AND scope = 'territory' AND role = 'current'
                GROUP BY account_id, account_name, account_country, account_city
                ORDER BY booked DESC, account_id LIMIT 10""",
            [kind, manager_id],
        )
        accounts_in_scope = self._rows(
            """SELECT count(DISTINCT account_id) AS n FROM cur
               WHERE kind = ? AND manager_id = ? AND scope = 'territory' AND role = 'current'""",
            [kind, manager_id],
        )[0]["n"]
        unassigned = self._rows(
            f"""SELECT CASE WHEN scope = 'territory' THEN 'no_account_manager'
                            WHEN account_name IS NULL THEN 'unknown_account'
                            ELSE 'no_territory' END AS reason,
                       scope, account_id, account_name, account_country, account_city,
                       CASE WHEN scope = 'territory' THEN territory_name END AS territory_name,
                       {_MEASURES}
                FROM cur
                WHERE kind = ? AND manager_id = ? AND role = 'current'
                  AND (scope = 'unassigned_nearby'
                       OR (scope = 'territory' AND account_manager_id = '{UNASSIGNED}'))
                GROUP BY ALL ORDER BY reason, booked DESC, account_id""",
            [kind, manager_id],
        )
        for group in (by_child, by_am, top, unassigned):
            for row in group:
                row["m"] = Measures.from_row(row)
        return ManagerReport(
            kind=kind,
            person=self.person(manager_id),
            period=self.period,
            current=current,
            comparisons=self._comparisons(in_scope),
            series=self._series(kind, manager_id, "territory"),
            csv_rows=self._csv_rows(kind, manager_id),
            credited=credited,
            managed=managed,
            by_child=by_child,
            by_account_manager=by_am,
            top_accounts=top,
            accounts_in_scope=accounts_in_scope,
            no_account_manager=no_am,
            unassigned=unassigned,
            unassigned_total=nearby,
            **self._moves(),
        )

    # ------------------------------------------------------------------ account managers

    def account_manager_report(self, manager_id: str) -> ManagerReport:
        assert self.period is not None
        kind = "account_manager"
        self._focus(kind, manager_id)
        by_role = self._measures(kind, manager_id, "account")
        accounts = self._rows(
            f"""WITH assigned AS (
                    SELECT object_id AS account_id,
                           CASE WHEN bool_or(valid_from IS NULL) THEN NULL
                                ELSE min(valid_from) END AS valid_from,
                           CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END
                               AS valid_to
                    FROM cur_grants GROUP BY object_id),
                booked AS (
                    SELECT account_id, {_MEASURES} FROM cur
                    WHERE role = 'current' GROUP BY account_id)
                SELECT s.account_id, a.account_name, a.country AS account_country,
                       a.city AS account_city, s.valid_from, s.valid_to,
                       b.* EXCLUDE (account_id)
                FROM assigned s LEFT JOIN booked b ON b.account_id = s.account_id
                LEFT JOIN acc a ON a.account_id = s.account_id
                ORDER BY coalesce(b.booked, 0) DESC, 1""",
        )
        for row in accounts:
            row["m"] = Measures.from_row(row) if row["events"] is not None else Measures()
            row["from_in_period"] = _inside(row["valid_from"], self.period)
            row["to_in_period"] = _inside(row["valid_to"], self.period)
            row["months"] = {}
        # By calendar month, or by fiscal period for a fiscal label.
        month, months_join = (
            ("c.period_start", "JOIN pub.fiscal_calendar c ON c.day = cur.day")
            if isinstance(self.period, FiscalPeriod)
            else ("CAST(date_trunc('month', cur.day) AS DATE)", "")
        )
        monthly = self._rows(
            f"""SELECT account_id, {month} AS month, sum(booked_revenue) AS booked
                FROM cur {months_join}
                WHERE kind = ? AND manager_id = ? AND role = 'current'
                GROUP BY ALL""",
            [kind, manager_id],
        )
        index = {row["account_id"]: row for row in accounts}
        for r in monthly:
            index[r["account_id"]]["months"][r["month"]] = r["booked"]
        by_territory = self._rows(
            f"""SELECT r.territory_id, r.territory_name, t.level,
                       (SELECT string_agg(p.territory_name, ' › ' ORDER BY c.depth DESC)
                          FROM closure c JOIN terr p ON p.territory_id = c.ancestor
                         WHERE c.descendant = r.territory_id AND c.depth > 0) AS path,
                       string_agg(DISTINCT coalesce(territory_manager_name, territory_manager_id),
                                  ', ' ORDER BY coalesce(territory_manager_name,
                                                         territory_manager_id)) AS credited_to,
                       min(attribution_status) FILTER (WHERE territory_id = '{UNASSIGNED}')
                           AS status,
                       {_MEASURES}
                FROM cur r LEFT JOIN terr t USING (territory_id)
                WHERE kind = ? AND manager_id = ? AND role = 'current'
                GROUP BY ALL ORDER BY booked DESC, territory_id""",
            [kind, manager_id],
        )
        for row in by_territory:
            row["m"] = Measures.from_row(row)
        splits = self._rows(
            f"""SELECT scope AS split, account_id, account_name, split_role, split_percent,
                       {_MEASURES}
                FROM cur_splits GROUP BY ALL
                ORDER BY split DESC, abs(booked) DESC, account_id, split_role, split_percent"""
        )
        for row in splits:
            row["m"] = Measures.from_row(row)
        split_totals = {
            r["scope"]: Measures.from_row(r)
            for r in self._rows(f"SELECT scope, {_MEASURES} FROM cur_splits GROUP BY scope")
        }
        recredited = self._rows(
            """SELECT count(*) AS n FROM cur
               WHERE role = 'current' AND account_manager_id IS DISTINCT FROM manager_id"""
        )[0]["n"]
        return ManagerReport(
            kind=kind,
            person=self.person(manager_id),
            period=self.period,
            current=by_role.get("current", Measures()),
            comparisons=self._comparisons(by_role),
            series=self._series(kind, manager_id, "account"),
            csv_rows=self._csv_rows(kind, manager_id),
            accounts=accounts,
            months=self.period.months(),
            by_territory=by_territory,
            recredited=recredited,
            **self._moves(),
            has_splits=self.has_splits,
            splits=splits,
            split_primary=split_totals.get("split_primary", Measures()),
            split_overlay=split_totals.get("split_overlay", Measures()),
        )


def _inside(moment: dt.datetime | None, period: Period | FiscalPeriod) -> bool:
    """True when a validity bound falls strictly inside the period (worth showing)."""
    return moment is not None and _ts(period.start) < moment < _ts(period.end)


def _holds(alias: str, moment: str) -> str:
    """SQL: the validity interval of ``alias`` holds the instant ``moment``."""
    return (
        f"({alias}.valid_from IS NULL OR {alias}.valid_from <= {moment}) AND "
        f"({alias}.valid_to IS NULL OR {moment} < {alias}.valid_to)"
    )


# SQL: the validity interval of grant ``g`` overlaps [?, ?) given as (end, start).
_OVERLAPS = "(g.valid_from IS NULL OR g.valid_from < ?) AND (g.valid_to IS NULL OR g.valid_to > ?)"


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
