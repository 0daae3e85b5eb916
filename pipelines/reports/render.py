"""Render manager reports to self-contained HTML and CSV, and write the report tree.

Layout under the output directory (scripts and mail rules depend on it)::

    index.html                              the sales-ops admin's list of every report
    territory_managers/<person_id>.html     one per territory manager active in the period
    territory_managers/<person_id>.csv      the rows behind it
    account_managers/<person_id>.html       one per account manager active in the period
    account_managers/<person_id>.csv

HTML is produced by Jinja2 with autoescaping on (CRM text such as account names
renders as text; control and bidi characters replaced, long values cut, see
``inert``) and carries a Content-Security-Policy that allows no script and
no network fetch; styles and charts are inline. A person whose id is not a safe
file name (``[A-Za-z0-9][A-Za-z0-9._@-]*``, at most 128 characters) gets no report:
it is listed as skipped. On a run for every manager, report files of managers no
longer active are removed from the two report folders (nothing else is touched).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import jinja2
import markupsafe

from pipelines.reports import charts, inert
from pipelines.reports.csv_safe import to_csv_bytes
from pipelines.reports.data import UNASSIGNED, ManagerReport, ReportData
from pipelines.reports.periods import FiscalLabel, FiscalPeriod, Period

SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
KINDS = ("territory_manager", "account_manager")
FOLDERS = {"territory_manager": "territory_managers", "account_manager": "account_managers"}
TITLES = {"territory_manager": "Territory manager", "account_manager": "Account manager"}
STATUS_TEXT = {
    "no_account_manager": "no account manager",
    "no_territory": "no territory rule matches the account",
    "unknown_account": "account not in the CRM's account list",
    "no_territory_manager": "no territory manager",
}


# ----------------------------------------------------------------------------- formatting


def money(value: Decimal | int | None) -> str:
    """1234567.8 -> '1,234,567.80'; None -> '—'."""
    return "—" if value is None else f"{Decimal(value):,.2f}"


def signed_money(value: Decimal | None) -> str:
    return "—" if value is None else f"{Decimal(value):+,.2f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def signed_count(value: int | None) -> str:
    return "—" if value is None else f"{value:+,}"


def percent(value: Decimal | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def share(value: Decimal | None) -> str:
    """A split percent: Decimal('33.3330') -> '33.333%', 100 -> '100%'."""
    return "—" if value is None else f"{Decimal(value).normalize():f}%"


def change(current: Decimal, before: Decimal) -> Decimal | None:
    """Relative change; None when the earlier figure is 0."""
    return None if not before else (Decimal(current) - Decimal(before)) / abs(Decimal(before))


def day_text(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC)
        if value.time() != dt.time(0, 0):
            return f"{value.day} {value:%b %Y %H:%M} UTC"
    return f"{value.day} {value:%b %Y}"


def month_text(value: dt.date) -> str:
    return f"{value:%b %Y}"


def basis_text(basis: str, as_of: dt.datetime | None) -> str:
    """``as_booked basis`` or ``restated basis, as of 1 Apr 2026``."""
    if basis == "restated":
        return f"restated basis, as of {day_text(as_of)}"
    return "as_booked basis"


def status_text(status: str | None) -> str:
    return STATUS_TEXT.get(status or "", status or "")


def inert_output(value: object) -> object:
    """Jinja ``finalize``: every ``{{ }}`` string not marked safe is made inert for display
    (controls and bidi overrides replaced, cut to ``inert.DISPLAY_LIMIT``), then escaped."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup):
        return inert.display(value)
    return value


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # every template is HTML, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=inert_output,
    )
    env.filters.update(
        money=money,
        signed_money=signed_money,
        count=count,
        signed_count=signed_count,
        percent=percent,
        share=share,
        day=day_text,
        month=month_text,
        status=status_text,
        urlpart=lambda text: quote(text, safe=""),
    )
    env.globals.update(change=change, UNASSIGNED=UNASSIGNED, TITLES=TITLES, basis_text=basis_text)
    return env


_ENV = _environment()


# ----------------------------------------------------------------------------- one report


def render_report(
    report: ManagerReport, data_as_of: dt.datetime | None, generated_at: dt.datetime
) -> str:
    """The report as one self-contained HTML page."""
    previous = report.comparison("previous")
    year_ago = report.comparison("year_ago")
    items = [(report.period.label, report.current.booked)]
    if previous:
        items.append((previous.period.label, previous.measures.booked))
    if year_ago and not year_ago.same_as_previous:
        items.append((year_ago.period.label, year_ago.measures.booked))
    context = {
        "r": report,
        "m": report.current,
        "previous": previous,
        "year_ago": year_ago,
        "period": report.period,
        "title": TITLES[report.kind],
        "data_as_of": data_as_of,
        "generated_at": generated_at,
        # Our own base64 data URIs (dates and numbers only): longer than any display bound.
        "revenue_chart": markupsafe.Markup(
            charts.revenue_chart(report.series, report.period.bucket, report.period.end)
        ),
        "comparison_chart": markupsafe.Markup(charts.comparison_chart(items)),
        "csv_name": f"{report.person.person_id}.csv",
        "month_totals": _month_totals(report),
    }
    return _ENV.get_template(f"{report.kind}.html.j2").render(context)


