"""Small hand-made or generated CRM histories, published with the embedded engine.

A ``History`` is the reference snapshot (rows as dicts of the file columns) plus
the deal events; ``publish`` writes them as CSV/JSONL into a folder and runs
``revattr run`` on the embedded engine (one run per call, so calling it twice
with a corrected reference gives a database whose older facts were attributed
under the earlier snapshot, as a history loaded month by month would).
``render_all`` writes every active manager's report for a period and returns,
per (kind, person_id), the text a recipient can see: HTML (with the charts
decoded), CSV and the mail message built from them.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.embedded.run import run
from pipelines.reports import mail
from pipelines.reports.periods import Period
from pipelines.reports.render import write_reports
from schemas.reference import REFERENCE_FILE_COLUMNS

NOW = dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
_CHART = re.compile(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"')


@dataclass
class History:
    reference: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    events: list[dict[str, str]] = field(default_factory=list)


def write_inputs(folder: Path, history: History) -> None:
    """``folder/reference/<table>.csv`` and ``folder/events/part-00000.jsonl``."""
    (folder / "reference").mkdir(parents=True, exist_ok=True)
    events = folder / "events"
    events.mkdir(parents=True, exist_ok=True)
    for old in events.glob("*"):
        old.unlink()
    for table, columns in REFERENCE_FILE_COLUMNS.items():
        with open(folder / "reference" / f"{table}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in history.reference.get(table, []):
                writer.writerow([row.get(column, "") for column in columns])
    with open(events / "part-00000.jsonl", "w", encoding="utf-8") as f:
        for event in history.events:
            f.write(json.dumps(event) + "\n")


def publish(folder: Path, history: History, restate_as_of: str | None = None) -> Path:
    """One ``revattr run`` (embedded engine) of ``history`` into ``folder/out/revenue.duckdb``
    (its restated basis as of ``restate_as_of``, a date; default: today)."""
    write_inputs(folder, history)
    db = folder / "out" / "revenue.duckdb"
    summary = run(
        [
            f"--events={folder / 'events'}",
            f"--reference={folder / 'reference'}",
            f"--db={db}",
            "--checks=false",
            *([f"--restate_as_of={restate_as_of}"] if restate_as_of else []),
        ]
    )
    assert summary.status == "succeeded", summary
    assert summary.quarantined == 0, summary.quarantined_by_reason
    return db


def visible_text(html: str, csv_bytes: bytes, message_bytes: bytes | None) -> str:
    """Everything a recipient can read: the page, its decoded charts, the CSV, the mail."""
    charts = [base64.b64decode(b).decode("utf-8") for b in _CHART.findall(html)]
    parts = [html, *charts, csv_bytes.decode("utf-8-sig")]
    if message_bytes is not None:
        parts.append(message_bytes.decode("utf-8", errors="replace"))
        parts.extend(_decoded_parts(message_bytes))
    return "\n".join(parts)


def _decoded_parts(message_bytes: bytes) -> list[str]:
    from email import message_from_bytes, policy

    message = message_from_bytes(message_bytes, policy=policy.default)
    out = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        payload = part.get_payload(decode=True)
        if payload:
            out.append(payload.decode("utf-8-sig", errors="replace"))
    return out


def render_all(
    db: Path, out: Path, period: Period, basis: str = "as_booked"
) -> dict[tuple[str, str], str]:
    """Every active manager's report for ``period`` on ``basis``; (kind, person_id) -> visible
    text."""
    reports = write_reports(db, out, period, now=NOW, basis=basis)
    messages = {
        (d.report.kind, d.report.person_id): bytes(
            mail.build_message(d, reports, "reports@example.com")
        )
        for d in mail.plan(reports)
        if d.problem is None
    }
    seen = {}
    for r in reports.written:
        assert r.html is not None and r.csv is not None
        key = (r.kind, r.person_id)
        seen[key] = visible_text(
            r.html.read_text(encoding="utf-8"), r.csv.read_bytes(), messages.get(key)
        )
    return seen
