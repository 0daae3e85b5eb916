"""Account-team splits: an event's credit shared exactly, to the cent, among a team.

``account_splits`` (effective-dated, docs/contract.md "Account-team splits") gives an
account's team at each instant: ``primary`` rows share the account's credit (their
percents sum to 100), ``overlay`` rows are credited in addition (double credit,
reported apart so the views still reconcile).

* ``SplitIndex.build(account_splits)`` resolves the table once per reference snapshot
  into *team sets*: for every account, the elementary intervals over which its set of
  valid rows does not change (``team_intervals``), each pointing at one set of members.
  A set without a primary member gets the account manager's default member (100%,
  role ``account_manager``, person filled in from the event's ``account_manager_id``).
* ``split_credit(facts, index)`` looks up each fact's team as of ``event_time`` (one
  vectorised as-of search) and splits its ``booked_revenue`` and ``pipeline_created``:
  primary shares by the largest-remainder method over the primary percents (the cents
  left over go one each to the largest remainders, ties to the member order: person,
  role), so they sum exactly to the fact's amount; each overlay share is rounded
  half-even on its own. A negative amount is split as its absolute value, then negated:
  a refund takes back exactly what its win credited. Facts whose account has no split
  row at their time get no rows: their whole credit is the account manager's (the
  ``split_revenue`` view adds them).

Primary percents that do not sum to 100 (a reference error, reported by the reference
suite) share the credit in proportion to the percents given, so the split still sums to
the fact's amount. Integer cents throughout (Python integers where a product could pass
int64); never floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules.asof import MAX_TIME, MIN_TIME, AsOfIndex, from_micros, to_micros
from schemas.money import REPORTING_MONEY_TYPE
from schemas.outputs import RESTATED_SPLITS_SCHEMA, SPLIT_CREDIT_SCHEMA, SPLIT_MISMATCH_SCHEMA
from schemas.reference import DEFAULT_SPLIT_ROLE, PERCENT_TYPE

UNITS_PER_PERCENT = 10**PERCENT_TYPE.scale
WHOLE = 100 * UNITS_PER_PERCENT  # 100 %
PRIMARY, OVERLAY = "primary", "overlay"
SPLIT_MEASURES: tuple[str, ...] = ("booked_revenue", "pipeline_created")
FACT_COLUMNS: tuple[str, ...] = ("event_id", "event_type", "event_time", "day", "account_id",
                                 "account_manager_id", *SPLIT_MEASURES, "run_id")

TEAM_INTERVAL_SCHEMA = pa.schema([
    pa.field("account_id", pa.string(), nullable=False),
    pa.field("valid_from", pa.timestamp("us", tz="UTC")),
    pa.field("valid_to", pa.timestamp("us", tz="UTC")),
    pa.field("team", pa.int64(), nullable=False),
    pa.field("primary_percent", pa.decimal128(9, PERCENT_TYPE.scale), nullable=False),
    pa.field("primary_members", pa.int64(), nullable=False),
    pa.field("overlay_members", pa.int64(), nullable=False),
])


# ------------------------------------------------------------------ decimals <-> ints


def decimal_units(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A decimal column's unscaled integers (e.g. cents of DECIMAL(18,2)) as int64.

    Reads the low 64 bits of each 128-bit value: exact for precision <= 18.
    """
    array = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if not pa.types.is_decimal128(array.type) or array.type.precision > 18:
        raise TypeError(f"expected a decimal128 of precision <= 18, got {array.type}")
    if array.null_count:
        raise ValueError("decimal_units needs a column without nulls")
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)
    return words[2 * array.offset: 2 * (array.offset + len(array)): 2].copy()


def units_decimal(units: np.ndarray, kind: pa.Decimal128Type) -> pa.Array:
    """int64 unscaled integers -> a decimal128 array of ``kind`` (inverse of decimal_units)."""
    units = np.ascontiguousarray(units, dtype=np.int64)
    words = np.empty(2 * units.shape[0], dtype=np.int64)
    words[0::2] = units
    words[1::2] = np.where(units < 0, -1, 0)  # sign extension of the high word
    return pa.Array.from_buffers(kind, units.shape[0], [None, pa.py_buffer(words.tobytes())])


# ------------------------------------------------------------------ team sets


