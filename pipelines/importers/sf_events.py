"""Opportunity + OpportunityHistory -> the contract's deal events.

Each opportunity is replayed in history order (``CreatedDate``, then ``Id``), from
its creation snapshot (the first history row) to its current state (the
Opportunity row itself, which emits events only where the history stops short of
it). The events carry the revenue effects of CONTRACT.md section 1:

* creation -> ``deal_created`` (pipeline += amount at creation);
* open -> won -> ``deal_won`` with the amount then (booked += amount);
* an amount change **while won** -> ``deal_amended`` with the signed delta; while open
  or lost an amount change books nothing (``deal_amended`` would book revenue for an
  unwon deal), so it is a ``deal_stage_changed`` carrying the new amount;
* won -> open or lost -> ``deal_reopened`` with everything booked so far (the won
  amount plus amendments), then ``deal_lost`` if it went to a lost stage;
* open -> lost -> ``deal_lost``; any other stage change -> ``deal_stage_changed``.

So a deal's booked revenue always equals its amount while won and 0 otherwise.
Event ids are deterministic: ``sf-<Opportunity.Id>-created``,
``sf-<OpportunityHistory.Id>-<won|lost|reopened|amended|stage>`` and
``sf-<Opportunity.Id>-current-<kind>``; re-importing an export gives the same ids.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from pipelines.importers.sf_export import Reject, SfObject
from pipelines.importers.sf_values import (
    midnight_utc,
    money,
    money_text,
    rfc3339,
    sf_bool,
    sf_date,
    sf_datetime,
    sf_decimal,
    sf_id,
)

DEFAULT_WON_STAGES = ("Closed Won",)
DEFAULT_LOST_STAGES = ("Closed Lost",)
ZERO = Decimal(0)


@dataclass(frozen=True)
class StageKinds:
    """Which stage names are won and which are lost (closed, not won); others are open."""

    won: frozenset[str]
    lost: frozenset[str]

    def status(self, stage: str | None) -> str:
        key = (stage or "").casefold()
        return "won" if key in self.won else "lost" if key in self.lost else "open"


def stage_kinds(opportunities: SfObject, stages: SfObject) -> StageKinds:
    """From OpportunityStage (``MasterLabel``/``ApiName``, ``IsClosed``, ``IsWon``) when
    exported; else the standard ``Closed Won``/``Closed Lost`` plus every stage an
    Opportunity currently holds with ``IsWon``/``IsClosed`` set."""
    won: set[str] = set()
    lost: set[str] = set()
    source = stages.rows or opportunities.rows
    name_fields = ("MasterLabel", "ApiName") if stages.rows else ("StageName",)
    if not stages.rows:
        won.update(s.casefold() for s in DEFAULT_WON_STAGES)
        lost.update(s.casefold() for s in DEFAULT_LOST_STAGES)
    for row in source:
        try:
            is_won, is_closed = sf_bool(row.get("IsWon")), sf_bool(row.get("IsClosed"))
        except ValueError:
            continue  # the Opportunity row itself is rejected for it later
        for name in name_fields:
            if row.get(name):
                key = row[name].casefold()
                (won if is_won else lost if is_closed else set()).add(key)
    return StageKinds(frozenset(won), frozenset(lost - won))


@dataclass(frozen=True)
class Step:
    """One state of an opportunity: a history row, or its current state."""

    key: str  # event id prefix: sf-<OpportunityHistory.Id> or sf-<Opportunity.Id>-current
    time: datetime
    stage: str | None
    amount: Decimal
    status: str  # open | won | lost


@dataclass
class DealState:
    status: str
    stage: str | None
    amount: Decimal
    booked: Decimal = ZERO


@dataclass
class EventsResult:
    events: list[dict[str, str | None]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    opportunities: int = 0
    history_rows: int = 0
    current_state_events: int = 0  # events only the Opportunity row (not the history) showed


def replay(base: dict[str, str | None], created: Step, steps: list[Step],
           currency: str) -> tuple[list[dict[str, str | None]], list[str]]:
    """The events of one opportunity: ``created`` snapshot, then ``steps`` in order.
    Returns the events and notes (a Closed Won step with amount 0 books nothing)."""
    notes: list[str] = []
    events = [_event(base, f"{base['deal_id_key']}-created", "deal_created", created.time,
                     created.stage, created.amount, currency)]
    state = DealState("open", created.stage, created.amount)
    for step in steps:
        events += _transition(state, step, base, currency, notes)
    return events, notes


def _transition(state: DealState, step: Step, base: dict[str, str | None], currency: str,
                notes: list[str]) -> list[dict[str, str | None]]:
    out: list[dict[str, str | None]] = []

    def emit(kind: str, event_type: str, amount: Decimal) -> None:
        out.append(_event(base, f"{step.key}-{kind}", event_type, step.time, step.stage, amount,
                          currency))

    was, now = state.status, step.status
    if was != "won" and now == "won":
        if step.amount > 0:
            emit("won", "deal_won", step.amount)
        else:
            emit("stage", "deal_stage_changed", step.amount)
            notes.append(f"{step.key}: Closed Won with amount 0 books nothing (deal_won needs "
                         "amount > 0): imported as a stage change")
        state.booked = step.amount
    elif was == "won" and now != "won":
        if state.booked > 0:
            emit("reopened", "deal_reopened", state.booked)
        state.booked = ZERO
        if now == "lost":
            emit("lost", "deal_lost", step.amount)
        elif not out:
            emit("stage", "deal_stage_changed", step.amount)
    elif was == "won":
        delta = step.amount - state.booked
        if delta:
            emit("amended", "deal_amended", delta)
            state.booked = step.amount
        elif step.stage != state.stage:
            emit("stage", "deal_stage_changed", step.amount)
    elif now == "lost" and was != "lost":
        emit("lost", "deal_lost", step.amount)
    elif step.stage != state.stage or step.amount != state.amount:
        emit("stage", "deal_stage_changed", step.amount)
    state.status, state.stage, state.amount = now, step.stage, step.amount
    return out


def _event(base: dict[str, str | None], event_id: str, event_type: str, time: datetime,
           stage: str | None, amount: Decimal, currency: str) -> dict[str, str | None]:
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_time": rfc3339(time),
        "deal_id": base["deal_id"],
        "account_id": base["account_id"],
        "amount": money_text(money(amount, currency)),
        "currency": currency,
        "stage": stage,
        "product": None,
        "opportunity_owner_id": base["opportunity_owner_id"],
    }


def opportunity_events(opportunities: SfObject, history: SfObject, stages: StageKinds, *,
                       default_currency: str, convertible: set[str]) -> EventsResult:
    """Every opportunity's events (sorted by time, then id) and the rows not mapped.

    ``default_currency``: the org currency when Opportunity has no CurrencyIsoCode
    (single-currency org); ``convertible``: currencies with a rate to the reporting
    currency (an opportunity in another one is rejected as ``bad_currency``).
    """
    result = EventsResult()
    by_opp: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(history.rows):
        by_opp[sf_id(row.get("OpportunityId")) or ""].append(i)
    seen: set[str] = set()
    for i, row in enumerate(opportunities.rows):
        opp_id = sf_id(row.get("Id"))
        try:
            opp = _opportunity(row, default_currency, convertible)
        except _RowError as error:
            result.rejects.append(opportunities.reject(i, error.reason, str(error)))
            if opp_id:
                seen.add(opp_id)
                result.rejects += [history.reject(j, "opportunity_rejected",
                                                  f"its Opportunity {opp_id} was rejected")
                                   for j in by_opp.get(opp_id, [])]
            continue
        seen.add(opp_id)
        result.opportunities += 1
        steps: list[Step] = []
        for j in by_opp.get(opp_id, []):
            try:
                steps.append(_history_step(history.rows[j], stages, opp["currency"]))
            except _RowError as error:
                result.rejects.append(history.reject(j, error.reason, str(error)))
        steps.sort(key=lambda s: (s.time, s.key))
        result.history_rows += len(steps)
        created = _created_step(opp, steps)
        current = _current_step(opp, steps)
        events, notes = replay(opp, created, [*steps, current], opp["currency"])
        result.current_state_events += sum(e["event_id"].startswith(current.key) for e in events)
        result.events += events
        result.rejects += [opportunities.reject(i, "zero_amount_won", note) for note in notes]
    for opp_id, rows in by_opp.items():
        if opp_id not in seen:
            result.rejects += [history.reject(j, "unknown_opportunity",
                                              f"OpportunityId {opp_id or '(empty)'} is not in "
                                              "Opportunity.csv") for j in rows]
    result.events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return result


class _RowError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _opportunity(row: dict[str, str | None], default_currency: str,
                 convertible: set[str]) -> dict:
    opp_id = sf_id(row.get("Id"))
    if not opp_id:
        raise _RowError("missing_field", "Opportunity has no Id")
    account = sf_id(row.get("AccountId"))
    if not account:
        raise _RowError("missing_field", "Opportunity has no AccountId: its revenue has no "
                        "account to be attributed to (set the account in Salesforce)")
    currency = (row.get("CurrencyIsoCode") or default_currency).upper()
    try:
        money(ZERO, currency)
    except ValueError as exc:
        raise _RowError("bad_currency", str(exc)) from None
    if currency not in convertible:
        raise _RowError("bad_currency", f"no conversion rate for {currency} (export "
                        "DatedConversionRate or CurrencyType with the opportunities)")
    try:
        created = sf_datetime(row.get("CreatedDate"))
        modified = sf_datetime(row.get("LastModifiedDate"))
        close = sf_date(row.get("CloseDate"))
    except ValueError as exc:
        raise _RowError("bad_timestamp", str(exc)) from None
    if created is None:
        raise _RowError("missing_field", "Opportunity has no CreatedDate")
    amount = _amount(row.get("Amount"), currency)
    try:
        is_won, is_closed = sf_bool(row.get("IsWon")), sf_bool(row.get("IsClosed"))
    except ValueError as exc:
        raise _RowError("bad_value", str(exc)) from None
    status = "won" if is_won else "lost" if is_closed else "open"
    return {"deal_id": opp_id, "deal_id_key": f"sf-{opp_id}", "account_id": account,
            "opportunity_owner_id": sf_id(row.get("OwnerId")), "currency": currency,
            "created": created, "modified": modified, "close": close, "amount": amount,
            "stage": row.get("StageName"), "status": status}


def _amount(text: str | None, currency: str) -> Decimal:
    try:
        value = sf_decimal(text)
        value = money(value if value is not None else ZERO, currency)
    except ValueError as exc:
        raise _RowError("bad_amount", f"Amount {exc}") from None
    if value < 0:
        raise _RowError("bad_amount", f"Amount {value} is negative: deal amounts must be >= 0")
    return value


def _history_step(row: dict[str, str | None], stages: StageKinds, currency: str) -> Step:
    hist_id = sf_id(row.get("Id"))
    if not hist_id:
        raise _RowError("missing_field", "OpportunityHistory row has no Id")
    try:
        time = sf_datetime(row.get("CreatedDate"))
    except ValueError as exc:
        raise _RowError("bad_timestamp", str(exc)) from None
    if time is None:
        raise _RowError("missing_field", "OpportunityHistory row has no CreatedDate")
    stage = row.get("StageName")
    return Step(f"sf-{hist_id}", time, stage, _amount(row.get("Amount"), currency),
                stages.status(stage))


def _created_step(opp: dict, steps: list[Step]) -> Step:
    first = steps[0] if steps else None
    return Step(opp["deal_id_key"], opp["created"], first.stage if first else opp["stage"],
                first.amount if first else opp["amount"], "open")


def _current_step(opp: dict, steps: list[Step]) -> Step:
    """The Opportunity row as the last step: with no history, a close happens on
    CloseDate (midnight UTC); else at LastModifiedDate; never before the last step."""
    last = steps[-1].time if steps else opp["created"]
    if not steps and opp["status"] != "open" and opp["close"] is not None:
        time = midnight_utc(opp["close"])
    else:
        time = opp["modified"] or last
    return Step(f"{opp['deal_id_key']}-current", max(time, last), opp["stage"], opp["amount"],
                opp["status"])
