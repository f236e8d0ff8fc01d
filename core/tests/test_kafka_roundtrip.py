import asyncio

from lookout.core import kafka, topics


async def test_produced_records_are_consumed_and_committed_on_both_brokers(settings):
    await kafka.ensure_topics(settings, [topics.EVENTS])
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    producer = await kafka.start_producer(settings)
    try:
        for i in range(50):
            await producer.send_and_wait(name, f"m{i}".encode(), key=b"a/b")
    finally:
        await producer.stop()

    got = []

    async def handle(records):
        got.extend(r.value for r in records)
        if len(got) >= 50:
            loop.stop()

    consumer = kafka.make_consumer(settings, "g1", name)
    await consumer.start()
    loop = kafka.CommitAfterLoop(consumer, handle)
    try:
        await asyncio.wait_for(loop.run(), 30)
    finally:
        await consumer.stop()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(50))
    assert loop.stats.commits >= 1
