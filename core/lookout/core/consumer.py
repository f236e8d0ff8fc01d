"""`ConsumerWorker`: one consumer loop of a service, from start to finish.

start(): the input topics (and llm.dlq) exist → a group consumer subscribed through the
rebalance fence (kafka.make_consumer) → CommitAfterLoop in a task. Each batch is decoded
by topic with the wire schemas; unreadable records become dead letters (dead_letters.py);
the handler gets the Batch; then the batch's dead letters are produced and acked; only
then are the offsets committed. A handler that raises commits nothing: the batch comes
again from the same offsets, and its dead letters are produced once, on the try that got
through. ready() is the loop's readiness check; stop() lets the batch in hand finish
(output stored, offsets committed) within `grace_s`, then closes the consumer.

    self.worker = ConsumerWorker(settings, name="drift", group=s.drift_group,
                                 topics=[topics.EVENTS], handler=self.handle,
                                 max_records=s.drift_batch_events, linger_ms=s.drift_batch_ms)
    await self.worker.start(self.producer)      # in start()
    await self.worker.stop()                    # in stop(), before the producer stops
    {"consumer": self.worker.ready}             # in checks()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord
from pydantic import BaseModel

from . import dead_letters, kafka, topics
from .dead_letters import Batch, RecordDecoder
from .events import TOPIC_SCHEMAS
from .settings import CommonSettings

log = logging.getLogger(__name__)

BatchHandler = Callable[[Batch], Awaitable[None]]


@dataclass
class ConsumerWorker:
    settings: CommonSettings
    name: str  # the service: names the task, the logs and the dead letters' `service`
    group: str  # consumer group (LOOKOUT_TOPIC_PREFIX is added, as for topics)
    topics: Sequence[str]  # base names
    handler: BatchHandler
    max_records: int = 2000
    linger_ms: int = 0
    lagging_linger_ms: int | None = None  # CommitAfterLoop's: the linger while a full batch is still on the topic
    prefetch: bool = False  # CommitAfterLoop's: fetch the next batch while the handler works
    max_bytes: int = 0  # CommitAfterLoop's: stop filling a batch at this many bytes of values
    grace_s: float = 30.0
    listener: ConsumerRebalanceListener | None = None
    # decode=False: the handler reads batch.records itself (topics without a wire schema).
    decode: bool = True
    schemas: Mapping[str, type[BaseModel]] = field(default_factory=lambda: dict(TOPIC_SCHEMAS))
    # Start the loop again after it ended with an error (the batch in hand is replayed).
    restart_on_error: bool = False
    create_topics: bool = True
    consumer_options: dict[str, Any] = field(default_factory=dict)  # e.g. max_poll_interval_ms
    max_dead_payload_bytes: int = dead_letters.MAX_PAYLOAD_BYTES

    consumer: AIOKafkaConsumer | None = field(default=None, init=False)
    loop: kafka.CommitAfterLoop | None = field(default=None, init=False)
    _task: asyncio.Task | None = field(default=None, init=False)
    _producer: AIOKafkaProducer | None = field(default=None, init=False)
    _own_producer: bool = field(default=False, init=False)
    _stopping: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._decoder = RecordDecoder(self.name, self.settings.topic_prefix, self.schemas, self.max_dead_payload_bytes)
        if self.decode:
            self._decoder.check(self.topics)

    @property
    def names(self) -> list[str]:
        """The topics' names on the broker."""
        return [topics.resolve(self.settings.topic_prefix, t) for t in self.topics]

    async def start(self, producer: AIOKafkaProducer | None = None) -> None:
        """Start consuming; dead letters go through `producer` (the service's own), else
        through one the worker starts and stops itself."""
        s = self.settings
        if self.create_topics:
            await kafka.ensure_topics(s, list(dict.fromkeys([*self.topics, topics.DLQ])))
        if producer is None:
            producer = await kafka.start_producer(s)
            self._own_producer = True
        self._producer = producer
        self.consumer = kafka.make_consumer(s, self.group, *self.names, listener=self.listener,
                                            **self.consumer_options)
        await self.consumer.start()
        self.loop = kafka.CommitAfterLoop(self.consumer, self._handle, max_records=self.max_records,
                                          linger_ms=self.linger_ms, lagging_linger_ms=self.lagging_linger_ms,
                                          prefetch=self.prefetch, max_bytes=self.max_bytes)
        self._task = asyncio.create_task(self._run(), name=f"lookout-{self.name}-consumer")

    async def _run(self) -> None:
        assert self.loop is not None
        while True:
            try:
                await self.loop.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if not self.restart_on_error or self._stopping:
                    raise
                log.exception("%s: consumer loop failed; starting it again", self.name)
                await asyncio.sleep(1)

    async def _handle(self, records: list[ConsumerRecord]) -> None:
        if self.decode:
            batch = self._decoder.decode(records)
        else:
            batch = Batch(list(records), service=self.name, topic_prefix=self.settings.topic_prefix,
                          max_payload_bytes=self.max_dead_payload_bytes)
        await self.handler(batch)
        assert self._producer is not None
        await dead_letters.send(self._producer, self.settings.topic_prefix, batch)

    def ready(self) -> str | None:
        """The readiness check: None while the loop runs, else why it does not."""
        return kafka.loop_problem(self._task)

    @property
    def stats(self) -> kafka.ConsumerStats:
        return self.loop.stats if self.loop else kafka.ConsumerStats()

    async def stop(self) -> None:
        """Finish the batch in hand (within grace_s), then close the consumer (and the
        worker's own producer). Safe to call after a failed or partial start."""
        self._stopping = True
        await kafka.finish(self.loop, self._task, self.grace_s)
        if self.consumer is not None:
            await self.consumer.stop()
            self.consumer = None
        if self._own_producer and self._producer is not None:
            await self._producer.stop()
        self._producer = None