def _month_totals(report: ManagerReport) -> dict[dt.date, Decimal]:
    totals: dict[dt.date, Decimal] = {}
    for account in report.accounts:
        for month, booked in account["months"].items():
            totals[month] = totals.get(month, Decimal(0)) + booked
    return totals


def report_csv(report: ManagerReport) -> bytes:
    return to_csv_bytes(report.csv_columns, report.csv_rows)


# ----------------------------------------------------------------------------- the tree


@dataclass
class WrittenReport:
    kind: str
    person_id: str
    name: str | None
    email: str | None
    html: Path | None = None
    csv: Path | None = None
    booked: Decimal = Decimal("0.00")
    previous_booked: Decimal = Decimal("0.00")
    events: int = 0
    territories: str = ""
    skipped: str | None = None  # why no report was written

    @property
    def display(self) -> str:
        return self.name or self.person_id


@dataclass
class ReportSet:
    out: Path
    period: Period | FiscalPeriod
    index: Path
    reports: list[WrittenReport] = field(default_factory=list)
    seconds: float = 0.0
    basis: str = "as_booked"
    as_of: dt.datetime | None = None  # of the restated basis

    @property
    def basis_text(self) -> str:
        return basis_text(self.basis, self.as_of)

    @property
    def written(self) -> list[WrittenReport]:
        return [r for r in self.reports if r.skipped is None]

    @property
    def skipped(self) -> list[WrittenReport]:
        return [r for r in self.reports if r.skipped is not None]


def _write(path: Path, content: bytes) -> None:
    """Write through a temporary file and rename, so a reader never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(content)
    os.replace(partial, path)


def write_reports(
    db: Path,
    out: Path,
    period: Period | FiscalLabel | FiscalPeriod | None = None,
    manager: str | None = None,
    progress: Callable[[str], None] | None = None,
    now: dt.datetime | None = None,
    basis: str = "as_booked",
) -> ReportSet:
    """Write every active manager's report (or ``manager``'s) and the index; see the module
    docstring for the layout. ``period``: a calendar period, a fiscal label (resolved from
    the published ``fiscal_calendar``) or the latest month; ``basis``: ``as_booked`` or
    ``restated``. Raises UserError for an unusable database, an unknown fiscal label, a
    missing restated basis or an unknown manager."""
    from pipelines.errors import UserError

    say = progress or (lambda _message: None)
    started = dt.datetime.now(dt.UTC)
    generated_at = now or started
    out = Path(out)
    with ReportData(db) as data:
        if isinstance(period, FiscalLabel):
            period = data.fiscal_period(period)
        period = period or data.latest_month()
        say(f"Preparing {period.label}")
        data.prepare(period, basis)
        active = {
            "territory_manager": data.active_territory_managers(),
            "account_manager": data.active_account_managers(),
        }
        if manager is not None:
            active = {kind: [m for m in ids if m == manager] for kind, ids in active.items()}
            if not any(active.values()):
                raise UserError(
                    f"{manager!r} is neither a territory manager nor an account manager "
                    f"active in {period.label}",
                    hint="check the person_id in `people`, or pick another --period",
                )
        as_of = data.data_as_of()
        result = ReportSet(out, period, out / "index.html", basis=basis, as_of=data.as_of)
        for kind in KINDS:
            builder = (
                data.territory_manager_report
                if kind == "territory_manager"
                else data.account_manager_report
            )
            for person_id in active[kind]:
                person = data.person(person_id)
                entry = WrittenReport(kind, person_id, person.name, person.email)
                result.reports.append(entry)
                if not SAFE_ID.fullmatch(person_id):
                    entry.skipped = "person_id is not a safe file name"
                    continue
                say(f"{TITLES[kind]} {person_id}")
                report = builder(person_id)
                folder = out / FOLDERS[kind]
                entry.html = folder / f"{person_id}.html"
                entry.csv = folder / f"{person_id}.csv"
                _write(entry.html, render_report(report, as_of, generated_at).encode("utf-8"))
                _write(entry.csv, report_csv(report))
                entry.booked = report.current.booked
                previous = report.comparison("previous")
                entry.previous_booked = previous.measures.booked if previous else Decimal(0)
                entry.events = report.current.events
                entry.territories = ", ".join(
                    sorted({row["territory_name"] or row["territory_id"] for row in report.managed})
                )
        if manager is None:
            _remove_stale(out, result)
        say("Index")
        index = _ENV.get_template("index.html.j2").render(
            period=period,
            reports=result.reports,
            kinds=KINDS,
            folders=FOLDERS,
            data_as_of=as_of,
            generated_at=generated_at,
            single=manager,
            basis=result.basis_text,
        )
        _write(result.index, index.encode("utf-8"))
    result.seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return result


def _remove_stale(out: Path, result: ReportSet) -> None:
    keep = {p for r in result.written for p in (r.html, r.csv)}
    for folder in FOLDERS.values():
        for path in (out / folder).glob("*"):
            if path.suffix in (".html", ".csv") and path.is_file() and path not in keep:
                path.unlink()
