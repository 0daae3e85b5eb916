"""Shared helpers of the streaming tests: a tiny reference set, event lines, a TestStream
builder, and readers of the pipeline's outputs."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import BeamAssertException
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from pipelines.io.messages import message
from pipelines.streaming import StreamSettings
from pipelines.transforms.windowed_views import Pane
from tests.utils import fact_row

SOURCE = "test-stream"

REFERENCE_FILES = {
    "accounts.csv": """account_id,account_name,country,region,city,postal_code,industry
A1,Acme,US,CA,San Francisco,94105,Software
A2,Globex,US,NY,New York,10001,Retail
""",
    # A1 moves from M1 to M2 at noon on 1 March 2026.
    "account_assignments.csv": """account_id,account_manager_id,valid_from,valid_to
A1,M1,2025-01-01,2026-03-01T12:00:00Z
A1,M2,2026-03-01T12:00:00Z,
A2,M3,2025-01-01,
""",
    "territories.csv": """territory_id,territory_name,parent_territory_id,level
T-GLOBAL,Global,,global
T-US,United States,T-GLOBAL,country
T-US-CA,California,T-US,state
T-US-NY,New York,T-US,state
""",
    "territory_rules.csv": """territory_id,country,region,city,postal_prefix,valid_from,valid_to
T-US-CA,US,CA,,,,
T-US-NY,US,NY,,,,
""",
    "territory_managers.csv": """territory_id,manager_id,valid_from,valid_to
T-US,TM-US,,
""",
    "people.csv": """person_id,name,email,role,reports_to
M1,Mia One,m1@example.com,account_manager,
M2,Max Two,m2@example.com,account_manager,
M3,Meg Three,m3@example.com,account_manager,
TM-US,Tom US,tm@example.com,territory_manager,
""",
    "fx_rates.csv": """currency,rate_date,rate_to_reporting
EUR,2026-01-01,1.10
""",
}


def write_reference(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in REFERENCE_FILES.items():
        (directory / name).write_text(text)
    return directory


def epoch(text: str) -> float:
    """'2026-03-01T10:00:00Z' -> seconds since the epoch."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def event(
    event_id: str,
    event_time: str,
    amount: str = "100.00",
    event_type: str = "deal_won",
    account_id: str = "A1",
    currency: str = "USD",
    **extra: str,
) -> dict:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_time": event_time,
        "deal_id": f"D-{event_id}",
        "account_id": account_id,
        "amount": amount,
        "currency": currency,
        **extra,
    }


class Stream:
    """Builds a TestStream of messages: each event is one JSON message stamped with its
    event_time, so the test controls the watermark against event time."""

    def __init__(self, start: str = "2026-03-01T00:00:00Z") -> None:
        self.test_stream = TestStream().advance_watermark_to(Timestamp(epoch(start)))
        self.position = 0

    def send(self, *events: dict | str) -> Stream:
        values = []
        for e in events:
            self.position += 1
            payload = e if isinstance(e, str) else json.dumps(e)
            stamp = epoch(e["event_time"]) if isinstance(e, dict) else 0
            values.append(TimestampedValue(message(SOURCE, self.position, payload), stamp))
        self.test_stream.add_elements(values)
        return self

    def watermark(self, at: str) -> Stream:
        self.test_stream.advance_watermark_to(Timestamp(epoch(at)))
        return self

    def wait(self, seconds: float) -> Stream:
        """Processing time passes (early panes fire)."""
        self.test_stream.advance_processing_time(seconds)
        return self

    def end(self) -> TestStream:
        return self.test_stream.advance_watermark_to_infinity()


def every_record_kind(refund_time: str = "2026-03-01T12:00:00Z") -> Stream:
    """Early, on-time, late and too-late events, a malformed message, a missing FX rate
    (GBP), a repeat, a refund at ``refund_time``: every kind of sink record."""
    return (
        Stream()
        .send(event("e1", "2026-03-01T10:00:00Z", "1000.00", event_type="deal_created"))
        .send(event("e2", "2026-03-01T13:00:00Z", "500.00", currency="EUR"))  # x 1.10
        .send("not json")
        .send(event("e3", "2026-03-01T11:00:00Z", "200.00", currency="GBP", account_id="A2"))
        .send(event("e2", "2026-03-01T13:00:00Z", "500.00", currency="EUR"))  # duplicate
        .send(event("e4", refund_time, "50.00", event_type="deal_refunded", account_id="A2"))
        .wait(61)  # early panes
        .watermark("2026-03-02T00:00:01Z")  # 1 March on time
        .send(event("e5", "2026-03-01T09:00:00Z", "30.00"))  # late, within lateness
        .watermark("2026-03-05T00:00:01Z")  # 1 March closed
        .send(event("e6", "2026-03-01T08:00:00Z", "7.00"))  # too late: facts, then repair
    )


def settings(tmp_path: Path, **overrides) -> StreamSettings:
    values = dict(
        reference_dir=str(write_reference(tmp_path / "reference")),
        db=str(tmp_path / "revenue.duckdb"),
        run_id="stream-test",
        early_firing_seconds=10,
        allowed_lateness_seconds=3 * 86_400,
        reference_refresh_seconds=0,
        batch_rows=100,
        shards=4,
    )
    values.update(overrides)
    return StreamSettings(**values)


def pane_rows(view: str, columns: tuple[str, ...] = ("booked_revenue",)) -> Callable:
    """Pane records -> sorted (window day, timing, index, key, day, *columns) tuples."""
    key = "territory_id" if view == "territory_revenue" else "account_manager_id"

    def project(panes: list[Pane]) -> list[tuple]:
        rows = []
        for pane in panes:
            pane = pane if isinstance(pane, Pane) else Pane(*pane)
            if pane.view != view:
                continue
            start = dt.datetime.fromtimestamp(pane.window_start / 1e6, dt.UTC).date()
            for r in pane.table.to_pylist():
                rows.append(
                    (str(start), pane.timing, pane.index, r[key], str(r["day"]),
                     *(_plain(r[c]) for c in columns))
                )
        return sorted(rows, key=lambda r: (r[0], r[2], r[3]))

    return project


def _plain(value: object) -> object:
    return str(value) if isinstance(value, Decimal) else value


def matches(project: Callable, expected: list[tuple]) -> Callable:
    """An assert_that matcher comparing the projected, sorted rows with ``expected``."""

    def _match(actual: list) -> None:
        got = project(actual)
        if got != expected:
            raise BeamAssertException(f"\nexpected {expected}\n     got {got}")

    return _match


def query(db: str | Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [
            tuple(_plain(v) if not isinstance(v, dt.date) else str(v) for v in row)
            for row in con.execute(sql).fetchall()
        ]
    finally:
        con.close()


def fact_rows(tables: list[pa.Table]) -> list[tuple]:
    rows = []
    for table in tables:
        for r in table.to_pylist():
            rows.append((r["event_id"], r["account_manager_id"], _plain(r["booked_revenue"])))
    return sorted(rows)




def fact(
    event_id: str,
    booked: str,
    day: str = "2026-03-01",
    territory: str = "T-US-CA",
    manager: str = "M1",
    **extra: object,
) -> dict:
    """One attributed_events row (a deal_won of ``booked``)."""
    return fact_row(event_id, booked, day, account_manager_id=manager, territory_id=territory,
                    territory_manager_id="TM-US", run_id="batch-1", **extra)


def facts_table(rows: list[dict]) -> pa.Table:
    from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA

    return pa.Table.from_pylist(rows, schema=ATTRIBUTED_EVENTS_SCHEMA)
