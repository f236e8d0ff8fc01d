"""An app instrumented the way each library's own documentation says, run with that
library's virtual environment (never Lookout's): it calls a local OpenAI-compatible server
through the official openai client and exports its spans over OTLP/HTTP to ingest.

    python client_app.py '{"library": "openinference", "scenario": "chat", ...}'

Scenarios: `chat` (a plain call), `stream` (a streamed call), `agent` (an agent run that
calls a tool and a retriever between two model calls), `embed` (an embeddings call),
`eval` (a chat call and a client-side evaluation of it). Prints one JSON line: the trace
ids the app made, so the test can find what it must find.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from opentelemetry import trace

CONFIG: dict[str, Any] = json.loads(sys.argv[1])
LIBRARY: str = CONFIG["library"]
SCENARIO: str = CONFIG["scenario"]
QUESTION: str = CONFIG.get("question", "What is the weather in Paris?")
CONVERSATION: str = CONFIG.get("conversation", "conv-1")
USER: str = CONFIG.get("user", "user-1")
MODEL: str = CONFIG.get("model", "gpt-4o-mini")
HEADERS = {"Authorization": f"Bearer {CONFIG['api_key']}"}
TRACES_URL = CONFIG["ingest_url"].rstrip("/") + "/v1/traces"

TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather in a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"]}},
}]


def weather(city: str) -> str:
    return f"Sunny in {city}"


def documents(query: str) -> list[str]:
    return [f"Travel guide: {query} has mild springs.", "Almanac: rain is rare in May."]


# --- set-up per library ---------------------------------------------------------------------


def provider_with_exporter():
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": CONFIG["app"],
                                                        "deployment.environment.name": "staging"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=TRACES_URL, headers=HEADERS)))
    trace.set_tracer_provider(provider)
    return provider


def setup() -> Any:
    if LIBRARY == "otel_genai":
        # The latest experimental GenAI conventions, content on the span (1.37+ attributes).
        os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
        os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "span_only"
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        provider = provider_with_exporter()
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return provider
    if LIBRARY == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        provider = provider_with_exporter()
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return provider
    if LIBRARY in ("openllmetry", "openllmetry_latest"):
        os.environ["TRACELOOP_TRACE_CONTENT"] = "true"
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        provider = provider_with_exporter()
        OpenAIInstrumentor().instrument(tracer_provider=provider)
        return provider
    if LIBRARY == "openlit":
        import openlit

        openlit.init(otlp_endpoint=CONFIG["ingest_url"], otlp_headers=HEADERS, application_name=CONFIG["app"],
                     environment="staging", disable_metrics=True, capture_message_content=True)
        return trace.get_tracer_provider()
    raise SystemExit(f"unknown library {LIBRARY}")


def client():
    from openai import OpenAI

    return OpenAI(base_url=CONFIG["openai_url"], api_key="sk-test", max_retries=0)


# --- scenarios ------------------------------------------------------------------------------


def chat(stream: bool) -> None:
    messages = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": QUESTION}]
    with session_context():
        if not stream:
            client().chat.completions.create(model=MODEL, messages=messages, temperature=0.2)
            return
        chunks = client().chat.completions.create(model=MODEL, messages=messages, stream=True,
                                                  stream_options={"include_usage": True})
        for _ in chunks:
            pass


def session_context():
    """Where the library has a way to say which conversation and user a call belongs to."""
    import contextlib

    stack = contextlib.ExitStack()
    if LIBRARY == "openinference":
        from openinference.instrumentation import using_session, using_user

        stack.enter_context(using_session(CONVERSATION))
        stack.enter_context(using_user(USER))
    return stack


def run_agent_turns(tool_span, retrieval_span) -> str:
    """One agent turn: ask with tools, run the tool the model chose, retrieve, answer."""
    openai = client()
    messages: list[dict[str, Any]] = [{"role": "user", "content": QUESTION}]
    first = openai.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    arguments = json.loads(call.function.arguments)
    result = tool_span(call.function.name, call.id, arguments)
    context = retrieval_span(arguments["city"])
    messages.append({"role": "assistant", "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    messages.append({"role": "system", "content": "Context: " + " ".join(context)})
    messages.append({"role": "user", "content": result})
    second = openai.chat.completions.create(model=MODEL, messages=messages)
    return second.choices[0].message.content or ""


def agent() -> None:
    if LIBRARY == "otel_genai":
        from opentelemetry.util.genai.handler import TelemetryHandler
        from opentelemetry.util.genai.types import InputMessage, OutputMessage, Text

        handler = TelemetryHandler()

        def tool_span(name: str, call_id: str, arguments: dict) -> str:
            with handler.tool(name, tool_call_id=call_id, tool_type="function",
                              tool_description="The weather in a city") as invocation:
                invocation.arguments = arguments
                result = weather(arguments["city"])
                invocation.tool_result = result
            return result

        def retrieval_span(query: str) -> list[str]:
            with handler.retrieval(data_source_id="guides", provider="chroma") as invocation:
                invocation.query_text = query
                found = documents(query)
                invocation.documents = [{"id": str(n), "content": text} for n, text in enumerate(found)]
            return found

        with handler.invoke_local_agent(agent_name="weather-agent", request_model=MODEL) as run:
            run.conversation_id = CONVERSATION
            run.input_messages = [InputMessage(role="user", parts=[Text(content=QUESTION)])]
            answer = run_agent_turns(tool_span, retrieval_span)
            run.output_messages = [OutputMessage(role="assistant", parts=[Text(content=answer)],
                                                 finish_reason="stop")]
        return
    if LIBRARY == "openinference":
        from openinference.instrumentation import OITracer, TraceConfig
        from openinference.semconv.trace import DocumentAttributes, SpanAttributes

        tracer = OITracer(trace.get_tracer("weather-agent"), config=TraceConfig())

        def tool_span(name: str, call_id: str, arguments: dict) -> str:
            with tracer.start_as_current_span(name, openinference_span_kind="tool") as span:
                span.set_tool(name=name, description="The weather in a city", parameters=arguments)
                span.set_input(arguments)
                result = weather(arguments["city"])
                span.set_output(result)
            return result

        def retrieval_span(query: str) -> list[str]:
            with tracer.start_as_current_span("retrieve guides", openinference_span_kind="retriever") as span:
                span.set_input(query)
                found = documents(query)
                for n, text in enumerate(found):
                    prefix = f"{SpanAttributes.RETRIEVAL_DOCUMENTS}.{n}."
                    span.set_attribute(prefix + DocumentAttributes.DOCUMENT_ID, str(n))
                    span.set_attribute(prefix + DocumentAttributes.DOCUMENT_CONTENT, text)
            return found

        with session_context(), tracer.start_as_current_span("weather-agent", openinference_span_kind="agent") as run:
            run.set_input(QUESTION)
            answer = run_agent_turns(tool_span, retrieval_span)
            run.set_output(answer)
        return
    raise SystemExit(f"{LIBRARY} has no agent spans of its own")


def embed() -> None:
    client().embeddings.create(model="text-embedding-3-small", input=[QUESTION])


def main() -> None:
    provider = setup()
    tracer = trace.get_tracer("lookout.tests.client_app")
    with tracer.start_as_current_span("request") as root:  # the app's own span around the work
        trace_id = format(root.get_span_context().trace_id, "032x")
        if SCENARIO in ("chat", "stream"):
            chat(stream=SCENARIO == "stream")
        elif SCENARIO == "agent":
            agent()
        elif SCENARIO == "embed":
            embed()
        else:
            raise SystemExit(f"unknown scenario {SCENARIO}")
    flushed = provider.force_flush(30_000)
    print(json.dumps({"trace_id": trace_id, "flushed": flushed}))
    provider.shutdown()


if __name__ == "__main__":
    main()
