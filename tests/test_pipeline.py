"""The event pipeline end to end: HTTP intake -> Kafka -> sink -> ClickHouse, on real
brokers (Apache Kafka and Tansu) and the real ClickHouse engine (chdb)."""

from __future__ import annotations

import gzip

import orjson

from lookout.testing.waiting import wait_until
from tests.events import llm_call


def post_in_batches(stack, events, batch=500):
    with stack.http() as http:
        for start in range(0, len(events), batch):
            body = gzip.compress(orjson.dumps({"events": events[start : start + batch]}))
            r = http.post(
                "/v1/events", content=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"accepted": len(events[start : start + batch]), "rejected": []}


def test_ten_thousand_events_are_stored_exactly_once_even_when_posted_twice(ingest_stack):
    events = [llm_call("shop", i=i) for i in range(10_000)]
    post_in_batches(ingest_stack, events)
    assert ingest_stack.wait_for_calls("shop", 10_000, timeout=120) == 10_000

    post_in_batches(ingest_stack, events[:2_000])  # a client retrying batches it already sent
    # the replays reached the sink...
    wait_until("the replays reached the sink", lambda: ingest_stack.sink.stats.consumed >= 12_000,
               timeout=60, every=0.1)
    assert ingest_stack.count_calls("shop") == 10_000
    assert ingest_stack.duplicate_rows("shop") == 0  # ...and are skipped, not stored twice
    # The per-minute rollup counts each call once too.
    rolled = ingest_stack.client.query("SELECT countMerge(calls) FROM calls_1m WHERE app_id = 'shop'").result_rows
    assert rolled[0][0] == 10_000


def test_a_stored_call_reads_back_with_everything_sent(ingest_stack):
    event = llm_call("shop", i=1, user_id="alice@example.com", reference="expected", logprobs=[-0.1, -0.2])
    post_in_batches(ingest_stack, [event])
    assert ingest_stack.wait_for_calls("shop", 1) == 1
    with ingest_stack.http() as http:
        call = http.get(f"/v1/calls/{event['event_id']}").json()
        listed = http.get("/v1/calls", params={"app_id": "shop", "limit": 5}).json()["calls"]
    assert call["model"] == "gpt-4o-mini" and call["tokens_in"] == event["tokens_in"]
    assert call["input"][1]["content"] == event["input"][1]["content"]
    assert call["output"] == event["output"]
    assert call["user_id"].startswith("u_") and "alice" not in call["user_id"]  # pseudonymised
    assert call["cost_usd"] > 0 and call["cost_source"] == "price_table"  # priced by ingest
    assert call["scores"] == [] and call["feedback"] == []
    assert [c["event_id"] for c in listed] == [event["event_id"]]
