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

    opts = kafka.client_options(CommonSettings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc", kafka_sasl_password="pw",
    ))
    assert isinstance(opts["ssl_context"], ssl.SSLContext)
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    with pytest.raises(ValueError, match="SASL_MECHANISM"):
        kafka.client_options(CommonSettings(kafka_security_protocol="SASL_PLAINTEXT"))
