"""OTLP trace intake, specified on exports the real OpenTelemetry SDK and OTLP encoder produce."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from lookout.core.ids import span_event_id
from lookout.ingest.otlp import (
    ExportTraceServiceRequest,
    OtlpDecodeError,
    OtlpResult,
    UnsupportedMediaType,
    convert,
    decode_request,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z in nanoseconds
SECOND = 1_000_000_000
APP = {"service.name": "support-bot", "deployment.environment.name": "staging"}

# --- building exports with the real SDK -------------------------------------------------------


def record(build: Callable[[Tracer], None], resource: dict[str, Any] | None = None) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(APP if resource is None else resource))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("lookout.tests"))
    spans = list(exporter.get_finished_spans())
    provider.shutdown()
    return spans


def protobuf_body(spans: Sequence[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def json_body(protobuf: bytes, *, enums_as_ints: bool = True, upper_hex: bool = False) -> bytes:
    """The same export as an OTLP/JSON sender writes it: protobuf's JSON mapping, except that
    trace and span ids are hex (the spec allows either case) rather than base64."""
    document = json_format.MessageToDict(
        ExportTraceServiceRequest.FromString(protobuf), use_integers_for_enums=enums_as_ints
    )
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        hex_id = base64.b64decode(span[key]).hex()
                        span[key] = hex_id.upper() if upper_hex else hex_id
    return json.dumps(document).encode()


def chat(tracer: Tracer, attributes: dict[str, Any], *, name: str = "chat gpt-4o"):
    """Start a GenAI span at T0; the caller adds events and ends it with `finish`."""
    return tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes, start_time=T0)


def finish(span, seconds: float = 1.25) -> None:
    span.end(end_time=T0 + int(seconds * SECOND))


def one_span(attributes: dict[str, Any], events: Sequence[tuple[str, dict[str, Any]]] = ()) -> list[ReadableSpan]:
    def build(tracer: Tracer) -> None:
        span = chat(tracer, attributes)
        for name, event_attributes in events:
            span.add_event(name, event_attributes)
        finish(span)

    return record(build)


def convert_spans(spans: Sequence[ReadableSpan], default_app_id: str | None = None) -> OtlpResult:
    return convert(decode_request(protobuf_body(spans), PROTOBUF), default_app_id=default_app_id)


def only_call(spans: Sequence[ReadableSpan], default_app_id: str | None = None):
    result = convert_spans(spans, default_app_id)
    assert result.rejected == []
    assert len(result.calls) == 1
    return result.calls[0]


def messages(call) -> list[tuple[str, str | None]]:
    return [(m.role, m.content) for m in call.input]


BASE = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"}


# --- the current conventions ----------------------------------------------------------------


def test_a_chat_span_on_the_current_conventions_becomes_one_complete_call():
    spans = one_span(
        {
            **BASE,
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.request.temperature": 0.2,
            "gen_ai.request.max_tokens": 256,
            "gen_ai.response.id": "chatcmpl-123",
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.response.time_to_first_chunk": 0.25,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "You are terse."}]),
            "gen_ai.input.messages": json.dumps(
                [
                    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
                    {
                        "role": "assistant",
                        "parts": [{"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"city": "Paris"}}],
                    },
                    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "18C, sunny"}]},
                ]
            ),
            "gen_ai.output.messages": json.dumps(
                [
                    {
                        "role": "assistant",
                        "parts": [{"type": "text", "content": "18C and sunny."}],
                        "finish_reason": "stop",
                    }
                ]
            ),
        }
    )
    call = only_call(spans)
    context = spans[0].context
    assert context is not None

    assert call.event_id == span_event_id(f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert (call.trace_id, call.span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert (call.app_id, call.environment, call.provider) == ("support-bot", "staging", "openai")
    assert call.model == "gpt-4o-2024-08-06"  # what answered, not what was asked for
    assert (call.tokens_in, call.tokens_out) == (42, 7)
    assert call.ts == datetime(2026, 1, 1, tzinfo=UTC)
    assert call.latency_ms == 1250.0
    assert call.ttft_ms == 250.0
    assert (call.status, call.error) == ("ok", None)
    assert messages(call) == [
        ("system", "You are terse."),
        ("user", "Weather in Paris?"),
        ("assistant", '{"tool_call":{"id":"c1","name":"weather","arguments":{"city":"Paris"}}}'),
        ("tool", "18C, sunny"),
    ]
    assert call.output == "18C and sunny."
    assert call.metadata == {
        "otlp.span_name": "chat gpt-4o",
        "otlp.scope": "lookout.tests",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.temperature": "0.2",
        "gen_ai.request.max_tokens": "256",
        "gen_ai.response.id": "chatcmpl-123",
        "gen_ai.response.finish_reasons": '["stop"]',
    }


def test_the_model_is_the_requested_one_when_the_response_names_none():
    call = only_call(one_span(BASE))
    assert call.model == "gpt-4o"
    assert "gen_ai.request.model" not in call.metadata  # already the model field


def test_messages_in_an_operation_details_event_count_like_attributes():
    details = {
        "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]}]),
    }
    call = only_call(one_span(BASE, [("gen_ai.client.inference.operation.details", details)]))
    assert (messages(call), call.output) == ([("user", "Hi")], "Hello")


def test_every_assistant_output_message_is_joined_into_the_output():
    output = [
        {"role": "assistant", "parts": [{"type": "text", "content": "First."}, {"type": "text", "content": "More."}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "Second choice."}]},
    ]
    call = only_call(one_span({**BASE, "gen_ai.output.messages": json.dumps(output)}))
    assert call.output == "First.\nMore.\nSecond choice."


# --- older conventions ------------------------------------------------------------------------


def test_the_older_span_events_give_the_messages_and_the_older_token_names_count():
    spans = one_span(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet",
            "gen_ai.usage.prompt_tokens": 30,
            "gen_ai.usage.completion_tokens": 5,
        },
        [
            ("gen_ai.system.message", {"content": "Be kind."}),
            ("gen_ai.user.message", {"content": "Hello?"}),
            ("gen_ai.assistant.message", {"content": "Hi, how can I help?"}),
            ("gen_ai.tool.message", {"content": "lookup result", "id": "call-1"}),
            (
                "gen_ai.choice",
                {"index": 1, "finish_reason": "length", "message": json.dumps({"role": "assistant", "content": "B"})},
            ),
            ("gen_ai.choice", {"index": 0, "finish_reason": "stop", "content": "A"}),
        ],
    )
    call = only_call(spans)
    assert call.provider == "anthropic"
    assert (call.tokens_in, call.tokens_out) == (30, 5)
    assert messages(call) == [
        ("system", "Be kind."),
        ("user", "Hello?"),
        ("assistant", "Hi, how can I help?"),
        ("tool", "lookup result"),
    ]
    assert call.output == "A\nB"  # choices in index order
    assert call.metadata["gen_ai.response.finish_reasons"] == '["length","stop"]'


def test_events_that_carry_a_json_body_are_read_too():
    body = json.dumps({"role": "user", "content": [{"type": "text", "text": "From the body"}]})
    call = only_call(one_span(BASE, [("gen_ai.user.message", {"gen_ai.event.content": body})]))
    assert messages(call) == [("user", "From the body")]


def test_the_legacy_content_events_give_the_messages():
    prompt = json.dumps([{"role": "system", "content": "Rules."}, {"role": "user", "content": "Question"}])
    call = only_call(
        one_span(
            BASE,
            [
                ("gen_ai.content.prompt", {"gen_ai.prompt": prompt}),
                ("gen_ai.content.completion", {"gen_ai.completion": "Answer"}),
            ],
        )
    )
    assert (messages(call), call.output) == ([("system", "Rules."), ("user", "Question")], "Answer")


def test_the_legacy_flattened_attributes_give_the_messages_in_numeric_order():
    flattened = {f"gen_ai.prompt.{n}.role": "user" for n in range(11)}
    flattened |= {f"gen_ai.prompt.{n}.content": f"turn {n}" for n in range(11)}
    flattened |= {"gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Rules."}
    flattened |= {"gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "Done."}
    call = only_call(one_span({**BASE, **flattened}))
    assert messages(call) == [("system", "Rules.")] + [("user", f"turn {n}") for n in range(1, 11)]
    assert call.output == "Done."
    assert not any(key.startswith(("gen_ai.prompt", "gen_ai.completion")) for key in call.metadata)


def test_the_newest_convention_wins_when_a_span_carries_several():
    current = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "new"}]}])
    spans = one_span(
        {**BASE, "gen_ai.input.messages": current, "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "old"},
        [("gen_ai.user.message", {"content": "older"})],
    )
    assert messages(only_call(spans)) == [("user", "new")]


# --- content that cannot be read ----------------------------------------------------------------


def test_unparseable_message_json_keeps_what_is_valid_and_says_so_in_metadata():
    output = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "kept"}]}, 42])
    call = only_call(
        one_span({**BASE, "gen_ai.input.messages": '[{"role": "user", "parts": [', "gen_ai.output.messages": output})
    )
    assert call.input == []
    assert call.output == "kept"
    problems = call.metadata["otlp.parse_errors"]
    assert "gen_ai.input.messages: not valid JSON" in problems
    assert "gen_ai.output.messages[1]: not a message object" in problems


def test_a_truncated_messages_attribute_falls_back_to_an_older_convention():
    spans = one_span(
        {**BASE, "gen_ai.input.messages": '[{"role": "us'}, [("gen_ai.user.message", {"content": "whole"})]
    )
    call = only_call(spans)
    assert messages(call) == [("user", "whole")]
    assert "gen_ai.input.messages: not valid JSON" in call.metadata["otlp.parse_errors"]


def test_long_metadata_values_are_cut_rather_than_failing_the_call():
    call = only_call(one_span({**BASE, "gen_ai.request.stop_sequences": ["x" * 5000]}))
    assert len(call.metadata["gen_ai.request.stop_sequences"]) == 1024


# --- status, tags, identity -------------------------------------------------------------------


def test_an_error_span_is_an_error_call_with_the_status_message_or_the_error_type():
    def build(tracer: Tracer) -> None:
        described = chat(tracer, BASE)
        described.set_status(Status(StatusCode.ERROR, "rate limited"))
        finish(described)
        typed = chat(tracer, {**BASE, "error.type": "timeout"})
        typed.set_status(Status(StatusCode.ERROR))
        finish(typed)

    calls = convert_spans(record(build)).calls
    assert [(c.status, c.error) for c in calls] == [("error", "rate limited"), ("error", "timeout")]


def test_tags_come_from_lookout_tags_on_the_resource_and_the_span():
    spans = record(
        lambda tracer: finish(chat(tracer, {**BASE, "lookout.tags": ["beta", "eu"]})),
        {**APP, "lookout.tags": "canary, eu"},
    )
    assert only_call(spans).tags == ["canary", "eu", "beta"]


def test_app_id_is_lookout_app_id_else_service_name_else_the_default():
    def app_of(resource: dict[str, Any]) -> str:
        return only_call(record(lambda tracer: finish(chat(tracer, BASE)), resource), default_app_id="key-app").app_id

    assert app_of({"lookout.app_id": "billing", "service.name": "billing-svc"}) == "billing"
    assert app_of({"service.name": "billing-svc"}) == "billing-svc"
    # The SDK names an unnamed service "unknown_service:python"; that is not an app.
    assert app_of({}) == "key-app"


def test_environment_also_reads_the_older_resource_attribute():
    spans = record(lambda tracer: finish(chat(tracer, BASE)), {"service.name": "a", "deployment.environment": "dev"})
    assert only_call(spans).environment == "dev"


def test_event_ids_are_the_same_on_every_conversion_so_a_retried_export_is_stored_once():
    def build(tracer: Tracer) -> None:
        for _ in range(3):
            finish(chat(tracer, BASE))

    body = protobuf_body(record(build))
    first = [c.event_id for c in convert(decode_request(body, PROTOBUF), default_app_id=None).calls]
    again = [c.event_id for c in convert(decode_request(body, PROTOBUF), default_app_id=None).calls]
    assert first == again
    assert len(set(first)) == 3


# --- what is not a model call, and what cannot be one --------------------------------------------


def test_spans_that_are_not_genai_are_ignored_and_a_tool_span_is_a_trace_step_not_a_call():
    def build(tracer: Tracer) -> None:
        finish(tracer.start_span("GET /orders", attributes={"http.request.method": "GET"}, start_time=T0))
        finish(
            tracer.start_span(
                "execute_tool weather", attributes={"gen_ai.operation.name": "execute_tool"}, start_time=T0
            )
        )
        finish(chat(tracer, BASE))

    result = convert_spans(record(build))
    assert (result.spans, result.ignored, len(result.calls), result.rejected) == (3, 1, 1, [])
    assert sorted(step.kind for step in result.trace_spans) == ["llm", "tool"]


def test_a_genai_span_with_an_invalid_app_id_is_rejected_with_the_field_and_the_rest_kept():
    good = record(lambda tracer: finish(chat(tracer, BASE)))
    bad = record(lambda tracer: finish(chat(tracer, BASE)), {"service.name": "my support bot!"})
    result = convert_spans(good + bad)
    assert len(result.calls) == 1
    assert [(r["index"], r["field"]) for r in result.rejected] == [(1, "app_id")]
    assert "may hold only ASCII letters, digits and . _ : -" in result.rejected[0]["message"]


@pytest.mark.parametrize(
    "attributes, resource, field",
    [
        ({**BASE, "gen_ai.request.model": "gpt-4o' OR '1'='1"}, {"service.name": "a"}, "model"),
        ({**BASE, "gen_ai.response.model": "gpt-4o\\x"}, {"service.name": "a"}, "model"),
        ({**BASE, "lookout.prompt_version": "v1--"}, {"service.name": "a"}, "prompt_version"),
        (BASE, {"service.name": "a", "deployment.environment.name": "prod eu"}, "environment"),
    ],
)
def test_identifiers_over_otlp_follow_the_same_character_rule_as_events(attributes, resource, field):
    result = convert_spans(record(lambda tracer: finish(chat(tracer, attributes)), resource))
    assert result.calls == []
    assert [r["field"] for r in result.rejected] == [field]
    assert "may hold only" in result.rejected[0]["message"]


def test_real_model_names_over_otlp_are_kept_as_they_are():
    model = "meta-llama/Llama-3.1-8B-Instruct"
    spans = record(lambda tracer: finish(chat(tracer, {**BASE, "gen_ai.request.model": model})), {"service.name": "a"})
    assert only_call(spans).model == model


def test_a_span_with_no_app_anywhere_is_rejected_with_a_hint():
    result = convert_spans(record(lambda tracer: finish(chat(tracer, BASE)), {}), default_app_id=None)
    assert result.rejected == [
        {
            "index": 0,
            "field": "app_id",
            "message": "no lookout.app_id or service.name resource attribute, and no default app for this key",
        }
    ]


def test_a_span_without_a_model_is_rejected_with_a_hint():
    result = convert_spans(one_span({"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}))
    assert [(r["field"], r["message"]) for r in result.rejected] == [
        ("model", "no gen_ai.response.model or gen_ai.request.model attribute on the span")
    ]


def test_a_span_that_ends_before_it_starts_is_rejected_on_latency():
    def build(tracer: Tracer) -> None:
        tracer.start_span("chat", attributes=BASE, start_time=T0).end(end_time=T0 - SECOND)

    assert [r["field"] for r in convert_spans(record(build)).rejected] == ["latency_ms"]


def test_a_span_without_valid_ids_is_rejected_not_raised():
    request = encode_spans(one_span(BASE))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b""
    result = convert(request, default_app_id=None)
    assert (result.calls, [r["field"] for r in result.rejected]) == ([], ["trace_id"])


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("gen_ai.usage.input_tokens", "many", "tokens_in"),
        ("gen_ai.usage.output_tokens", True, "tokens_out"),
        ("gen_ai.response.time_to_first_chunk", "soon", "ttft_ms"),
    ],
)
def test_a_number_of_the_wrong_type_is_rejected_with_its_field(key: str, value: Any, field: str):
    result = convert_spans(one_span({**BASE, key: value}))
    assert [r["field"] for r in result.rejected] == [field]


# --- decoding -------------------------------------------------------------------------------


def mixed_export() -> bytes:
    """One export with every kind of span: conventions old and new, an error, a non-GenAI span."""

    def build(tracer: Tracer) -> None:
        current = {
            **BASE,
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]),
        }
        with tracer.start_as_current_span("agent", start_time=T0):
            finish(chat(tracer, current))
            events = chat(tracer, {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini"})
            events.add_event("gen_ai.choice", {"index": 0, "content": "Hello"})
            finish(events)
            failed = chat(tracer, {**BASE, "gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "?"})
            failed.set_status(Status(StatusCode.ERROR, "upstream 503"))
            finish(failed)

    other_app = record(lambda tracer: finish(chat(tracer, BASE)), {"lookout.app_id": "other", "service.name": "x"})
    return protobuf_body(record(build) + other_app)


def test_protobuf_and_otlp_json_decode_to_the_same_calls():
    protobuf = mixed_export()
    from_protobuf = convert(decode_request(protobuf, PROTOBUF), default_app_id="key-app")
    assert (from_protobuf.spans, from_protobuf.ignored, len(from_protobuf.calls)) == (5, 1, 4)
    assert {c.app_id for c in from_protobuf.calls} == {"support-bot", "other"}

    expected = [c.model_dump() for c in from_protobuf.calls]
    # Enum values may come as integers (the spec) or names, ids in either case, int64 as strings.
    for body in (json_body(protobuf), json_body(protobuf, enums_as_ints=False, upper_hex=True)):
        from_json = convert(decode_request(body, "application/json; charset=utf-8"), default_app_id="key-app")
        assert [c.model_dump() for c in from_json.calls] == expected
        assert (from_json.spans, from_json.ignored, from_json.rejected) == (5, 1, [])


def test_otlp_json_ignores_fields_it_does_not_know_and_reads_numbers_given_as_strings():
    document = json.loads(json_body(protobuf_body(one_span({**BASE, "gen_ai.usage.input_tokens": 9}))))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["aFieldFromTheFuture"] = {"x": 1}
    span["startTimeUnixNano"] = int(span["startTimeUnixNano"])  # a number as well as a string
    call = convert(decode_request(json.dumps(document).encode(), JSON), default_app_id=None).calls[0]
    assert (call.tokens_in, call.ts) == (9, datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("body", [b"not protobuf", b"\xff\xff\xff", protobuf_body(one_span(BASE))[:-7]])
def test_bytes_that_are_not_an_export_request_are_a_decode_error(body: bytes):
    with pytest.raises(OtlpDecodeError):
        decode_request(body, PROTOBUF)


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "not-hex-or-base64"}]}]}]}'],
)
def test_json_that_is_not_an_otlp_export_is_a_decode_error(body: bytes):
    with pytest.raises(OtlpDecodeError):
        decode_request(body, JSON)


def test_a_content_type_other_than_protobuf_or_json_is_unsupported_not_a_decode_error():
    with pytest.raises(UnsupportedMediaType) as raised:
        decode_request(protobuf_body(one_span(BASE)), "text/plain")
    assert not isinstance(raised.value, OtlpDecodeError)


def test_an_empty_export_is_nothing_to_do():
    result = convert(decode_request(b"", PROTOBUF), default_app_id=None)
    assert (result.calls, result.ignored, result.rejected, result.spans) == ([], 0, [], 0)
