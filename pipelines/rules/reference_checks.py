"""Reference-data checks that need more than one row or one table at a time.

Each function returns a small frame of the offending rows (empty when the data
is clean); the ``reference`` expectation suite then expects those frames to have
no rows, and shows a few of them as examples when they do. Pure pyarrow/numpy
(plus small Python loops over territories): no Beam, DuckDB or Great
Expectations here. Rule ties and cycle membership reuse ``rules.territory`` so
the checks see the tree and the rule matching exactly as the enrichment does.

Row numbers (``row``, ``other_row``) are 0-based positions in the input table.
Intervals are ``[valid_from, valid_to)``; a null ``valid_from`` means "since
always", a null ``valid_to`` "open-ended" (CONTRACT.md section 2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules import territory
from pipelines.rules.splits import team_intervals
from schemas.reference import VALIDITY_TYPE

_NEG_INF = np.iinfo(np.int64).min
_POS_INF = np.iinfo(np.int64).max


# ----------------------------------------------------------------- helpers


def _micros(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    """Timestamps -> int64 microseconds since the epoch, nulls -> ``fill``."""
    values = pc.cast(column, VALIDITY_TYPE).cast(pa.int64())
    return pc.fill_null(values, fill).to_numpy(zero_copy_only=False).astype(np.int64)


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Dense integer codes of a column's values (null -> -1), for grouping."""
    encoded = pc.dictionary_encode(column.combine_chunks() if isinstance(
        column, pa.ChunkedArray) else column)
    return pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _trimmed(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Trimmed text, empty -> null (how the loader and the enrichment read ids)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _keys(key: str | Sequence[str]) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


# ------------------------------------------------------ overlapping intervals


def overlap_schema(table_schema: pa.Schema, key: str | Sequence[str],
                   start: str = "valid_from", end: str = "valid_to") -> pa.Schema:
    """Schema of ``overlapping_intervals`` for a table of ``table_schema``."""
    keys = _keys(key)
    others = [f for f in table_schema if f.name not in keys and f.name not in (start, end)]
    fields = [table_schema.field(k).with_nullable(True) for k in keys]
    fields += [pa.field("row", pa.int64()), pa.field(start, VALIDITY_TYPE),
               pa.field(end, VALIDITY_TYPE)]
    fields += [f.with_nullable(True) for f in others]
    fields += [pa.field("other_row", pa.int64()), pa.field(f"other_{start}", VALIDITY_TYPE),
               pa.field(f"other_{end}", VALIDITY_TYPE)]
    fields += [f.with_name(f"other_{f.name}").with_nullable(True) for f in others]
    return pa.schema(fields)


def overlapping_intervals(table: pa.Table, key: str | Sequence[str],
                          start: str = "valid_from", end: str = "valid_to") -> pa.Table:
    """Rows whose validity interval overlaps another row's interval with the same key.

    E.g. two ``account_assignments`` rows of one account both valid on
    2026-03-01 make the account manager ambiguous. Each overlapping row is
    reported once, next to the earlier-starting row it overlaps that reaches
    furthest (``other_*`` columns); a row overlapping several others is still
    one row here. Empty intervals (``valid_from == valid_to``) overlap nothing.
    Vectorised: one sort plus a per-key running maximum of interval ends.
    """
    keys = _keys(key)
    schema = overlap_schema(table.schema, keys, start, end)
    n = table.num_rows
    if n < 2:
        return schema.empty_table()
    starts = _micros(table[start], _NEG_INF)
    ends = _micros(table[end], _POS_INF)
    # Ranks instead of raw microseconds so that (group, end) fits one int64.
    ranks = np.unique(np.concatenate([starts, ends]), return_inverse=True)[1]
    start_rank, end_rank = ranks[:n], ranks[n:]
    width = int(ranks.max()) + 2
    codes = [_codes(table[k]) for k in keys]
    order = np.lexsort([end_rank, start_rank] + codes[::-1])
    sorted_codes = np.stack([c[order] for c in codes])
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = np.any(sorted_codes[:, 1:] != sorted_codes[:, :-1], axis=0)
    group = np.cumsum(new_group) - 1
    s_start, s_end = start_rank[order], end_rank[order]
    encoded = group * width + s_end
    running = np.maximum.accumulate(encoded)
    attained = np.maximum.accumulate(np.where(encoded == running, np.arange(n), -1))
    previous_max = np.concatenate([[-1], running[:-1]])
    previous_arg = np.concatenate([[-1], attained[:-1]])
    same_group = (previous_max >= 0) & (previous_max // width == group)
    overlaps = same_group & (s_start < previous_max % width) & (s_start < s_end)
    hits = np.flatnonzero(overlaps)
    rows = order[hits]
    partners = order[previous_arg[hits]]
    rows_idx = pa.array(rows, pa.int64())
    partners_idx = pa.array(partners, pa.int64())
    columns: dict[str, pa.Array] = {}
    for k in keys:
        columns[k] = table[k].take(rows_idx)
    columns["row"] = rows_idx
    columns[start] = table[start].take(rows_idx)
    columns[end] = table[end].take(rows_idx)
    others = [c for c in table.column_names if c not in keys and c not in (start, end)]
    for c in others:
        columns[c] = table[c].take(rows_idx)
    columns["other_row"] = partners_idx
    columns[f"other_{start}"] = table[start].take(partners_idx)
    columns[f"other_{end}"] = table[end].take(partners_idx)
    for c in others:
        columns[f"other_{c}"] = table[c].take(partners_idx)
    result = pa.table({name: columns[name] for name in schema.names}).cast(schema)
    return result.sort_by([(k, "ascending") for k in keys] + [("row", "ascending")])


# ------------------------------------------------------------ territory tree

CYCLE_SCHEMA = pa.schema([
    pa.field("territory_id", pa.string()),
    pa.field("parent_territory_id", pa.string()),
    pa.field("cycle", pa.string()),
])

TREE_ROOTS_SCHEMA = pa.schema([
    pa.field("tree", pa.string()),
    pa.field("roots", pa.int64()),
    pa.field("root_ids", pa.string()),
    pa.field("territories", pa.int64()),
])


def _parents(territories: pa.Table) -> dict[str, str | None]:
    """territory_id -> parent id (trimmed; a root's is None). A territory listed on
    several rows takes its smallest non-empty parent, as the manager walk-up does
    (``territory._tree``)."""
    parents: dict[str, str | None] = {}
    ids = territories["territory_id"].to_pylist()
    for tid, parent in zip(ids, territories["parent_territory_id"].to_pylist(), strict=True):
        tid = tid.strip() if isinstance(tid, str) else tid
        if not tid:
            continue
        parent = (parent.strip() if isinstance(parent, str) else parent) or None
        known = parents.get(tid)
        if tid not in parents or (parent is not None and (known is None or parent < known)):
            parents[tid] = parent
    return parents


def territory_cycles(territories: pa.Table) -> pa.Table:
    """Territories that are their own ancestor: one row per territory on a cycle.

    Which territories lie on a cycle comes from ``territory.territory_cycles``
    (the walk-up's own view of the tree); ``cycle`` spells each loop from its
    smallest id, e.g. ``DE > EMEA > DE``. A cycle leaves the territories on it
    (and below it) without a root: the manager walk-up and the roll-up view
    cannot terminate properly.
    """
    on_cycle = territory.territory_cycles(territories)
    if not on_cycle:
        return CYCLE_SCHEMA.empty_table()
    parents = _parents(territories)
    members = set(on_cycle)
    rows = []
    for tid in sorted(members):
        loop, node = [tid], parents.get(tid)
        while node is not None and node != tid and node in members and len(loop) <= len(members):
            loop.append(node)
            node = parents.get(node)
        start = loop.index(min(loop))
        loop = loop[start:] + loop[:start]
        rows.append({"territory_id": tid, "parent_territory_id": parents.get(tid),
                     "cycle": " > ".join(loop + [loop[0]])})
    return pa.Table.from_pylist(rows, schema=CYCLE_SCHEMA)


def roots_per_tree(territories: pa.Table) -> pa.Table:
    """One row per territory tree with its number of roots.

    A tree is a connected set of territories linked by ``parent_territory_id``
    (every row counts, so a territory listed twice with different parents joins
    both places); a root is a territory with an empty parent. ``tree`` names the
    tree by its smallest root id, or its smallest territory id when it has no
    root. A well-formed tree has exactly one root: two roots can only come from
    a territory listed twice, once as a root; no root means a cycle (see
    ``territory_cycles``) or a parent that does not exist (``orphan_references``).
    """
    ids = _trimmed(territories["territory_id"]).to_pylist()
    parent_values = _trimmed(territories["parent_territory_id"]).to_pylist()
    link: dict[str, str] = {}

    def find(x: str) -> str:
        link.setdefault(x, x)
        while link[x] != x:
            link[x] = link[link[x]]
            x = link[x]
        return x

    roots: set[str] = set()
    members: set[str] = set()
    for tid, parent in zip(ids, parent_values, strict=True):
        if tid is None:
            continue
        members.add(tid)
        find(tid)
        if parent is None:
            roots.add(tid)
        else:
            a, b = find(tid), find(parent)
            if a != b:
                link[max(a, b)] = min(a, b)
    trees: dict[str, dict[str, list[str] | int]] = defaultdict(lambda: {"roots": [], "size": 0})
    for tid in members:
        tree = trees[find(tid)]
        tree["size"] += 1
        if tid in roots:
            tree["roots"].append(tid)
    rows = []
    for representative, tree in trees.items():
        root_ids = sorted(tree["roots"])
        rows.append({
            "tree": root_ids[0] if root_ids else representative,
            "roots": len(root_ids),
            "root_ids": ", ".join(root_ids),
            "territories": tree["size"],
        })
    rows.sort(key=lambda r: r["tree"])
    return pa.Table.from_pylist(rows, schema=TREE_ROOTS_SCHEMA)


# ------------------------------------------------------------ cross-table


def orphan_references(rows: pa.Table, column: str, referenced: pa.Table,
                      referenced_column: str) -> pa.Table:
    """Rows of ``rows`` whose non-empty ``column`` names no ``referenced_column`` value.

    E.g. ``orphan_references(territory_rules, "territory_id", territories,
    "territory_id")``: rules pointing at a territory that does not exist.
    Values are compared trimmed. The result is ``rows``' columns plus ``row``.
    """
    values = _trimmed(rows[column])
    known = pc.unique(_trimmed(referenced[referenced_column]).drop_null())
    missing = pc.and_(pc.is_valid(values),
                      pc.invert(pc.fill_null(pc.is_in(values, value_set=known), False)))
    index = pa.array(np.arange(rows.num_rows), pa.int64())
    with_row = rows.add_column(0, "row", index)
    relaxed = pa.schema([f.with_nullable(True) for f in with_row.schema])
    return with_row.filter(missing).cast(relaxed)


TIE_SCHEMA = pa.schema([
    pa.field("account_id", pa.string()),
    pa.field("territory_id", pa.string()),
    pa.field("other_territory_id", pa.string()),
    pa.field("valid_from", VALIDITY_TYPE),
    pa.field("valid_to", VALIDITY_TYPE),
    pa.field("specificity", pa.int64()),
])


def equally_specific_rule_ties(accounts: pa.Table, rules: pa.Table) -> pa.Table:
    """Accounts matched by two equally specific rules of different territories at one time.

    One row per (account, pair of territories, overlap of the two rules'
    validity); ``valid_from``/``valid_to`` is the overlap (null = unbounded),
    ``specificity`` the rules' priority. Computed by
    ``territory.territory_rule_ties``, i.e. with exactly the matching and
    specificity the enrichment uses (trimmed, case-insensitive fields, postal
    prefix); the enrichment resolves a tie by the smallest ``territory_id``, so
    this is a reference-data error, not a crash. Conservative: a tie is listed
    even when a more specific rule wins for that account during the overlap.
    """
    ties = territory.territory_rule_ties(accounts, rules)
    if ties.num_rows == 0:
        return TIE_SCHEMA.empty_table()
    pair = ties["territory_ids"].combine_chunks()
    return pa.table({
        "account_id": ties["account_id"],
        "territory_id": pc.list_element(pair, 0),
        "other_territory_id": pc.list_element(pair, 1),
        "valid_from": ties["valid_from"],
        "valid_to": ties["valid_to"],
        "specificity": ties["specificity"],
    }).cast(TIE_SCHEMA)


# ------------------------------------------------------------ account teams


def split_share_totals(account_splits: pa.Table) -> pa.Table:
    """Intervals of an account's team whose primary percents do not sum to 100
    (``splits.TEAM_INTERVAL_SCHEMA``): the credit is then shared in proportion to them,
    which is rarely what the sales-ops team meant."""
    intervals = team_intervals(account_splits)
    hundred = pa.scalar(100, intervals.schema.field("primary_percent").type)
    return intervals.filter(pc.not_equal(intervals["primary_percent"], hundred))
