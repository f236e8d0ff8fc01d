"""The one HTTP edge: Bearer keys as a dependency, scopes and apps, every error in the
envelope, and the checker that will hold every service to it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from lookout.core import api_errors
from lookout.core.api_errors import (
    AUTH_OFF_KEY,
    ApiError,
    api_key_dependency,
    error_router,
    install_error_handlers,
    require,
    scope_dependency,
)
from lookout.core.auth import ApiKey, ApiKeyStore, Forbidden
from lookout.core.serving import Lifecycle, service_app
from lookout.testing.envelope import assert_error_envelopes, check_error_envelopes


class Body(BaseModel):
    app_id: str = Field(pattern=r"^[a-z]+$")
    text: str = Field(max_length=10)


class Notes:
    """A service in the shape, with the edge's parts: error_router and the dependencies."""

    name = "notes"

    def __init__(self, keys: ApiKeyStore | None):
        self.keys = keys
        self.notes: dict[uuid.UUID, str] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def checks(self):
        return {}

    def routers(self):
        router = error_router()
        reader = scope_dependency(lambda: self.keys, "read")
        key = api_key_dependency(lambda: self.keys)

        @router.get("/v1/notes/{note_id}")
        async def get_note(note_id: uuid.UUID, limit: Annotated[int, Query(ge=1)] = 5,
                           k: ApiKey = Depends(reader)) -> dict:
            if note_id not in self.notes:
                raise HTTPException(404, f"no note {note_id}")  # HTTPException too: the route answers the envelope
            return {"app_id": self.notes[note_id]}

        @router.post("/v1/notes")
        async def post_note(body: Body, k: ApiKey = Depends(key)) -> dict:
            require(k, "feedback", body.app_id)
            note_id = uuid.uuid4()
            self.notes[note_id] = body.app_id
            return {"note_id": str(note_id)}

        @router.post("/v1/notes/{note_id}/forbidden")
        async def forbidden(note_id: uuid.UUID, k: ApiKey = Depends(key)) -> dict:
            raise Forbidden("auth.authorize's errors are answered in the envelope too")

        return [router]


@pytest.fixture
def keys(ch) -> tuple[ApiKeyStore, str, str]:
    store = ApiKeyStore(ch)
    _, strong = store.create("*", ["read", "feedback", "admin"], name="strong")
    _, weak = store.create("other", ["ingest"], name="weak")
    return store, strong, weak


def started(app: FastAPI) -> FastAPI:
    app.state.lifecycle.running = True  # the services above need no start
    return app


def test_a_service_built_on_the_edge_answers_every_error_in_the_envelope(keys):
    store, strong, weak = keys
    app = started(service_app(Notes(store)))
    assert_error_envelopes(app, strong_key=strong, weak_key=weak)


def test_the_checker_fails_a_router_that_answers_detail_like_drift_and_retrain_do_today(keys):
    store, strong, weak = keys
    router = APIRouter()

    @router.get("/v1/legacy/{item_id}")
    async def legacy(item_id: uuid.UUID, authorization: Annotated[str | None, Header()] = None) -> dict:
        token = authorization[7:] if authorization and authorization.lower().startswith("bearer ") else None
        if not token or store.verify(token) is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(404, f"no item {item_id}")

    app = FastAPI()
    app.include_router(router)
    report = check_error_envelopes(app, strong_key=strong, weak_key=weak)
    assert report.failures and all("not the envelope" in f for f in report.failures)
    assert any("'detail'" in f for f in report.failures)
    with pytest.raises(AssertionError, match="errors outside the envelope"):
        assert_error_envelopes(app, strong_key=strong, weak_key=weak)


def test_the_checker_fails_when_it_reached_no_error_of_a_kind(keys):
    store, strong, _ = keys
    app = started(service_app(Notes(store)))
    with pytest.raises(AssertionError, match=r"no \[418\] answer was reached"):
        assert_error_envelopes(app, expect=(401, 418), strong_key=strong)


def test_error_router_keeps_the_envelope_in_an_app_without_handlers(keys):
    """The embedded stack mounts routers in its own app; their answers must not change."""
    store, strong, _ = keys
    app = FastAPI()
    for router in Notes(store).routers():
        app.include_router(router)
    http = TestClient(app)
    bearer = {"Authorization": f"Bearer {strong}"}
    assert http.get(f"/v1/notes/{uuid.uuid4()}").json()["error"]["status"] == 401
    bad = http.post("/v1/notes", json={"app_id": "UPPER", "text": "x"}, headers=bearer)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "app_id"
    missing = http.get(f"/v1/notes/{uuid.uuid4()}", headers=bearer)
    assert missing.status_code == 404 and missing.json()["error"]["message"].startswith("no note")
    refused = http.post(f"/v1/notes/{uuid.uuid4()}/forbidden", headers=bearer)
    assert refused.status_code == 403 and "envelope too" in refused.json()["error"]["message"]


