"""PII is redacted before anything is stored: check the row in ClickHouse (and so what
went through Kafka) for each detector and each mode."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call
from tests.test_pipeline import post_in_batches

SAMPLES = {
    "email": ("write to jane.doe@example.com today", "jane.doe@example.com", "[EMAIL"),
    "phone": ("call me at +44 20 7946 0958 please", "7946 0958", "[PHONE"),
    "card": ("my card is 4111 1111 1111 1111", "4111 1111 1111 1111", "[CARD"),
    "iban": ("pay to DE89 3704 0044 0532 0130 00 now", "DE89 3704 0044 0532 0130 00", "[IBAN"),
    "ipv4": ("the server 192.168.10.24 is down", "192.168.10.24", "[IP"),
    "ipv6": ("ping 2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334", "[IP"),
}


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    from lookout.core.settings import CommonSettings

    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="pii.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="pii", kafka_topic_partitions=1,
    )
    settings = ingest_settings_for(common).model_copy(
        update={"pii_mode": "mask", "pii_app_modes": "hashed-app=hash,raw-app=off",
                "pii_secret": "pii-test-secret-0123456789"}
    )
    s = IngestStack(settings).start()
    yield s
    s.close()


def stored(stack, event_id: str) -> tuple:
    stack.wait_for("SELECT count() FROM llm_calls WHERE event_id = {id:UUID}", 1, id=event_id)
    return stack.client.query(
        "SELECT prompt, output, input, context, metadata['note'], pii_redactions FROM llm_calls "
        "WHERE event_id = {id:UUID}", parameters={"id": event_id}
    ).result_rows[0]


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_each_detector_masks_its_value_in_every_text_field(stack, kind):
    text, secret, marker = SAMPLES[kind]
    event = llm_call("masked-app", prompt=text, output=text, context=[text], metadata={"note": text},
                     input=[{"role": "user", "content": text}])
    post_in_batches(stack, [event])
    prompt, output, input_json, context, note, count = stored(stack, event["event_id"])
    for value in (prompt, output, input_json, context[0], note):
        assert secret not in value and marker in value
    assert count == 5


def test_hash_mode_keeps_a_stable_token_and_off_keeps_the_text(stack):
    text, secret, _ = SAMPLES["email"]
    a = llm_call("hashed-app", prompt=text)
    b = llm_call("hashed-app", prompt=text)
    raw = llm_call("raw-app", prompt=text)
    post_in_batches(stack, [a, b, raw])
    prompt_a, prompt_b = stored(stack, a["event_id"])[0], stored(stack, b["event_id"])[0]
    assert secret not in prompt_a and prompt_a == prompt_b and "[EMAIL:" in prompt_a
    assert stored(stack, raw["event_id"])[0] == text


def test_numbers_that_are_not_pii_are_left_alone(stack):
    text = "order 1234567890123 on 2026-11-26 used 4111 1111 1111 1112 tokens=1532 at 10:42:07"
    event = llm_call("masked-app", prompt=text)
    post_in_batches(stack, [event])
    assert stored(stack, event["event_id"])[0] == text


def whole_row(stack, event_id: str) -> str:
    """Every column of the stored row as one text, to search for what must not be there."""
    stack.wait_for("SELECT count() FROM llm_calls WHERE event_id = {id:UUID}", 1, id=event_id)
    row = stack.client.query("SELECT * FROM llm_calls WHERE event_id = {id:UUID}", parameters={"id": event_id})
    return repr(row.result_rows[0])


def test_tags_metadata_keys_message_names_and_free_text_ids_are_stored_redacted(stack):
    email = "grace.hopper@example.com"
    event = llm_call(
        "masked-app",
        input=[{"role": "user", "name": email, "content": "hello"}],
        tags=["vip", f"owner:{email}"],
        metadata={f"contact {email}": "yes", "note": "plain"},
        trace_id=f"conv/{email}",
        span_id="+44 20 7946 0958",
        provider="openai",
    )
    post_in_batches(stack, [event])
    row = whole_row(stack, event["event_id"])
    assert email not in row and "7946 0958" not in row
    tags, metadata, trace_id, span_id, input_json = stack.client.query(
        "SELECT tags, metadata, trace_id, span_id, input FROM llm_calls WHERE event_id = {id:UUID}",
        parameters={"id": event["event_id"]},
    ).result_rows[0]
    assert tags == ["vip", "owner:[EMAIL]"]
    assert metadata["contact [EMAIL]"] == "yes" and metadata["note"] == "plain"
    assert (trace_id, span_id) == ("conv/[EMAIL]", "[PHONE]")
    assert json.loads(input_json)[0]["name"] == "[EMAIL]"


def test_otlp_spans_are_stored_redacted_the_same_way(stack):
    email = "ada.lovelace@example.com"
    exporter = OTLPSpanExporter(endpoint=f"{stack.url}/v1/traces", headers={"Authorization": f"Bearer {stack.api_key}"})
    provider = TracerProvider(resource=Resource.create({"service.name": "masked-app", "lookout.tags": f"t,{email}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span(f"chat for {email}") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.request.model", "gpt-4o")
        span.set_attribute(f"gen_ai.custom.{email}", f"card 4111 1111 1111 1111 of {email}")
        span.set_attribute("gen_ai.input.messages", json.dumps(
            [{"role": "user", "name": email, "parts": [{"type": "text", "content": f"I am {email}"}]}]))
        span.set_attribute("gen_ai.output.messages", json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": f"Hello {email}"}]}]))
        trace_hex = format(span.get_span_context().trace_id, "032x")
    provider.force_flush()
    provider.shutdown()
    stack.wait_for("SELECT count() FROM llm_calls WHERE trace_id = {t:String}", 1, t=trace_hex)
    event_id = stack.client.query(
        "SELECT toString(event_id) FROM llm_calls WHERE trace_id = {t:String}", parameters={"t": trace_hex}
    ).result_rows[0][0]
    row = whole_row(stack, event_id)
    assert email not in row and "4111 1111" not in row
    assert trace_hex in row  # hex ids are kept as they are
    assert "[EMAIL]" in row and "[CARD]" in row
