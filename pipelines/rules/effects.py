"""Signed revenue effect of each event (CONTRACT.md "Revenue effect of each event").

Each event's effect depends on the event alone, so sums are commutative: late,
out-of-order and (once deduplicated) repeated events give the same totals.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from schemas.money import REPORTING_MONEY_TYPE
from schemas.outputs import ATTRIBUTED_EVENTS_SCHEMA, MEASURES, MONEY_MEASURES

# event_type -> (booked sign, won, lost, created, pipeline sign, refunds sign)
EFFECTS: dict[str, tuple[int, int, int, int, int, int]] = {
    "deal_created": (0, 0, 0, 1, 1, 0),
    "deal_stage_changed": (0, 0, 0, 0, 0, 0),
    "deal_won": (1, 1, 0, 0, 0, 0),
    "deal_lost": (0, 0, 1, 0, 0, 0),
    "deal_amended": (1, 0, 0, 0, 0, 0),
    "deal_refunded": (-1, 0, 0, 0, 0, 1),
    "deal_reopened": (-1, -1, 0, 0, 0, 0),
}
# The order of the coefficients above.
_COLUMNS = MEASURES


def _coefficients(event_types: pa.Array, position: int) -> pa.Array:
    """Per-row coefficient of one effect column, looked up by event type."""
    types = list(EFFECTS)
    index = pc.index_in(event_types, value_set=pa.array(types))
    table = pa.array([EFFECTS[t][position] for t in types], pa.int64())
    return pc.take(table, index)


def apply_effects(events: pa.Table) -> pa.Table:
    """Append ``day`` (UTC date) and the six measures to converted, enriched events.

    Needs ``event_type``, ``event_time`` and ``amount_reporting``. Money columns are
    ``amount_reporting``, its negation or zero: exact, no rounding.
    """
    amount = events["amount_reporting"]
    out = events.append_column("day", pc.cast(events["event_time"], pa.date32()))
    for position, column in enumerate(_COLUMNS):
        coefficient = _coefficients(events["event_type"], position)
        if column in MONEY_MEASURES:
            zero = pa.scalar(0, REPORTING_MONEY_TYPE)
            value = pc.if_else(
                pc.equal(coefficient, 1),
                amount,
                pc.if_else(pc.equal(coefficient, -1), pc.negate(amount), zero),
            )
            value = pc.cast(value, REPORTING_MONEY_TYPE)
        else:
            value = coefficient
        out = out.append_column(column, value)
    return out


def to_attributed_events(events: pa.Table, run_id: str) -> pa.Table:
    """Project fully processed events onto the published ``attributed_events`` shape."""
    with_run = events.append_column("run_id", pa.repeat(pa.scalar(run_id), events.num_rows))
    return with_run.select(ATTRIBUTED_EVENTS_SCHEMA.names).cast(ATTRIBUTED_EVENTS_SCHEMA)