def test_scopes_and_app_bindings_are_checked_with_messages_that_say_what_is_missing(ch):
    store = ApiKeyStore(ch)
    _, bound = store.create("app-a", ["feedback"], name="bound")
    app = started(service_app(Notes(store)))
    http = TestClient(app)
    auth = {"Authorization": f"Bearer {bound}"}
    other = http.post("/v1/notes", json={"app_id": "other", "text": "x"}, headers=auth)
    assert other.status_code == 403
    assert other.json()["error"] == {"status": 403, "message": "this API key is bound to app 'app-a', not 'other'",
                                     "field": "app_id"}
    no_read = http.get(f"/v1/notes/{uuid.uuid4()}", headers=auth)
    assert no_read.json()["error"]["message"] == "this API key lacks the 'read' scope"


def test_a_key_source_that_is_not_ready_answers_503_not_500():
    app = started(service_app(Notes(None)))
    response = TestClient(app).get(f"/v1/notes/{uuid.uuid4()}", headers={"Authorization": "Bearer x"})
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert response.json()["error"]["message"] == "the service is starting; retry shortly"


def test_a_part_the_service_has_not_set_yet_answers_503_in_a_router_mounted_without_the_gate():
    """What start() sets (a store, a producer) is reached through started(): a 503 that says
    so while it is missing, the part itself once it is there."""
    parts: dict[str, str | None] = {"store": None}
    router = error_router()

    @router.get("/v1/part")
    async def part() -> dict:
        return {"store": api_errors.started(parts["store"])}

    app = FastAPI()
    app.include_router(router)
    http = TestClient(app)
    early = http.get("/v1/part")
    assert early.status_code == 503 and early.headers["retry-after"] == "1"
    assert early.json()["error"]["message"] == "the service is starting; retry shortly"
    parts["store"] = "ready"
    assert http.get("/v1/part").json() == {"store": "ready"}


async def test_with_auth_off_every_request_acts_with_the_open_key():
    dependency = api_key_dependency(lambda: None, required=False)
    key = await dependency()
    assert key is AUTH_OFF_KEY and key.allows("admin", "any-app")
    require(key, "admin", "any-app")
    with pytest.raises(ApiError):
        require(ApiKey("k", "a", frozenset({"read"}), "", AUTH_OFF_KEY.created_at), "admin")


def test_routes_answer_503_until_the_services_started_but_ops_routes_answer_at_once():
    app = service_app(Notes(None))
    http = TestClient(app)
    early = http.post("/v1/notes", json={})
    assert early.status_code == 503 and early.json()["error"]["message"] == "not serving yet: not started"
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.json()["problems"] == {"service": "not started"}


def test_unknown_paths_and_methods_get_the_envelope_from_install_error_handlers():
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/x")
    async def x() -> dict:
        return {}

    http = TestClient(app)
    assert http.get("/nowhere").json() == {"error": {"status": 404, "message": "Not Found"}}
    assert http.delete("/x").json() == {"error": {"status": 405, "message": "Method Not Allowed"}}


class Part:
    """A service that records its start and stop in `events`; a start takes `wait_s`."""

    def __init__(self, events: list[str], name: str, fail: bool = False, wait_s: float = 0.0):
        self.events, self.name, self.fail, self.wait_s = events, name, fail, wait_s

    async def start(self) -> None:
        self.events.append(f"start {self.name}")
        await asyncio.sleep(self.wait_s)
        if self.fail:
            raise RuntimeError("no broker")
        self.events.append(f"started {self.name}")

    async def stop(self) -> None:
        self.events.append(f"stop {self.name}")

    def routers(self):
        return []

    def checks(self):
        return {}


async def test_lifecycle_stops_what_it_tried_in_reverse_after_a_failed_start():
    events: list[str] = []
    life = Lifecycle([Part(events, "a"), Part(events, "b", fail=True), Part(events, "c")])
    with pytest.raises(RuntimeError):
        await life.start()
    assert life.problem() == "b failed to start: RuntimeError: no broker"
    await life.stop()
    assert events == ["start a", "started a", "start b", "stop b", "stop a"]


async def test_services_started_together_wait_for_each_other_not_in_turn_and_a_failure_stops_them_all():
    events: list[str] = []
    life = Lifecycle([Part(events, n, wait_s=0.5) for n in "abc"], together=True)
    await life.start()
    # Each began before any had finished: at once, not in turn.
    assert events[:3] == ["start a", "start b", "start c"] and life.problem() is None
    await life.stop()

    events.clear()
    life = Lifecycle([Part(events, "a", wait_s=0.2), Part(events, "b", fail=True), Part(events, "c", wait_s=0.2)],
                     together=True)
    with pytest.raises(RuntimeError, match="no broker"):
        await life.start()
    assert life.problem() == "b failed to start: RuntimeError: no broker"
    await life.stop()
    assert events[-3:] == ["stop c", "stop b", "stop a"]
