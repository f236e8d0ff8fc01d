"""Hostile clients against ingest and the sink: two apps choosing the same event id, span
floods over OTLP, list reads that would build gigabyte responses, non-ASCII credentials.
Each attack fails cleanly (a 4xx naming the limit or field, or the rows kept apart) and
loses nothing else; ingest + sink run on a real broker and chdb."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lookout.core import topics
from lookout.core.events import Score
from lookout.core.settings import CommonSettings
from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call

MAX_SPANS = 20
PAGE_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="hostile.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="hostile", kafka_topic_partitions=1,
    )
    settings = ingest_settings_for(common).model_copy(
        update={"max_spans_per_request": MAX_SPANS, "max_response_bytes": PAGE_BYTES, "sink_batch_ms": 300}
    )
    s = IngestStack(settings).start()
    yield s
    s.close()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def post_events(stack, key: str, *events) -> httpx.Response:
    return httpx.post(f"{stack.url}/v1/events", json={"events": list(events)}, headers=bearer(key), timeout=30)


def wait_rows(stack, sql: str, expected, **params):
    value = stack.wait_for(sql, expected, **params)
    assert value == expected, f"{sql}: {value} != {expected}"


def dead_letters(stack) -> int:
    return stack.client.query("SELECT count() FROM dead_letters").result_rows[0][0]


# -- item 5: one event id, two apps -------------------------------------------------------------


def test_two_apps_posting_the_same_event_id_each_keep_their_call_and_read_only_their_own(stack):
    _, key_a = stack.keys.create("app-a", ["ingest", "read"])
    _, key_b = stack.keys.create("app-b", ["ingest", "read"])
    shared = str(uuid.uuid4())
    call_a = llm_call("app-a", event_id=shared, output="app a's answer", model_version="a-1")
    call_b = llm_call("app-b", event_id=shared, output="app b's answer", model_version="b-7")
    assert post_events(stack, key_a, call_a).json()["accepted"] == 1
    assert post_events(stack, key_b, call_b).json()["accepted"] == 1  # a moment later, same id
    # And both in one request (one sink batch) by a key for every app.
    in_batch = str(uuid.uuid4())
    r = post_events(stack, stack.api_key, llm_call("app-a", event_id=in_batch), llm_call("app-b", event_id=in_batch))
    assert r.json()["accepted"] == 2
    count = "SELECT count() FROM llm_calls WHERE event_id = {id:UUID}"
    wait_rows(stack, count, 2, id=shared)
    wait_rows(stack, count, 2, id=in_batch)
    assert dead_letters(stack) == 0  # stored apart, never dead-lettered nor dropped

    a = httpx.get(f"{stack.url}/v1/calls/{shared}", headers=bearer(key_a)).json()
    b = httpx.get(f"{stack.url}/v1/calls/{shared}", headers=bearer(key_b)).json()
    assert (a["app_id"], a["output"]) == ("app-a", "app a's answer")
    assert (b["app_id"], b["output"]) == ("app-b", "app b's answer")
    r = httpx.get(f"{stack.url}/v1/calls/{shared}", params={"app_id": "app-b"}, headers=bearer(key_a))
    assert r.status_code == 403 and r.json()["error"]["field"] == "app_id"

    # A key for every app must say which app's call it means.
    r = httpx.get(f"{stack.url}/v1/calls/{shared}", headers=bearer(stack.api_key))
    assert r.status_code == 409
    assert r.json()["error"]["field"] == "app_id" and "app-a, app-b" in r.json()["error"]["message"]
    r = httpx.get(f"{stack.url}/v1/calls/{shared}", params={"app_id": "app-b"}, headers=bearer(stack.api_key))
    assert r.json()["output"] == "app b's answer"
    r = httpx.get(f"{stack.url}/v1/calls/{uuid.uuid4()}", headers=bearer(stack.api_key))
    assert r.status_code == 404


def test_a_replay_within_one_app_is_still_skipped(stack):
    _, key = stack.keys.create("app-replay", ["ingest"])
    event = llm_call("app-replay")
    assert post_events(stack, key, event).status_code == 200
    assert stack.wait_for_calls("app-replay", 1) == 1
    consumed = stack.sink.stats.consumed
    assert post_events(stack, key, event, event).status_code == 200  # re-posted, and twice in one batch
    deadline = time.monotonic() + 30
    while stack.sink.stats.consumed < consumed + 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert stack.duplicate_rows("app-replay") == 0


def test_a_score_without_its_calls_version_copies_it_from_its_own_apps_call(stack):
    shared = str(uuid.uuid4())
    _, key = stack.keys.create("*", ["ingest"])
    r = post_events(stack, key, llm_call("app-c", event_id=shared, model_version="c-1", environment="staging"),
                    llm_call("app-d", event_id=shared, model_version="d-9", environment="production"))
    assert r.json()["accepted"] == 2
    wait_rows(stack, "SELECT count() FROM llm_calls WHERE event_id = {id:UUID}", 2, id=shared)
    score = Score(score_id=uuid.uuid4(), event_id=uuid.UUID(shared), ts=datetime.now(UTC), app_id="app-d",
                  model="gpt-4o-mini", name="helpfulness", value=0.5, source="human", evaluator="reviewer")
    producer = stack.service.producer
    stack._run(producer.send_and_wait(topics.resolve("hostile.", topics.SCORES), score.to_bytes()))
    wait_rows(stack, "SELECT count() FROM scores WHERE event_id = {id:UUID}", 1, id=shared)
    stored = stack.client.query("SELECT app_id, model_version, environment FROM scores WHERE event_id = {id:UUID}",
                                parameters={"id": shared}).result_rows
    assert stored == [("app-d", "d-9", "production")]  # app-d's call, not app-c's
    with httpx.Client(base_url=stack.url, headers=bearer(stack.api_key)) as http:
        assert http.get(f"/v1/calls/{shared}", params={"app_id": "app-c"}).json()["scores"] == []
        assert len(http.get(f"/v1/calls/{shared}", params={"app_id": "app-d"}).json()["scores"]) == 1


# -- item 11: span floods and huge list responses -----------------------------------------------


def spans_export(n: int) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "span-flood"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("lookout.tests")
    for i in range(n):
        with tracer.start_as_current_span(f"chat {i}", attributes={"gen_ai.operation.name": "chat",
                                                                    "gen_ai.request.model": "gpt-4o-mini"}):
            pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    provider.shutdown()
    return body


def test_an_otlp_request_over_the_span_limit_is_refused_before_conversion(stack):
    headers = {**bearer(stack.api_key), "Content-Type": "application/x-protobuf"}
    r = httpx.post(f"{stack.url}/v1/traces", content=spans_export(MAX_SPANS + 1), headers=headers)
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert f"{MAX_SPANS + 1} spans" in message and "LOOKOUT_MAX_SPANS_PER_REQUEST" in message
    assert stack.wait_for_calls("span-flood", 1, timeout=2) == 0  # nothing of it was taken
    assert httpx.post(f"{stack.url}/v1/traces", content=spans_export(MAX_SPANS), headers=headers).status_code == 200
    assert stack.wait_for_calls("span-flood", MAX_SPANS) == MAX_SPANS


def test_a_list_of_large_calls_stops_at_the_byte_budget_and_continues_by_cursor(stack):
    _, key = stack.keys.create("app-big", ["ingest", "read"])
    now = datetime.now(UTC)
    big = [llm_call("app-big", i=i, ts=(now - timedelta(seconds=i)).isoformat(),
                    output=f"answer {i} " + "long text " * 2_000) for i in range(12)]  # ~20 KB each
    assert post_events(stack, key, *big).json()["accepted"] == 12
    assert stack.wait_for_calls("app-big", 12) == 12

    seen, pages, cursor = [], 0, None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = httpx.get(f"{stack.url}/v1/calls", params=params, headers=bearer(key))
        assert r.status_code == 200, r.text
        assert len(r.content) < PAGE_BYTES * 1.5  # bounded by bytes, not only by count
        page = r.json()
        pages += 1
        seen += [c["event_id"] for c in page["calls"]]
        cursor = page["next"]
        if cursor is None:
            assert page["truncated"] is False
            break
        assert page["truncated"] is True
    newest_first = [e["event_id"] for e in big]
    assert seen == newest_first  # every call once, in order, over several pages
    assert pages >= 3

    r = httpx.get(f"{stack.url}/v1/calls", params={"limit": 5}, headers=bearer(key)).json()
    assert len(r["calls"]) <= 5 and r["next"] is not None  # a count-cut page continues too


def test_a_cursor_that_was_not_issued_is_a_422_naming_it(stack):
    for bad in ["nope", "eyJ0cyI6IDF9", "x" * 1001]:
        r = httpx.get(f"{stack.url}/v1/calls", params={"cursor": bad}, headers=bearer(stack.api_key))
        assert r.status_code == 422 and r.json()["error"]["field"] == "cursor", r.text


# -- item 13: non-ASCII credentials ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["Bearer lk_\xe9\xe9\xe9", "Bearer \xff" * 3, "\xe9"])
def test_a_non_ascii_authorization_header_is_a_401_not_a_500(stack, value):
    for method, path in [("POST", "/v1/events"), ("POST", "/v1/traces"), ("GET", "/v1/calls"),
                         ("GET", f"/v1/calls/{uuid.uuid4()}")]:
        r = httpx.request(method, f"{stack.url}{path}", headers=[(b"Authorization", value.encode("latin-1"))],
                          content=b"{}")
        assert r.status_code == 401, (path, r.text)
