"""OTLP intake beyond the call: trace steps, sessions across spans, client evaluations,
coverage, and hostile span shapes; exports made with the real OpenTelemetry SDK and OTLP
encoder (the real instrumentation libraries are in tests/test_otlp_instrumentations.py)."""

from __future__ import annotations

import json

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from lookout.core.ids import span_event_id
from lookout.ingest.otlp import coverage as coverage_metrics
from lookout.ingest.otlp.convert import convert

from .test_otlp import BASE, PROTOBUF, T0, chat, convert_spans, decode_request, finish, protobuf_body, record

SECOND = 1_000_000_000


def agent_run(tracer: Tracer, *, conversation: str | None = "conv-9", evaluation: dict | None = None) -> None:
    agent_attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner"}
    if conversation:
        agent_attrs["gen_ai.conversation.id"] = conversation
    with tracer.start_as_current_span("invoke_agent planner", attributes=agent_attrs, start_time=T0) as agent:
        with tracer.start_as_current_span("chat", kind=SpanKind.CLIENT, attributes={
                **BASE, "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [
                    {"type": "text", "content": "Paris."}]}])}, start_time=T0 + SECOND // 10,
                end_on_exit=False) as call:
            if evaluation:
                call.add_event("gen_ai.evaluation.result", evaluation)
            call.end(end_time=T0 + SECOND // 2)
        with tracer.start_as_current_span("execute_tool weather", attributes={
                "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "weather",
                "gen_ai.tool.call.id": "c-1", "gen_ai.tool.call.arguments": '{"city": "Paris"}',
                "gen_ai.tool.call.result": "sunny", "http.route": "/tools"}, start_time=T0 + SECOND,
                end_on_exit=False) as tool:
            tool.set_status(Status(StatusCode.ERROR, "tool timed out"))
            tool.end(end_time=T0 + 2 * SECOND)
        agent.end(end_time=T0 + 3 * SECOND)


def test_an_agent_run_becomes_a_call_and_three_linked_steps_with_durations_and_errors():
    result = convert_spans(record(agent_run))
    assert result.rejected == [] and len(result.calls) == 1
    steps = {step.kind: step for step in result.trace_spans}
    assert set(steps) == {"agent", "llm", "tool"}
    agent, llm, tool = steps["agent"], steps["llm"], steps["tool"]
    assert llm.parent_span_id == tool.parent_span_id == agent.span_id
    assert llm.event_id == result.calls[0].event_id == span_event_id(llm.trace_id, llm.span_id)
    assert (agent.duration_ms, llm.duration_ms, tool.duration_ms) == (3000.0, 400.0, 1000.0)
    assert (tool.status, tool.error) == ("error", "tool timed out")
    assert (tool.input, tool.output) == ('{"city": "Paris"}', "sunny")
    assert tool.attributes["tool.name"] == "weather" and tool.attributes["tool.call_id"] == "c-1"
    assert "http.route" not in tool.attributes  # not a GenAI attribute: dropped, and counted so
    assert agent.attributes["agent.name"] == "planner"


def test_the_calls_below_an_agent_run_take_its_conversation_id_as_their_session():
    result = convert_spans(record(agent_run))
    assert result.calls[0].session_id == "conv-9"
    assert {step.session_id for step in result.trace_spans} == {"conv-9"}
    # The raw conversation id is never kept beside the field ingest pseudonymises.
    assert "gen_ai.conversation.id" not in result.calls[0].metadata


def test_an_evaluation_event_on_a_call_becomes_a_client_score_for_that_call():
    evaluation = {"gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.25,
                  "gen_ai.evaluation.score.label": "unfaithful", "gen_ai.evaluation.explanation": "invents a city"}
    result = convert_spans(record(lambda tracer: agent_run(tracer, evaluation=evaluation)))
    (score,) = result.scores
    call = result.calls[0]
    assert (score.event_id, score.app_id, score.model, score.source) == (call.event_id, call.app_id, call.model,
                                                                         "client")
    assert (score.name, score.value, score.label, score.explanation) == ("faithfulness", 0.25, "unfaithful",
                                                                          "invents a city")
    assert score.evaluator == "lookout.tests" and score.environment == call.environment
    # A retried export (the same spans again) names the same score, so it is stored once.
    spans = record(lambda tracer: agent_run(tracer, evaluation=evaluation))
    assert convert_spans(spans).scores[0].score_id == convert_spans(spans).scores[0].score_id


def test_an_evaluation_without_a_value_or_without_a_call_is_dropped_and_counted():
    label_only = {"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": "rude"}
    result = convert_spans(record(lambda tracer: agent_run(tracer, evaluation=label_only)))
    assert result.scores == []

    def lone(tracer: Tracer) -> None:
        span = tracer.start_span("evaluate", start_time=T0, attributes={"gen_ai.operation.name": "invoke_workflow"})
        span.add_event("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "x", "gen_ai.evaluation.score.value": 1})
        finish(span)

    result = convert_spans(record(lone))
    assert result.scores == []
    assert sum(n for (_, _, name, outcome), n in result.coverage.attributes.items()
               if name == "event:gen_ai.evaluation.result" and outcome == "dropped") == 1


def test_cache_and_reasoning_tokens_of_the_current_conventions_are_read():
    spans = record(lambda tracer: finish(chat(tracer, {**BASE, "gen_ai.usage.input_tokens": 100,
                                                       "gen_ai.usage.output_tokens": 20,
                                                       "gen_ai.usage.cache_read.input_tokens": 60,
                                                       "gen_ai.usage.cache_creation.input_tokens": 30,
                                                       "gen_ai.usage.reasoning.output_tokens": 12})))
    (call,) = convert_spans(spans).calls
    assert (call.tokens_in, call.tokens_out, call.tokens_cache_read, call.tokens_cache_write,
            call.tokens_reasoning) == (100, 20, 60, 30, 12)


def test_coverage_counts_per_source_the_fields_filled_and_the_attributes_mapped_kept_or_dropped():
    spans = record(lambda tracer: finish(chat(tracer, {**BASE, "gen_ai.request.temperature": 0.3,
                                                       "server.address": "api.openai.com"})))
    result = convert_spans(spans)
    source = ("lookout.tests", "")
    assert result.coverage.fields[(*source, "model", "mapped")] == 1
    assert result.coverage.fields[(*source, "output", "empty")] == 1
    attributes = result.coverage.attributes
    assert attributes[(*source, "gen_ai.request.model", "mapped")] == 1
    assert attributes[(*source, "gen_ai.request.temperature", "kept")] == 1
    assert attributes[(*source, "server.address", "dropped")] == 1
    assert result.calls[0].metadata["otlp.dropped"] == "server.address"
    assert result.coverage.spans[(*source, "llm")] == 1


def test_indexed_attribute_families_count_once_per_span_and_metric_labels_stay_bounded():
    attrs = {**BASE, **{f"llm.input_messages.{n}.message.content": "x" for n in range(50)},
             **{f"custom.attribute.{n}": 1 for n in range(5)}}
    result = convert_spans(record(lambda tracer: finish(chat(tracer, attrs))))
    families = {name for (_, _, name, _), _ in result.coverage.attributes.items()}
    assert "llm.input_messages.N.message.content" in families
    assert sum(1 for name in families if name.startswith("llm.input_messages")) == 1
    # Hostile scope names cannot grow /metrics without end: past the budget they are "other".
    budget = coverage_metrics._Budget()
    sources = {budget.source(f"evil-{n}", "1") for n in range(coverage_metrics._MAX_SOURCES + 50)}
    assert len(sources) == coverage_metrics._MAX_SOURCES + 1 and ("other", "") in sources
    assert budget.source("x" * 10_000, "")[0] == "other"  # cut to a label, and past the budget


def test_a_step_with_an_invalid_app_is_rejected_naming_the_field_and_the_others_kept():
    def build(tracer: Tracer) -> None:
        finish(tracer.start_span("execute_tool t", start_time=T0, attributes={"gen_ai.operation.name": "execute_tool"}))

    good = record(build, {"service.name": "shop"})
    bad = record(build, {"service.name": "shop' OR 1=1 --"})
    result = convert_spans(good + bad)
    assert [s.app_id for s in result.trace_spans] == ["shop"]
    assert [(r["index"], r["field"]) for r in result.rejected] == [(1, "app_id")]


def test_a_cycle_of_parent_ids_neither_loops_inheritance_nor_the_tree():
    from lookout.core.explore import _tree

    nodes = [{"app_id": "a", "span_id": "1", "parent_span_id": "2", "ts": "2026-01-01T00:00:00+00:00"},
             {"app_id": "a", "span_id": "2", "parent_span_id": "1", "ts": "2026-01-01T00:00:01+00:00"}]
    assert _tree(nodes) == []  # no root: nothing to draw, and no endless walk
    nodes.append({"app_id": "a", "span_id": "3", "parent_span_id": "", "ts": "2026-01-01T00:00:02+00:00"})
    assert [n["span_id"] for n in _tree(nodes)] == ["3"]


def test_openlit_system_prompt_sent_twice_is_one_message():
    system = json.dumps([{"type": "text", "content": "Be brief."}])
    messages = json.dumps([{"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
                           {"role": "user", "parts": [{"type": "text", "content": "Hi"}]}])
    spans = record(lambda tracer: finish(chat(tracer, {**BASE, "gen_ai.system_instructions": system,
                                                       "gen_ai.input.messages": messages})))
    (call,) = convert_spans(spans).calls
    assert [(m.role, m.content) for m in call.input] == [("system", "Be brief."), ("user", "Hi")]


def test_a_json_export_converts_like_its_protobuf():
    from .test_otlp import json_body

    body = protobuf_body(record(agent_run))
    from_json = convert(decode_request(json_body(body), "application/json"), default_app_id=None)
    from_protobuf = convert(decode_request(body, PROTOBUF), default_app_id=None)
    assert [s.span_key for s in from_json.trace_spans] == [s.span_key for s in from_protobuf.trace_spans]
