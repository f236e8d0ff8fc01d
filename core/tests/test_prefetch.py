"""CommitAfterLoop(prefetch=True): the next batch is fetched while the handler works on this
one, and nothing about what is handled changes: every record once, in order per partition,
a failed batch retried from its own offsets with the batch fetched ahead of it dropped and
fetched again."""

import asyncio

from lookout.core import kafka, topics


async def _topic(settings, count: int) -> tuple[str, list[bytes]]:
    await kafka.ensure_topics(settings, [topics.EVENTS])
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    producer = await kafka.start_producer(settings)
    sent = [f"m{i:03d}".encode() for i in range(count)]
    try:
        for value in sent:
            await producer.send(name, value, key=b"one/key")  # one partition: one order
        await producer.flush()
    finally:
        await producer.stop()
    return name, sent


async def test_the_next_batch_is_fetched_while_the_handler_works_on_this_one(settings):
    name, sent = await _topic(settings, 60)
    got: list[bytes] = []
    trace: list[str] = []

    async def handle(records):
        trace.append("handle")
        await asyncio.sleep(0.3)  # an insert in flight
        got.extend(r.value for r in records)
        trace.append("handled")
        if len(got) >= len(sent):
            loop.stop()

    consumer = kafka.make_consumer(settings, "g-prefetch", name)
    getmany = consumer.getmany

    async def traced_getmany(*args, **kwargs):
        trace.append("fetch")
        return await getmany(*args, **kwargs)

    consumer.getmany = traced_getmany  # type: ignore[method-assign]
    await consumer.start()
    loop = kafka.CommitAfterLoop(consumer, handle, max_records=10, prefetch=True)
    try:
        await asyncio.wait_for(loop.run(), 60)
    finally:
        await consumer.stop()
    assert got == sent
    # Between a handler's start and its end, the loop asked the broker for the next batch.
    fetched_during = [trace[i + 1] == "fetch" for i, step in enumerate(trace[:-1]) if step == "handle"]
    assert sum(fetched_during) >= len(sent) // 10 - 1, trace


async def test_a_failed_batch_is_retried_from_its_offsets_and_the_batch_fetched_ahead_is_not_lost(settings):
    name, sent = await _topic(settings, 60)
    got: list[bytes] = []
    failures: list[int] = []

    async def handle(records):
        await asyncio.sleep(0.1)
        if len(got) == 20 and not failures:
            failures.append(len(records))
            raise RuntimeError("the store is away")
        got.extend(r.value for r in records)
        if len(got) >= len(sent):
            loop.stop()

    consumer = kafka.make_consumer(settings, "g-prefetch-fail", name)
    await consumer.start()
    loop = kafka.CommitAfterLoop(consumer, handle, max_records=10, prefetch=True, retry_backoff_s=0.05)
    try:
        await asyncio.wait_for(loop.run(), 60)
    finally:
        await consumer.stop()
    assert failures and loop.stats.errors == 1
    assert got == sent  # nothing skipped, nothing twice, in order
