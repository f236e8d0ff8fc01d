"""The ingest service as a startable unit, and the standalone FastAPI app around it."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from clickhouse_connect.driver.client import Client
from fastapi import FastAPI

from lookout.core import clickhouse, kafka, migrations, topics
from lookout.core.api_errors import install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.core.body_limit import install_body_limit
from lookout.core.ops import lifespan_of, ops_router

from .api import IngestContext, body_limits, build_router
from .enrich import Enricher
from .publisher import EventPublisher
from .settings import IngestSettings
from .workers import WorkerPool

log = logging.getLogger(__name__)


class IngestService:
    def __init__(self, settings: IngestSettings, client: Client | None = None):
        self.settings = settings
        self.ctx = IngestContext(settings=settings, clickhouse=client)
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        settings = self.settings
        if self.ctx.clickhouse is None:
            self.ctx.clickhouse = clickhouse.connect(settings)
            migrations.apply(self.ctx.clickhouse, settings.retention_days)
        self.ctx.keys = ApiKeyStore(self.ctx.clickhouse)
        self.ctx.enricher = Enricher.from_settings(settings)
        self.ctx.workers = WorkerPool(settings.work_threads, settings.work_threads_per_key, settings.work_queue_per_key)
        await kafka.ensure_topics(settings)
        self.producer = await kafka.start_producer(settings)
        self.ctx.publisher, self.ctx.step_publisher, self.ctx.score_publisher = (
            EventPublisher(
                self.producer,
                topic_prefix=settings.topic_prefix,
                max_inflight=settings.max_inflight_events,
                timeout_s=settings.produce_timeout_s,
                topic=topic,
            )
            for topic in (topics.EVENTS, topics.SPANS, topics.SCORES)
        )

    async def stop(self) -> None:
        if self.ctx.workers is not None:
            self.ctx.workers.close()
            self.ctx.workers = None
        if self.producer is not None:
            await self.producer.stop()  # flushes what is still lingering
            self.producer = None

    def ready(self) -> str | None:
        if self.producer is None:
            return "Kafka producer not started"
        return None

    def clickhouse_ready(self) -> str | None:
        if self.ctx.clickhouse is None:
            return "ClickHouse not connected"
        self.ctx.clickhouse.query("SELECT 1")
        return None


def build_app(service: IngestService, **fastapi_kwargs) -> FastAPI:
    """The FastAPI app around a service whose start/stop the caller owns."""
    app = FastAPI(title="Lookout ingest", **fastapi_kwargs)
    install_error_handlers(app)
    install_body_limit(app, service.settings, body_limits(service.settings))
    app.include_router(build_router(service.ctx))
    app.include_router(ops_router({"kafka": service.ready, "clickhouse": service.clickhouse_ready}))
    app.state.service = service
    return app


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    """The standalone ingest app: starts and stops the service with the server."""
    service = IngestService(settings or IngestSettings())
    return build_app(service, lifespan=lifespan_of(service))
