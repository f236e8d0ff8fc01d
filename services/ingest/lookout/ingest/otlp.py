"""OTLP/HTTP trace intake: decode an export request, turn its GenAI spans into LlmCall events.

Instrumentations disagree on where prompts and answers live, and the GenAI semantic
conventions have moved three times, so messages are read from whichever convention a span
carries, newest first, one side (input, output) at a time:

1. attributes `gen_ai.system_instructions`, `gen_ai.input.messages`, `gen_ai.output.messages`
   (JSON strings of messages made of `parts`; also read from a
   `gen_ai.client.inference.operation.details` span event),
2. span events `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice`, and the
   older `gen_ai.content.prompt` / `gen_ai.content.completion`,
3. flattened attributes `gen_ai.prompt.N.role|content` and `gen_ai.completion.N.role|content`.

Nothing in a span may fail a batch: content that cannot be parsed is skipped and named in
metadata (`otlp.parse_errors`), and a span that still cannot make a valid LlmCall is reported
back in `rejected` with the field at fault, so the route can answer with a partial success.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from lookout.core.events import LlmCall, Message
from lookout.core.ids import span_event_id

__all__ = [
    "ExportTraceServiceRequest",
    "OtlpDecodeError",
    "OtlpResult",
    "UnsupportedMediaType",
    "convert",
    "decode_request",
]

Attrs = dict[str, Any]


class OtlpDecodeError(ValueError):
    """The body is not decodable as its declared content type (HTTP 400)."""


class UnsupportedMediaType(ValueError):
    """The content type is neither OTLP protobuf nor OTLP JSON (HTTP 415)."""


@dataclass
class OtlpResult:
    calls: list[LlmCall] = field(default_factory=list)
    ignored: int = 0  # spans that are not GenAI calls
    # {"index": span ordinal in the request, "field": ..., "message": ...}
    rejected: list[dict[str, Any]] = field(default_factory=list)
    spans: int = 0  # every span seen


# --- decoding -------------------------------------------------------------------------------

# "application/protobuf" is the IANA-registered name; some clients send it instead.
_PROTOBUF_TYPES = frozenset({"application/x-protobuf", "application/protobuf"})
_JSON_TYPE = "application/json"


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _PROTOBUF_TYPES:
        return _decode_protobuf(body)
    if media_type == _JSON_TYPE:
        return _decode_json(body)
    raise UnsupportedMediaType(
        f"unsupported content type {content_type!r}: OTLP/HTTP takes application/x-protobuf or application/json"
    )


def _decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"body is not a protobuf ExportTraceServiceRequest: {exc}") from exc
    return request


def _decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpDecodeError("OTLP/JSON body must be a JSON object")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        # OTLP/JSON receivers must ignore fields they do not know (newer senders add some).
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"body is not an OTLP/JSON ExportTraceServiceRequest: {exc}") from exc
    return request


def _hex_ids_to_base64(document: dict[str, Any]) -> None:
    """OTLP/JSON writes trace and span ids in hex where protobuf's JSON mapping expects base64;
    rewrite them in place so json_format reads the right bytes."""
    for resource_spans in _objects(_field(document, "resourceSpans", "resource_spans")):
        for scope_spans in _objects(_field(resource_spans, "scopeSpans", "scope_spans")):
            for span in _objects(scope_spans.get("spans")):
                _rewrite_ids(span, ("traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"))
                for link in _objects(span.get("links")):
                    _rewrite_ids(link, ("traceId", "trace_id", "spanId", "span_id"))


def _field(obj: dict[str, Any], json_name: str, proto_name: str) -> Any:
    # The spec allows only lowerCamelCase keys, but json_format also takes the proto names, and
    # ids under a key we skipped would be read as base64: wrong bytes, silently.
    return obj[json_name] if json_name in obj else obj.get(proto_name)


def _objects(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _rewrite_ids(obj: dict[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            # Not hex: some exporters send protobuf's base64 anyway; json_format decodes it or fails.
            continue
        obj[key] = base64.b64encode(raw).decode("ascii")


# --- conversion -------------------------------------------------------------------------------

# Any of these makes a span a GenAI call.
_GENAI_MARKERS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model")
# GenAI operations that are not a model call: a tool run, or an agent span that wraps the model
# calls below it (counting it too would double tokens and cost).
_NOT_MODEL_CALLS = frozenset({"execute_tool", "invoke_agent", "create_agent", "invoke_workflow"})

_TTFT_SECONDS = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")

# gen_ai.* attributes that become LlmCall fields or messages rather than metadata.
_NOT_METADATA = frozenset(
    {
        "gen_ai.provider.name",
        "gen_ai.system",
        "gen_ai.response.model",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",  # whole tool schemas: too long to be useful cut to 1 KiB
        "gen_ai.prompt",
        "gen_ai.completion",
        *_TTFT_SECONDS,
        *_INPUT_TOKENS,
        *_OUTPUT_TOKENS,
    }
)
_FLATTENED = re.compile(r"^gen_ai\.(prompt|completion)\.(\d+)\.(\w+)$")

_METADATA_VALUE_MAX = 1024  # LlmCall.metadata values are ShortText
_METADATA_ENTRIES_MAX = 256

# Friendlier words than pydantic's "Field required" for what a sender most often leaves out.
_MISSING_HINTS = {
    "model": "no gen_ai.response.model or gen_ai.request.model attribute on the span",
    "app_id": "no lookout.app_id or service.name resource attribute, and no default app for this key",
}


class _Rejected(Exception):
    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


def span_count(request: ExportTraceServiceRequest) -> int:
    """Spans in a decoded request, without looking at any of them (repeated-field lengths)."""
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def convert(request: ExportTraceServiceRequest, *, default_app_id: str | None) -> OtlpResult:
    result = OtlpResult()
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope_name = scope_spans.scope.name
            for span in scope_spans.spans:
                index = result.spans
                result.spans += 1
                attrs = _attributes(span.attributes)
                if not _is_model_call(attrs):
                    result.ignored += 1
                    continue
                try:
                    result.calls.append(_to_call(span, attrs, resource, scope_name, default_app_id))
                except _Rejected as exc:
                    result.rejected.append({"index": index, "field": exc.field, "message": exc.message})
                except Exception as exc:
                    # A span shaped in a way nobody foresaw must cost that span, not the batch.
                    result.rejected.append(
                        {"index": index, "field": "span", "message": f"could not convert the span: {exc!r}"}
                    )
    return result


def _is_model_call(attrs: Attrs) -> bool:
    if not any(key in attrs for key in _GENAI_MARKERS):
        return False
    return attrs.get("gen_ai.operation.name") not in _NOT_MODEL_CALLS


def _to_call(span: Span, attrs: Attrs, resource: Attrs, scope_name: str, default_app_id: str | None) -> LlmCall:
    trace_id = _span_id_hex(span.trace_id, 16, "trace_id")
    span_id = _span_id_hex(span.span_id, 8, "span_id")
    if not span.start_time_unix_nano:
        raise _Rejected("ts", "span has no start time")

    notes: list[str] = []
    conversation = _read_conversation(span, attrs, notes)
    model = _first_text(attrs, "gen_ai.response.model", "gen_ai.request.model")

    fields: dict[str, Any] = {
        "event_id": span_event_id(trace_id, span_id),
        "ts": _from_unix_nano(span.start_time_unix_nano),
        "trace_id": trace_id,
        "span_id": span_id,
        "input": conversation.input,
        "output": conversation.output,
        "metadata": _metadata(span, attrs, scope_name, model, conversation, notes),
        "tags": _tags(resource.get("lookout.tags"), attrs.get("lookout.tags")),
    }
    optional = {
        "app_id": _app_id(resource, default_app_id),
        "environment": _first_text(resource, "deployment.environment.name", "deployment.environment"),
        "provider": _first_text(attrs, "gen_ai.provider.name", "gen_ai.system"),
        "model": model,
        "prompt_version": _first_text(attrs, "lookout.prompt_version"),
        "tokens_in": _no_bool(_first(attrs, _INPUT_TOKENS)),
        "tokens_out": _no_bool(_first(attrs, _OUTPUT_TOKENS)),
        "ttft_ms": _seconds_to_ms(_first(attrs, _TTFT_SECONDS)),
        "user_id": _first_text(attrs, "user.id", "enduser.id"),
        "session_id": _first_text(attrs, "session.id", "gen_ai.conversation.id"),
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    if span.end_time_unix_nano:
        # Left negative when the span ends before it starts: validation names the field.
        fields["latency_ms"] = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    if span.status.code == Status.STATUS_CODE_ERROR:
        fields["status"] = "error"
        fields["error"] = span.status.message or _first_text(attrs, "error.type") or _exception(span) or "error"

    try:
        return LlmCall.model_validate(fields)
    except ValidationError as exc:
        raise _rejection(exc) from exc


def _rejection(exc: ValidationError) -> _Rejected:
    errors = exc.errors(include_url=False)
    first = errors[0]
    path = ".".join(str(part) for part in first["loc"]) or "span"
    message = _MISSING_HINTS.get(path, first["msg"]) if first["type"] == "missing" else first["msg"]
    for other in errors[1:]:
        message += f"; also {'.'.join(str(part) for part in other['loc'])}: {other['msg']}"
    return _Rejected(path, message)


def _span_id_hex(raw: bytes, size: int, name: str) -> str:
    if len(raw) != size or not any(raw):
        raise _Rejected(name, f"{name} must be {size} bytes, not all zero (got {len(raw)} bytes)")
    return raw.hex()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _from_unix_nano(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


def _app_id(resource: Attrs, default_app_id: str | None) -> str | None:
    explicit = _first_text(resource, "lookout.app_id")
    if explicit is not None:
        return explicit
    service = _first_text(resource, "service.name")
    # The SDK fills in "unknown_service[:<process>]" when the app named nothing; that is no app.
    if service is not None and not service.startswith("unknown_service"):
        return service
    return default_app_id


def _seconds_to_ms(value: Any) -> Any:
    number = _number(value)
    # A value that is not a number goes through untouched so validation reports ttft_ms.
    return _no_bool(value) if number is None else number * 1000


def _no_bool(value: Any) -> Any:
    # Pydantic's lax mode reads true as 1; a boolean count is a sender bug to report, not a number.
    return str(value).lower() if isinstance(value, bool) else value


def _exception(span: Span) -> str | None:
    for event in span.events:
        if event.name == "exception":
            attrs = _attributes(event.attributes)
            kind, text = _first_text(attrs, "exception.type"), _first_text(attrs, "exception.message")
            return ": ".join(part for part in (kind, text) if part) or None
    return None


def _tags(*values: Any) -> list[str]:
    tags: list[str] = []
    for value in values:
        items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
        for item in items:
            tag = str(item).strip()
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def _metadata(
    span: Span, attrs: Attrs, scope_name: str, model: str | None, conversation: _Conversation, notes: list[str]
) -> dict[str, str]:
    entries: dict[str, str] = {"otlp.span_name": span.name}
    if scope_name:
        entries["otlp.scope"] = scope_name
    if span.parent_span_id:
        entries["otlp.parent_span_id"] = span.parent_span_id.hex()
    if notes:
        entries["otlp.parse_errors"] = "; ".join(notes)
    for key in sorted(attrs):
        if not key.startswith("gen_ai.") or key in _NOT_METADATA or _FLATTENED.match(key):
            continue
        if key == "gen_ai.request.model" and attrs[key] == model:
            continue  # said once, in the model field; kept only when the response named another
        entries[key] = _as_text(attrs[key])
    if "gen_ai.response.finish_reasons" not in entries and conversation.finish_reasons:
        entries["gen_ai.response.finish_reasons"] = _as_text(conversation.finish_reasons)
    if len(entries) > _METADATA_ENTRIES_MAX:
        kept = dict(list(entries.items())[: _METADATA_ENTRIES_MAX - 1])
        kept["otlp.metadata_dropped"] = str(len(entries) - len(kept))
        entries = kept
    return {key: _clip(value) for key, value in entries.items()}


def _clip(text: str) -> str:
    # Metadata is for filtering and display; a long value cut short beats rejecting the call.
    return text if len(text) <= _METADATA_VALUE_MAX else text[: _METADATA_VALUE_MAX - 1] + "…"


# --- attribute values -------------------------------------------------------------------------


def _attributes(key_values: Iterable[KeyValue]) -> Attrs:
    return {kv.key: _value(kv.value) for kv in key_values}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


def _first(attrs: Mapping[str, Any], keys: Iterable[str]) -> Any:
    return next((attrs[key] for key in keys if attrs.get(key) is not None), None)


def _first_text(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --- messages ---------------------------------------------------------------------------------


@dataclass
class _Conversation:
    input: list[Message]
    output: str | None
    finish_reasons: list[str]


@dataclass
class _Side:
    """What one convention says about one side of the call; None where it says nothing."""

    input: list[Message] | None = None
    output: list[Message] | None = None
    finish_reasons: list[str] = field(default_factory=list)


_OUTPUT_ROLES_EXCLUDED = frozenset({"system", "user", "tool"})


def _read_conversation(span: Span, attrs: Attrs, notes: list[str]) -> _Conversation:
    readers: tuple[Callable[[], _Side], ...] = (
        lambda: _from_attributes(span, attrs, notes),
        lambda: _from_events(span, notes),
        lambda: _from_flattened(attrs, notes),
    )
    inputs: list[Message] = []
    outputs: list[Message] = []
    finish_reasons: list[str] = []
    for read in readers:
        # Older conventions are read only while a side is still empty, and fill only that side,
        # so what a newer one said is never overridden.
        side = read()
        inputs = inputs or side.input or []
        outputs = outputs or side.output or []
        finish_reasons = finish_reasons or side.finish_reasons
        if inputs and outputs:
            break
    # Output messages come from the model whatever they call themselves ("assistant", "model").
    texts = [m.content for m in outputs if m.role not in _OUTPUT_ROLES_EXCLUDED and m.content]
    return _Conversation(input=inputs, output="\n".join(texts) or None, finish_reasons=finish_reasons)


def _from_attributes(span: Span, attrs: Attrs, notes: list[str]) -> _Side:
    source = dict(attrs)
    for event in span.events:
        if event.name == "gen_ai.client.inference.operation.details":
            details = _attributes(event.attributes)
            source.update({k: v for k, v in details.items() if k not in source})
    side = _Side()

    key = "gen_ai.system_instructions"
    items = _json_list(source.get(key), key, notes)
    system: list[Message] = []
    if items and all(isinstance(item, dict) and "role" in item for item in items):
        system = _messages(items, key, "system", notes)  # sent as messages rather than parts
    elif items:
        # Instructions are the parts of one system prompt.
        instruction = _message("system", _parts_text(items), None, key, notes)
        system = [instruction] if instruction and instruction.content else []

    key = "gen_ai.input.messages"
    items = _json_list(source.get(key), key, notes)
    if system or items is not None:
        side.input = system + _messages(items or [], key, None, notes)

    key = "gen_ai.output.messages"
    items = _json_list(source.get(key), key, notes)
    if items is not None:
        side.output = _messages(items, key, "assistant", notes)
        side.finish_reasons = [
            item["finish_reason"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("finish_reason"), str)
        ]
    return side


def _messages(items: list[Any], where: str, default_role: str | None, notes: list[str]) -> list[Message]:
    found = (_chat_message(item, f"{where}[{n}]", default_role, notes) for n, item in enumerate(items))
    return [message for message in found if message]


_ROLE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}


def _from_events(span: Span, notes: list[str]) -> _Side:
    inputs: list[Message] = []
    choices: list[tuple[float, Message]] = []
    finish_reasons: list[str] = []
    for position, event in enumerate(span.events):
        where = f"event {event.name}[{position}]"
        if event.name in _ROLE_EVENTS:
            payload = _event_payload(_attributes(event.attributes), where, notes)
            message = _chat_message(payload, where, _ROLE_EVENTS[event.name], notes)
            inputs.extend([message] if message else [])
        elif event.name == "gen_ai.choice":
            payload = _event_payload(_attributes(event.attributes), where, notes)
            body = payload.get("message")
            body = body if isinstance(body, dict) else {"content": payload.get("content", body)}
            message = _chat_message({**body, "role": body.get("role") or "assistant"}, where, "assistant", notes)
            if message:
                index = _number(payload.get("index"))
                choices.append((len(choices) if index is None else index, message))
            if isinstance(payload.get("finish_reason"), str):
                finish_reasons.append(payload["finish_reason"])
        elif event.name == "gen_ai.content.prompt":
            prompt = _attributes(event.attributes).get("gen_ai.prompt")
            inputs.extend(_legacy_content(prompt, where, "user", notes))
        elif event.name == "gen_ai.content.completion":
            completion = _attributes(event.attributes).get("gen_ai.completion")
            choices.extend((len(choices), m) for m in _legacy_content(completion, where, "assistant", notes))
    choices.sort(key=lambda pair: pair[0])
    return _Side(input=inputs or None, output=[m for _, m in choices] or None, finish_reasons=finish_reasons)


def _event_payload(attrs: Attrs, where: str, notes: list[str]) -> dict[str, Any]:
    """One event's fields, wherever the instrumentation put them: a JSON `body` or
    `gen_ai.event.content` attribute, or plain attributes (which win)."""
    payload: dict[str, Any] = {}
    for key in ("body", "gen_ai.event.content"):
        value = attrs.get(key)
        if isinstance(value, str):
            value = _loads(value, f"{where} {key}", notes)
        if isinstance(value, dict):
            payload.update(value)
    payload.update({k: v for k, v in attrs.items() if k not in ("body", "gen_ai.event.content")})
    message = payload.get("message")
    if isinstance(message, str):
        parsed = _loads(message, f"{where} message", notes, quiet=True)
        payload["message"] = parsed if isinstance(parsed, dict) else {"content": message}
    return payload


def _legacy_content(value: Any, where: str, role: str, notes: list[str]) -> list[Message]:
    """`gen_ai.prompt` / `gen_ai.completion` on the old content events: a JSON list of
    {role, content} messages, or plain text."""
    if isinstance(value, str):
        parsed = _loads(value, where, notes, quiet=True)
        value = parsed if isinstance(parsed, list | dict) else value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return _messages(value, where, role, notes)
    message = _message(role, _content_text(value), None, where, notes)
    return [message] if message else []


def _from_flattened(attrs: Attrs, notes: list[str]) -> _Side:
    slots: dict[tuple[str, int], dict[str, Any]] = {}
    for key, value in attrs.items():
        match = _FLATTENED.match(key)
        if match:
            side, position, name = match.group(1), int(match.group(2)), match.group(3)
            slots.setdefault((side, position), {})[name] = value
    side = _Side()
    for kind, default_role in (("prompt", "user"), ("completion", "assistant")):
        found = (
            _chat_message(item, f"gen_ai.{kind}.{position}", default_role, notes)
            for (slot_kind, position), item in sorted(slots.items())
            if slot_kind == kind
        )
        messages = [m for m in found if m]
        if kind == "prompt":
            side.input = messages or None
        else:
            side.output = messages or None
            side.finish_reasons = [
                item["finish_reason"]
                for (slot_kind, _), item in sorted(slots.items())
                if slot_kind == kind and isinstance(item.get("finish_reason"), str)
            ]
    return side


def _chat_message(item: Any, where: str, default_role: str | None, notes: list[str]) -> Message | None:
    if not isinstance(item, dict):
        notes.append(f"{where}: not a message object")
        return None
    role = item.get("role") or default_role
    if not isinstance(role, str):
        notes.append(f"{where}: message has no role")
        return None
    if "parts" in item:
        content = _parts_text(item["parts"])
    else:
        content = _content_text(item.get("content"))
        calls = item.get("tool_calls")
        if content is None and calls:
            # Span event attributes cannot nest, so tool calls often arrive as a JSON string.
            parsed = _loads(calls, where, notes, quiet=True) if isinstance(calls, str) else None
            content = _as_text({"tool_calls": calls if parsed is None else parsed})
    name = item.get("name") if isinstance(item.get("name"), str) else None
    return _message(role, content, name, where, notes)


def _message(role: str, content: str | None, name: str | None, where: str, notes: list[str]) -> Message | None:
    try:
        return Message(role=role, content=content, name=name)
    except ValidationError as exc:
        problem = exc.errors(include_url=False)[0]
        notes.append(f"{where}: {'.'.join(str(p) for p in problem['loc'])} {problem['msg']}")
        return None


_TEXT_PART_TYPES = frozenset({None, "text", "input_text", "output_text"})


def _parts_text(parts: Any) -> str | None:
    """A message's text: its text parts; else its tool calls and results written as JSON, so a
    tool-calling turn is not empty. Media and reasoning parts carry no text for scoring."""
    if not isinstance(parts, list):
        return _content_text(parts)
    texts: list[str] = []
    calls: list[str] = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        text = part.get("content", part.get("text"))
        if kind in _TEXT_PART_TYPES and isinstance(text, str):
            texts.append(text)
        elif kind == "tool_call_response":
            response = part.get("response", part.get("result"))
            texts.append(response if isinstance(response, str) else _as_text(response))
        elif kind == "tool_call":
            calls.append(_as_text({"tool_call": {k: part[k] for k in ("id", "name", "arguments") if k in part}}))
    chosen = texts or calls
    return "\n".join(chosen) if chosen else None


def _content_text(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        return _parts_text(content)
    if isinstance(content, dict) and isinstance(content.get("content", content.get("text")), str):
        return content.get("content", content.get("text"))
    return _as_text(content)


def _json_list(value: Any, key: str, notes: list[str]) -> list[Any] | None:
    """A JSON array attribute (structured arrays too, as events carry them); None when absent
    or unreadable, so an older convention can fill in."""
    if value is None:
        return None
    if isinstance(value, str):
        value = _loads(value, key, notes)
        if value is None:
            return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        notes.append(f"{key}: not a JSON array")
        return None
    return value


def _loads(text: str, where: str, notes: list[str], *, quiet: bool = False) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if not quiet:
            notes.append(f"{where}: not valid JSON")
        return None
