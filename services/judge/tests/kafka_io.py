"""Putting calls on llm.events and reading scores back from llm.scores, on a real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from lookout.core import kafka, topics
from lookout.core.events import LlmCall, Score
from lookout.core.settings import CommonSettings


async def produce_calls(settings: CommonSettings, calls: Iterable[LlmCall]) -> None:
    await kafka.ensure_topics(settings, [topics.EVENTS, topics.SCORES])
    producer = await kafka.start_producer(settings)
    try:
        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        acks = [await producer.send(name, c.to_bytes(), key=topics.event_key(c.app_id, c.model)) for c in calls]
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


class ScoreReader:
    """Every record on llm.scores, from the beginning, as (key, Score)."""

    def __init__(self, settings: CommonSettings):
        self.settings = settings
        self.records: list[tuple[bytes, Score]] = []
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> ScoreReader:
        await kafka.ensure_topics(self.settings, [topics.EVENTS, topics.SCORES])
        # No consumer group: assigned partitions read from the start, without a group join.
        name = topics.resolve(self.settings.topic_prefix, topics.SCORES)
        self._consumer = AIOKafkaConsumer(**kafka.client_options(self.settings), enable_auto_commit=False,
                                          auto_offset_reset="earliest")
        await self._consumer.start()
        # ensure_topics made the topic with this many partitions (whoever came first).
        self._consumer.assign([TopicPartition(name, p) for p in range(self.settings.kafka_topic_partitions)])
        return self

    async def __aexit__(self, *exc) -> None:
        await self._consumer.stop()

    @property
    def scores(self) -> list[Score]:
        return [s for _, s in self.records]

    def by_event(self) -> dict[uuid.UUID, dict[str, Score]]:
        out: dict[uuid.UUID, dict[str, Score]] = defaultdict(dict)
        for s in self.scores:
            out[s.event_id][s.name] = s
        return out

    async def until(self, done: Callable[[ScoreReader], bool], within: float = 60.0) -> ScoreReader:
        deadline = time.monotonic() + within
        while not done(self):
            if time.monotonic() > deadline:
                names = {e: sorted(n) for e, n in self.by_event().items()}
                raise TimeoutError(f"condition not met after {within}s; scores so far: {names}")
            batches = await self._consumer.getmany(timeout_ms=200)
            for part in batches.values():
                self.records.extend((r.key, Score.from_bytes(r.value)) for r in part)
        return self

    async def settle(self, seconds: float) -> ScoreReader:
        """Keep reading for a while: to show something does NOT arrive."""
        end = time.monotonic() + seconds
        return await self.until(lambda _: time.monotonic() > end, within=seconds + 5)
