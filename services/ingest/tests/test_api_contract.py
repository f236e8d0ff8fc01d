"""The HTTP contract of ingest: bad input and bad credentials get a 4xx naming what is
wrong, never a 5xx; good events next to bad ones are still accepted."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    from lookout.core.settings import CommonSettings

    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="contract.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="contract", kafka_topic_partitions=1,
    )
    s = IngestStack(ingest_settings_for(common).model_copy(update={"max_batch_events": 100,
                                                                   "max_body_bytes": 256 * 1024})).start()
    yield s
    s.close()


def post(stack, body: bytes, key: str | None = "default", **headers) -> httpx.Response:
    h = {"Content-Type": "application/json", **headers}
    if key is not None:
        h["Authorization"] = f"Bearer {stack.api_key if key == 'default' else key}"
    return httpx.post(f"{stack.url}/v1/events", content=body, headers=h, timeout=30)


def events(*items) -> bytes:
    return orjson.dumps({"events": list(items)})


def test_a_mixed_batch_accepts_the_good_and_names_each_bad_field(stack):
    good = llm_call("contract")
    r = post(stack, events(good, {**llm_call("contract"), "latency_ms": "slow"}, {"app_id": "contract"}))
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["field"]) for x in body["rejected"]] == [(1, "latency_ms"), (2, "event_id")]


def test_an_identifier_that_could_break_out_of_panel_sql_is_rejected_naming_the_field(stack):
    hostile = {**llm_call("contract"), "model": "x' OR '1'='1"}
    r = post(stack, events(llm_call("contract"), hostile))
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["field"]) for x in body["rejected"]] == [(1, "model")]
    assert "may hold only ASCII letters, digits and . _ : / @ + -" in body["rejected"][0]["message"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [
        (b"{]", {}, 400, None),
        (b'{"events": 3}', {}, 422, "events"),
        (b'{"events": []}', {}, 422, "events"),
        (events(*[llm_call("contract", i=i) for i in range(101)]), {}, 413, "events"),
        (b"x" * (300 * 1024), {}, 413, None),
        (events(llm_call("contract")), {"Content-Type": "text/plain"}, 415, None),
        (events(llm_call("contract")), {"Content-Encoding": "gzip"}, 400, None),
        (events(llm_call("contract")), {"Content-Encoding": "zstd"}, 415, None),
    ],
)
def test_bad_requests_get_4xx_with_a_clear_message(stack, body, headers, status, field):
    r = post(stack, body, **headers)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and error["message"]
    assert error.get("field") == field


def test_a_gzip_bomb_is_refused_as_too_large(stack):
    bomb = gzip.compress(b'{"events": [' + b" " * (5 << 20) + b"]}")
    assert post(stack, bomb, **{"Content-Encoding": "gzip"}).status_code == 413


def test_credentials_missing_unknown_wrong_scope_or_app(stack):
    body = events(llm_call("contract"))
    assert post(stack, body, key=None).status_code == 401
    assert post(stack, body, key="lk_nope_nope").status_code == 401
    basic = httpx.post(f"{stack.url}/v1/events", content=body,
                       headers={"Content-Type": "application/json", "Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]
    _, read_only = stack.keys.create("contract", ["read"])
    r = post(stack, body, key=read_only)
    assert r.status_code == 403 and "ingest" in r.json()["error"]["message"]
    _, other_app = stack.keys.create("other-app", ["ingest"])
    r = post(stack, body, key=other_app)
    assert r.status_code == 403 and r.json()["error"]["field"] == "app_id"
    _, own = stack.keys.create("contract", ["ingest"])
    assert post(stack, body, key=own).status_code == 200


def test_reads_need_the_read_scope_and_stay_within_the_keys_app(stack):
    event = llm_call("contract")
    assert post(stack, events(event)).status_code == 200
    assert stack.wait_for_calls("contract", 1) >= 1
    _, ingest_only = stack.keys.create("contract", ["ingest"])
    _, other_reader = stack.keys.create("other-app", ["read"])
    url = f"{stack.url}/v1/calls/{event['event_id']}"
    assert httpx.get(url, headers={"Authorization": f"Bearer {ingest_only}"}).status_code == 403
    assert httpx.get(url, headers={"Authorization": f"Bearer {other_reader}"}).status_code == 404
    r = httpx.get(f"{stack.url}/v1/calls", params={"app_id": "contract"},
                  headers={"Authorization": f"Bearer {other_reader}"})
    assert r.status_code == 403
    r = httpx.get(f"{stack.url}/v1/calls", params={"limit": 0}, headers={"Authorization": f"Bearer {stack.api_key}"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
    r = httpx.get(f"{stack.url}/v1/calls/not-a-uuid", headers={"Authorization": f"Bearer {stack.api_key}"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "event_id"


def test_ops_endpoints(stack):
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{stack.url}/readyz").json()["ready"] is True
    assert "lookout_ingest_accepted_events_total" in httpx.get(f"{stack.url}/metrics").text


def test_every_ingest_route_answers_its_errors_in_the_one_envelope(stack):
    from lookout.testing.envelope import assert_error_envelopes

    _, weak = stack.keys.create("other-app", ["ingest"], name="weak")
    with httpx.Client(base_url=stack.url, timeout=30) as live:
        assert_error_envelopes(stack.app(), client=live, strong_key=stack.api_key, weak_key=weak)