@dataclass(frozen=True, eq=False)
class SplitIndex:
    """Teams of ``account_splits``, resolved once per reference snapshot.

    ``timeline`` maps (account, instant) to a team number; team ``t``'s members are
    rows ``member_first[t]:member_first[t + 1]`` of the member arrays, primaries first,
    each group ordered by (person, role). A null ``member_person`` is the account
    manager's default member.
    """

    timeline: AsOfIndex
    team_of_value: np.ndarray  # team number of each timeline value code
    member_first: np.ndarray  # int64[teams + 1]
    member_person: pa.Array  # string (null: the event's account manager)
    member_role: pa.Array  # string
    member_overlay: np.ndarray  # bool
    member_units: np.ndarray  # int64: percent * UNITS_PER_PERCENT
    primary_units: np.ndarray  # int64[teams]: sum of the team's primary units

    @property
    def empty(self) -> bool:
        return len(self.timeline) == 0

    def members_of(self, teams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(owner, member): one row per member of each of ``teams``; ``owner`` is the
        position in ``teams``, ``member`` the row of the member arrays."""
        first = self.member_first[teams]
        sizes = self.member_first[teams + 1] - first
        owner = np.repeat(np.arange(teams.shape[0]), sizes)
        starts = np.cumsum(sizes) - sizes
        return owner, np.arange(owner.shape[0]) - starts[owner] + first[owner]

    @classmethod
    def build(cls, account_splits: pa.Table, accounts: pa.Array | None = None) -> SplitIndex:
        """The index of ``account_splits`` (only of the rows of ``accounts``, when given:
        a small run need not resolve the teams of every account)."""
        if accounts is not None:
            account_splits = account_splits.filter(
                pc.is_in(account_splits["account_id"], value_set=accounts.cast(pa.string())))
        intervals, members = _teams(account_splits)
        timeline = pa.table({
            "key": pa.array([i[0] for i in intervals], pa.string()),
            "valid_from": _bound([i[1] for i in intervals], MIN_TIME),
            "valid_to": _bound([i[2] for i in intervals], MAX_TIME),
            "value": pa.array([str(i[3]) for i in intervals], pa.string()),
        })
        index = AsOfIndex.build(timeline)
        team_of_value = np.array([int(v) for v in index.values.to_pylist()], dtype=np.int64)
        sizes = [len(m) for m in members]
        flat = [row for team in members for row in team]
        return cls(
            timeline=index,
            team_of_value=np.append(team_of_value, np.int64(-1)),
            member_first=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            member_person=pa.array([r[_PERSON] for r in flat], pa.string()),
            member_role=pa.array([r[_ROLE] for r in flat], pa.string()),
            member_overlay=np.array([r[_OVERLAY] for r in flat], dtype=bool),
            member_units=np.array([r[_UNITS] for r in flat], dtype=np.int64),
            primary_units=np.array([_primary_units(team) for team in members], dtype=np.int64),
        )


def _primary_units(team: list[_Member]) -> int:
    return sum(m[_UNITS] for m in team if not m[_OVERLAY])


def _bound(micros: list[int], unbounded: int) -> pa.Array:
    values = np.array(micros, dtype=np.int64)
    return from_micros(values, values == unbounded)


# (is_overlay, person to sort by, role to sort by, person (None: the account manager),
# role, units)
_Member = tuple[bool, str, str, str | None, str | None, int]
_OVERLAY, _PERSON, _ROLE, _UNITS = 0, 3, 4, 5


def _teams(account_splits: pa.Table) -> tuple[list[tuple[str, int, int, int]],
                                              list[list[_Member]]]:
    """Elementary intervals (account, from, to, team) and each team's members.

    Per account, the instants where a row starts or ends cut time into intervals over
    which the set of valid rows is constant; equal sets share one team number.
    """
    rows = _split_rows(account_splits)
    by_account: dict[str, list[tuple[int, int, _Member]]] = {}
    for account, start, end, member in rows:
        by_account.setdefault(account, []).append((start, end, member))
    teams: dict[tuple[_Member, ...], int] = {}
    members: list[list[_Member]] = []
    intervals: list[tuple[str, int, int, int]] = []
    default = (False, "", "", None, DEFAULT_SPLIT_ROLE, WHOLE)
    for account in sorted(by_account):
        spans = by_account[account]
        if all(s == spans[0][0] and e == spans[0][1] for s, e, _ in spans):
            pieces = [(spans[0][0], spans[0][1], sorted(m for _, _, m in spans))]  # one team
        else:
            cuts = sorted({t for s, e, _ in spans for t in (s, e)})
            pieces = [(lo, hi, sorted(m for s, e, m in spans if s <= lo and hi <= e))
                      for lo, hi in zip(cuts, cuts[1:], strict=False)]
        for lo, hi, valid in pieces:
            if not valid:
                continue
            if valid[0][_OVERLAY]:  # overlays only (they sort last): the manager keeps 100%
                valid.insert(0, default)
            key = tuple(valid)
            team = teams.get(key)
            if team is None:
                team = teams[key] = len(members)
                members.append(valid)
            last = intervals[-1] if intervals else None
            if last is not None and last[0] == account and last[2] == lo and last[3] == team:
                intervals[-1] = (account, last[1], hi, team)
            else:
                intervals.append((account, lo, hi, team))
    return intervals, members


def _split_rows(account_splits: pa.Table) -> list[tuple[str, int, int, _Member]]:
    if account_splits.num_rows == 0:
        return []
    start = to_micros(account_splits["valid_from"], MIN_TIME).tolist()
    end = to_micros(account_splits["valid_to"], MAX_TIME).tolist()
    units = decimal_units(account_splits["percent"].cast(PERCENT_TYPE)).tolist()
    columns = (account_splits[c].to_pylist() for c in ("account_id", "person_id", "role",
                                                       "split_type"))
    return [(account, s, e, (kind == OVERLAY, person, role or "", person, role, u))
            for account, person, role, kind, s, e, u in zip(*columns, start, end, units,
                                                             strict=True)
            if s < e]  # an empty interval is valid at no instant


def team_intervals(account_splits: pa.Table) -> pa.Table:
    """Each account's elementary intervals with its primary percent total and member
    counts (``TEAM_INTERVAL_SCHEMA``; the default member counts as 100% when only
    overlays are valid). The reference suite expects every ``primary_percent`` = 100."""
    intervals, members = _teams(account_splits)
    primary = [_primary_units(members[t]) for *_, t in intervals]
    return pa.table({
        "account_id": pa.array([i[0] for i in intervals], pa.string()),
        "valid_from": _bound([i[1] for i in intervals], MIN_TIME),
        "valid_to": _bound([i[2] for i in intervals], MAX_TIME),
        "team": pa.array([i[3] for i in intervals], pa.int64()),
        "primary_percent": pa.array([Decimal(p).scaleb(-PERCENT_TYPE.scale) for p in primary],
                                    TEAM_INTERVAL_SCHEMA.field("primary_percent").type),
        "primary_members": pa.array([sum(not m[_OVERLAY] for m in members[t])
                                     for *_, t in intervals], pa.int64()),
        "overlay_members": pa.array([sum(m[_OVERLAY] for m in members[t])
                                     for *_, t in intervals], pa.int64()),
    }, schema=TEAM_INTERVAL_SCHEMA)


# ------------------------------------------------------------------ the split


def _product_divmod(a: np.ndarray, b: np.ndarray, d: np.ndarray | int,
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``divmod(a * b, d)`` exactly for non-negative int64 ``a``, ``b``: in Python integers
    where the product could pass int64 (quotient and remainder fit int64 again)."""
    if a.size and int(a.max()) * int(b.max()) >= 2**62:
        product = a.astype(object) * b.astype(object)
        d = d.astype(object) if isinstance(d, np.ndarray) else d
        return (product // d).astype(np.int64), (product % d).astype(np.int64)
    return np.divmod(a * b, d)


def largest_remainder(amounts: np.ndarray, owner: np.ndarray, units: np.ndarray,
                      totals: np.ndarray) -> np.ndarray:
    """Shares of non-negative integer ``amounts`` among members (rows).

    Row ``r`` belongs to amount ``owner[r]`` (rows of one amount contiguous, in tie-break
    order) and weighs ``units[r]`` out of ``totals[owner[r]]`` (the sum of its amount's
    units). Each row gets ``floor(amount * units / total)``; the cents left over go one
    each to the rows with the largest remainders, earlier rows first among equals. The
    shares of one amount sum exactly to it.
    """
    share, remainder = _product_divmod(amounts[owner], units, totals[owner])
    left = amounts - _sum_by(owner, share, amounts.shape[0])
    order = np.lexsort((np.arange(owner.shape[0]), -remainder, owner))
    first = np.searchsorted(owner[order], owner[order], side="left")
    rank = np.arange(owner.shape[0]) - first
    bonus = np.zeros(owner.shape[0], dtype=np.int64)
    bonus[order] = (rank < left[owner[order]]).astype(np.int64)
    return share + bonus


def _sum_by(owner: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, owner, values)
    return out


def half_even_shares(amounts: np.ndarray, units: np.ndarray) -> np.ndarray:
    """``amounts * units / WHOLE`` rounded half to even (overlay credit), exact."""
    q, r = _product_divmod(amounts, units, WHOLE)
    up = (2 * r > WHOLE) | ((2 * r == WHOLE) & (q % 2 == 1))
    return q + up.astype(np.int64)


def split_credit(facts: pa.Table, index: SplitIndex) -> pa.Table:
    """``SPLIT_CREDIT_SCHEMA`` rows for the facts (``FACT_COLUMNS``) whose account has a
    team at their ``event_time``: one per member, primaries summing to the fact."""
    if index.empty or facts.num_rows == 0:
        return SPLIT_CREDIT_SCHEMA.empty_table()
    values = index.timeline.lookup_codes(index.timeline.encode_keys(facts["account_id"]),
                                         to_micros(facts["event_time"], MAX_TIME))
    team_of_fact = index.team_of_value[values]
    hit = np.flatnonzero(team_of_fact >= 0)
    if hit.size == 0:
        return SPLIT_CREDIT_SCHEMA.empty_table()
    teams = team_of_fact[hit]
    facts = facts.take(pa.array(hit))
    owner, member = index.members_of(teams)
    overlay = index.member_overlay[member]
    units = index.member_units[member]
    primary = np.flatnonzero(~overlay)
    over = np.flatnonzero(overlay)

    measures = {}
    for name in SPLIT_MEASURES:
        cents = decimal_units(facts[name].cast(REPORTING_MONEY_TYPE))
        magnitude, sign = np.abs(cents), np.sign(cents)
        share = np.zeros(owner.shape[0], dtype=np.int64)
        share[primary] = largest_remainder(magnitude, owner[primary], units[primary],
                                           index.primary_units[teams])
        share[over] = half_even_shares(magnitude[owner[over]], units[over])
        measures[name] = units_decimal(share * sign[owner], REPORTING_MONEY_TYPE)

    take = pa.array(owner)
    default = index.member_person.take(pa.array(member))
    person = pc.coalesce(default, facts["account_manager_id"].take(take))
    percent = units_decimal(units, PERCENT_TYPE)
    return pa.table({
        "event_id": facts["event_id"].take(take),
        "event_type": facts["event_type"].take(take),
        "day": facts["day"].take(take),
        "account_id": facts["account_id"].take(take),
        "person_id": person,
        "role": index.member_role.take(pa.array(member)),
        "split_type": pc.if_else(pa.array(overlay), OVERLAY, PRIMARY),
        "percent": percent,
        **measures,
        "run_id": facts["run_id"].take(take),
    }, schema=SPLIT_CREDIT_SCHEMA)


def split_mismatches(facts: pa.Table, credit: pa.Table) -> pa.Table:
    """Facts whose primary ``credit`` rows do not sum to their measures
    (``SPLIT_MISMATCH_SCHEMA``; facts without credit rows are not compared)."""
    primary = credit.filter(pc.equal(credit["split_type"], PRIMARY))
    sums = primary.group_by("event_id").aggregate(
        [(name, "sum") for name in SPLIT_MEASURES])
    joined = facts.select(["event_id", *SPLIT_MEASURES]).join(sums, "event_id",
                                                              join_type="inner")
    differs = pc.or_(
        pc.not_equal(joined["booked_revenue"].cast(pa.decimal128(38, 2)),
                     joined["booked_revenue_sum"].cast(pa.decimal128(38, 2))),
        pc.not_equal(joined["pipeline_created"].cast(pa.decimal128(38, 2)),
                     joined["pipeline_created_sum"].cast(pa.decimal128(38, 2))))
    bad = joined.filter(differs)
    return pa.table({
        "event_id": bad["event_id"],
        "booked_revenue": bad["booked_revenue"],
        "primary_booked_revenue": bad["booked_revenue_sum"].cast(pa.decimal128(38, 2)),
        "pipeline_created": bad["pipeline_created"],
        "primary_pipeline_created": bad["pipeline_created_sum"].cast(pa.decimal128(38, 2)),
    }, schema=SPLIT_MISMATCH_SCHEMA)


def restated_teams(account_splits: pa.Table | SplitIndex, as_of: pa.Scalar | object,
                   ) -> pa.Table:
    """Every account's team at ``as_of`` (``RESTATED_SPLITS_SCHEMA``, accounts sorted,
    members in the rule's order; a null person is the account manager's default member):
    what the restated basis splits each event of the account by.

    From the table: the rows valid at ``as_of``, vectorised. From a ``SplitIndex``: its
    teams at that instant (the same rows; tests compare the two).
    """
    moment = pa.scalar(as_of, pa.timestamp("us", tz="UTC"))
    if isinstance(account_splits, SplitIndex):
        return _restated_from_index(account_splits, moment)
    instant = to_micros(pa.array([moment]), MAX_TIME)[0]
    start = to_micros(account_splits["valid_from"], MIN_TIME)
    end = to_micros(account_splits["valid_to"], MAX_TIME)
    valid = account_splits.filter(pa.array((start <= instant) & (instant < end)))
    overlay = pc.equal(valid["split_type"], OVERLAY)
    rows = pa.table({
        "account_id": valid["account_id"].cast(pa.string()),
        "overlay": overlay,
        "person_id": valid["person_id"],
        "role_order": pc.fill_null(valid["role"], ""),
        "role": valid["role"],
        "percent": valid["percent"].cast(PERCENT_TYPE),
    })
    # Accounts with overlays only: the account manager's default member leads (100 %).
    primaries = rows.filter(pc.invert(overlay)).column("account_id")
    lone = pc.unique(rows.filter(overlay).column("account_id"))
    lone = lone.filter(pc.invert(pc.is_in(lone, value_set=primaries)))
    default = pa.table({
        "account_id": lone,
        "overlay": pa.repeat(pa.scalar(False), len(lone)),
        "person_id": pa.nulls(len(lone), pa.string()),
        "role_order": pa.repeat(pa.scalar(""), len(lone)),
        "role": pa.repeat(pa.scalar(DEFAULT_SPLIT_ROLE), len(lone)),
        "percent": pa.repeat(pa.scalar(Decimal(100), PERCENT_TYPE), len(lone)),
    }, schema=rows.schema)
    rows = pa.concat_tables([default, rows]).sort_by([
        ("account_id", "ascending"), ("overlay", "ascending"),
        ("person_id", "ascending", "at_start"), ("role_order", "ascending"),
        ("percent", "ascending")])
    return pa.table({
        "account_id": rows["account_id"],
        "person_id": rows["person_id"],
        "role": rows["role"],
        "split_type": pc.if_else(rows["overlay"], OVERLAY, PRIMARY),
        "percent": rows["percent"],
        "as_of": pa.repeat(moment, rows.num_rows),
    }, schema=RESTATED_SPLITS_SCHEMA)


def _restated_from_index(index: SplitIndex, moment: pa.Scalar) -> pa.Table:
    accounts = index.timeline.keys
    if index.empty:
        return RESTATED_SPLITS_SCHEMA.empty_table()
    codes = index.timeline.lookup_codes(
        np.arange(len(accounts), dtype=np.int64),
        to_micros(pa.repeat(moment, len(accounts)), MAX_TIME))
    teams = index.team_of_value[codes]
    has = np.flatnonzero(teams >= 0)
    teams = teams[has]
    owner, member = index.members_of(teams)
    take = pa.array(member, pa.int64())
    return pa.table({
        "account_id": accounts.take(pa.array(has[owner], pa.int64())),
        "person_id": index.member_person.take(take),
        "role": index.member_role.take(take),
        "split_type": pc.if_else(pa.array(index.member_overlay[member]), OVERLAY, PRIMARY),
        "percent": units_decimal(index.member_units[member], PERCENT_TYPE),
        "as_of": pa.repeat(moment, owner.shape[0]),
    }, schema=RESTATED_SPLITS_SCHEMA)
