"""An app's agent turns as real OpenTelemetry spans (the SDK and its OTLP/HTTP exporter),
exported to a running ingest: an agent run with a conversation id, two model calls on the
GenAI conventions with a tool call and a retrieval between them, and a client-side
evaluation of the answer. What the explorer tests browse."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

from lookout.core.ids import span_event_id


def _parts(role: str, text: str) -> dict:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


@dataclass
class Turn:
    trace_id: str
    call_ids: list[str]  # the two model calls' event ids, in order


def agent_turns(url: str, api_key: str, app: str, conversation: str, questions: list[str],
                model: str = "gpt-4o-mini") -> list[Turn]:
    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {api_key}"})
    provider = TracerProvider(resource=Resource.create({"service.name": app, "deployment.environment.name": "prod"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))  # as apps export: a turn per batch
    tracer = provider.get_tracer("shop.agent", "1.2.0")
    turns = []
    for question in questions:
        city = question.rstrip("?").split()[-1]
        with tracer.start_as_current_span("invoke_agent shopper", attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "shopper",
                "gen_ai.conversation.id": conversation}) as agent:
            trace_id = format(agent.get_span_context().trace_id, "032x")
            ids = []
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 8,
                    "gen_ai.input.messages": json.dumps([_parts("user", question)]),
                    "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                        {"type": "tool_call", "id": "c1", "name": "stock", "arguments": {"city": city}}]}])}) as span:
                ids.append(str(span_event_id(trace_id, format(span.get_span_context().span_id, "016x"))))
                time.sleep(0.003)  # calls take time: their order is their start
            with tracer.start_as_current_span("execute_tool stock", attributes={
                    "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "stock",
                    "gen_ai.tool.call.arguments": json.dumps({"city": city}),
                    "gen_ai.tool.call.result": f"3 umbrellas in {city}"}):
                pass
            with tracer.start_as_current_span("retrieval catalogue", attributes={
                    "gen_ai.operation.name": "retrieval", "gen_ai.retrieval.query.text": city,
                    "gen_ai.retrieval.documents": json.dumps([{"id": "1", "content": f"Umbrellas sold in {city}"}])}):
                pass
            answer = f"We have 3 umbrellas in {city}."
            with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes={
                    "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
                    "gen_ai.usage.input_tokens": 40, "gen_ai.usage.output_tokens": 12,
                    "gen_ai.input.messages": json.dumps([_parts("user", question),
                                                         _parts("tool", f"3 umbrellas in {city}")]),
                    "gen_ai.output.messages": json.dumps([_parts("assistant", answer)])}) as span:
                span.add_event("gen_ai.evaluation.result", {
                    "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.9,
                    "gen_ai.evaluation.score.label": "relevant",
                    "gen_ai.evaluation.explanation": "answers the question asked"})
                time.sleep(0.003)
                ids.append(str(span_event_id(trace_id, format(span.get_span_context().span_id, "016x"))))
        turns.append(Turn(trace_id, ids))
    provider.force_flush()
    provider.shutdown()
    return turns
