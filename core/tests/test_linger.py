"""How long CommitAfterLoop waits to fill a batch: a record waits at most linger_ms from when
it was produced while the loop keeps up; a lagging loop waits for a full batch."""

from __future__ import annotations

import asyncio
import time

from lookout.core import kafka, topics
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch


def test_a_fresh_batch_waits_until_its_oldest_record_is_linger_ms_old():
    assert kafka.linger_left_ms(200, 1000, lagging=False, oldest_age_ms=0) == 200
    assert kafka.linger_left_ms(200, 1000, lagging=False, oldest_age_ms=150) == 50


def test_records_that_waited_linger_ms_already_go_at_once():
    # e.g. they came while the previous batch was being stored
    assert kafka.linger_left_ms(200, 1000, lagging=False, oldest_age_ms=200) == 0
    assert kafka.linger_left_ms(200, 1000, lagging=False, oldest_age_ms=3000) == 0


def test_a_producer_clock_ahead_of_ours_never_makes_the_linger_longer_than_linger_ms():
    assert kafka.linger_left_ms(200, 1000, lagging=False, oldest_age_ms=-5000) == 200


def test_a_loop_with_a_full_batch_or_more_still_on_the_topic_waits_the_lagging_linger_whatever_the_age():
    assert kafka.linger_left_ms(200, 1000, lagging=True, oldest_age_ms=0) == 1000
    assert kafka.linger_left_ms(200, 1000, lagging=True, oldest_age_ms=60_000) == 1000


async def test_records_produced_longer_than_linger_ms_ago_are_handled_without_lingering(settings):
    await kafka.ensure_topics(settings, [topics.EVENTS, topics.DLQ])
    producer = await kafka.start_producer(settings)
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    an_hour_ago = int(time.time() * 1000) - 3_600_000
    for i in range(5):
        await producer.send_and_wait(name, b"{}", key=str(i).encode(), timestamp_ms=an_hour_ago)
    handled: list[int] = []

    async def handle(batch: Batch) -> None:
        handled.append(len(batch.records))

    # A linger far longer than the test waits: only the records' age can end it.
    worker = ConsumerWorker(settings, "linger-test", "g-linger", [topics.EVENTS], handle, decode=False,
                            max_records=1000, linger_ms=120_000)
    try:
        await worker.start(producer)
        for _ in range(600):
            if sum(handled) >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await producer.stop()
    assert sum(handled) == 5


async def test_a_batch_stops_filling_at_max_bytes_of_values_whatever_its_count_and_linger(settings):
    # Large answers: max_records of them would be gigabytes. Each fetch returns at most one
    # record here (max_partition_fetch_bytes below one value), so the cap is what ends a batch.
    await kafka.ensure_topics(settings, [topics.EVENTS, topics.DLQ])
    producer = await kafka.start_producer(settings)
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    value = b"x" * 300_000
    for _ in range(12):
        await producer.send_and_wait(name, value, key=b"k", partition=0)
    handled: list[int] = []

    async def handle(batch: Batch) -> None:
        handled.append(sum(len(r.value or b"") for r in batch.records))

    worker = ConsumerWorker(settings, "bytes-test", "g-bytes", [topics.EVENTS], handle, decode=False,
                            max_records=1000, linger_ms=120_000, lagging_linger_ms=120_000, max_bytes=1_000_000,
                            consumer_options={"max_partition_fetch_bytes": 1024, "fetch_max_bytes": 1024})
    try:
        await worker.start(producer)
        for _ in range(600):
            if sum(handled) >= 12 * len(value):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await producer.stop()
    assert sum(handled) == 12 * len(value)  # nothing lost or repeated...
    assert len(handled) >= 3 and max(handled) <= 1_000_000 + len(value)  # ...in batches of about max_bytes
