"""Territory rules, their specificity, and the territory-manager walk-up.

Both functions producing candidates return ``asof.resolve_timeline`` input
(``key, valid_from, valid_to, priority, value``):

* ``account_territory_candidates``: key = account_id, value = territory_id, one
  row per (account, matching rule). A rule matches an account when, on every
  non-empty rule field among country / region / city, the trimmed,
  case-insensitive (Unicode lower-case) values are equal, and, when
  ``postal_prefix`` is non-empty, the account's trimmed, upper-cased
  ``postal_code`` starts with the trimmed, upper-cased prefix (inner spaces
  count). Priority = ``prefix_len * 8 + has_city * 4 + has_region * 2 +
  has_country``: longest prefix, then city, then region, then country; the
  timeline's tie rule (smallest value) picks the smallest territory_id.
* ``territory_manager_candidates``: key = any territory, value = manager_id; the
  manager rows of the ancestor at depth d (0 = the territory itself) get
  priority -d, so the nearest ancestor with a manager valid at t wins.

Reference-data problems are reported, never fatal: ``territory_rule_ties``
(equally specific matches valid at an overlapping time), ``territory_cycles``
(parent chains that loop) and ``territory_missing_parents``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.rules.asof import (
    CANDIDATE_SCHEMA,
    MAX_TIME,
    MIN_TIME,
    TIME_TYPE,
    _explode,
    _first_of_runs,
    decode,
    encode,
    from_micros,
    sorted_unique,
    to_micros,
)

# Longest parent chain walked; deeper (or cyclic) chains are cut there.
MAX_DEPTH = 64
# Specificity weights: the prefix length dominates, then city, region, country.
PREFIX_WEIGHT, CITY_WEIGHT, REGION_WEIGHT, COUNTRY_WEIGHT = 8, 4, 2, 1

_GEO_FIELDS: tuple[tuple[str, int], ...] = (
    ("country", COUNTRY_WEIGHT),
    ("region", REGION_WEIGHT),
    ("city", CITY_WEIGHT),
)

TIES_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("territory_ids", pa.list_(pa.string()), nullable=False),
        pa.field("valid_from", TIME_TYPE),
        pa.field("valid_to", TIME_TYPE),
        pa.field("specificity", pa.int64(), nullable=False),
    ]
)
MISSING_PARENTS_SCHEMA = pa.schema(
    [
        pa.field("territory_id", pa.string(), nullable=False),
        pa.field("parent_territory_id", pa.string(), nullable=False),
    ]
)


def _text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trimmed strings, empty -> null."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    trimmed = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _lower(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.utf8_lower(_text(column))


def _upper(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.utf8_upper(_text(column))


def _bool(mask: pa.Array) -> np.ndarray:
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


# ------------------------------------------------------------- account -> rule


def account_territory_candidates(accounts: pa.Table, territory_rules: pa.Table) -> pa.Table:
    """Every (account, matching rule) as a ``resolve_timeline`` candidate.

    Vectorised: rules are grouped by their shape (which fields are set, prefix
    length) and each group is hash-joined to the accounts on exactly those
    fields, so the cost is one join per distinct shape.
    """
    if accounts.num_rows == 0 or territory_rules.num_rows == 0:
        return CANDIDATE_SCHEMA.empty_table()
    account_id = _text(accounts["account_id"])
    account_geo = {name: _lower(accounts[name]) for name, _ in _GEO_FIELDS}
    postal = _upper(accounts["postal_code"])
    postal_length = pc.fill_null(pc.utf8_length(postal), 0).to_numpy(zero_copy_only=False)

    rule_geo = {name: _lower(territory_rules[name]) for name, _ in _GEO_FIELDS}
    prefix = _upper(territory_rules["postal_prefix"])
    prefix_length = pc.fill_null(pc.utf8_length(prefix), 0).to_numpy(zero_copy_only=False)
    shape = prefix_length.astype(np.int64) * PREFIX_WEIGHT
    for name, weight in _GEO_FIELDS:
        shape = shape + _bool(pc.is_valid(rule_geo[name])).astype(np.int64) * weight
    territory_id = _text(territory_rules["territory_id"])
    rules = pa.table(
        {
            "value": territory_id,
            "valid_from": territory_rules["valid_from"],
            "valid_to": territory_rules["valid_to"],
            "priority": pa.array(shape, pa.int64()),
        }
    )

    parts: list[pa.Table] = []
    for priority in np.unique(shape):
        in_group = shape == priority
        length = int(priority) // PREFIX_WEIGHT
        left = {"key": account_id, "_all": pa.repeat(pa.scalar(0, pa.int8()), accounts.num_rows)}
        right = {"_all": pa.repeat(pa.scalar(0, pa.int8()), int(in_group.sum()))}
        group_mask = pa.array(in_group)
        for name, weight in _GEO_FIELDS:
            if int(priority) & weight:
                left[f"_{name}"] = account_geo[name]
                right[f"_{name}"] = rule_geo[name].filter(group_mask)
        if length:
            long_enough = pa.array(postal_length >= length)
            left["_prefix"] = pc.if_else(
                long_enough, pc.utf8_slice_codeunits(postal, 0, length),
                pa.scalar(None, pa.string()),
            )
            right["_prefix"] = prefix.filter(group_mask)
        join_keys = [name for name in right if name.startswith("_")]
        left_table = pa.table(left)
        left_table = left_table.filter(_all_valid(left_table, join_keys))
        right_table = pa.table(right)
        for name in rules.column_names:
            right_table = right_table.append_column(name, rules[name].filter(group_mask))
        right_table = right_table.filter(_all_valid(right_table, join_keys + ["value"]))
        if left_table.num_rows == 0 or right_table.num_rows == 0:
            continue
        joined = left_table.join(right_table, keys=join_keys, join_type="inner", use_threads=False)
        parts.append(joined.select(CANDIDATE_SCHEMA.names).cast(CANDIDATE_SCHEMA))
    if not parts:
        return CANDIDATE_SCHEMA.empty_table()
    return pa.concat_tables(parts).combine_chunks()


def _all_valid(table: pa.Table, names: list[str]) -> pa.Array:
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    for name in names:
        mask = pc.and_(mask, pc.is_valid(table[name]))
    return mask


def territory_rule_ties(accounts: pa.Table, territory_rules: pa.Table) -> pa.Table:
    """Accounts matched by two equally specific rules of different territories
    valid at an overlapping time (a reference-data error; the lookup resolves it
    to the smallest territory_id). One row per pair and overlap (``TIES_SCHEMA``):
    ``territory_ids`` sorted, ``valid_from``/``valid_to`` the overlap (null =
    unbounded), ``specificity`` the rules' priority. Reported whether or not a
    more specific rule overrides both at that time.
    """
    candidates = account_territory_candidates(accounts, territory_rules)
    if candidates.num_rows == 0:
        return TIES_SCHEMA.empty_table()
    side = candidates.select(["key", "priority", "value", "valid_from", "valid_to"])
    pairs = side.join(side, keys=["key", "priority"], join_type="inner",
                      left_suffix="_a", right_suffix="_b", use_threads=False)
    pairs = pairs.filter(pc.less(pairs["value_a"], pairs["value_b"]))
    if pairs.num_rows == 0:
        return TIES_SCHEMA.empty_table()
    start = np.maximum(to_micros(pairs["valid_from_a"], MIN_TIME),
                       to_micros(pairs["valid_from_b"], MIN_TIME))
    end = np.minimum(to_micros(pairs["valid_to_a"], MAX_TIME),
                     to_micros(pairs["valid_to_b"], MAX_TIME))
    overlap = pa.array(start < end)
    found = pa.table(
        {
            "account_id": pairs["key"],
            "_a": pairs["value_a"],
            "_b": pairs["value_b"],
            "valid_from": from_micros(start, start == MIN_TIME),
            "valid_to": from_micros(end, end == MAX_TIME),
            "specificity": pairs["priority"],
        }
    ).filter(overlap)
    if found.num_rows == 0:
        return TIES_SCHEMA.empty_table()
    # Duplicate rule rows yield the same pair twice: keep one.
    names = found.column_names
    found = found.group_by(names, use_threads=False).aggregate([]).select(names)
    found = found.sort_by([("account_id", "ascending"), ("valid_from", "ascending"),
                           ("_a", "ascending"), ("_b", "ascending"),
                           ("specificity", "ascending"), ("valid_to", "ascending")])
    n = found.num_rows
    interleaved = np.column_stack([np.arange(n), np.arange(n) + n]).ravel()
    both = pa.concat_arrays([found["_a"].combine_chunks(), found["_b"].combine_chunks()])
    ids = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()),
                                   both.take(pa.array(interleaved)))
    return pa.table(
        {
            "account_id": found["account_id"],
            "territory_ids": ids,
            "valid_from": found["valid_from"],
            "valid_to": found["valid_to"],
            "specificity": found["specificity"],
        }
    ).cast(TIES_SCHEMA)


# ------------------------------------------------------------ territory tree


def _tree(territories: pa.Table, extra_ids: list[pa.Array] = ()) -> tuple[pa.Array, np.ndarray]:
    """(sorted territory universe, parent code per universe entry or -1)."""
    tid = _text(territories["territory_id"])
    parent = _text(territories["parent_territory_id"])
    universe = sorted_unique(pa.concat_arrays([tid, parent, *[_text(e) for e in extra_ids]]))
    child_code = encode(tid, universe)
    parent_code = encode(parent, universe)
    # Duplicate territory rows: the smallest non-null parent wins, deterministically.
    order = np.lexsort((np.where(parent_code < 0, np.iinfo(np.int64).max, parent_code),
                        child_code))
    child_code, parent_code = child_code[order], parent_code[order]
    first = _first_of_runs(child_code) & (child_code >= 0)
    parents = np.full(len(universe), -1, dtype=np.int64)
    parents[child_code[first]] = parent_code[first]
    return universe, parents


def _on_cycle(parents: np.ndarray) -> np.ndarray:
    """Mask of nodes lying on a cycle of the parent graph (peel leaves, Kahn-style)."""
    n = parents.shape[0]
    alive = np.ones(n, dtype=bool)
    has_parent = parents >= 0
    children = np.bincount(parents[has_parent], minlength=n)
    while True:
        leaves = alive & (children == 0)
        if not leaves.any():
            return alive
        alive &= ~leaves
        up = parents[leaves]
        up = up[up >= 0]
        np.subtract.at(children, up, 1)


def territory_cycles(territories: pa.Table) -> list[str]:
    """Territory ids lying on a parent cycle (sorted); empty when the tree is sound."""
    if territories.num_rows == 0:
        return []
    universe, parents = _tree(territories)
    return universe.filter(pa.array(_on_cycle(parents))).to_pylist()


def territory_missing_parents(territories: pa.Table) -> pa.Table:
    """Territories naming a parent that is not itself a row of ``territories``."""
    tid = _text(territories["territory_id"])
    parent = _text(territories["parent_territory_id"])
    dangling = pc.and_(pc.is_valid(parent), pc.invert(pc.is_in(parent, value_set=tid.drop_null())))
    table = pa.table({"territory_id": tid, "parent_territory_id": parent}).filter(dangling)
    table = table.filter(pc.is_valid(table["territory_id"]))
    return table.sort_by([("territory_id", "ascending")]).cast(MISSING_PARENTS_SCHEMA)


def territory_ancestors(
    territories: pa.Table, extra_ids: list[pa.Array] = (), max_depth: int = MAX_DEPTH
) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray]:
    """(universe, start code, ancestor code, depth) for every territory and each of
    its ancestors, itself at depth 0. A parent missing from ``territories`` ends
    the walk (it is still an ancestor); a cycle ends it when it returns to the
    start, and every walk stops after ``max_depth`` levels. Each (start,
    ancestor) pair appears once, at its smallest depth.
    """
    universe, parents = _tree(territories, extra_ids)
    n = len(universe)
    start = np.arange(n, dtype=np.int64)
    current = start
    starts, ancestors, depths = [start], [start], [np.zeros(n, dtype=np.int64)]
    walker = start
    for depth in range(1, max_depth + 1):
        current = parents[current]
        alive = (current >= 0) & (current != walker)
        if not alive.any():
            break
        current, walker = current[alive], walker[alive]
        starts.append(walker)
        ancestors.append(current)
        depths.append(np.full(walker.shape[0], depth, dtype=np.int64))
    start, ancestor, depth = (np.concatenate(x) for x in (starts, ancestors, depths))
    order = np.lexsort((depth, ancestor, start))
    start, ancestor, depth = start[order], ancestor[order], depth[order]
    first = _first_of_runs(start * max(n, 1) + ancestor)
    return universe, start[first], ancestor[first], depth[first]


def territory_manager_candidates(
    territories: pa.Table, territory_managers: pa.Table, max_depth: int = MAX_DEPTH
) -> pa.Table:
    """For each territory (of ``territories``, or only named by a manager row or
    as a parent) the manager rows of itself and of its ancestors, at priority
    ``-depth``: resolved, the nearest ancestor with a manager valid at t wins.
    """
    if territory_managers.num_rows == 0:
        return CANDIDATE_SCHEMA.empty_table()
    manager_tid = _text(territory_managers["territory_id"])
    universe, start, ancestor, depth = territory_ancestors(
        territories, [manager_tid], max_depth)
    manager_code = encode(manager_tid, universe)
    order = np.argsort(manager_code, kind="stable")
    sorted_code = manager_code[order]
    group = np.searchsorted(sorted_code, np.arange(len(universe) + 1, dtype=np.int64))
    pair, row = _explode(group[ancestor], group[ancestor + 1])
    manager_row = order[row]
    rows = pa.array(manager_row, pa.int64())
    return pa.table(
        {
            "key": decode(start[pair], universe),
            "valid_from": pc.take(territory_managers["valid_from"], rows),
            "valid_to": pc.take(territory_managers["valid_to"], rows),
            "priority": pa.array(-depth[pair], pa.int64()),
            "value": pc.take(_text(territory_managers["manager_id"]), rows),
        }
    ).cast(CANDIDATE_SCHEMA)
