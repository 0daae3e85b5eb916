"""The restated basis: every account credited as the reference in force at one date says.

The booked basis freezes each event's credit as of its own time (``rules.enrich``). The
restated basis asks "what would my history look like under the assignments and the
territory model in force at ``as_of``": each account gets one account manager, leaf
territory and territory manager, found by the same as-of rules, at ``as_of``. The
published ``*_restated`` views join that table to the facts, so restating after a
realignment (a new reference snapshot) never re-reads an event.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from pipelines.rules.enrich import (
    ENRICHMENT_COLUMNS,
    EnrichmentIndex,
    EnrichmentTimelines,
    enrich,
)
from schemas.events import EVENT_TIME_TYPE
from schemas.outputs import RESTATED_ATTRIBUTION_SCHEMA


def restated_attribution(reference: dict[str, pa.Table], as_of: dt.datetime,
                         timelines: EnrichmentTimelines | None = None) -> pa.Table:
    """One ``RESTATED_ATTRIBUTION_SCHEMA`` row per account of ``reference`` (its accounts
    and the accounts of its assignments): the account's credit at ``as_of``.
    ``timelines``: the reference already resolved (e.g. by the run), not resolved again."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    index = EnrichmentIndex.build(reference, timelines)
    n = len(index.accounts)
    moment = pa.scalar(as_of, EVENT_TIME_TYPE)
    credited = enrich(pa.table({"account_id": index.accounts,
                                "event_time": pa.repeat(moment, n)}), index)
    return pa.table(
        {"account_id": credited["account_id"],
         **{name: credited[name] for name in ENRICHMENT_COLUMNS},
         "as_of": pa.repeat(moment, n)},
        schema=RESTATED_ATTRIBUTION_SCHEMA,
    )


def restate_moment(as_of: dt.date | dt.datetime | None, now: dt.datetime | None = None,
                   ) -> dt.datetime:
    """The instant the restated basis is taken at: a date means its midnight UTC; the
    default is the start of today (UTC), so the basis changes at most once a day."""
    if as_of is None:
        as_of = (now or dt.datetime.now(dt.UTC)).date()
    if isinstance(as_of, dt.datetime):
        return as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)
    return dt.datetime.combine(as_of, dt.time(), tzinfo=dt.UTC)
