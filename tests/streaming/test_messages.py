"""Stream messages -> RAW_EVENT_SCHEMA batches (the JSONL reader's parsing, per message)."""

from __future__ import annotations

from pipelines.io.messages import message, messages_to_raw_batch, stable_position
from schemas.events import RAW_EVENT_SCHEMA

GOOD = '{"event_id":"e1","event_type":"deal_won","event_time":"2026-03-01T10:00:00Z",' \
       '"deal_id":"D1","account_id":"A1","amount":12.50,"currency":"USD"}'


def test_each_message_becomes_one_row_with_its_own_source_position_and_raw_text():
    batch = messages_to_raw_batch([
        message("pubsub://projects/p1/subscriptions/s", 901, GOOD),
        message("kafka://b:9092/deals/3", 17, GOOD.replace("e1", "e2") + "\n"),
    ])
    assert batch.schema == RAW_EVENT_SCHEMA
    rows = batch.select(["event_id", "amount", "source", "position", "raw", "reason"]).to_pylist()
    assert [tuple(r.values()) for r in rows] == [
        ("e1", "12.50", "pubsub://projects/p1/subscriptions/s", 901, GOOD, None),
        ("e2", "12.50", "kafka://b:9092/deals/3", 17, GOOD.replace("e1", "e2"), None),
    ]


def test_bad_messages_are_classified_like_bad_jsonl_lines_and_keep_their_order():
    batch = messages_to_raw_batch([
        message("s", 1, "not json"),
        message("s", 2, b""),
        message("s", 3, b"\xff\xfe"),
        message("s", 4, '{"event_id": "e4",\n "deal_id": "D4"}'),  # pretty-printed: fine
        message("s", 5, '{"event_id": "e5", "deal_id": 5}'),
        message("s", 6, "null"),
        message("s", 7, GOOD),
    ])
    assert [(r["position"], r["event_id"], r["reason"]) for r in batch.to_pylist()] == [
        (1, None, "malformed"),
        (2, None, "malformed"),
        (3, None, "malformed"),
        (4, "e4", None),
        (5, None, "bad_type"),
        (6, None, "malformed"),
        (7, "e1", None),
    ]
    details = batch["detail"].to_pylist()
    assert details[1] == "empty message"
    assert details[2] == "message is not valid UTF-8 (byte 0)"
    assert details[4] == "field deal_id is a number, expected a string"


def test_stable_position_is_the_same_for_a_redelivered_message_id():
    assert stable_position("1234567890") == stable_position("1234567890")
    assert stable_position("1234567890") != stable_position("1234567891")
    assert 0 <= stable_position("x") < 2**63


def test_an_oversized_message_is_malformed_unparsed_and_its_raw_text_capped():
    from pipelines.rules.raw_text import cap_text
    from schemas.events import MAX_RECORD_BYTES

    big = GOOD[:-1] + ', "stage": "' + "s" * MAX_RECORD_BYTES + '"}'
    batch = messages_to_raw_batch([message("s", 1, big), message("s", 2, GOOD)])
    rows = batch.to_pylist()
    assert [(r["position"], r["event_id"], r["reason"]) for r in rows] == [
        (1, None, "malformed"), (2, "e1", None)]
    assert rows[0]["detail"].startswith(f"record is {len(big)} bytes")
    assert rows[0]["raw"] == cap_text(big)
