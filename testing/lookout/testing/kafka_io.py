"""Reading a topic back and a group's committed offsets, on a real broker, for assertions."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from lookout.core import kafka, topics
from lookout.core.settings import CommonSettings


async def _partitions(consumer: AIOKafkaConsumer, name: str) -> list[int]:
    # A consumer without a subscription keeps no metadata of the topic: ask the cluster.
    cluster = await consumer._client.fetch_all_metadata()
    return sorted(cluster.partitions_for_topic(name) or [])


async def read_all(settings: CommonSettings, base: str, timeout_s: float = 30) -> list[ConsumerRecord]:
    """Every record on a topic now, from the beginning to its end offsets (no group)."""
    name = topics.resolve(settings.topic_prefix, base)
    consumer = AIOKafkaConsumer(**kafka.client_options(settings), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = await _partitions(consumer, name)
        tps = [TopicPartition(name, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        records: list[ConsumerRecord] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            if loop.time() > deadline:
                raise TimeoutError(f"{name}: read {len(records)} records before the end offsets {end}")
            for part in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


async def committed(settings: CommonSettings, group: str, base: str) -> dict[int, int | None]:
    """The group's committed offset per partition of a topic (None: nothing committed)."""
    name = topics.resolve(settings.topic_prefix, base)
    consumer = AIOKafkaConsumer(**kafka.client_options(settings), group_id=f"{settings.topic_prefix}{group}",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, name)
        return {p: await consumer.committed(TopicPartition(name, p)) for p in partitions}
    finally:
        await consumer.stop()


async def end_offsets(settings: CommonSettings, base: str) -> dict[int, int]:
    name = topics.resolve(settings.topic_prefix, base)
    consumer = AIOKafkaConsumer(**kafka.client_options(settings))
    await consumer.start()
    try:
        partitions = await _partitions(consumer, name)
        ends = await consumer.end_offsets([TopicPartition(name, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()
