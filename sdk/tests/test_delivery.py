"""Lookout's delivery, against a real HTTP server speaking ingest's wire format."""

from __future__ import annotations

import gzip
import logging
import time
import uuid

import pytest

from lookout_sdk import Lookout, context


def test_log_call_returns_a_uuid7_at_once_and_the_server_gets_a_valid_event(ingest, make_client):
    client = make_client()
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "name": "ann"}]

    event_id = client.log_call(
        model="gpt-4o-mini",
        provider="openai",
        input=messages,
        output="Hello!",
        tokens_in=12,
        tokens_out=3,
        latency_ms=420.5,
        ttft_ms=80.0,
        user_id="u-1",
        session_id="s-1",
        tags=["checkout"],
        metadata={"region": "eu", "attempt": 2},
        context=["doc a", "doc b"],
        reference="Hello.",
        logprobs=[-0.1, -0.2],
        prompt_version="v3",
        model_version="gpt-4o-mini-2024-07-18",
        cost_usd=0.0001,
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
    )

    assert uuid.UUID(event_id).version == 7
    assert client.flush(5)
    (event,) = ingest.events  # the server validated it with the real llm_call/1 schema
    assert event == {
        "schema": "llm_call/1",
        "event_id": event_id,
        "ts": event["ts"],
        "app_id": "test-app",
        "environment": "production",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "model_version": "gpt-4o-mini-2024-07-18",
        "prompt_version": "v3",
        "user_id": "u-1",
        "session_id": "s-1",
        "input": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi", "name": "ann"}],
        "output": "Hello!",
        "tokens_in": 12,
        "tokens_out": 3,
        "latency_ms": 420.5,
        "ttft_ms": 80.0,
        "cost_usd": 0.0001,
        "status": "ok",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
        "tags": ["checkout"],
        "metadata": {"region": "eu", "attempt": "2"},
        "context": ["doc a", "doc b"],
        "reference": "Hello.",
        "logprobs": [-0.1, -0.2],
    }
    assert event["ts"].endswith("+00:00")
    request = ingest.event_requests()[0]
    assert request.headers["authorization"] == f"Bearer {ingest.api_key}"
    assert request.headers["content-type"] == "application/json"
    assert client.stats.sent == 1


def test_fields_left_as_none_are_not_sent_and_an_exception_makes_an_error_event(ingest, make_client):
    client = make_client()
    client.log_call(model="m", input="a bare prompt", error=TimeoutError("upstream took too long"))
    assert client.flush(5)
    (event,) = ingest.events
    assert set(event) == {"schema", "event_id", "ts", "app_id", "environment", "model", "prompt", "status", "error"}
    assert event["prompt"] == "a bare prompt"
    assert event["status"] == "error"
    assert event["error"] == "TimeoutError: upstream took too long"


def test_the_event_shows_the_call_as_it_was_even_if_the_caller_reuses_its_lists(ingest, make_client):
    client = make_client()
    messages = [{"role": "user", "content": "first"}]
    tags = ["a"]
    client.log_call(model="m", input=messages, tags=tags)
    messages.append({"role": "assistant", "content": "later"})
    tags.append("b")
    assert client.flush(5)
    assert ingest.events[0]["input"] == [{"role": "user", "content": "first"}]
    assert ingest.events[0]["tags"] == ["a"]


def test_full_batches_go_out_at_once_and_the_rest_after_the_flush_interval(ingest, make_client):
    client = make_client(batch_size=10, flush_interval=1.5)
    for i in range(25):
        client.log_call(model="m", metadata={"i": str(i)})

    assert ingest.wait_for(lambda: len(ingest.event_requests()) == 2, timeout=1.0)
    time.sleep(0.3)
    assert [len(r.body["events"]) for r in ingest.event_requests()] == [10, 10]  # size-triggered only
    assert ingest.wait_for(lambda: len(ingest.event_requests()) == 3, timeout=3.0)  # the interval
    assert [len(r.body["events"]) for r in ingest.event_requests()] == [10, 10, 5]
    assert [int(e["metadata"]["i"]) for e in ingest.events] == list(range(25))  # in order


def test_flush_sends_a_partial_batch_without_waiting_for_the_interval(ingest, make_client):
    client = make_client(batch_size=100, flush_interval=60)
    for _ in range(7):
        client.log_call(model="m")
    started = time.monotonic()
    assert client.flush(5)
    assert time.monotonic() - started < 1.0
    assert [len(r.body["events"]) for r in ingest.event_requests()] == [7]


