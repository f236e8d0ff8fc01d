"""The feedback service as a startable unit, and the standalone FastAPI app around it.

Embedding (one loop, one port, one ClickHouse client):
    service = FeedbackService(settings, client=shared_client)
    await service.start()
    app.include_router(service.router())   # /v1/feedback*, /v1/datasets*, /review, /review/api/*
    ...
    await service.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from clickhouse_connect.driver.client import Client
from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse

from lookout.core import clickhouse, kafka, migrations, review_signing
from lookout.core.api_errors import ApiError, ErrorRoute, install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.core.body_limit import install_body_limit
from lookout.core.ops import lifespan_of, ops_router

from . import datasets_api, explorer, review, signals, thumbs
from .accounts import Accounts
from .claims import ClaimLog
from .privacy import Privacy
from .publish import FeedbackPublisher
from .runtime import RuntimeSettings
from .settings import FeedbackSettings
from .store import Db

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class FeedbackService:
    def __init__(self, settings: FeedbackSettings, client: Client | None = None, *, build_tasks: bool = True):
        self.settings = settings
        self.client = client
        # Several instances may run; only one needs to build tasks, but more are harmless
        # (rows collapse) because they share a consumer group.
        self.build_tasks = build_tasks
        self.thumbs = thumbs.ThumbsContext(settings)
        self.review = review.ReviewContext(settings)
        self.datasets = datasets_api.DatasetContext(settings)
        self.explorer = explorer.ExplorerContext()
        self.claims = ClaimLog(settings, settings.review_claims_topic, settings.review_lease_s)
        self.producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: kafka.CommitAfterLoop | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.settings
        # Both before anything starts: without them feedback would be stored in clear or unsigned.
        privacy = Privacy.from_settings(s)
        review_signing.check_secret(s.review_signing_secret)
        if self.client is None:
            self.client = clickhouse.connect(s)
        # Idempotent; also brings 0004_feedback to a shared client that was migrated earlier.
        migrations.apply(self.client, s.retention_days)
        db = Db(self.client)
        keys = ApiKeyStore(self.client)
        accounts = Accounts(db, s.session_ttl_s)
        runtime = RuntimeSettings(s, db)
        await asyncio.to_thread(runtime.create)
        if s.review_admin_user and s.review_admin_password and accounts.get(s.review_admin_user) is None:
            accounts.upsert(s.review_admin_user, password=s.review_admin_password, role="admin", apps=["*"])
        await kafka.ensure_topics(s)
        self.producer = await kafka.start_producer(s)
        publisher = FeedbackPublisher(self.producer, s.topic_prefix, s.produce_timeout_s)
        await self.claims.start(self.producer)
        self.thumbs.db, self.thumbs.keys, self.thumbs.publisher = db, keys, publisher
        self.thumbs.privacy = self.review.privacy = privacy
        self.review.db, self.review.accounts, self.review.runtime = db, accounts, runtime
        self.review.claims, self.review.publisher = self.claims, publisher
        self.review.producer = self.producer
        self.datasets.db, self.datasets.keys = db, keys
        self.explorer.db, self.explorer.accounts = db, accounts
        if self.build_tasks:
            self._consumer = kafka.make_consumer(s, s.review_signals_group, *signals.signal_topics(s))
            await self._consumer.start()
            builder = signals.TaskBuilder(s, db, runtime)
            self._loop = kafka.CommitAfterLoop(self._consumer, builder.handle, linger_ms=200)
            self._task = asyncio.create_task(self._loop.run(), name="lookout-review-tasks")

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 30)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        await self.claims.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    def ready(self) -> str | None:
        if self.producer is None:
            return "Kafka producer not started"
        if self._task is not None and self._task.done():
            return "task builder stopped"
        return self.claims.ready()

    def clickhouse_ready(self) -> str | None:
        if self.client is None:
            return "ClickHouse not connected"
        self.thumbs.db.rows("SELECT 1")
        return None

    def router(self) -> APIRouter:
        """Every route of the service except /healthz, /readyz, /metrics."""
        router = APIRouter(route_class=ErrorRoute)
        router.include_router(thumbs.build_router(self.thumbs))
        router.include_router(review.build_router(self.review))
        router.include_router(datasets_api.build_router(self.datasets))
        router.include_router(explorer.build_router(self.explorer))
        router.include_router(explorer.pages_router())

        @router.get("/review", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / "review.html", headers={"Cache-Control": "no-store"})

        @router.get("/review/static/{name}", include_in_schema=False)
        async def asset(name: str) -> FileResponse:
            files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
            if name not in files:
                raise ApiError(404, f"no asset {name}")
            return FileResponse(files[name])

        return router


def build_app(service: FeedbackService, **fastapi_kwargs) -> FastAPI:
    """The FastAPI app around a service whose start/stop the caller owns."""
    app = FastAPI(title="Lookout feedback", **fastapi_kwargs)
    install_error_handlers(app)
    install_body_limit(app, service.settings)
    app.include_router(service.router())

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/review")

    app.include_router(ops_router({"kafka": service.ready, "clickhouse": service.clickhouse_ready}))
    app.state.service = service
    return app


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    service = FeedbackService(settings or FeedbackSettings())
    return build_app(service, lifespan=lifespan_of(service))
