"""Stream messages -> ``RAW_EVENT_SCHEMA`` batches.

A stream message is one JSON event (Pub/Sub message data, Kafka record value,
a test line). The streaming pipeline carries each message as a plain tuple
``(source, position, payload)``:

* ``source``: where it came from, e.g. ``pubsub://projects/p/subscriptions/s`` or
  ``kafka://broker:9092/deals/3`` (topic and partition);
* ``position``: a stable integer identifying the message within its source (the
  Kafka offset; a 63-bit hash of the Pub/Sub message id, stable across
  redeliveries), so the quarantine can say which message was bad and stays
  idempotent when a message is redelivered;
* ``payload``: the message bytes (``str`` is accepted and encoded as UTF-8).

The parsing is the JSONL reader's (``pipelines.io.events_reader``), called on a
buffer holding one message per line: Arrow parses the micro-batch zero-copy and
the reader's ``json.loads`` fallback classifies bad messages exactly as it does
bad lines (``malformed``, ``bad_type``; numeric ``amount`` kept as its exact
text). Only what differs between a file and a stream is handled here:

* a message is a record even when it is empty or blank (a blank *line* is not):
  it is quarantined as ``malformed``;
* a message that is not UTF-8 is quarantined as ``malformed`` (a file that is
  not UTF-8 stops the batch run instead: there it is the user's file to fix);
* a message containing a line break (pretty-printed JSON) cannot share the
  line-per-record buffer: it is read alone by the reader's ``json.loads``
  classifier, which gives the same fields or the same verdict;
* one trailing line break (``\\n`` or ``\\r\\n``), as producers writing JSONL lines
  often send, is not part of the record;
* ``source``, ``position`` and ``raw`` come from the message, not from the buffer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from pipelines.io.events_reader import _assemble, _JsonlReader, _read_line
from pipelines.rules.raw_text import cap_text, oversized_detail
from schemas.events import EVENT_FIELDS, MAX_RECORD_BYTES, RAW_EVENT_SCHEMA

Message = tuple[str, int, bytes]

_BUFFER_SOURCE = "<stream>"


def message(source: str, position: int, payload: bytes | str) -> Message:
    """A stream message as the pipeline carries it."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return (source, int(position), bytes(payload))


def stable_position(message_id: str) -> int:
    """A non-negative 63-bit integer for a message id (same on every worker and run)."""
    digest = hashlib.blake2b(message_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def _strip_terminator(payload: bytes) -> bytes:
    if payload.endswith(b"\r\n"):
        return payload[:-2]
    if payload.endswith(b"\n"):
        return payload[:-1]
    return payload


def messages_to_raw_batch(messages: Sequence[Message]) -> pa.Table:
    """One ``RAW_EVENT_SCHEMA`` table with a row per message, in message order."""
    n = len(messages)
    if n == 0:
        return RAW_EVENT_SCHEMA.empty_table()
    payloads = [_strip_terminator(message(*m)[2]) for m in messages]
    texts: list[str] = []
    # Rows decided here: index -> (fields or None, reason, detail).
    special: dict[int, tuple[dict[str, str | None] | None, str | None, str | None]] = {}
    arrow_rows: list[int] = []
    for i, payload in enumerate(payloads):
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            texts.append(cap_text(payload.decode("utf-8", errors="replace"), original=payload))
            special[i] = (None, "malformed", f"message is not valid UTF-8 (byte {exc.start})")
            continue
        texts.append(cap_text(text))
        if len(payload) > MAX_RECORD_BYTES:  # never parsed
            special[i] = (None, "malformed", oversized_detail(len(payload)))
        elif not text.strip():
            special[i] = (None, "malformed", "empty message")
        elif "\n" in text or "\r" in text:
            line = _read_line(text)
            special[i] = (line.fields, line.reason, line.detail)
        else:
            arrow_rows.append(i)

    parts: list[pa.Table] = []
    order: list[int] = []
    if arrow_rows:
        buffer = b"\n".join(payloads[i] for i in arrow_rows) + b"\n"
        reader = _JsonlReader(_BUFFER_SOURCE, batch_rows=len(arrow_rows), use_threads=False)
        batches = list(reader._chunk(buffer, len(buffer), 0))
        parsed = pa.Table.from_batches(batches, schema=RAW_EVENT_SCHEMA)
        # No blank line went into the buffer, so line k is arrow_rows[k - 1].
        lines = parsed["position"].to_numpy() - 1
        if len(lines) != len(arrow_rows):
            raise RuntimeError(f"bug: {len(arrow_rows)} messages parsed into {len(lines)} rows")
        parts.append(parsed)
        order.extend(np.asarray(arrow_rows)[lines].tolist())
    if special:
        indices = sorted(special)
        fields = {
            name: pa.array(
                [(special[i][0] or {}).get(name) for i in indices], pa.string()
            )
            for name in EVENT_FIELDS
        }
        reasons = pa.array([special[i][1] for i in indices], pa.string())
        details = pa.array([special[i][2] for i in indices], pa.string())
        batch = _assemble(
            fields, len(indices), _BUFFER_SOURCE, np.zeros(len(indices), dtype=np.int64), None,
            reasons, details,
        )
        parts.append(pa.Table.from_batches([batch]))
        order.extend(indices)
    table = pa.concat_tables(parts).combine_chunks()
    table = table.take(pa.array(np.argsort(np.asarray(order), kind="stable")))
    # Lineage from the messages themselves.
    table = table.set_column(
        table.schema.get_field_index("source"),
        RAW_EVENT_SCHEMA.field("source"),
        pa.array([m[0] for m in messages], pa.string()),
    )
    table = table.set_column(
        table.schema.get_field_index("position"),
        RAW_EVENT_SCHEMA.field("position"),
        pa.array([int(m[1]) for m in messages], pa.int64()),
    )
    table = table.set_column(
        table.schema.get_field_index("raw"),
        RAW_EVENT_SCHEMA.field("raw"),
        pa.array(texts, pa.string()),
    )
    return table