def test_bodies_above_a_kilobyte_are_gzipped_and_small_ones_are_not(ingest, make_client):
    client = make_client()
    client.log_call(model="m", output="tiny")
    assert client.flush(5)
    for _ in range(20):
        client.log_call(model="m", output="a fairly long answer " * 20)
    assert client.flush(5)

    small, large = ingest.event_requests()
    assert "content-encoding" not in small.headers
    assert large.headers["content-encoding"] == "gzip"
    assert len(large.raw) < len(gzip.decompress(large.raw)) / 5
    assert len(large.body["events"]) == 20


def test_gzip_can_be_turned_off(ingest, make_client):
    client = make_client(gzip=False)
    for _ in range(20):
        client.log_call(model="m", output="a fairly long answer " * 20)
    assert client.flush(5)
    assert "content-encoding" not in ingest.event_requests()[0].headers


@pytest.mark.parametrize("status", [503, 429])
def test_a_retry_after_answer_is_retried_no_sooner_than_asked(ingest, make_client, status):
    ingest.reply(status, {"Retry-After": "1"}, {"detail": "busy"})
    client = make_client()
    event_id = client.log_call(model="m")

    assert client.flush(10)
    first, second = ingest.event_requests()
    assert second.at - first.at >= 1.0
    assert second.at - first.at < 1.0 + 0.05 + 0.5  # Retry-After plus at most one backoff_base of jitter
    assert ingest.ids() == [event_id]
    stats = client.stats
    assert (stats.sent, stats.retried, stats.failed) == (1, 1, 0)


def test_retries_back_off_exponentially_with_jitter_when_no_retry_after_is_given(ingest, make_client):
    ingest.reply(503, times=4)
    client = make_client(backoff_base=0.1, backoff_max=10)
    client.log_call(model="m")
    assert client.flush(10)

    requests = ingest.event_requests()
    assert len(requests) == 5
    gaps = [b.at - a.at for a, b in zip(requests, requests[1:])]
    # Full jitter: each wait is uniform in [0, 0.1 * 2**n], so never above that cap.
    for n, gap in enumerate(gaps):
        assert gap <= 0.1 * 2**n + 0.05
    assert client.stats.retried == 4
    assert client.stats.sent == 1


def test_network_errors_are_retried_until_the_server_is_back(ingest, make_client):
    client = make_client(backoff_base=0.05, backoff_max=0.2)
    client.log_call(model="m")
    assert client.flush(5)  # a pooled keep-alive connection now exists
    ingest.stop()
    ids = [client.log_call(model="m") for _ in range(30)]
    time.sleep(1.0)
    assert client.stats.retried > 0
    ingest.start()

    assert client.flush(10)
    assert set(ids) <= set(ingest.ids())
    assert client.stats.sent == 31
    assert client.stats.failed == 0


@pytest.mark.parametrize("status", [400, 404, 413, 415, 422])
def test_a_whole_request_4xx_is_not_retried_and_counted_as_failed(ingest, make_client, status, caplog):
    ingest.reply(status, body={"detail": "no"})
    client = make_client()
    for _ in range(3):
        client.log_call(model="m")
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        assert client.flush(5)
        time.sleep(0.2)
    assert len(ingest.event_requests()) == 1
    stats = client.stats
    assert (stats.sent, stats.failed, stats.retried) == (0, 3, 0)
    assert f"HTTP {status}" in caplog.text


def test_a_bad_api_key_is_not_retried_and_logged_once(ingest, make_client, caplog):
    client = make_client(api_key="wrong", batch_size=1)
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        for _ in range(3):
            client.log_call(model="m")
        assert client.flush(5)
    assert len(ingest.event_requests()) == 3  # one attempt per batch, no retries
    assert client.stats.failed == 3
    assert client.stats.retried == 0
    warnings = [r for r in caplog.records if "HTTP 401" in r.getMessage()]
    assert len(warnings) == 1


