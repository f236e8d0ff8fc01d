"""Fuzz with schemathesis over the drift service's OpenAPI: every operation, positive and
negative data generated from its schema, as an anonymous caller, an admin key for every
app and a read key bound to one app, against the real service (Tansu, chdb, MiniLM) with a
stream in it. No 5xx. On the same served app: every 4xx in the one error envelope."""

from __future__ import annotations

import httpx
import pytest
from test_service import Traffic, drift_settings, produce

from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.drift import DriftService
from lookout.testing.envelope import assert_error_envelopes
from lookout.testing.fuzz import assert_no_5xx, fuzz_settings, serving

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(tansu_broker, chdb_path, encoder, tokenizer):
    common = fuzz_settings(tansu_broker, chdb_path, "driftfuzz")
    settings = drift_settings(common, drift_auth=True)
    session = Session.connect(settings, migrate=True)
    keys = session.run(ApiKeyStore)
    _, admin = keys.create("*", ["read", "admin"], name="fuzz admin")
    _, reader = keys.create("shop", ["read"], name="fuzz reader")
    _, ingest_only = keys.create("shop", ["ingest"], name="fuzz ingest-only")
    service = DriftService(settings, session=session, encoder=encoder, tokenizer=tokenizer)
    with serving(service) as server:
        server.run(produce(settings, Traffic().calls("cooking", 70)))  # one stream, with its reference
        yield server, {"admin": admin, "reader": reader, "ingest_only": ingest_only}, server.app
    session.command("DROP DATABASE IF EXISTS driftfuzz")
    session.close()


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, keys, _ = served
    seen = assert_no_5xx(server.url, {"admin": keys["admin"], "reader": keys["reader"]})
    # The cases got past validation and auth into the handlers, not only into 4xx.
    for op in ("admin GET /v1/drift", "admin POST /v1/drift/reference", "reader GET /v1/drift/streams"):
        assert seen[op][200] > 0, (op, seen[op])


def test_times_clickhouse_cannot_store_are_a_422_naming_the_field(served):
    server, keys, _ = served
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30)
    r = http.get("/v1/drift", params={"since": "0224-05-01T00:00:00Z"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "since", r.text
    assert "1900-01-01" in r.json()["error"]["message"]
    for field, value in (("from", "1000-01-01T00:00:00Z"), ("to", "9999-12-31T23:59:59-12:00")):
        body = {"app_id": "shop", "model": "m1", "policy": "pinned", "from": "2024-01-01T00:00:00Z",
                "to": "2024-01-02T00:00:00Z", field: value}
        r = http.post("/v1/drift/reference", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    r = http.post("/v1/drift/reference", json={"app_id": "shop", "model": "m1", "policy": "pinned",
                                               "from": "2024-01-02T00:00:00Z", "to": "2024-01-01T00:00:00Z"})
    assert r.status_code == 422 and "'from' must not be after 'to'" in r.text
    assert http.get("/v1/drift", params={"since": "2024-01-01T00:00:00"}).status_code == 200  # no zone: UTC
    assert http.get("/healthz").status_code == 200
    http.close()


def test_a_stream_identity_no_call_could_carry_is_a_422_naming_the_field(served):
    # An uploaded reference is made of calls of the stream: a model or prompt version that
    # no LlmCall may carry was a 500 (the calls failed to build inside the handler).
    server, keys, _ = served
    http = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {keys['admin']}"}, timeout=30)
    samples = [{"prompt": "How long do I boil an egg?", "response": "Eight minutes."}]
    for field, value in (("model", "\u2fb5\x8a+"), ("model", "a--b"), ("prompt_version", "v 1")):
        body = {"app_id": "shop", "model": "m1", "policy": "pinned", "samples": samples, field: value}
        r = http.post("/v1/drift/reference", json=body)
        assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    http.close()


def test_every_error_of_the_drift_api_is_in_the_one_envelope(served):
    server, keys, app = served
    with httpx.Client(base_url=server.url, timeout=60) as http:
        # strong: every scope on every app; weak: a key without the read or admin scope.
        assert_error_envelopes(app, strong_key=keys["admin"], weak_key=keys["ingest_only"], client=http)
