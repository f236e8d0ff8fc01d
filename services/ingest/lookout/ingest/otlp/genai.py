"""OpenTelemetry's GenAI semantic conventions, every version still in the wild.

Messages are read newest convention first, one side (input, output) at a time:
1. 1.37+ attributes `gen_ai.system_instructions`, `gen_ai.input.messages`,
   `gen_ai.output.messages` (JSON messages made of `parts`; also on a
   `gen_ai.client.inference.operation.details` span event),
2. ≤ 1.36 span events `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice`,
   and the older `gen_ai.content.prompt` / `gen_ai.content.completion`.
Usage covers cache reads and writes (`gen_ai.usage.cache_read.input_tokens`,
`cache_creation` / `cache_write`) and reasoning tokens; `gen_ai.conversation.id` names the
session; tool, agent and retrieval spans are read too, and `gen_ai.evaluation.result`
events become client-side evaluations.
"""

from __future__ import annotations

from .messages import chat_message, event_payload, json_list, legacy_content, make_message, messages, parts_text
from .spans import Evaluation, Kind, Reading, SpanView, as_text, first_text, number

NAME = "genai"

# gen_ai.operation.name -> the kind of span.
_OPERATIONS: dict[str, Kind] = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "completion": "llm",
    "responses": "llm",
    "embeddings": "embedding",
    "embedding": "embedding",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "workflow",
    "retrieval": "retrieval",
    "retrieve": "retrieval",
}
# Any of these without an operation name: a model call of the oldest conventions.
_MARKERS = ("gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model")

INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE = ("gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens",
               "gen_ai.usage.cache_creation_input_tokens")
REASONING = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens",
             "gen_ai.usage.output_tokens_details.reasoning_tokens")
FINGERPRINT = ("openai.response.system_fingerprint", "gen_ai.openai.response.system_fingerprint",
               "gen_ai.openai.system_fingerprint", "gen_ai.response.system_fingerprint")
TTFT_SECONDS = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")

_ROLE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
CONTENT_EVENTS = frozenset({*_ROLE_EVENTS, "gen_ai.choice", "gen_ai.content.prompt", "gen_ai.content.completion",
                            "gen_ai.client.inference.operation.details"})
EVALUATION_EVENT = "gen_ai.evaluation.result"


def read(view: SpanView, reading: Reading) -> None:
    operation = view.text("gen_ai.operation.name")
    kind = _OPERATIONS.get(operation or "")
    if kind is None and any(view.has(key) for key in _MARKERS):
        kind = "llm"
    if kind is not None:
        reading.fill(kind=kind, convention=NAME)
    reading.fill(
        operation=operation,
        provider=view.text("gen_ai.provider.name", "gen_ai.system"),
        request_model=view.text("gen_ai.request.model"),
        response_model=view.text("gen_ai.response.model"),
        response_id=view.text("gen_ai.response.id"),
        fingerprint=view.text(*FINGERPRINT),
        tokens_in=view.count(*INPUT_TOKENS),
        tokens_out=view.count(*OUTPUT_TOKENS),
        cache_read=view.count(*CACHE_READ),
        cache_write=view.count(*CACHE_WRITE),
        reasoning=view.count(*REASONING),
        ttft_s=view.take(*TTFT_SECONDS),
        session_id=view.text("gen_ai.conversation.id"),
        user_id=view.text("user.id", "enduser.id"),
        agent_name=view.text("gen_ai.agent.name"),
        tool_name=view.text("gen_ai.tool.name"),
        tool_call_id=view.text("gen_ai.tool.call.id"),
        tool_arguments=_text_of(view.take("gen_ai.tool.call.arguments")),
        tool_result=_text_of(view.take("gen_ai.tool.call.result")),
        tool_definitions=_definitions(view),
        query=view.text("gen_ai.retrieval.query.text", "gen_ai.retrieval.query", "db.query.text"),
        documents=_documents(view),
    )
    finish = view.take("gen_ai.response.finish_reasons")
    if isinstance(finish, list):
        reading.fill(finish_reasons=[str(item) for item in finish])
    elif isinstance(finish, str):
        reading.fill(finish_reasons=[finish])
    _read_attribute_messages(view, reading)
    _read_event_messages(view, reading)
    if reading.kind in ("agent", "workflow") and (reading.input or reading.output):
        # An agent's own input and output are what it was asked and answered, not a model call.
        reading.fill(span_input=_joined(reading.input), span_output=_joined(reading.output))
    reading.evaluations.extend(_evaluations(view))


