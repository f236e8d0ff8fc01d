"""FeedbackStack: ingest + sink (lookout.testing's IngestStack) and one or more feedback
service instances, each with its own asyncio loop, HTTP port, ClickHouse session, Kafka
producer and claim-log reader, like separate processes, on a real broker and chdb. Each
instance is served as run_service serves it (service_app: the start gate, the ops routes,
the envelope)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn

from lookout.core import ids
from lookout.core.events import LlmCall, Message
from lookout.core.serving import Lifecycle, service_app
from lookout.core.session import Session
from lookout.feedback.app import FeedbackService
from lookout.feedback.settings import FeedbackSettings
from lookout.testing.brokers import free_port
from lookout.testing.stack import IngestStack, ingest_settings_for

ADMIN = ("admin", "admin-password-1")
TOKEN_SECRET = "token-secret-0123456789"
PII_SECRET = "test-secret-0123456789"  # ingest_settings_for's, so pseudonyms match ingest's
SIGNING_SECRET = "review-signing-secret-0123"


class Instance:
    def __init__(self, settings: FeedbackSettings, build_tasks: bool, session: Session | None = None):
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # Its own Session unless one is given (a test's seam), like a process.
        self.service = FeedbackService(settings, session, build_tasks=build_tasks)
        self.lifecycle = Lifecycle([self.service])
        self.run(self.lifecycle.start())
        self.app = service_app(self.service, lifecycle=self.lifecycle)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.server_task = asyncio.run_coroutine_threadsafe(self.server.serve(), self.loop)
        deadline = time.monotonic() + 20
        while not self.server.started:
            if self.server_task.done():
                self.server_task.result()
            assert time.monotonic() < deadline, "feedback HTTP server did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.server.should_exit = True
        self.server_task.result(30)
        self.run(self.lifecycle.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class LoggedIn(httpx.Client):
    """A client already used for the login request, still usable in a `with` block."""

    def __enter__(self):
        return self


class FeedbackStack:
    def __init__(self, common, instances: int = 1, **extra):
        self.ingest = IngestStack(ingest_settings_for(common)).start()
        # Tests load tasks in bulk through one key: its rate limit is raised (the limit's own
        # tests set theirs).
        values = {**common.model_dump(), "feedback_token_secret": TOKEN_SECRET, "review_admin_user": ADMIN[0],
                  "review_admin_password": ADMIN[1], "review_audit_rate": 0.0, "pii_secret": PII_SECRET,
                  "review_signing_secret": SIGNING_SECRET, "feedback_key_rate_per_s": 10_000.0,
                  "feedback_key_burst": 10_000, **extra}
        self.settings = FeedbackSettings(**values)
        self.instances = [Instance(self.settings, build_tasks=i == 0) for i in range(instances)]

    @property
    def url(self) -> str:
        return self.instances[0].url

    @property
    def client(self):
        return self.ingest.client

    def close(self) -> None:
        try:
            for inst in self.instances:
                inst.close()
        finally:
            self.ingest.close()

    def key_http(self, key: str | None = None, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.ingest.api_key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def add_calls(self, app_id: str, n: int, *, model: str = "m1", output: str = "an answer") -> list[uuid.UUID]:
        calls = [
            LlmCall(event_id=ids.uuid7(), ts=datetime.now(UTC), app_id=app_id, model=model,
                    input=[Message(role="user", content=f"question {i} of {app_id}")], output=f"{output} {i}")
            for i in range(n)
        ]
        with self.ingest.http() as http:
            for start in range(0, n, 500):
                body = [c.model_dump(mode="json", by_alias=True) for c in calls[start:start + 500]]
                r = http.post("/v1/events", json={"events": body})
                assert r.status_code == 200, r.text
        assert self.ingest.wait_for_calls(app_id, n) == n
        return [c.event_id for c in calls]

    def queue_tasks(self, app_id: str, event_ids: list[uuid.UUID], kind: str = "thumbs_down") -> None:
        """Queue calls through the real path: an end-user thumbs down each, via the API."""
        with self.key_http() as http:
            for e in event_ids:
                r = http.post("/v1/feedback", json={"event_id": str(e), "thumbs": -1, "user_id": "u-queue"})
                assert r.status_code == 200, r.text
        self.wait_rows("SELECT uniqExact(event_id) FROM review_tasks WHERE kind = 'thumbs_down' AND "
                       "event_id IN {ids:Array(UUID)}", len(event_ids), ids=[str(e) for e in event_ids])

    def wait_rows(self, sql: str, expected: Any, timeout: float = 60, **params) -> Any:
        value = self.ingest.wait_for(sql, expected, timeout, **params)
        assert value == expected, f"{sql}: {value} != {expected}"
        return value

    def login(self, username: str, password: str, base_url: str | None = None) -> httpx.Client:
        http = LoggedIn(base_url=base_url or self.url, timeout=60)
        r = http.post("/review/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf"]
        return http

    def add_reviewer(self, username: str, apps: list[str], role: str = "reviewer", password: str = "password-123"):
        with self.login(*ADMIN) as admin:
            r = admin.post("/review/api/admin/reviewers",
                           json={"username": username, "password": password, "role": role, "apps": apps})
            assert r.status_code == 201, r.text
        return username, password


@pytest.fixture
def feedback_stack(settings):
    """Ingest + sink + one feedback instance on `broker` (both kinds)."""
    stack = FeedbackStack(settings)
    yield stack
    stack.close()


@pytest.fixture
def kafka_feedback_stack(kafka_broker, settings_for):
    stack = FeedbackStack(settings_for(kafka_broker))
    yield stack
    stack.close()


@pytest.fixture
def feedback_pair(kafka_broker, settings_for):
    """Two feedback instances (own loops, ports, clients, claim readers) on Apache Kafka."""
    stack = FeedbackStack(settings_for(kafka_broker), instances=2)
    yield stack
    stack.close()


