"""Ingest's routes before the service has started what they use: served without
core.serving's start gate (a router mounted in another app), a request with a good key
gets 503 + Retry-After, never a 500 from a part that is not there yet."""

from __future__ import annotations

import orjson
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lookout.core.auth import ApiKeyStore
from lookout.ingest.api import IngestContext, build_router
from lookout.testing.stack import ingest_settings_for
from tests.events import llm_call


def test_a_good_request_before_the_producer_and_store_are_there_gets_503_not_500(ch, ch_settings):
    keys = ApiKeyStore(ch)
    _, secret = keys.create("unstarted", ["ingest", "read"])
    ctx = IngestContext(settings=ingest_settings_for(ch_settings), keys=keys)  # what start() fills in: absent
    app = FastAPI()
    app.include_router(build_router(ctx))
    http = TestClient(app)
    auth = {"Authorization": f"Bearer {secret}"}
    posted = http.post("/v1/events", content=orjson.dumps({"events": [llm_call("unstarted")]}),
                       headers={**auth, "Content-Type": "application/json"})
    listed = http.get("/v1/calls", headers=auth)
    for response in (posted, listed):
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.json()["error"]["message"] == "the service is starting; retry shortly"
