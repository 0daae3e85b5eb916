"""StreamDeduplicate: one copy per event_id across the unbounded stream.

Batch ``Deduplicate`` groups every copy of an id (a shuffle over the whole
input) and compares payloads; a stream never ends, so this step remembers what
it has seen instead:

* events are split by ``rules.dedupe.shard_of(event_id)`` (the batch step's
  stable hash) and keyed by shard;
* a stateful DoFn holds, per shard, ``event_id -> (payload fingerprint, expiry,
  first source, first position)``; repeats inside one micro-batch are settled by
  ``rules.dedupe.deduplicate`` (first (source, position) wins, as in batch),
  repeats of an id already in state are compared by fingerprint: same payload
  -> ``duplicates`` (counted, applied once), different payload -> ``quarantine``
  as ``conflicting_duplicate``;
* an event-time timer drops entries once the watermark passes the end of the
  event's window + the allowed lateness + a margin.

Trade-off of the expiry: state is bounded by the ids seen within (window +
allowed lateness + margin) of event time instead of growing forever. A repeat
arriving after its entry expired is necessarily too late for the windows (its
window closed before the entry expired), so it cannot be counted twice in the
views; the sink's insert into ``attributed_events`` is keyed by event_id, so
its fact is not written twice either: an identical payload is counted as a
duplicate there, a different one is quarantined as ``conflicting_duplicate``.
The cost is that the shard's whole map is read and rewritten per micro-batch
(more shards, smaller maps), and that the fingerprint is a 62-bit hash: two
different payloads of one event_id collide with probability ~2^-62.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms import userstate
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.utils.timestamp import Timestamp

from pipelines.rules.dedupe import DUPLICATE_SCHEMA, deduplicate, shard_of
from pipelines.rules.validate import rejects_from
from pipelines.transforms._tables import QUARANTINE, non_empty, tagged
from pipelines.transforms.deduplicate import DUPLICATES, split_by_shard
from pipelines.transforms.windowed_views import (
    check_timezone,
    day_windows,
    event_micros,
    expiry_micros,
)
from schemas.events import PAYLOAD_FIELDS

_FINGERPRINT_SPACE = 1 << 62
_SEPARATOR = "\x1f"
_NULL = "\x00"


def payload_fingerprints(events: pa.Table) -> np.ndarray:
    """A 62-bit fingerprint of each row's payload (every contract field but event_id).

    Typed values are compared through their canonical text, nulls as a marker
    no text can hold, so ``12.5`` and ``12.50`` (one decimal) are the same payload.
    """
    if events.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    texts = [pc.cast(events[name], pa.string()) for name in PAYLOAD_FIELDS]
    joined = pc.binary_join_element_wise(
        *texts, _SEPARATOR, null_handling="replace", null_replacement=_NULL
    )
    return shard_of(joined.combine_chunks(), _FINGERPRINT_SPACE)


class _DeduplicateAcrossBatches(beam.DoFn):
    """(shard, events) -> unique events; duplicates and conflicts tagged."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", coders.PickleCoder())
    NEXT_EXPIRY = userstate.ReadModifyWriteStateSpec("next_expiry", coders.VarIntCoder())
    EXPIRE = userstate.TimerSpec("expire", TimeDomain.WATERMARK)

    def __init__(self, timezone: str, retention_seconds: int) -> None:
        self.timezone = timezone
        self.retention_seconds = retention_seconds
        self.duplicates = Metrics.counter(self.__class__, "duplicates")
        self.conflicts = Metrics.counter(self.__class__, "conflicting_duplicates")
        self.expired = Metrics.counter(self.__class__, "expired_ids")

    def process(
        self,
        element: tuple[int, pa.Table],
        seen=beam.DoFn.StateParam(SEEN),  # noqa: B008 (Beam's parameter markers)
        next_expiry=beam.DoFn.StateParam(NEXT_EXPIRY),  # noqa: B008
        expire=beam.DoFn.TimerParam(EXPIRE),  # noqa: B008
    ) -> Iterator[pa.Table]:
        _, events = element
        within = deduplicate(events)  # repeats inside this micro-batch, as in batch
        yield from tagged(DUPLICATES, within.duplicates)
        yield from tagged(QUARANTINE, within.conflicts)
        self.duplicates.inc(within.duplicates.num_rows)
        self.conflicts.inc(within.conflicts.num_rows)
        unique = within.unique
        if unique.num_rows == 0:
            return

        memory: dict[str, tuple[int, int, str, int]] = seen.read() or {}
        ids = unique["event_id"].to_pylist()
        fingerprints = payload_fingerprints(unique).tolist()
        known = np.fromiter((i in memory for i in ids), dtype=bool, count=len(ids))
        if known.any():
            same = np.array(
                [k and memory[i][0] == f for i, f, k in zip(ids, fingerprints, known, strict=True)]
            )
            repeats = unique.filter(pa.array(same))
            duplicates = repeats.select(DUPLICATE_SCHEMA.names).cast(DUPLICATE_SCHEMA)
            conflicting = known & ~same
            conflicts = unique.filter(pa.array(conflicting))
            details = [
                f"event_id {i} has a different payload from the first occurrence at "
                f"{memory[i][2]}:{memory[i][3]}"
                for i, c in zip(ids, conflicting, strict=True)
                if c
            ]
            rejects = rejects_from(conflicts, "conflicting_duplicate", pa.array(details))
            yield from tagged(DUPLICATES, duplicates)
            yield from tagged(QUARANTINE, rejects)
            self.duplicates.inc(duplicates.num_rows)
            self.conflicts.inc(rejects.num_rows)
            unique = unique.filter(pa.array(~known))
            fingerprints = [f for f, k in zip(fingerprints, known, strict=True) if not k]
            ids = [i for i, k in zip(ids, known, strict=True) if not k]
            if not ids:
                return

        _, window_end = day_windows(event_micros(unique), self.timezone)
        expiries = expiry_micros(window_end, self.retention_seconds).tolist()
        sources = unique["source"].to_pylist()
        positions = unique["position"].to_pylist()
        for entry in zip(ids, fingerprints, expiries, sources, positions, strict=True):
            memory[entry[0]] = entry[1:]
        seen.write(memory)
        earliest = min(expiries)
        current = next_expiry.read()
        if current is None or earliest < current:
            next_expiry.write(earliest)
            expire.set(Timestamp(micros=earliest))
        yield from non_empty(unique)

    @userstate.on_timer(EXPIRE)
    def forget_expired(
        self,
        fired=beam.DoFn.TimestampParam,  # noqa: B008
        seen=beam.DoFn.StateParam(SEEN),  # noqa: B008
        next_expiry=beam.DoFn.StateParam(NEXT_EXPIRY),  # noqa: B008
        expire=beam.DoFn.TimerParam(EXPIRE),  # noqa: B008
    ) -> None:
        memory: dict[str, tuple[int, int, str, int]] = seen.read() or {}
        # Timers fire at millisecond precision: an entry is due once its millisecond is.
        now = fired.micros - fired.micros % 1_000 + 999
        kept = {k: v for k, v in memory.items() if v[1] > now}
        self.expired.inc(len(memory) - len(kept))
        if not kept:
            seen.clear()
            next_expiry.clear()
            return
        seen.write(kept)
        earliest = min(v[1] for v in kept.values())
        next_expiry.write(earliest)
        expire.set(Timestamp(micros=earliest))


class StreamDeduplicate(beam.PTransform):
    """Typed events -> ``unique``, ``duplicates`` (DUPLICATE_SCHEMA), ``quarantine``.

    ``retention`` of an id: the end of its event's window + ``allowed_lateness_seconds``
    + ``margin_seconds`` of event time.
    """

    def __init__(
        self,
        timezone: str = "UTC",
        allowed_lateness_seconds: int = 3 * 86_400,
        margin_seconds: int = 86_400,
        shards: int = 16,
    ) -> None:
        super().__init__()
        self.timezone = check_timezone(timezone)
        self.retention_seconds = allowed_lateness_seconds + margin_seconds
        self.shards = shards

    def expand(self, events: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return (
            events
            | "ShardByEventId"
            >> beam.FlatMap(split_by_shard, self.shards).with_output_types(
                beam.typehints.KV[int, beam.typehints.Any]
            )
            | "DropRepeatsAcrossBatches"
            >> beam.ParDo(_DeduplicateAcrossBatches(self.timezone, self.retention_seconds))
            .with_outputs(DUPLICATES, QUARANTINE, main="unique")
        )