def test_events_the_server_rejects_one_by_one_are_not_retried_and_the_reason_is_logged_once(
    ingest, make_client, caplog
):
    client = make_client()
    good = client.log_call(model="m")
    client.log_call(model="m", app_id="not a valid app id")
    client.log_call(model="m", app_id="also invalid!")
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        assert client.flush(5)
        time.sleep(0.2)

    assert len(ingest.event_requests()) == 1
    assert ingest.ids() == [good]
    stats = client.stats
    assert (stats.sent, stats.failed, stats.retried) == (1, 2, 0)
    rejected = [r for r in caplog.records if "rejected an event" in r.getMessage()]
    assert len(rejected) == 1
    assert "app_id" in rejected[0].getMessage()


def test_a_full_queue_drops_new_events_counts_them_exactly_and_log_call_never_blocks(ingest, make_client):
    client = make_client(max_queue_size=100, batch_size=10)
    ingest.gate.clear()  # the server now holds every request: the sender is stuck
    first = client.log_call(model="m", metadata={"i": "first"})
    assert client.flush(timeout=0.2) is False
    assert client.stats.queued == 0  # the sender took it and waits on the server

    durations = []
    for i in range(1000):
        started = time.perf_counter()
        client.log_call(model="m", metadata={"i": str(i)})
        durations.append(time.perf_counter() - started)

    stats = client.stats
    assert stats.queued == 100
    assert stats.dropped == 900
    assert max(durations) < 0.05  # it never waits for the server (which holds requests for 30 s)

    ingest.gate.set()
    assert client.flush(10)
    kept = {e["metadata"]["i"] for e in ingest.events}
    assert kept == {"first", *map(str, range(100))}  # the oldest were kept, the newest dropped
    assert first in ingest.ids()
    stats = client.stats
    assert (stats.sent, stats.dropped, stats.failed) == (101, 900, 0)


def test_flush_gives_up_after_its_timeout_while_the_server_is_away(ingest, make_client):
    client = make_client()
    ingest.stop()
    client.log_call(model="m")
    started = time.monotonic()
    assert client.flush(timeout=0.5) is False
    assert 0.45 < time.monotonic() - started < 1.5
    ingest.start()
    assert client.flush(timeout=10)
    assert len(ingest.events) == 1


def test_without_a_spill_directory_a_batch_is_given_up_after_max_retry_time(ingest, make_client, caplog):
    ingest.stop()
    client = make_client(max_retry_time=0.5)
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        client.log_call(model="m")
        client.log_call(model="m")
        assert client.flush(5)
    stats = client.stats
    assert (stats.sent, stats.failed) == (0, 2)
    assert stats.retried >= 1
    assert "giving up on 2 events" in caplog.text


def test_feedback_goes_to_the_feedback_endpoint_after_the_events(ingest, make_client):
    client = make_client()
    event_id = client.log_call(model="m")
    assert client.feedback(event_id, thumbs=-1, comment="wrong language", user_id="u-1")
    assert client.feedback(event_id, thumbs=True)
    assert client.flush(5)

    assert ingest.feedback == [
        {"event_id": event_id, "thumbs": -1, "comment": "wrong language", "user_id": "u-1"},
        {"event_id": event_id, "thumbs": 1},
    ]
    paths = [r.path for r in ingest.requests]
    assert paths == ["/v1/events", "/v1/feedback", "/v1/feedback"]
    assert all(r.headers["authorization"] == f"Bearer {ingest.api_key}" for r in ingest.requests)


def test_feedback_with_a_bad_thumbs_value_is_refused_without_raising(make_client):
    client = make_client()
    assert client.feedback(client.log_call(model="m"), thumbs=0) is False


