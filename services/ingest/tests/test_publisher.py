"""Producing a request's records: a bulk request goes over a Kafka connection of its own, so
its acks never hold up a small request's (a producer has one request in flight per broker)."""

from __future__ import annotations

import pytest

from lookout.core import kafka
from lookout.ingest.publisher import EventPublisher, Unavailable


def records(n: int, size: int) -> list[tuple[bytes, bytes]]:
    return [(b"app/model", b"x" * size) for _ in range(n)]


@pytest.fixture
async def producers(kafka_broker, settings_for):
    settings = settings_for(kafka_broker)
    await kafka.ensure_topics(settings)
    small, bulk = await kafka.start_producer(settings), await kafka.start_producer(settings)
    try:
        yield settings, small, bulk
    finally:
        await small.stop()
        await bulk.stop()


async def test_a_small_request_is_acked_while_the_bulk_connection_is_gone_and_a_bulk_one_is_not(producers):
    settings, small, bulk = producers
    publisher = EventPublisher(small, topic_prefix=settings.topic_prefix, max_inflight=100_000, timeout_s=3,
                               bulk=bulk, bulk_bytes=10_000)
    await bulk.stop()  # the bulk connection can deliver nothing now
    await publisher.publish_records(records(9, 1000))  # 9 000 bytes: the small connection
    with pytest.raises(Unavailable):
        await publisher.publish_records(records(11, 1000))  # 11 000 bytes: the bulk one


async def test_without_a_bulk_size_every_request_shares_one_connection(producers):
    settings, small, bulk = producers
    publisher = EventPublisher(small, topic_prefix=settings.topic_prefix, max_inflight=100_000, timeout_s=3,
                               bulk=bulk, bulk_bytes=0)
    await bulk.stop()
    await publisher.publish_records(records(500, 1000))
