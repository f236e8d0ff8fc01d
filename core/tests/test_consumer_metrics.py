"""Consumer-loop metrics on real brokers (consumer_metrics.py): lag per group and
partition while a batch is held, back to 0 once handled; errors and records counted."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from lookout.core import kafka, topics
from lookout.core.consumer_metrics import LAG


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(condition, what: str, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


async def test_lag_shows_per_partition_while_behind_and_falls_to_zero_once_caught_up(settings):
    await kafka.ensure_topics(settings, ["metrics.in"])  # 3 partitions (the fixture's settings)
    topic = topics.resolve(settings.topic_prefix, "metrics.in")
    producer = await kafka.start_producer(settings)
    try:
        for i in range(40):
            await producer.send_and_wait(topic, f"r{i}".encode(), partition=i % 3)
    finally:
        await producer.stop()

    release = asyncio.Event()
    calls: list[int] = []

    async def handle(records) -> None:
        calls.append(len(records))
        if len(calls) == 1:
            raise RuntimeError("first batch fails once")  # counted, then retried
        await release.wait()

    consumer = kafka.make_consumer(settings, "metrics-test", topic)
    await consumer.start()
    loop = kafka.CommitAfterLoop(consumer, handle, max_records=5, retry_backoff_s=0.05)
    group = f"{settings.topic_prefix}metrics-test"
    task = asyncio.create_task(loop.run())
    try:
        def lags() -> dict[int, int]:
            return {p: n for (g, t, p), n in LAG.lags().items() if g == group and t == topic}

        # Held on its second attempt at a batch: every partition it fetched from is behind.
        await _until(lambda: sum(lags().values()) > 0, "lag of the held batch")
        assert sum(lags().values()) <= 40 and all(p in (0, 1, 2) for p in lags())
        assert _sample("lookout_consumer_lag_records", group=group, topic=topic, partition=str(next(iter(lags())))) > 0
        assert _sample("lookout_consumer_errors_total", group=group) == 1
        release.set()
        await _until(lambda: _sample("lookout_consumer_records_total", group=group) == 40, "all 40 committed")
        await _until(lambda: len(lags()) == 3 and sum(lags().values()) == 0, "lag back to 0 on the 3 partitions")
        assert _sample("lookout_consumer_batches_total", group=group) >= 8  # max 5 records a batch
        assert _sample("lookout_consumer_batch_seconds_count", group=group) >= 8
    finally:
        loop.stop()
        await asyncio.wait_for(task, 30)
        await consumer.stop()
    assert not [k for k in LAG.lags() if k[0] == group]  # a stopped loop leaves no series behind
