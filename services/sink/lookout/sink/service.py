"""The sink as a service: one consumer group on every topic, each batch stored in
ClickHouse (store.py) on a worker thread, then its dead letters produced, then its
offsets committed (ConsumerWorker). A crash between insert and commit replays the batch,
and the replay is skipped row by row (the already-stored check), so nothing doubles.

`python -m lookout.sink` runs it with /healthz, /readyz (consumer, ClickHouse) and
/metrics; `lookout up` runs it beside the other services in one process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter

from lookout.core import kafka, topics
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from .settings import SinkSettings
from .store import Store

log = logging.getLogger(__name__)

# The longest a lagging sink (a full batch or more still on the topic) waits to fill a
# batch: each statement has a fixed cost and the rows are late anyway. Keeping up, a row
# waits at most sink_batch_ms from when it was produced (kafka.linger_left_ms).
LAGGING_LINGER_MS = 1000


class SinkService:
    name = "sink"

    def __init__(self, settings: SinkSettings, session: Session | None = None):
        self.settings = settings
        self.session = session
        self._owns_session = session is None
        self.store: Store | None = None
        self._producer: AIOKafkaProducer | None = None
        # decode=False: the store reads each record itself, on a worker thread.
        self.worker = ConsumerWorker(
            settings, self.name, settings.sink_group, topics.ALL, self._handle, decode=False,
            max_records=settings.sink_batch_rows, max_bytes=settings.sink_batch_bytes, linger_ms=settings.sink_batch_ms,
            lagging_linger_ms=max(settings.sink_batch_ms, LAGGING_LINGER_MS), prefetch=settings.sink_prefetch,
        )

    async def start(self) -> None:
        settings = self.settings
        if self.session is None:
            self.session = await asyncio.to_thread(Session.connect, settings, migrate=True)
        self.store = Store(self.session, settings.topic_prefix, chdb=settings.clickhouse_dsn.startswith("chdb:"),
                           fast=settings.sink_sql_rows, nice=settings.sink_insert_nice,
                           sql_min_records=settings.sink_sql_min_records)
        self._producer = await kafka.start_producer(settings)
        await self.worker.start(self._producer)
        log.info("sink running: %s -> %s", settings.kafka_bootstrap, settings.clickhouse_dsn.split("@")[-1])

    async def _handle(self, batch: Batch) -> None:
        assert self.store is not None
        await asyncio.to_thread(self.store.write, batch)

    @property
    def stats(self) -> kafka.ConsumerStats:
        return self.worker.stats

    async def stop(self) -> None:
        """Finish the batch in hand (insert, dead letters, commit), then close."""
        await self.worker.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._owns_session and self.session is not None:
            self.session.close()
            self.session = None

    def routers(self) -> Sequence[APIRouter]:
        return []

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {"consumer": self.worker.ready, "clickhouse": self._clickhouse_problem}

    def _clickhouse_problem(self) -> str | None:
        return self.session.problem() if self.session is not None else "not connected"
