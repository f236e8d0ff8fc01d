"""The one policy for unreadable records (pure logic: no broker)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import ConsumerRecord

from lookout.core import ids
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import RecordDecoder, dead_letter
from lookout.core.events import LlmCall, Score
from lookout.core.settings import CommonSettings

PREFIX = "t1."


def record(topic: str, value: bytes | None, offset: int = 0, partition: int = 0, key: bytes | None = b"app/m"):
    return ConsumerRecord(topic=f"{PREFIX}{topic}", partition=partition, offset=offset, timestamp=0, timestamp_type=0,
                          key=key, value=value, checksum=None, serialized_key_size=len(key or b""),
                          serialized_value_size=len(value or b""), headers=())


def call() -> LlmCall:
    return LlmCall(event_id=uuid.uuid4(), ts=datetime.now(UTC), app_id="app", model="m", prompt="hi", output="yo",
                   schema="llm_call/1")


def decoder() -> RecordDecoder:
    return RecordDecoder("svc", PREFIX)


def test_readable_records_are_decoded_by_topic_and_the_rest_become_dead_letters():
    good = call()
    batch = decoder().decode([
        record("llm.events", good.to_bytes(), 0),
        record("llm.events", b"{not json", 1),
        record("llm.events", b'{"schema": "llm_call/1", "app_id": "app"}', 2),
        record("llm.events", None, 3),
        record("llm.scores", good.to_bytes(), 4),  # a call where a score belongs
    ])
    assert [d.message for d in batch.messages] == [good]
    assert batch.of(LlmCall) == [good] and batch.of(Score) == []
    assert batch.messages[0].topic == "llm.events"
    assert [(d.offset, d.error.split(":")[0]) for d in batch.dead] == [
        (1, "JSONDecodeError"), (2, "ValidationError"), (3, "ValueError"), (4, "ValidationError")]
    assert "tombstone" in batch.dead[2].error
    first = batch.dead[0]
    assert (first.source_topic, first.partition, first.service, first.key) == ("t1.llm.events", 0, "svc", "app/m")
    assert base64.b64decode(first.payload_b64) == b"{not json"


def test_a_dead_letters_id_is_its_records_position_so_a_replay_writes_the_same_one():
    bad = record("llm.events", b"nope", offset=7, partition=2)
    first, again = decoder().decode([bad]).dead[0], decoder().decode([bad]).dead[0]
    assert first.dlq_id == again.dlq_id == ids.uuid_from("t1.llm.events/2/7")  # the sink's ids since 0001
    assert first.dlq_id != decoder().decode([record("llm.events", b"nope", offset=8, partition=2)]).dead[0].dlq_id


def test_an_unreadable_dead_letter_is_dropped_and_counted_not_requeued():
    batch = decoder().decode([record("llm.dlq", b"garbage")])
    assert batch.dead == [] and batch.lost == 1
    batch.dead_letter(record("llm.dlq", b"also"), RuntimeError("insert refused"))
    assert batch.dead == [] and batch.lost == 2


def test_a_record_that_cannot_be_handled_is_dead_lettered_with_the_handlers_error():
    batch = decoder().decode([record("llm.events", call().to_bytes(), 5)])
    batch.dead_letter(batch.messages[0].record, ValueError("Cannot parse input: expected ']'"))
    assert [(d.offset, d.error) for d in batch.dead] == [(5, "ValueError: Cannot parse input: expected ']'")]


def test_a_large_payload_is_cut_and_the_error_says_how_much_was_kept():
    big = b"x" * 1_000_000
    letter = dead_letter(record("llm.events", big), RuntimeError("bad"), "svc", max_payload_bytes=1000)
    assert base64.b64decode(letter.payload_b64) == big[:1000]
    assert letter.error == "RuntimeError: bad (payload cut to its first 1000 of 1000000 bytes)"
    # Default cut: the dead letter of a 1 MB record stays well under Kafka's 1 MB message limit.
    assert len(dead_letter(record("llm.events", big), RuntimeError("bad"), "svc").to_bytes()) < 400_000


def test_a_long_error_is_cut_and_a_binary_key_is_kept_readable():
    letter = dead_letter(record("llm.events", b"v", key=b"\xff\xfeapp"), "e" * 50_000, "svc")
    assert len(letter.error) == 10_000 and letter.error.endswith("…")
    assert letter.key == "\ufffd\ufffdapp"


def test_a_worker_on_a_topic_without_a_wire_schema_is_refused_unless_it_reads_raw_records():
    async def handler(_batch) -> None:
        pass

    settings = CommonSettings.model_validate({})
    with pytest.raises(ValueError, match=r"no wire schema for topic.*llm\.review\.claims"):
        ConsumerWorker(settings, "svc", "g", ["llm.review.claims"], handler)
    ConsumerWorker(settings, "svc", "g", ["llm.review.claims"], handler, decode=False)
