"""The ingest service: the HTTP and OTLP intake (api.py) with what it needs started
behind it (the Kafka producers, the API key store, the enricher, the CPU worker pools:
worker processes by default, one pool for small requests and one for the rest, started and
warmed here).

`python -m lookout.ingest` runs it (LOOKOUT_HTTP_WORKERS processes); `lookout up` runs it
beside the other services in one process.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter

from lookout.core import kafka, topics
from lookout.core.auth import ApiKeyStore
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from .api import IngestContext, body_limits, build_router
from .enrich import Enricher
from .publisher import EventPublisher
from .settings import IngestSettings
from .workers import ProcessRunner, WorkerPool

log = logging.getLogger(__name__)


class IngestService:
    name = "ingest"

    def __init__(self, settings: IngestSettings, session: Session | None = None):
        self.settings = settings
        self.session = session
        self._owns_session = session is None
        self.ctx = IngestContext(settings=settings, clickhouse=session)
        self.producer: AIOKafkaProducer | None = None
        self.bulk_producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        settings = self.settings
        # Before anything is opened: a missing PII secret stops the start.
        enricher = Enricher.from_settings(settings)
        if self.session is None:
            self.session = await asyncio.to_thread(Session.connect, settings, migrate=True)
        self.ctx.clickhouse = self.session
        # ApiKeyStore takes its lock from Session.of(client): one lock for the client.
        self.ctx.keys = self.session.run(lambda client: ApiKeyStore(client))
        self.ctx.enricher = enricher
        # Worker processes build their own enricher from the settings (cheaper than sending one per job).
        def pool(mode: str, size: int, nice: int) -> WorkerPool:
            return WorkerPool.create(mode, size, functools.partial(Enricher.from_settings, settings),
                                     per_key=settings.work_workers_per_key,
                                     queue_per_key=settings.work_queue_per_key, nice=nice)

        workers = self.ctx.workers = pool(settings.work_mode, settings.work_workers, settings.work_nice)
        await workers.start()
        # Only beside worker processes: threads share one interpreter lock and one priority.
        if isinstance(workers.runner, ProcessRunner) and settings.work_quick_workers and settings.bulk_request_bytes:
            quick = self.ctx.quick_workers = pool("process", settings.work_quick_workers, settings.work_quick_nice)
            await quick.start()
        await kafka.ensure_topics(settings)
        self.producer = await kafka.start_producer(settings)
        if settings.bulk_request_bytes:
            self.bulk_producer = await kafka.start_producer(settings)
        # Two producers (small requests, bulk ones); calls, OTLP trace steps and client
        # evaluations each get a publisher.
        self.ctx.publisher, self.ctx.step_publisher, self.ctx.score_publisher = (
            EventPublisher(
                self.producer,
                topic_prefix=settings.topic_prefix,
                max_inflight=settings.max_inflight_events,
                timeout_s=settings.produce_timeout_s,
                topic=topic,
                bulk=self.bulk_producer,
                bulk_bytes=settings.bulk_request_bytes,
            )
            for topic in (topics.EVENTS, topics.SPANS, topics.SCORES)
        )

    async def stop(self) -> None:
        for pool in (self.ctx.workers, self.ctx.quick_workers):
            if pool is not None:
                pool.close()
        self.ctx.workers = self.ctx.quick_workers = None
        for producer in (self.producer, self.bulk_producer):
            if producer is not None:
                await producer.stop()  # flushes what is still lingering
        self.producer = self.bulk_producer = None
        if self._owns_session and self.session is not None:
            self.session.close()
            self.session = None

    def routers(self) -> Sequence[APIRouter]:
        return [build_router(self.ctx)]

    def body_limits(self) -> Mapping[str, int]:
        """The intake routes' own request-body limit (serving installs it)."""
        return body_limits(self.settings)

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {"kafka": self._kafka_problem, "clickhouse": self._clickhouse_problem}

    def _kafka_problem(self) -> str | None:
        return None if self.producer is not None else "Kafka producer not started"

    def _clickhouse_problem(self) -> str | None:
        return self.session.problem() if self.session is not None else "ClickHouse not connected"
