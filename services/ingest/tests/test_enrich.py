"""Enriching in place (what a worker does with the calls it just validated) produces the
same Kafka records as enriching a copy: redaction, pseudonyms, prices and metadata alike."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson

from bench.corpora import load
from lookout.core.auth import ApiKey
from lookout.core.events import LlmCall, Message
from lookout.ingest import prepare
from lookout.ingest.enrich import Enricher
from lookout.ingest.publisher import encode
from lookout.ingest.settings import IngestSettings
from tests.events import llm_call

KEY = ApiKey(key_id="k1", app_id="*", scopes=frozenset({"ingest"}), name="test", created_at=datetime.now(UTC))
PII = ["mail me at jo.o'neil@example.org", "call +44 20 7946 0958", "card 4111 1111 1111 1111",
       "IBAN DE89 3704 0044 0532 0130 00", "from 10.20.30.40", "no pii here"]


def mixed_events(n: int) -> list[dict]:
    """Calls whose texts are Debian package descriptions with PII planted in some, with user
    and session ids, with and without a client-sent cost, with metadata."""
    items = load("debian").items
    events = []
    for i in range(n):
        item = items[i * 13 % len(items)]
        extra: dict = {"user_id": f"user-{i % 7}", "session_id": f"s-{i % 3}"} if i % 2 else {}
        if i % 5 == 0:
            extra["cost_usd"] = 0.01
        events.append(llm_call("shop", i=i, input=[{"role": "user", "content": f"{item.prompt} {PII[i % len(PII)]}"}],
                               output=item.response, metadata={"ticket": PII[(i + 1) % len(PII)]}, **extra))
    return events


def test_a_batch_enriched_in_place_gives_the_records_of_enriching_copies():
    settings = IngestSettings(pii_secret="test-pii-secret-0123456789", pii_mode="mask")
    enricher = Enricher.from_settings(settings)
    events = mixed_events(300)
    body = gzip.compress(orjson.dumps({"events": events}))

    ready = prepare.events(enricher, body, "application/json", "gzip", key=KEY, max_bytes=settings.max_body_bytes,
                           max_events=settings.max_batch_events)

    copies = [enricher(LlmCall.model_validate(event)) for event in events]
    assert ready.records == encode([call for call, _ in copies])
    assert ready.redactions == sum(n for _, n in copies) > 200
    stored = [LlmCall.from_bytes(value) for _, value in ready.records]
    assert not any("@example.org" in (c.input[0].content or "") for c in stored)
    assert all(c.user_id is None or c.user_id.startswith("u_") for c in stored)
    assert sum(c.metadata.get("lookout.price_table") is not None for c in stored) == 240  # the 60 with a cost keep it


def test_enriching_in_place_changes_only_the_call_given():
    enricher = Enricher.from_settings(IngestSettings(pii_secret="test-pii-secret-0123456789", pii_mode="mask"))
    event = llm_call("shop", input=[{"role": "user", "content": "write to ann@example.com"}], user_id="ann")
    first, second = LlmCall.model_validate(event), LlmCall.model_validate(event)
    assert enricher.apply(first) == 1
    assert first.input[0].content == "write to [EMAIL]" and first.user_id and first.user_id.startswith("u_")
    assert second.input[0].content == "write to ann@example.com" and second.user_id == "ann"
    assert first.to_bytes() == enricher(second)[0].to_bytes()


def test_messages_validated_from_json_are_redacted_in_place_with_the_same_record():
    enricher = Enricher.from_settings(IngestSettings(pii_secret="test-pii-secret-0123456789", pii_mode="mask"))
    event = llm_call("shop", input=[{"role": "user", "content": "write to ann@example.com"}, {"role": "user"}])
    call, copy = LlmCall.model_validate(event), LlmCall.model_validate(event)
    messages = list(call.input)
    assert enricher.apply(call, own_messages=True) == 1
    assert call.input == messages and all(a is b for a, b in zip(call.input, messages, strict=True))  # no copy
    assert messages[0].content == "write to [EMAIL]" and "content" in messages[0].model_fields_set
    assert call.to_bytes() == enricher(copy)[0].to_bytes()


def test_a_message_object_two_calls_share_is_never_redacted_in_place():
    # OTLP conversion builds Message objects that validation keeps as they are: each call
    # that holds one gets its own redacted copy, and the object itself stays untouched.
    enricher = Enricher.from_settings(IngestSettings(pii_secret="test-pii-secret-0123456789", pii_mode="mask"))
    shared = Message(role="user", content="write to ann@example.com")
    first, second = (LlmCall.model_validate({**llm_call("shop"), "input": [shared]}) for _ in range(2))
    assert first.input[0] is second.input[0] is shared
    assert enricher.apply(first) == 1 and enricher.apply(second) == 1
    assert shared.content == "write to ann@example.com"
    assert first.input[0].content == second.input[0].content == "write to [EMAIL]"
