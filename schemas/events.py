"""Deal events: the input stream (CONTRACT.md section 1).

Two shapes of the same record:

* ``RAW_EVENT_SCHEMA``: what every reader produces, whatever the file format:
  every contract field as a string, plus lineage (``source``, ``position``) and
  the ``raw`` record text for the quarantine.
* ``EVENT_SCHEMA``: a validated event, typed.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.money import AMOUNT_TYPE

EVENT_TYPES: tuple[str, ...] = (
    "deal_created",
    "deal_stage_changed",
    "deal_won",
    "deal_lost",
    "deal_amended",
    "deal_refunded",
    "deal_reopened",
)

# Order matters: a record failing several checks is quarantined with the first.
QUARANTINE_REASONS: tuple[str, ...] = (
    "malformed",
    "missing_field",
    "bad_type",
    "unknown_event_type",
    "bad_timestamp",
    "bad_amount",
    "bad_currency",
    "no_fx_rate",
    "conflicting_duplicate",
)

REQUIRED_FIELDS: tuple[str, ...] = (
    "event_id",
    "event_type",
    "event_time",
    "deal_id",
    "account_id",
    "amount",
    "currency",
)
OPTIONAL_FIELDS: tuple[str, ...] = ("stage", "product", "opportunity_owner_id")
EVENT_FIELDS: tuple[str, ...] = REQUIRED_FIELDS + OPTIONAL_FIELDS

# Identifier fields limited to 1..128 characters.
ID_FIELDS: tuple[str, ...] = ("event_id", "deal_id", "account_id")
MAX_ID_LENGTH = 128

# A text record (JSONL line, CSV record, message) longer than this many bytes is
# ``malformed``: no event needs it, and it is never parsed.
MAX_RECORD_BYTES = 1 << 20
# A record nested deeper than this (the object is level 1) is ``malformed``: a verdict
# that must not depend on the parser's recursion limit.
MAX_NESTING = 64
# The quarantine keeps the first RAW_KEPT_CHARS characters of a longer record, then
# ``RAW_CUT_MARK`` with the whole record's size in bytes and its SHA-256 (hex).
RAW_KEPT_CHARS = 4096
RAW_CUT_MARK = "…[cut: {size} bytes, sha256 {sha256}]"

# Lineage carried by every record from the reader to the quarantine.
LINEAGE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("source", pa.string(), nullable=False),
    pa.field("position", pa.int64(), nullable=False),
)

RAW_EVENT_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in EVENT_FIELDS]
    + list(LINEAGE_FIELDS)
    + [
        # The record as read (JSONL line); null where the reader has no text form.
        pa.field("raw", pa.string()),
        # Set by the reader when it could not parse the record (malformed, bad_type).
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)

EVENT_TIME_TYPE = pa.timestamp("us", tz="UTC")

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_time", EVENT_TIME_TYPE, nullable=False),
        pa.field("deal_id", pa.string(), nullable=False),
        pa.field("account_id", pa.string(), nullable=False),
        pa.field("amount", AMOUNT_TYPE, nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("stage", pa.string()),
        pa.field("product", pa.string()),
        pa.field("opportunity_owner_id", pa.string()),
    ]
    + list(LINEAGE_FIELDS)
)

# Fields whose equality makes two records with one event_id "the same payload".
PAYLOAD_FIELDS: tuple[str, ...] = EVENT_FIELDS[1:]

# Amount sign rule per event type (CONTRACT.md "amount must be").
AMOUNT_SIGN_RULES: dict[str, str] = {
    "deal_created": ">=0",
    "deal_stage_changed": ">=0",
    "deal_won": ">0",
    "deal_lost": ">=0",
    "deal_amended": "!=0",
    "deal_refunded": ">0",
    "deal_reopened": ">0",
}
