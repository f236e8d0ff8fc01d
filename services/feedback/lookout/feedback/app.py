"""The feedback service in the one service shape (lookout.core.service): the thumbs API,
the review queue and its web UI, the dataset export, and the task builder that turns
signals on the topics into review tasks.

    run_service(FeedbackService, FeedbackSettings)          # python -m lookout.feedback
    service_app(FeedbackService(settings, session))         # tests, the embedded stack

One `Session` (lookout.core.session) owns the ClickHouse client: the API, the reviewer
accounts, the run-time settings, the key store and the task builder all take turns under
its lock. The task builder is a ConsumerWorker on llm.feedback, llm.scores, llm.drift and
llm.events (group LOOKOUT_REVIEW_SIGNALS_GROUP); unreadable records there are dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from lookout.core import kafka, migrations, review_signing
from lookout.core.api_errors import ApiError, error_router
from lookout.core.auth import ApiKeyStore
from lookout.core.consumer import ConsumerWorker
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from . import datasets_api, review, signals, thumbs
from .accounts import Accounts
from .claims import ClaimLog
from .privacy import Privacy
from .publish import FeedbackPublisher
from .runtime import RuntimeSettings
from .settings import FeedbackSettings

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


class FeedbackService:
    """`session`: the Session of a client shared with other services in one process (the
    embedded stack); without one, start() connects its own. `build_tasks`: run the task
    builder (several instances may; they share its consumer group). `serve_root`: answer
    GET / with a redirect to the review page (off where another page owns /)."""

    name = "feedback"

    def __init__(self, settings: FeedbackSettings, session: Session | None = None, *, build_tasks: bool = True,
                 serve_root: bool = True):
        self.settings = settings
        self.session = session
        self._owns_session = session is None
        self.build_tasks = build_tasks
        self.serve_root = serve_root
        self.thumbs = thumbs.ThumbsContext(settings)
        self.review = review.ReviewContext(settings)
        self.datasets = datasets_api.DatasetContext(settings)
        self.claims = ClaimLog(settings, settings.review_claims_topic, settings.review_lease_s)
        self.producer: AIOKafkaProducer | None = None
        self.worker: ConsumerWorker | None = None

    async def start(self) -> None:
        s = self.settings
        # Both before anything starts: without them feedback would be stored in clear or unsigned.
        privacy = Privacy.from_settings(s)
        review_signing.check_secret(s.review_signing_secret)
        if self.session is None:
            self.session = await asyncio.to_thread(Session.connect, s)
        session = self.session
        # Idempotent; also brings the service's tables to a shared client migrated earlier.
        await session.arun(migrations.apply, s.retention_days)
        # ApiKeyStore takes a raw client and its lock from Session.of(client): the same lock.
        keys = session.run(ApiKeyStore)
        accounts = Accounts(session, s.session_ttl_s)
        runtime = RuntimeSettings(s, session)
        if s.review_admin_user and s.review_admin_password and accounts.get(s.review_admin_user) is None:
            accounts.upsert(s.review_admin_user, password=s.review_admin_password, role="admin", apps=["*"])
        await kafka.ensure_topics(s)
        self.producer = await kafka.start_producer(s)
        publisher = FeedbackPublisher(self.producer, s.topic_prefix, s.produce_timeout_s)
        await self.claims.start(self.producer)
        self.thumbs.session, self.thumbs.keys, self.thumbs.publisher = session, keys, publisher
        self.thumbs.privacy = self.review.privacy = privacy
        self.review.session, self.review.accounts, self.review.runtime = session, accounts, runtime
        self.review.claims, self.review.publisher = self.claims, publisher
        self.review.producer = self.producer
        self.datasets.session, self.datasets.keys = session, keys
        if self.build_tasks:
            builder = signals.TaskBuilder(s, session, runtime)
            self.worker = ConsumerWorker(s, self.name, s.review_signals_group, signals.SIGNAL_TOPICS, builder.handle,
                                         linger_ms=200)
            await self.worker.start(self.producer)

    async def stop(self) -> None:
        """Finish the task builder's batch, then the claim log, the producer and the client
        (safe after a partial start)."""
        if self.worker is not None:
            await self.worker.stop()
        await self.claims.stop()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        if self.session is not None and self._owns_session:
            self.session.close()
            self.session = None

    def checks(self) -> Mapping[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {
            "kafka": lambda: None if self.producer is not None else "Kafka producer not started",
            "claims": self.claims.ready,
            "clickhouse": lambda: self.session.problem() if self.session is not None else "ClickHouse not connected",
        }
        if self.build_tasks:
            checks["tasks"] = lambda: self.worker.ready() if self.worker else "task builder not started"
        return checks

    def routers(self) -> Sequence[APIRouter]:
        """Every route of the service but the ops routes: /v1/feedback*, /v1/datasets*,
        /review, /review/static/*, /review/api/* (and / with serve_root)."""
        pages = error_router()

        @pages.get("/review", include_in_schema=False)
        async def page() -> FileResponse:
            return FileResponse(STATIC / "review.html", headers={"Cache-Control": "no-store"})

        @pages.get("/review/static/{name}", include_in_schema=False)
        async def asset(name: str) -> FileResponse:
            files = {p.name: p for p in STATIC.iterdir() if p.is_file()}
            if name not in files:
                raise ApiError(404, f"no asset {name}")
            return FileResponse(files[name])

        if self.serve_root:
            @pages.get("/", include_in_schema=False)
            async def root() -> RedirectResponse:
                return RedirectResponse("/review")

        return [thumbs.build_router(self.thumbs), review.build_router(self.review),
                datasets_api.build_router(self.datasets), pages]
