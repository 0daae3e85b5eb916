"""``revattr import salesforce``: a Salesforce export folder -> what ``revattr run`` reads.

Writes, under ``out``:

* ``events/salesforce.jsonl``: the deal events (``sf_events``), sorted by time;
* ``reference/<table>.csv``: the seven reference tables (``sf_reference``), checked
  by loading them back with the pipeline's own reference loader;
* ``import_rejects.csv``: every export row not mapped, or mapped only in part:
  ``file``, ``line`` (header = 1), ``record_id``, ``reason``, ``detail``.

Same export, same files (the events' ids are derived from Salesforce ids).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import UserError
from pipelines.importers import sf_reference as ref
from pipelines.importers.sf_events import opportunity_events, stage_kinds
from pipelines.importers.sf_export import Reject, read_export
from schemas.money import CURRENCY_MINOR_UNITS
from schemas.reference import REFERENCE_FILE_COLUMNS, REQUIRED_REFERENCE_TABLES

EVENTS_FILE = "events/salesforce.jsonl"
REJECTS_FILE = "import_rejects.csv"
REJECT_COLUMNS = ("file", "line", "record_id", "reason", "detail")


@dataclass
class ImportSummary:
    out: Path
    opportunities: int = 0
    history_rows: int = 0
    events: Counter = field(default_factory=Counter)
    current_state_events: int = 0
    reference_rows: dict[str, int] = field(default_factory=dict)
    rejects: Counter = field(default_factory=Counter)
    corporate_currency: str = ""
    reporting_currency: str = ""

    @property
    def events_file(self) -> Path:
        return self.out / EVENTS_FILE

    @property
    def reference_dir(self) -> Path:
        return self.out / "reference"

    @property
    def rejects_file(self) -> Path:
        return self.out / REJECTS_FILE


def import_salesforce(export: str | Path, out: str | Path, *, reporting_currency: str = "USD",
                      corporate_currency: str | None = None,
                      manager_roles: tuple[str, ...] = ref.DEFAULT_MANAGER_ROLES) -> ImportSummary:
    """Map the export in ``export`` and write the events, reference folder and rejects."""
    reporting_currency = reporting_currency.upper()
    if reporting_currency not in CURRENCY_MINOR_UNITS:
        raise UserError(f"reporting currency {reporting_currency!r} is not an ISO 4217 code",
                        hint="use e.g. USD")
    objects, rejects = read_export(export)
    corporate = _corporate(objects["CurrencyType"], corporate_currency, reporting_currency)
    tables, more = reference_tables(objects, reporting=reporting_currency, corporate=corporate,
                                    manager_roles=manager_roles)
    rejects += more
    convertible = {c["currency"] for c in tables["fx_rates"]} | {reporting_currency}
    stages = stage_kinds(objects["Opportunity"], objects["OpportunityStage"])
    result = opportunity_events(objects["Opportunity"], objects["OpportunityHistory"], stages,
                                default_currency=corporate, convertible=convertible)
    rejects += result.rejects
    summary = ImportSummary(Path(out), result.opportunities, result.history_rows,
                            Counter(e["event_type"] for e in result.events),
                            result.current_state_events,
                            {name: len(rows) for name, rows in tables.items()},
                            Counter(r.reason for r in rejects), corporate, reporting_currency)
    write_outputs(summary, result.events, tables, rejects)
    return summary


def reference_tables(objects: dict, *, reporting: str, corporate: str,
                     manager_roles: tuple[str, ...]) -> tuple[dict[str, ref.Rows], list[Reject]]:
    """The seven required reference tables and their rejects (no ``account_splits``:
    Salesforce has no account-level split, docs/import-salesforce.md)."""
    rejects: list[Reject] = []

    def take(pair):
        rows, dropped = pair[0], pair[1]
        rejects.extend(dropped)
        return rows

    accounts = take(ref.accounts(objects["Account"]))
    assignments = take(ref.account_assignments(objects["Account"], objects["AccountHistory"]))
    territories = take(ref.territories(objects["Territory2"], objects["Territory2Type"],
                                       objects["Territory2Model"]))
    kept = {t["territory_id"] for t in territories}
    managers = take(ref.territory_managers(objects["Territory2"],
                                           objects["UserTerritory2Association"], kept,
                                           manager_roles))
    rules = take(ref.territory_rules(objects["ObjectTerritory2Association"], accounts,
                                     territories))
    people = take(ref.people(objects["User"], managers, assignments))
    fx_rows, fx_rejects, _ = ref.fx_rates(objects["DatedConversionRate"], objects["CurrencyType"],
                                          reporting=reporting, corporate=corporate)
    rejects += fx_rejects
    tables = {"accounts": accounts, "account_assignments": assignments,
              "territories": territories, "territory_rules": rules,
              "territory_managers": managers, "people": people, "fx_rates": fx_rows}
    return {name: tables[name] for name in REQUIRED_REFERENCE_TABLES}, rejects


def _corporate(currency_type, option: str | None, reporting: str) -> str:
    exported = ref.corporate_currency(currency_type)
    if option and exported and option.upper() != exported:
        raise UserError(f"--corporate-currency {option.upper()} but CurrencyType.csv marks "
                        f"{exported} as the corporate currency",
                        hint="drop the option: the export says which currency is corporate")
    return (option or exported or reporting).upper()


def write_outputs(summary: ImportSummary, events: list[dict], tables: dict[str, ref.Rows],
                  rejects: list[Reject]) -> None:
    """Write the events, the reference folder and the rejects; check the folder loads."""
    summary.events_file.parent.mkdir(parents=True, exist_ok=True)
    summary.reference_dir.mkdir(parents=True, exist_ok=True)
    with summary.events_file.open("w", encoding="utf-8", newline="\n") as handle:
        for event in events:
            record = {k: v for k, v in event.items() if v is not None}
            handle.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
    for name in REQUIRED_REFERENCE_TABLES:
        _write_csv(summary.reference_dir / f"{name}.csv", REFERENCE_FILE_COLUMNS[name],
                   tables[name])
    _write_csv(summary.rejects_file, REJECT_COLUMNS,
               [{c: getattr(r, c) for c in REJECT_COLUMNS}
                for r in sorted(rejects, key=lambda r: (r.file, r.line or 0, r.reason))])
    from pipelines.io.reference_loader import load_reference

    load_reference(summary.reference_dir)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
