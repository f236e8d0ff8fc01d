"""ConsumerWorker on real brokers (Apache Kafka and Tansu): poison records reach llm.dlq once,
the rest are handled, and offsets are committed only after the output is acked."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime

from lookout.core import ids, kafka, topics
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.events import DeadLetter, LlmCall
from lookout.testing.kafka_io import committed, end_offsets, read_all

OUT = "worker.out"
GOOD = 30


def _call(i: int) -> LlmCall:
    return LlmCall(event_id=uuid.uuid4(), ts=datetime.now(UTC), app_id="app", model=f"m{i % 3}", prompt=f"p{i}",
                   output="o", schema="llm_call/1")


POISON = [
    (b"{not json", "JSONDecodeError"),
    (b'{"schema": "llm_call/1", "app_id": "app"}', "ValidationError"),
    (None, "tombstone"),
    # Near Kafka's 1 MB message limit: a dead letter carrying all of it in base64 would not fit.
    (b"\x00" * 700_000, "payload cut to its first"),
]


async def _until(condition, what: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


async def test_poison_goes_to_the_dlq_once_the_rest_is_handled_and_offsets_commit_after_output(settings):
    await kafka.ensure_topics(settings, [topics.EVENTS, topics.DLQ, OUT])
    events, out = topics.resolve(settings.topic_prefix, topics.EVENTS), topics.resolve(settings.topic_prefix, OUT)
    producer = await kafka.start_producer(settings)
    calls = [_call(i) for i in range(GOOD)]
    poison_at: dict[tuple[int, int], str] = {}
    for i, c in enumerate(calls):
        await producer.send_and_wait(events, c.to_bytes(), key=b"k", partition=i % 3)
        if i % 8 == 3:
            value, why = POISON[len(poison_at)]
            meta = await producer.send_and_wait(events, value, key=b"bad", partition=i % 3)
            poison_at[(meta.partition, meta.offset)] = why

    attempts: list[int] = []

    async def handle(batch: Batch) -> None:
        attempts.append(len(batch.records))
        if len(attempts) == 1:
            raise RuntimeError("the first batch fails once: nothing of it may be committed or dead-lettered")
        acks = [await producer.send(out, str(c.event_id).encode()) for c in batch.of(LlmCall)]
        await asyncio.gather(*acks)

    worker = ConsumerWorker(settings, "shape-test", "g-worker", [topics.EVENTS], handle, max_records=50,
                            linger_ms=100)
    try:
        await worker.start(producer)
        assert worker.ready() is None
        await _until(lambda: worker.stats.consumed >= GOOD + len(POISON), "every record handled and committed")
    finally:
        await worker.stop()
    assert worker.ready() is not None and worker.stats.errors == 1

    handled = [r.value.decode() for r in await read_all(settings, OUT) if r.value]
    assert sorted(handled) == sorted(str(c.event_id) for c in calls)  # each once: the failed try produced nothing

    letters = [DeadLetter.from_bytes(r.value) for r in await read_all(settings, topics.DLQ) if r.value]
    assert {(d.partition, d.offset) for d in letters} == set(poison_at)
    assert len(letters) == len(POISON)  # the failed first try sent none
    for d in letters:
        assert poison_at[(d.partition, d.offset)] in d.error
        assert d.source_topic == events and d.service == "shape-test" and d.key == "bad"
        assert d.dlq_id == ids.uuid_from(f"{events}/{d.partition}/{d.offset}")
    cut = next(d for d in letters if "payload cut" in d.error)
    assert base64.b64decode(cut.payload_b64) == b"\x00" * 256 * 1024

    assert await committed(settings, "g-worker", topics.EVENTS) == await end_offsets(settings, topics.EVENTS)

    # A replay (a new group from the start) writes the same dead letters: same ids, one row each in storage.
    replayed: list[Batch] = []

    async def again(batch: Batch) -> None:
        replayed.append(batch)

    replay = ConsumerWorker(settings, "shape-test", "g-replay", [topics.EVENTS], again)
    try:
        await replay.start(producer)
        await _until(lambda: replay.stats.consumed >= GOOD + len(POISON), "the replay")
    finally:
        await replay.stop()
        await producer.stop()
    again_letters = [DeadLetter.from_bytes(r.value) for r in await read_all(settings, topics.DLQ) if r.value]
    assert len(again_letters) == 2 * len(POISON)
    assert {d.dlq_id for d in again_letters} == {d.dlq_id for d in letters}
    assert sum(len(b.of(LlmCall)) for b in replayed) == GOOD
