"""Sampling per app and the client-side PII masking hook."""

from __future__ import annotations

import logging
import re
import threading

from lookout_sdk import Lookout


def test_a_zero_sample_rate_sends_nothing_and_counts_what_it_skipped(ingest, make_client):
    client = make_client(sample_rate=0.0)
    ids = [client.log_call(model="m") for _ in range(100)]
    assert len(set(ids)) == 100  # ids are still handed out
    assert client.flush(5)
    assert ingest.requests == []
    assert client.stats.sampled_out == 100
    assert client.feedback(ids[0], thumbs=1) is False  # rating an event that was never sent


def test_a_sample_rate_keeps_that_fraction_and_feedback_follows_the_same_decision(ingest, make_client):
    client = make_client(sample_rate=0.3, batch_size=1000)
    ids = [client.log_call(model="m") for _ in range(4000)]
    assert client.flush(10)
    kept = set(ingest.ids())
    assert 0.26 < len(kept) / 4000 < 0.34
    assert client.stats.sampled_out == 4000 - len(kept)
    # The decision is a function of the event id: feedback goes out exactly for kept events.
    for event_id in ids[:200]:
        assert client.feedback(event_id, thumbs=1) is (event_id in kept)


def test_sample_rates_can_differ_per_app(ingest, make_client):
    client = make_client(sample_rate={"*": 1.0, "noisy-app": 0.0})
    for _ in range(50):
        client.log_call(model="m")
        client.log_call(model="m", app_id="noisy-app")
        client.log_call(model="m", app_id="other-app")
    assert client.flush(5)
    apps = [e["app_id"] for e in ingest.events]
    assert apps.count("test-app") == 50
    assert apps.count("other-app") == 50
    assert apps.count("noisy-app") == 0


def test_per_app_sample_rates_come_from_the_environment(ingest, monkeypatch):
    monkeypatch.setenv("LOOKOUT_SAMPLE_RATE", "env-app=0, *=1")
    client = Lookout(endpoint=ingest.url, api_key=ingest.api_key, app_id="env-app", flush_interval=0.05)
    for _ in range(20):
        client.log_call(model="m")
        client.log_call(model="m", app_id="kept-app")
    assert client.flush(5)
    client.close()
    assert {e["app_id"] for e in ingest.events} == {"kept-app"}
    assert len(ingest.events) == 20


EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def mask_emails(event: dict) -> dict:
    for message in event.get("input", []):
        if message["content"]:
            message["content"] = EMAIL.sub("<email>", message["content"])
    if "output" in event:
        event["output"] = EMAIL.sub("<email>", event["output"])
    return event


def test_the_masking_hook_sees_every_event_before_it_leaves_the_process(ingest, make_client):
    threads = set()

    def hook(event: dict) -> dict:
        threads.add(threading.current_thread().name)
        return mask_emails(event)

    client = make_client(redact=hook)
    client.log_call(
        model="m", input=[{"role": "user", "content": "I am ann@example.com"}], output="Hi ann@example.com!"
    )
    assert client.flush(5)
    (event,) = ingest.events
    assert event["input"][0]["content"] == "I am <email>"
    assert event["output"] == "Hi <email>!"
    assert b"example.com" not in b"".join(r.raw for r in ingest.requests)
    # It runs on the sender thread: the caller does not pay for the masking.
    assert threads == {"lookout-sender"}


def test_the_masking_hook_reaches_the_spill_directory_too(ingest, make_client, tmp_path):
    ingest.stop()
    client = make_client(redact=mask_emails, spill_dir=tmp_path, max_retry_time=0.1)
    client.log_call(model="m", output="mail bob@example.org")
    assert client.flush(5)
    assert client.stats.spilled == 1
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"<email>" in data and b"bob@example.org" not in data


def test_a_hook_returning_none_drops_the_event(ingest, make_client):
    client = make_client(redact=lambda e: None if "secret" in e.get("output", "") else e)
    keep = client.log_call(model="m", output="fine")
    client.log_call(model="m", output="top secret")
    assert client.flush(5)
    assert ingest.ids() == [keep]
    assert client.stats.sampled_out == 1


def test_a_failing_hook_never_lets_the_unmasked_event_out(ingest, make_client, caplog):
    def broken(event: dict) -> dict:
        raise RuntimeError("masking bug")

    client = make_client(redact=broken)
    with caplog.at_level(logging.WARNING, logger="lookout_sdk"):
        client.log_call(model="m", output="ann@example.com")
        client.log_call(model="m", output="ann@example.com")
        assert client.flush(5)
    assert ingest.requests == []
    assert client.stats.failed == 2
    assert caplog.text.count("masking bug") == 1
