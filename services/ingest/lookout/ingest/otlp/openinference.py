"""Arize's OpenInference conventions (openinference-instrumentation-*: OpenAI, LangChain,
LlamaIndex, DSPy, CrewAI, Bedrock, Anthropic...).

`openinference.span.kind` names the span (LLM, EMBEDDING, TOOL, RETRIEVER, RERANKER, AGENT,
CHAIN); messages are the indexed `llm.input_messages.N.message.*` /
`llm.output_messages.N.message.*`, else `input.value` / `output.value` (JSON of the
provider request and reply, or plain text); usage is `llm.token_count.*`, with cache and
reasoning details; `session.id` and `user.id` name the session and the user.
"""

from __future__ import annotations

from typing import Any

from lookout.core.events import Message

from .messages import loads, make_message, messages
from .spans import Kind, Reading, SpanView, as_text

NAME = "openinference"

_KINDS: dict[str, Kind] = {
    "LLM": "llm",
    "EMBEDDING": "embedding",
    "TOOL": "tool",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "AGENT": "agent",
    "CHAIN": "chain",
}


def read(view: SpanView, reading: Reading) -> None:
    kind_name = view.text("openinference.span.kind")
    if kind_name is None and not view.has("llm.model_name"):
        return
    kind = _KINDS.get((kind_name or "LLM").upper())
    if kind is not None:
        reading.fill(kind=kind, convention=NAME)
    notes = reading.notes
    input_value, output_value = view.take("input.value"), view.take("output.value")
    view.take("input.mime_type", "output.mime_type")
    request = _json_object(input_value, "input.value", notes)
    reply = _json_object(output_value, "output.value", notes)
    reading.fill(
        provider=view.text("llm.provider", "llm.system"),
        response_model=view.text("llm.model_name", "embedding.model_name") or _text(reply, "model"),
        request_model=_text(request, "model"),
        fingerprint=_text(reply, "system_fingerprint"),
        response_id=_text(reply, "id"),
        tokens_in=view.count("llm.token_count.prompt"),
        tokens_out=view.count("llm.token_count.completion"),
        cache_read=view.count("llm.token_count.prompt_details.cache_read"),
        cache_write=view.count("llm.token_count.prompt_details.cache_write"),
        reasoning=view.count("llm.token_count.completion_details.reasoning"),
        session_id=view.text("session.id"),
        user_id=view.text("user.id"),
    )
    view.take("llm.token_count.total", "llm.token_count.prompt_details.audio",
              "llm.token_count.completion_details.audio")
    finish = view.text("llm.finish_reason")
    if finish:
        reading.fill(finish_reasons=[finish])
    tools = view.indexed("llm.tools")
    if tools:
        reading.fill(tool_definitions=len(tools))

    if reading.kind in ("llm", None):
        reading.fill(input=_indexed_messages(view, "llm.input_messages", None, notes)
                     or _request_messages(request, input_value, notes))
        reading.fill(output=_indexed_messages(view, "llm.output_messages", "assistant", notes)
                     or _reply_messages(reply, output_value, notes))
    elif reading.kind == "embedding":
        texts = [slot.get("embedding.text") for slot in view.indexed("embedding.embeddings").values()]
        reading.fill(query="\n".join(t for t in texts if isinstance(t, str)) or _plain(input_value))
    elif reading.kind == "tool":
        reading.fill(tool_name=view.text("tool.name") or view.name, tool_call_id=view.text("tool_call.id", "tool.id"),
                     tool_arguments=_plain(input_value) or _plain(view.take("tool.parameters")),
                     tool_result=_plain(output_value))
        view.take("tool.description", "tool.parameters", "tool.json_schema")
    elif reading.kind == "retrieval":
        documents = [slot.get("document.content") for slot in view.indexed("retrieval.documents").values()]
        documents += [slot.get("document.content") for slot in view.indexed("reranker.output_documents").values()]
        reading.fill(query=_plain(input_value) or view.text("reranker.query"),
                     documents=[d for d in documents if isinstance(d, str)] or None)
    else:  # agent, chain
        reading.fill(span_input=_plain(input_value), span_output=_plain(output_value),
                     agent_name=view.name if reading.kind == "agent" else None)


def _json_object(value: Any, where: str, notes: list[str]) -> dict | None:
    if not isinstance(value, str) or not value.lstrip().startswith("{"):
        return None
    parsed = loads(value, where, notes, quiet=True)
    return parsed if isinstance(parsed, dict) else None


def _text(obj: dict | None, key: str) -> str | None:
    value = obj.get(key) if obj else None
    return value if isinstance(value, str) and value else None


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else as_text(value)


def _indexed_messages(view: SpanView, prefix: str, default_role: str | None, notes: list[str]) -> list[Message]:
    found: list[Message] = []
    for n, slot in view.indexed(prefix).items():
        where = f"{prefix}.{n}"
        role = slot.get("message.role") or default_role
        content = slot.get("message.content")
        if content is None:
            # Multi-part messages: message.contents.K.message_content.text
            parts = sorted((int(key.split(".")[2]), value) for key, value in slot.items()
                           if key.startswith("message.contents.") and key.endswith(".message_content.text")
                           and key.split(".")[2].isdigit())
            content = "\n".join(str(value) for _, value in parts) or None
        if content is None:
            calls = _tool_calls(slot)
            content = as_text({"tool_calls": calls}) if calls else None
        if not isinstance(role, str):
            notes.append(f"{where}: message has no role")
            continue
        name = slot.get("message.name") if isinstance(slot.get("message.name"), str) else None
        message = make_message(role, content if content is None or isinstance(content, str) else as_text(content),
                               name, where, notes)
        if message:
            found.append(message)
    return found


def _tool_calls(slot: dict[str, Any]) -> list[dict[str, Any]]:
    calls: dict[int, dict[str, Any]] = {}
    for key, value in slot.items():
        parts = key.split(".")
        # message.tool_calls.K.tool_call.function.name / .arguments / tool_call.id
        if len(parts) >= 5 and parts[1] == "tool_calls" and parts[2].isdigit():
            calls.setdefault(int(parts[2]), {})[parts[-1] if parts[-2] == "function" else "id"] = value
    return [calls[k] for k in sorted(calls)]


def _request_messages(request: dict | None, raw: Any, notes: list[str]) -> list[Message] | None:
    if request and isinstance(request.get("messages"), list):
        return messages(request["messages"], "input.value.messages", None, notes) or None
    if request and isinstance(request.get("input"), str | list):  # Responses API
        items = request["input"]
        if isinstance(items, str):
            found = make_message("user", items, None, "input.value.input", notes)
            return [found] if found else None
        return messages([i for i in items if isinstance(i, dict)], "input.value.input", "user", notes) or None
    if isinstance(raw, str) and raw and request is None:
        found = make_message("user", raw, None, "input.value", notes)
        return [found] if found else None
    return None


def _reply_messages(reply: dict | None, raw: Any, notes: list[str]) -> list[Message] | None:
    if reply and isinstance(reply.get("choices"), list):
        bodies = [c.get("message") for c in reply["choices"] if isinstance(c, dict)]
        return messages([b for b in bodies if isinstance(b, dict)], "output.value.choices", "assistant", notes) or None
    if isinstance(raw, str) and raw and reply is None:
        found = make_message("assistant", raw, None, "output.value", notes)
        return [found] if found else None
    return None
