"""An app instrumented with OpenTelemetry (no Lookout SDK) exports GenAI spans over
OTLP/HTTP to ingest; they are stored as calls, once even if the export is retried."""

from __future__ import annotations

import json

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lookout.core.ids import span_event_id


def test_genai_spans_from_a_real_otel_exporter_become_stored_calls(ingest_stack):
    exporter = OTLPSpanExporter(
        endpoint=f"{ingest_stack.url}/v1/traces", headers={"Authorization": f"Bearer {ingest_stack.api_key}"}
    )
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-app",
                                                        "deployment.environment.name": "staging"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("handle request"):  # not a GenAI span: ignored
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.provider.name", "openai")
            span.set_attribute("gen_ai.request.model", "gpt-4o")
            span.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
            span.set_attribute("gen_ai.usage.input_tokens", 42)
            span.set_attribute("gen_ai.usage.output_tokens", 7)
            span.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": "What is OTLP?"}]}]),
            )
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "A protocol."}]}]),
            )
    provider.force_flush()
    genai = next(s for s in memory.get_finished_spans() if s.name == "chat gpt-4o")
    trace_hex = format(genai.context.trace_id, "032x")
    span_hex = format(genai.context.span_id, "016x")

    assert ingest_stack.wait_for_calls("otel-app", 1) == 1
    with ingest_stack.http() as http:
        call = http.get(f"/v1/calls/{span_event_id(trace_hex, span_hex)}").json()
    assert call["model"] == "gpt-4o-2024-08-06" and call["provider"] == "openai"
    assert (call["tokens_in"], call["tokens_out"]) == (42, 7)
    assert call["environment"] == "staging"
    assert call["input"][0]["content"] == "What is OTLP?" and call["output"] == "A protocol."
    assert call["trace_id"] == trace_hex

    # A retried export of the same spans is stored once.
    exporter.export(list(memory.get_finished_spans()))
    with ingest_stack.http() as http:
        listed = http.get("/v1/calls", params={"app_id": "otel-app", "trace_id": trace_hex}).json()["calls"]
    assert len(listed) == 1
    provider.shutdown()
