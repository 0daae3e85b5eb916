"""Effective-dated lookups, vectorised: interval timelines and as-of search.

A *timeline* is a table ``key, valid_from, valid_to, value`` of non-overlapping
intervals per key; ``valid_from`` is inclusive, ``valid_to`` exclusive, null
means unbounded (since always / open-ended). Times are UTC microseconds
(``timestamp("us", tz="UTC")``); other timestamp units are converted to
microseconds (sub-microsecond parts truncated), naive timestamps are read as UTC.

* ``resolve_timeline(candidates)`` turns overlapping, prioritised candidate
  intervals into a timeline: at each instant the value of the highest-priority
  candidate valid then (ties: the smallest value), adjacent equal values merged.
* ``AsOfIndex`` is a timeline prepared for repeated lookups (build once, e.g. per
  reference snapshot; pickles as numpy arrays + one pyarrow array each for keys
  and values). ``lookup_asof(timeline, keys, times)`` is the one-shot form.

Resolution and limits: lookups are exact at microsecond resolution over the
whole int64 range: no (key, time) pair is ever packed into one integer, so
nothing can overflow; null bounds are stored as the int64 minimum / maximum.
A lookup encodes the keys (one hash probe per query, ``pc.index_in``, or none
when the caller passes codes of a shared key space), gathers each query's key
group (first interval, count) and runs a branch-free binary search within that
group: ``ceil(log2(largest number of intervals of one key))`` passes, none at
all when every key has a single interval; when few queries remain undecided
the passes continue on those only. Limits: fewer than 2**31 intervals per
index (int32 positions); any number of keys and any time range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TIME_TYPE = pa.timestamp("us", tz="UTC")
TIMELINE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),
        pa.field("valid_from", TIME_TYPE),
        pa.field("valid_to", TIME_TYPE),
        pa.field("value", pa.string(), nullable=False),
    ]
)
CANDIDATE_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string()),
        pa.field("valid_from", TIME_TYPE),
        pa.field("valid_to", TIME_TYPE),
        pa.field("priority", pa.int64()),
        pa.field("value", pa.string()),
    ]
)

# Null bounds: "since always" / "open-ended".
MIN_TIME = np.iinfo(np.int64).min
MAX_TIME = np.iinfo(np.int64).max


# ------------------------------------------------------------------ conversions


def _combined(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        return array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    return array


def to_micros(times: pa.Array | pa.ChunkedArray, null_as: int) -> np.ndarray:
    """Timestamps -> int64 UTC microseconds, nulls replaced by ``null_as``."""
    times = _combined(times)
    if pa.types.is_timestamp(times.type):
        if times.type.unit != "us":
            times = times.cast(pa.timestamp("us", tz=times.type.tz), safe=False)
        times = times.cast(pa.int64())
    elif not pa.types.is_int64(times.type):
        raise TypeError(f"expected timestamps, got {times.type}")
    if times.null_count:
        times = pc.fill_null(times, pa.scalar(null_as, pa.int64()))
    return times.to_numpy(zero_copy_only=False)


def from_micros(micros: np.ndarray, nulls: np.ndarray | None = None) -> pa.Array:
    """int64 UTC microseconds -> ``timestamp("us", tz="UTC")`` (``nulls`` masked)."""
    return pa.array(micros, pa.int64(), mask=nulls).cast(TIME_TYPE)


def sorted_unique(strings: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Distinct non-null strings, sorted (a dictionary to encode against)."""
    unique = pc.unique(_combined(strings).cast(pa.string())).drop_null()
    return unique.take(pc.sort_indices(unique))


def encode(strings: pa.Array | pa.ChunkedArray, dictionary: pa.Array) -> np.ndarray:
    """Position of each string in ``dictionary`` as int64; -1 for null / absent."""
    strings = _combined(strings)
    if len(strings) == 0:
        return np.zeros(0, dtype=np.int64)
    if len(dictionary) == 0:
        return np.full(len(strings), -1, dtype=np.int64)
    codes = pc.index_in(strings, value_set=dictionary)
    return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def decode(codes: np.ndarray, dictionary: pa.Array, missing: str | None = None) -> pa.Array:
    """Codes -> strings; -1 becomes ``missing`` (null when ``missing`` is None)."""
    if missing is None:
        mask = codes < 0
        return dictionary.take(pa.array(np.where(mask, 0, codes), pa.int64(), mask=mask))
    extended = pa.concat_arrays([dictionary.cast(pa.string()), pa.array([missing], pa.string())])
    return extended.take(pa.array(np.where(codes < 0, len(dictionary), codes), pa.int64()))


def _first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """Boolean mask: True where a run of equal values starts."""
    starts = np.ones(sorted_values.shape[0], dtype=bool)
    if sorted_values.shape[0] > 1:
        starts[1:] = sorted_values[1:] != sorted_values[:-1]
    return starts


