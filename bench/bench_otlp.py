"""OTLP intake throughput for a realistic agent trace mix, against POST /v1/events of the
same calls, same run.

Each trace is what an instrumented agent exports per turn: one LLM span (GenAI 1.37
attributes, a prompt and an answer of about 1 KB together), two tool spans and one
retrieval span, all children of the app's own root span (not GenAI: ignored). The spans are
made with the real OpenTelemetry SDK and encoded by the OTLP exporter's encoder, in
requests of 250 traces (1250 spans). The baseline posts the very calls OTLP conversion made
of those LLM spans, as JSON events, in batches of 250, to the same ingest. Both go through
the same intake into Kafka (no sink running), four requests in flight.

Figures: OTLP spans/s and calls/s, events/s, and the ratio spans/s ÷ events/s (how many
spans of an agent mix ingest takes in the time it takes one SDK event).

Run: `.venv/bin/python -m bench.bench_otlp [--traces 10000]`; figures print and go to
bench/out/otlp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lookout.core.settings import CommonSettings
from lookout.ingest import otlp
from lookout.testing.brokers import KafkaBroker
from lookout.testing.stack import IngestStack, ingest_settings_for

OUT = Path(__file__).parent / "out"
PER_REQUEST = 250  # traces
SPANS_PER_TRACE = 5  # root (ignored) + LLM + 2 tools + retrieval


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def traces(n: int) -> list[bytes]:
    """OTLP protobuf bodies of n agent turns, PER_REQUEST per body."""
    bodies = []
    for start in range(0, n, PER_REQUEST):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": "bench-agent",
                                                            "deployment.environment.name": "production"}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("bench.agent", "1.0")
        for i in range(start, min(n, start + PER_REQUEST)):
            question = f"Question {i}: which of your running shoes suit a marathon beginner? " * 3
            answer = "For a first marathon, pick a cushioned, stable trainer and break it in for 50 km. " * 4
            with tracer.start_as_current_span("POST /chat"):
                with tracer.start_as_current_span("retrieval catalogue", attributes={
                        "gen_ai.operation.name": "retrieval", "gen_ai.retrieval.query.text": "marathon shoes",
                        "gen_ai.retrieval.documents": json.dumps([{"id": "1", "content": "Trainer A: cushioned"},
                                                                  {"id": "2", "content": "Trainer B: stable"}])}):
                    pass
                for tool in ("stock", "sizes"):
                    with tracer.start_as_current_span(f"execute_tool {tool}", attributes={
                            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool,
                            "gen_ai.tool.call.id": f"c-{tool}", "gen_ai.tool.call.arguments": '{"sku": "A-42"}',
                            "gen_ai.tool.call.result": "in stock: 3"}):
                        pass
                with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                        "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                        "gen_ai.usage.input_tokens": 180 + i % 50, "gen_ai.usage.output_tokens": 90 + i % 30,
                        "gen_ai.usage.cache_read.input_tokens": 64, "gen_ai.conversation.id": f"s-{i // 4}",
                        "gen_ai.input.messages": json.dumps([
                            {"role": "system", "parts": [{"type": "text", "content": "You are a shop assistant."}]},
                            {"role": "user", "parts": [{"type": "text", "content": question}]}]),
                        "gen_ai.output.messages": json.dumps([
                            {"role": "assistant", "parts": [{"type": "text", "content": answer}],
                             "finish_reason": "stop"}])}):
                    pass
        bodies.append(encode_spans(memory.get_finished_spans()).SerializeToString())
        provider.shutdown()
    return bodies


def events_of(bodies: list[bytes]) -> list[bytes]:
    """The calls OTLP conversion makes of those spans, as POST /v1/events bodies."""
    out = []
    for body in bodies:
        result = otlp.convert(otlp.decode_request(body, "application/x-protobuf"), default_app_id=None)
        events = [call.model_dump(mode="json", by_alias=True, exclude_none=True) for call in result.calls]
        out.append(json.dumps({"events": events}).encode())
    return out


def post_all(url: str, key: str, path: str, bodies: list[bytes], content_type: str, concurrency: int = 4) -> float:
    async def run() -> float:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    reply = await http.post(path, content=body)
                    assert reply.status_code == 200, reply.text[:500]

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - start

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=10_000)
    args = parser.parse_args()
    broker = KafkaBroker().start()
    chdb = tempfile.mkdtemp(prefix="lookout-bench-otlp-")
    try:
        common = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence="on", topic_prefix="bench.",
                                clickhouse_dsn=f"chdb://{chdb}", clickhouse_database="bench")
        progress(f"building {args.traces:,} agent traces with the OpenTelemetry SDK...")
        bodies = traces(args.traces)
        events = events_of(bodies)
        stack = IngestStack(ingest_settings_for(common))
        stack.start_intake()  # no sink: both figures are intake -> Kafka
        warm = max(1, len(bodies) // 20)
        post_all(stack.url, stack.api_key, "/v1/traces", bodies[:warm], "application/x-protobuf")
        post_all(stack.url, stack.api_key, "/v1/events", events[:warm], "application/json")
        progress("POST /v1/events of the same calls...")
        events_s = post_all(stack.url, stack.api_key, "/v1/events", events, "application/json")
        progress("POST /v1/traces...")
        otlp_s = post_all(stack.url, stack.api_key, "/v1/traces", bodies, "application/x-protobuf")
        spans = args.traces * SPANS_PER_TRACE
        results = {
            "traces": args.traces, "spans": spans,
            "otlp_spans_per_s": round(spans / otlp_s), "otlp_calls_per_s": round(args.traces / otlp_s),
            "otlp_stored_spans_per_s": round(args.traces * (SPANS_PER_TRACE - 1) / otlp_s),
            "events_per_s": round(args.traces / events_s),
        }
        results["ratio_spans_per_event"] = round(results["otlp_spans_per_s"] / results["events_per_s"], 2)
        results["ratio_calls"] = round(results["otlp_calls_per_s"] / results["events_per_s"], 2)
        progress(json.dumps(results))
        OUT.mkdir(exist_ok=True)
        (OUT / "otlp.json").write_text(json.dumps(results, indent=2))
        stack.close()
    finally:
        broker.close()


if __name__ == "__main__":
    main()