def _text_of(value: object) -> str | None:
    return None if value is None else as_text(value)


def _joined(found: list | None) -> str | None:
    texts = [m.content for m in found or [] if m.content]
    return "\n".join(texts) or None


def _definitions(view: SpanView) -> int | None:
    value = view.take("gen_ai.tool.definitions")
    if isinstance(value, str):
        items = json_list(value, "gen_ai.tool.definitions", [])
        return len(items) if items is not None else None
    return len(value) if isinstance(value, list) else None


def _documents(view: SpanView) -> list[str] | None:
    value = view.take("gen_ai.retrieval.documents")
    items = json_list(value, "gen_ai.retrieval.documents", []) if value is not None else None
    if not items:
        return None
    texts = []
    for item in items:
        if isinstance(item, dict):
            text = item.get("content", item.get("text"))
            texts.append(text if isinstance(text, str) else as_text(item))
        else:
            texts.append(as_text(item))
    return texts


def _read_attribute_messages(view: SpanView, reading: Reading) -> None:
    source = dict(view.attrs)
    for _, _, details in view.events("gen_ai.client.inference.operation.details"):
        source.update({k: v for k, v in details.items() if k not in source})
    notes = reading.notes

    key = "gen_ai.system_instructions"
    view.take(key)
    items = json_list(source.get(key), key, notes)
    system = []
    if items and all(isinstance(item, dict) and "role" in item for item in items):
        system = messages(items, key, "system", notes)  # sent as messages rather than parts
    elif items:
        # Instructions are the parts of one system prompt.
        instruction = make_message("system", parts_text(items), None, key, notes)
        system = [instruction] if instruction and instruction.content else []

    key = "gen_ai.input.messages"
    view.take(key)
    items = json_list(source.get(key), key, notes)
    if system or items is not None:
        reading.fill(input=system + messages(items or [], key, None, notes))

    key = "gen_ai.output.messages"
    view.take(key)
    items = json_list(source.get(key), key, notes)
    if items is not None:
        reading.fill(output=messages(items, key, "assistant", notes))
        reading.fill(finish_reasons=[item["finish_reason"] for item in items
                                     if isinstance(item, dict) and isinstance(item.get("finish_reason"), str)])


def _read_event_messages(view: SpanView, reading: Reading) -> None:
    notes = reading.notes
    inputs = []
    choices: list[tuple[float, object]] = []
    finish_reasons: list[str] = []
    for position, name, attrs in view.events(*CONTENT_EVENTS):
        where = f"event {name}[{position}]"
        if name in _ROLE_EVENTS:
            payload = event_payload(attrs, where, notes)
            message = chat_message(payload, where, _ROLE_EVENTS[name], notes)
            inputs.extend([message] if message else [])
        elif name == "gen_ai.choice":
            payload = event_payload(attrs, where, notes)
            body = payload.get("message")
            body = body if isinstance(body, dict) else {"content": payload.get("content", body)}
            message = chat_message({**body, "role": body.get("role") or "assistant"}, where, "assistant", notes)
            if message:
                index = number(payload.get("index"))
                choices.append((len(choices) if index is None else index, message))
            if isinstance(payload.get("finish_reason"), str):
                finish_reasons.append(payload["finish_reason"])
        elif name == "gen_ai.content.prompt":
            inputs.extend(legacy_content(attrs.get("gen_ai.prompt"), where, "user", notes))
        elif name == "gen_ai.content.completion":
            found = legacy_content(attrs.get("gen_ai.completion"), where, "assistant", notes)
            choices.extend((len(choices), m) for m in found)
    choices.sort(key=lambda pair: pair[0])
    reading.fill(input=inputs or None, output=[m for _, m in choices] or None, finish_reasons=finish_reasons)


def _evaluations(view: SpanView) -> list[Evaluation]:
    found = []
    for _, _, attrs in view.events(EVALUATION_EVENT):
        name = first_text(attrs, "gen_ai.evaluation.name")
        value = number(attrs.get("gen_ai.evaluation.score.value"))
        label = first_text(attrs, "gen_ai.evaluation.score.label")
        if name is None or (value is None and label is None):
            continue  # nothing to score: counted as dropped by coverage
        found.append(Evaluation(name=name, value=value, label=label,
                                explanation=first_text(attrs, "gen_ai.evaluation.explanation")))
    return found
