import asyncio

import pytest

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


async def test_auto_idempotence_is_on_for_apache_kafka_and_off_where_the_broker_refuses_it(broker, settings_for):
    settings = settings_for(broker, kafka_idempotence="auto")
    producer = await kafka.start_producer(settings)
    try:
        assert kafka.is_idempotent(producer) is broker.supports_idempotence
        await kafka.ensure_topics(settings, [topics.EVENTS])
        await producer.send_and_wait(topics.resolve(settings.topic_prefix, topics.EVENTS), b"x", key=b"a/b")
    finally:
        await producer.stop()


def test_tls_and_sasl_options_are_built_from_settings(tmp_path):
    import ssl

    import pytest

    from lookout.core.settings import CommonSettings

    opts = kafka.client_options(CommonSettings.model_validate(dict(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc", kafka_sasl_password="pw",
    )))
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    with pytest.raises(ValueError, match="SASL_MECHANISM"):
        kafka.client_options(CommonSettings.model_validate({"kafka_security_protocol": "SASL_PLAINTEXT"}))


@pytest.mark.parametrize("prefetch", [False, True], ids=["one-batch", "fetching-ahead"])
async def test_a_rebalance_between_two_live_consumers_neither_loses_nor_repeats_a_record(settings, prefetch):
    """Two members of one group: B joins while A is mid-batch, later A leaves mid-stream.
    The fence holds each rebalance until the batch in hand (and one fetched ahead of it) is
    handled and committed, so every record is handled exactly once and no commit is refused."""
    await kafka.ensure_topics(settings, [topics.EVENTS])
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    partitions = settings.kafka_topic_partitions
    producer = await kafka.start_producer(settings)
    sent: list[bytes] = []

    async def produce(count: int) -> None:
        for _ in range(count):
            value = f"m{len(sent)}".encode()
            await producer.send(name, value, partition=len(sent) % partitions)
            sent.append(value)
        await producer.flush()

    handled: dict[str, list[bytes]] = {"a": [], "b": []}

    def member(label: str):
        async def handle(records):
            await asyncio.sleep(0.4)  # slow enough that each rebalance lands mid-batch
            handled[label].extend(r.value for r in records)
        consumer = kafka.make_consumer(settings, "g-rebalance", name)
        return consumer, kafka.CommitAfterLoop(consumer, handle, max_records=10, prefetch=prefetch)

    async def until(condition, what: str, limit_s=60):
        for _ in range(limit_s * 20):
            if condition():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what}: a handled {len(handled['a'])}, b {len(handled['b'])} of {len(sent)}")

    consumer_a, loop_a = member("a")
    consumer_b, loop_b = member("b")
    task_a = task_b = None
    try:
        await produce(120)
        await consumer_a.start()
        task_a = asyncio.create_task(loop_a.run())
        await until(lambda: len(handled["a"]) >= 20, "A starts")
        await consumer_b.start()  # joins while A works through its backlog
        task_b = asyncio.create_task(loop_b.run())
        await until(lambda: consumer_b.assignment() and len(consumer_a.assignment()) < partitions, "B assigned")
        await produce(120)
        await until(lambda: len(handled["b"]) >= 10, "B handles its share")
        await kafka.finish(loop_a, task_a, 30)
        await consumer_a.stop()  # leaves the group mid-stream: B takes every partition
        await produce(60)
        await until(lambda: len(handled["a"]) + len(handled["b"]) >= len(sent), "all handled")
        await asyncio.sleep(1.0)  # anything handled twice would arrive now
    finally:
        await producer.stop()
        await kafka.finish(loop_a, task_a, 5)
        await kafka.finish(loop_b, task_b, 30)
        await consumer_a.stop()
        await consumer_b.stop()
    assert sorted(handled["a"] + handled["b"]) == sorted(sent)
    assert loop_a.stats.commit_failures == loop_b.stats.commit_failures == 0
