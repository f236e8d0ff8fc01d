"""Traceloop's OpenLLMetry (opentelemetry-instrumentation-openai and its siblings, before
they moved to the GenAI 1.37 message attributes): messages as indexed attributes
`gen_ai.prompt.N.{role,content,tool_calls.K.*}` / `gen_ai.completion.N.{...,finish_reason}`,
the call type in `llm.request.type`, tools offered in `llm.request.functions.N.*`, workflow,
task, agent and tool spans of the Traceloop SDK in `traceloop.span.kind` with their
`traceloop.entity.input` / `output`, and session and user ids from association properties.
"""

from __future__ import annotations

from typing import Any

from lookout.core.events import Message

from .messages import loads, make_message
from .spans import Kind, Reading, SpanView, as_text

NAME = "openllmetry"

_REQUEST_TYPES: dict[str, Kind] = {"chat": "llm", "completion": "llm", "embedding": "embedding", "rerank": "retrieval"}
_SPAN_KINDS: dict[str, Kind] = {"workflow": "workflow", "task": "chain", "agent": "agent", "tool": "tool"}
_ASSOCIATION = "traceloop.association.properties."


def read(view: SpanView, reading: Reading) -> None:
    kind = _REQUEST_TYPES.get(view.text("llm.request.type") or "") or _SPAN_KINDS.get(
        view.text("traceloop.span.kind") or "")
    prompts, completions = view.indexed("gen_ai.prompt"), view.indexed("gen_ai.completion")
    if kind is None and (prompts or completions):
        kind = "llm"
    if kind is not None:
        reading.fill(kind=kind, convention=NAME)
    notes = reading.notes
    reading.fill(
        tokens_in=view.count("llm.usage.prompt_tokens"),
        tokens_out=view.count("llm.usage.completion_tokens"),
        reasoning=view.count("llm.usage.reasoning_tokens"),
        user_id=view.text("llm.user", _ASSOCIATION + "user_id", _ASSOCIATION + "user"),
        session_id=view.text(_ASSOCIATION + "session_id", _ASSOCIATION + "conversation_id"),
        input=_messages(prompts, "gen_ai.prompt", "user", notes),
        output=_messages(completions, "gen_ai.completion", "assistant", notes),
        finish_reasons=[slot["finish_reason"] for slot in completions.values()
                        if isinstance(slot.get("finish_reason"), str)],
    )
    view.take("llm.usage.total_tokens", "llm.is_streaming", "gen_ai.is_streaming")
    functions = view.indexed("llm.request.functions")
    if functions:
        reading.fill(tool_definitions=len(functions))
    entity_in, entity_out = view.take("traceloop.entity.input"), view.take("traceloop.entity.output")
    view.take("traceloop.entity.name", "traceloop.entity.path", "traceloop.workflow.name")
    if reading.kind == "tool":
        reading.fill(tool_name=view.text("traceloop.entity.name") or view.name,
                     tool_arguments=_entity(entity_in, notes), tool_result=_entity(entity_out, notes))
    elif reading.kind in ("agent", "workflow", "chain"):
        reading.fill(span_input=_entity(entity_in, notes), span_output=_entity(entity_out, notes),
                     agent_name=view.text("traceloop.entity.name") if reading.kind == "agent" else None)


def _entity(value: Any, notes: list[str]) -> str | None:
    """traceloop.entity.input/output: JSON of the function's arguments or result; its
    `inputs` / `outputs` member when the SDK wrapped them."""
    if not isinstance(value, str):
        return None if value is None else as_text(value)
    parsed = loads(value, "traceloop.entity", notes, quiet=True)
    if isinstance(parsed, dict):
        for key in ("inputs", "outputs", "args"):
            if key in parsed and len(parsed) <= 2:
                inner = parsed[key]
                return inner if isinstance(inner, str) else as_text(inner)
    return value


def _messages(slots: dict[int, dict[str, Any]], prefix: str, default_role: str, notes: list[str]) -> list[Message]:
    found: list[Message] = []
    for n, slot in slots.items():
        where = f"{prefix}.{n}"
        role = slot.get("role") or default_role
        content = slot.get("content")
        if content is None:
            calls: dict[int, dict[str, Any]] = {}
            for key, value in slot.items():
                head, _, rest = key.partition(".")
                index, _, name = rest.partition(".")
                if head == "tool_calls" and index.isdigit() and name:
                    calls.setdefault(int(index), {})[name] = value
            if calls:
                content = as_text({"tool_calls": [calls[k] for k in sorted(calls)]})
        elif isinstance(content, str) and content.lstrip().startswith("["):
            # Multi-part content written as JSON: [{"type": "text", "text": ...}, ...]
            parts = loads(content, where, notes, quiet=True)
            if isinstance(parts, list):
                texts = [t for p in parts if isinstance(p, dict) and isinstance(t := p.get("text"), str)]
                content = "\n".join(texts) if texts else content
        if not isinstance(role, str):
            notes.append(f"{where}: message has no role")
            continue
        name = slot.get("name") if isinstance(slot.get("name"), str) else None
        message = make_message(role, content if content is None or isinstance(content, str) else as_text(content),
                               name, where, notes)
        if message:
            found.append(message)
    return found