def test_a_call_log_call_cannot_take_is_counted_as_failed_and_logged_once_without_raising(ingest, make_client, caplog):
    client = make_client()
    caplog.set_level(logging.WARNING, logger="lookout_sdk")
    bad = [client.log_call(model="m", tags=5) for _ in range(3)]  # tags that are not a list of strings
    good = client.log_call(model="m", tags=["ok"])
    assert all(uuid.UUID(event_id).version == 7 for event_id in bad)
    assert client.flush(5)
    assert ingest.ids() == [good]
    assert (client.stats.sent, client.stats.failed) == (1, 3)
    warnings = [r for r in caplog.records if "log_call failed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].exc_info is not None


def test_context_fields_apply_to_every_call_inside_the_block(ingest, make_client):
    client = make_client()
    with context(user_id="u-9", session_id="s-9", tags=["beta"], metadata={"plan": "pro"}):
        with context(tags=["inner"]):
            client.log_call(model="m", tags=["own"], metadata={"k": "v"})
        client.log_call(model="m", user_id="explicit")
    client.log_call(model="m")
    assert client.flush(5)

    inner, outer, outside = ingest.events
    assert inner["user_id"] == "u-9" and inner["session_id"] == "s-9"
    assert inner["tags"] == ["beta", "inner", "own"]
    assert inner["metadata"] == {"plan": "pro", "k": "v"}
    assert outer["user_id"] == "explicit"
    assert "user_id" not in outside and "tags" not in outside


def test_configuration_comes_from_the_environment(ingest, monkeypatch):
    monkeypatch.setenv("LOOKOUT_ENDPOINT", ingest.url)
    monkeypatch.setenv("LOOKOUT_API_KEY", ingest.api_key)
    monkeypatch.setenv("LOOKOUT_APP_ID", "env-app")
    monkeypatch.setenv("LOOKOUT_ENVIRONMENT", "staging")
    monkeypatch.setenv("LOOKOUT_SAMPLE_RATE", "1")
    with Lookout(flush_interval=0.05) as client:
        client.log_call(model="m")
        assert client.flush(5)
    assert ingest.events[0]["app_id"] == "env-app"
    assert ingest.events[0]["environment"] == "staging"


def test_without_an_endpoint_the_client_is_a_harmless_no_op(monkeypatch):
    monkeypatch.delenv("LOOKOUT_ENDPOINT", raising=False)
    client = Lookout(app_id="x")
    event_id = client.log_call(model="m")
    assert uuid.UUID(event_id).version == 7
    assert client.flush(0.1)
    assert client.stats.queued == 0
    client.close()


def test_an_invalid_app_id_is_refused_at_construction(ingest):
    with pytest.raises(ValueError, match="app_id"):
        Lookout(endpoint=ingest.url, api_key=ingest.api_key, app_id="has spaces")


def test_close_sends_what_is_queued_and_later_calls_are_dropped(ingest, make_client):
    client = make_client(flush_interval=60, batch_size=100)
    for _ in range(5):
        client.log_call(model="m")
    client.close(timeout=5)
    assert len(ingest.events) == 5
    client.log_call(model="m")
    assert client.stats.dropped == 1


def test_close_spends_at_most_its_timeout_and_counts_what_it_could_not_send(ingest, make_client):
    ingest.stop()
    client = make_client(backoff_base=5, backoff_max=5)  # a long backoff, interrupted by close
    for _ in range(3):
        client.log_call(model="m")
    time.sleep(0.2)
    started = time.monotonic()
    client.close(timeout=0.5)
    assert time.monotonic() - started < 1.5
    assert client.stats.failed == 3


def test_a_hanging_server_does_not_hang_close(ingest, make_client):
    ingest.gate.clear()
    client = make_client(timeout=30)
    client.log_call(model="m")
    time.sleep(0.2)
    started = time.monotonic()
    client.close(timeout=0.5)
    assert time.monotonic() - started < 2.0
    ingest.gate.set()


def test_repr_and_stats_are_readable(make_client):
    client = make_client()
    assert "test-app" in repr(client)
    assert client.stats.sent == 0


def test_non_finite_numbers_never_make_a_batch_invalid(ingest, make_client):
    client = make_client()
    ok = client.log_call(model="m")
    odd = client.log_call(model="m", latency_ms=float("nan"), ttft_ms=float("inf"), logprobs=[-0.5, float("-inf")])
    assert client.flush(5)
    assert sorted(ingest.ids()) == sorted([ok, odd])  # one request, both accepted
    event = next(e for e in ingest.events if e["event_id"] == odd)
    assert "latency_ms" not in event and "ttft_ms" not in event
    assert event["logprobs"] == [-0.5, -1e9]


def test_a_long_overload_warns_about_drops_once_with_the_count(ingest, make_client, caplog):
    client = make_client(max_queue_size=10, batch_size=5)
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        for _ in range(20):  # overloads separated by successful sends
            for _ in range(30):
                client.log_call(model="m")
            assert client.flush(5)
    warnings = [r.getMessage() for r in caplog.records if "queue full" in r.getMessage()]
    assert len(warnings) == 1
    assert client.stats.dropped > 0 and client.stats.sent + client.stats.dropped == 600
