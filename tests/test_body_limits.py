"""Every service's HTTP app refuses an oversized body with 413 before authentication or
parsing, declared or chunked: the apps exactly as their factories build them, on a real
server. The services behind them are not started: a refused body never reaches them."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from lookout.testing.http import serve

LIMIT = 64 * 1024  # LOOKOUT_MAX_REQUEST_BODY_BYTES for these tests
INGEST_LIMIT = 512 * 1024  # LOOKOUT_MAX_BODY_BYTES
COMMON = {"max_request_body_bytes": LIMIT, "clickhouse_dsn": "http://127.0.0.1:1"}  # never connected


def ingest_app():
    from lookout.core.serving import Lifecycle, service_app
    from lookout.ingest.service import IngestService
    from lookout.ingest.settings import IngestSettings

    settings = IngestSettings(**COMMON, max_body_bytes=INGEST_LIMIT, pii_secret="body-limit-secret-0123")
    service = IngestService(settings)
    # The app as it serves once started (past the start gate); the service itself is not
    # started: a refused body never reaches it.
    life = Lifecycle([service])
    life.running = True
    return service_app(service, lifecycle=life)


def sink_app():
    from lookout.core.serving import service_app
    from lookout.sink.service import SinkService
    from lookout.sink.settings import SinkSettings

    return service_app(SinkService(SinkSettings(**COMMON)))


def _open(app):
    """A service_app with its routes open (the start gate lifted) on a service that is never
    started: what the routes sit behind once it runs."""
    app.state.lifecycle.running = True
    return app


def feedback_app():
    from lookout.core.serving import service_app
    from lookout.feedback.app import FeedbackService
    from lookout.feedback.settings import FeedbackSettings

    return _open(service_app(FeedbackService(FeedbackSettings(**COMMON))))


def drift_app():
    from lookout.core.serving import service_app
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings

    app = service_app(DriftService(DriftSettings(**COMMON)))
    app.state.lifecycle.running = True  # never started: its routes as they sit once it runs
    return app


def judge_app():
    from lookout.core.serving import service_app
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings

    app = service_app(JudgeService(JudgeSettings(**COMMON)))
    app.state.lifecycle.running = True  # never started: its routes as they sit once it runs
    return app


def retrain_app():
    from lookout.core.serving import service_app
    from lookout.retrain_trigger.service import RetrainService
    from lookout.retrain_trigger.settings import RetrainSettings

    return _open(service_app(RetrainService(RetrainSettings(**COMMON))))


RUN = "0190a0a0-0000-7000-8000-000000000000"
# Each service's routes that take the largest bodies, and the limit each must hold to.
ROUTES = [
    (ingest_app, "POST", "/v1/events", INGEST_LIMIT),
    (ingest_app, "POST", "/v1/traces", INGEST_LIMIT),
    (ingest_app, "GET", "/v1/calls", LIMIT),
    (sink_app, "GET", "/readyz", LIMIT),
    (feedback_app, "POST", "/review/api/login", LIMIT),
    (feedback_app, "POST", "/v1/feedback", LIMIT),
    (feedback_app, "POST", "/v1/feedback/token", LIMIT),
    (feedback_app, "POST", "/v1/datasets", LIMIT),
    (feedback_app, "POST", f"/review/api/admin/retrain/{RUN}/approve", LIMIT),
    (feedback_app, "PATCH", "/review/api/admin/settings", LIMIT),
    (drift_app, "POST", "/v1/drift/reference", LIMIT),
    (judge_app, "GET", "/v1/judge/agreement/helpfulness", LIMIT),
    (retrain_app, "POST", f"/v1/retrain/{RUN}/approve", LIMIT),
    (retrain_app, "POST", f"/v1/retrain/{RUN}/reject", LIMIT),
]


def chunks(total: int, size: int = 16 * 1024) -> Iterator[bytes]:
    while total > 0:
        yield b"{" * min(size, total)
        total -= size


@pytest.fixture(scope="module")
def servers():
    """One server per app factory, started on first use."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        urls: dict = {}

        def url_of(factory) -> str:
            if factory not in urls:
                urls[factory] = stack.enter_context(serve(factory()))
            return urls[factory]

        yield url_of


@pytest.mark.parametrize(("factory", "method", "path", "limit"), ROUTES,
                         ids=[f"{f.__name__}:{m} {p}" for f, m, p, _ in ROUTES])
def test_an_oversized_body_gets_413_before_auth_declared_or_chunked(servers, factory, method, path, limit):
    url = servers(factory) + path
    declared = httpx.request(method, url, content=b"{" * (limit + 1), timeout=30)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"] == {
        "status": 413, "message": f"request body of {limit + 1} bytes exceeds the limit of {limit} bytes for "
                                  f"{method} {path}"}
    streamed = httpx.request(method, url, content=chunks(limit + 1), timeout=30)
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["error"]["message"] == f"request body exceeds the limit of {limit} bytes for {method} {path}"


def test_ingest_takes_bodies_over_the_default_up_to_its_own_limit(servers):
    url = servers(ingest_app)
    # Past the body limit, the request reaches the route, which asks for a key first.
    r = httpx.post(f"{url}/v1/events", content=chunks(LIMIT * 4), headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    r = httpx.post(f"{url}/v1/events/", content=chunks(LIMIT * 4), headers={"Content-Type": "application/json"})
    assert r.status_code == 413  # any other path of the app keeps the default limit
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
