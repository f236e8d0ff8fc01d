"""Apache Kafka as a child: a restart on the same folder, after a clean stop or a kill,
finds its topics, records and consumer groups again, on the port it had; a clean stop
leaves a class archive the next start uses."""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from lookout.broker import KafkaBroker
from lookout.testing.brokers import kafka_libs


async def produce(bootstrap: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait("kept", f"record {i}".encode(), partition=0)
    finally:
        await producer.stop()


async def consume(bootstrap: str, commit: int | None = None) -> tuple[list[bytes], int | None]:
    """Everything on `kept`, and the group's committed offset (after committing `commit`)."""
    tp = TopicPartition("kept", 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id="readers", enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        got: list[bytes] = []
        while len(got) < end:
            got += [r.value for r in (await consumer.getmany(tp, timeout_ms=2000)).get(tp, [])]
        if commit is not None:
            await consumer.commit({tp: commit})
        return got, await consumer.committed(tp)
    finally:
        await consumer.stop()


def test_kafka_keeps_topics_records_groups_and_its_port_across_a_clean_stop_and_a_kill(tmp_path):
    def broker() -> KafkaBroker:
        return KafkaBroker(workdir=tmp_path / "kafka", libs=kafka_libs(), heap_mb=256,
                           archive_dir=tmp_path / "cds", pidfile=tmp_path / "broker.pid")

    first = broker().start()
    port = first.port
    try:
        asyncio.run(produce(first.bootstrap, 10))
        assert asyncio.run(consume(first.bootstrap, commit=7))[1] == 7
    finally:
        first.stop()
    assert list((tmp_path / "cds").glob("kafka-*.jsa"))  # written at the clean stop
    assert not (tmp_path / "broker.pid").exists()

    second = broker().start()
    try:
        assert second.port == port  # the last start's port, free again
        assert any(a.startswith("-XX:SharedArchiveFile=") for a in second.proc.args)
        assert (tmp_path / "broker.pid").exists()
        asyncio.run(produce(second.bootstrap, 5))
    finally:
        os.kill(second.proc.pid, signal.SIGKILL)  # no clean shutdown: Kafka recovers its log
        second.stop()

    third = broker().start()
    try:
        records, committed = asyncio.run(consume(third.bootstrap))
        assert records == [f"record {i}".encode() for i in range(10)] + [f"record {i}".encode() for i in range(5)]
        assert committed == 7
    finally:
        third.stop()