def _explode(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each i, the integers lo[i] .. hi[i]-1: (owner i, integer) pairs."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(lo.shape[0], dtype=np.int64), counts)
    offsets = np.cumsum(counts) - counts
    within = np.arange(owner.shape[0], dtype=np.int64) - np.repeat(offsets, counts)
    return owner, np.repeat(lo, counts) + within


# -------------------------------------------------------------------- timelines


def empty_timeline() -> pa.Table:
    return TIMELINE_SCHEMA.empty_table()


def resolve_timeline(candidates: pa.Table) -> pa.Table:
    """Prioritised, possibly overlapping candidate intervals -> a timeline.

    Input columns: ``key`` (string), ``valid_from``, ``valid_to`` (timestamps,
    null = unbounded), ``priority`` (int64, higher wins), ``value`` (string).
    Rows with a null key or value and empty intervals (``valid_to <= valid_from``)
    are ignored; a null priority counts as 0.

    Output (``TIMELINE_SCHEMA``), sorted by key then ``valid_from``: at each
    instant the value of the highest-priority candidate valid then (ties: the
    smallest value), adjacent intervals with the same value merged, instants
    covered by no candidate absent.

    Vectorised: the distinct bounds of each key cut its time axis into elementary
    segments; each candidate is expanded over the segments it covers (a
    contiguous range) and the best candidate of each segment is picked by sort.
    Cost is O(sum over candidates of the segments they cover), i.e. quadratic
    only in the number of candidates that overlap each other for the same key.
    """
    if candidates.num_rows == 0:
        return empty_timeline()
    key = _combined(candidates["key"]).cast(pa.string())
    value = _combined(candidates["value"]).cast(pa.string())
    start = to_micros(candidates["valid_from"], MIN_TIME)
    end = to_micros(candidates["valid_to"], MAX_TIME)
    priority = _combined(candidates["priority"]).cast(pa.int64())
    priority = pc.fill_null(priority, 0).to_numpy(zero_copy_only=False)

    keys = sorted_unique(key)
    values = sorted_unique(value)
    k = encode(key, keys)
    v = encode(value, values)
    keep = (k >= 0) & (v >= 0) & (start < end)
    if not keep.any():
        return empty_timeline()
    k, v, start, end, priority = k[keep], v[keep], start[keep], end[keep], priority[keep]

    # Dense time ranks make (key, time) one small int64: k * T + rank < n_keys * T.
    times = np.unique(np.concatenate([start, end]))
    span = np.int64(times.shape[0])
    if len(keys) * int(span) >= 2**62:  # never in practice: n_keys, T <= 2 * rows
        raise ValueError("timeline too large to resolve")
    start_rank = np.searchsorted(times, start)
    end_rank = np.searchsorted(times, end)
    bounds = np.unique(np.concatenate([k * span + start_rank, k * span + end_rank]))
    lo = np.searchsorted(bounds, k * span + start_rank)
    hi = np.searchsorted(bounds, k * span + end_rank)

    # Segment s is [bounds[s], bounds[s + 1]) and lies within one key.
    owner, segment = _explode(lo, hi)
    order = np.lexsort((v[owner], -priority[owner], segment))
    segment = segment[order]
    best = owner[order][_first_of_runs(segment)]
    segment = segment[_first_of_runs(segment)]

    seg_key = bounds[segment] // span
    seg_start = bounds[segment] % span
    seg_end = bounds[segment + 1] % span
    seg_value = v[best]

    # Merge touching segments of one key that carry the same value.
    new_run = np.ones(segment.shape[0], dtype=bool)
    if segment.shape[0] > 1:
        new_run[1:] = (
            (seg_key[1:] != seg_key[:-1])
            | (seg_start[1:] != seg_end[:-1])
            | (seg_value[1:] != seg_value[:-1])
        )
    first = np.flatnonzero(new_run)
    last = np.append(first[1:], segment.shape[0]) - 1

    out_start = times[seg_start[first]]
    out_end = times[seg_end[last]]
    return pa.table(
        {
            "key": keys.take(pa.array(seg_key[first])),
            "valid_from": from_micros(out_start, out_start == MIN_TIME),
            "valid_to": from_micros(out_end, out_end == MAX_TIME),
            "value": values.take(pa.array(seg_value[first])),
        },
        schema=TIMELINE_SCHEMA,
    )


# ----------------------------------------------------------------------- lookup


@dataclass(frozen=True, eq=False)
class AsOfIndex:
    """A timeline prepared for repeated vectorised lookups.

    ``keys`` / ``values`` are the string dictionaries the codes refer to; a
    caller sharing one key space among several indexes (e.g. all account-keyed
    timelines) encodes its queries once and calls ``lookup_codes``.

    Layout: intervals sorted by (key code, valid_from). Per-key arrays are
    shifted by one so that slot 0 is an empty group for unknown keys (code -1):
    no masking is needed before the gathers. ``value_codes`` ends with a -1
    sentinel, so position -1 maps to "no value" with one gather.
    """

    keys: pa.Array  # key dictionary (string)
    values: pa.Array  # value dictionary (string)
    group_first: np.ndarray  # int32[len(keys) + 1]: first interval of key code c at [c + 1]
    group_size: np.ndarray  # int32[len(keys) + 1]: its number of intervals at [c + 1]
    starts: np.ndarray  # int64 microseconds, MIN_TIME = since always
    ends: np.ndarray  # int64 microseconds, MAX_TIME = open-ended
    value_codes: np.ndarray  # int64 codes into ``values``, plus a trailing -1
    max_group: int  # largest number of intervals of one key

    @classmethod
    def build(
        cls,
        timeline: pa.Table,
        keys: pa.Array | None = None,
        values: pa.Array | None = None,
    ) -> AsOfIndex:
        """Index a timeline (non-overlapping intervals per key, e.g. from
        ``resolve_timeline``). ``keys`` / ``values``: dictionaries to encode
        against (default: the timeline's sorted distinct keys / values); a
        timeline key or value missing from a given dictionary is an error.
        Where a timeline has overlapping intervals for one key, a lookup finds
        the interval with the latest ``valid_from`` <= t, if it still holds t.
        """
        empty = pa.array([], pa.string())
        rows = timeline.num_rows
        key_col = _combined(timeline["key"]).cast(pa.string()) if rows else empty
        value_col = _combined(timeline["value"]).cast(pa.string()) if rows else empty
        keys = sorted_unique(key_col) if keys is None else _combined(keys).cast(pa.string())
        values = (sorted_unique(value_col) if values is None
                  else _combined(values).cast(pa.string()))
        k = encode(key_col, keys)
        v = encode(value_col, values)
        if (k < 0).any() or (v < 0).any():
            raise ValueError("timeline has null keys/values or ones missing from the dictionary")
        if rows >= 2**31 - 1:
            raise ValueError("an AsOfIndex holds fewer than 2**31 intervals")
        start = to_micros(timeline["valid_from"], MIN_TIME) if rows else k
        end = to_micros(timeline["valid_to"], MAX_TIME) if rows else k
        order = np.lexsort((start, k))
        k, v, start, end = k[order], v[order], start[order], end[order]
        bounds = np.searchsorted(k, np.arange(len(keys) + 1, dtype=np.int64))
        size = np.concatenate([[0], np.diff(bounds)]).astype(np.int32)
        # Empty groups point at interval 0 (never read as a match: size 0).
        first = np.where(size > 0, np.concatenate([[0], bounds[:-1]]), 0).astype(np.int32)
        return cls(
            keys=keys,
            values=values,
            group_first=first,
            group_size=size,
            starts=np.ascontiguousarray(start, dtype=np.int64),
            ends=np.ascontiguousarray(end, dtype=np.int64),
            value_codes=np.append(v.astype(np.int64), np.int64(-1)),
            max_group=int(size.max()) if size.size else 0,
        )

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def encode_keys(self, keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
        return encode(keys, self.keys)

    def lookup_positions(self, key_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Interval position holding each (key code, time in microseconds); -1 if none.

        ``key_codes`` < 0 (unknown or null key) give -1; so do times equal to
        MAX_TIME, used for null times.

        Branch-free binary search within each query's key group ("base +
        half" form): ``ceil(log2(max_group))`` passes, none at all when every
        key has one interval; once few queries remain undecided, passes run on
        those only.
        """
        n = key_codes.shape[0]
        if n == 0 or self.starts.shape[0] == 0:
            return np.full(n, -1, dtype=np.int64)
        slot = key_codes + 1
        base = self.group_first[slot]
        length = self.group_size[slot]
        starts = self.starts
        if self.max_group > 1:
            idx: np.ndarray | None = None  # None: every query takes part
            b, ln, t = base, length, times
            while True:
                half = ln >> 1
                probe = b + half
                b = np.where(starts[probe] <= t, probe, b)
                ln = ln - half
                more = ln > 1
                remaining = int(np.count_nonzero(more))
                if idx is None:
                    base = b
                else:
                    base[idx] = b
                if remaining == 0:
                    break
                if remaining * 4 < ln.shape[0]:  # few left: continue on those only
                    keep = np.flatnonzero(more)
                    idx = keep if idx is None else idx[keep]
                    b, ln, t = b[keep], ln[keep], t[keep]
        found = (length > 0) & (starts[base] <= times) & (times < self.ends[base])
        found &= times != MAX_TIME
        return np.where(found, base.astype(np.int64), -1)

    def lookup_codes(self, key_codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Value code (into ``values``) for each (key code, time); -1 if none."""
        return self.value_codes[self.lookup_positions(key_codes, times)]

    def lookup(
        self, keys: pa.Array | pa.ChunkedArray, times: pa.Array | pa.ChunkedArray
    ) -> pa.Array:
        """Value (string) of each key as of each time; null where none holds."""
        codes = self.lookup_codes(self.encode_keys(keys), to_micros(times, MAX_TIME))
        return decode(codes, self.values)


def lookup_asof(
    timeline: pa.Table, keys: pa.Array | pa.ChunkedArray, times: pa.Array | pa.ChunkedArray
) -> pa.Array:
    """The value whose interval holds each (key, time): ``valid_from <= t < valid_to``.

    Null where no interval holds, or for a null key or time. For repeated
    lookups against one timeline, build an ``AsOfIndex`` once instead.
    """
    if len(keys) != len(times):
        raise ValueError(f"{len(keys)} keys but {len(times)} times")
    return AsOfIndex.build(timeline).lookup(keys, times)
