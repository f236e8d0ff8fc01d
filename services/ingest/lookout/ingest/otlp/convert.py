"""From a decoded OTLP export to what Lookout stores: LLM calls (llm.events), the other steps
of each trace (llm.spans: agents, tools, retrievals, embeddings, chains; and a row per
call span, so a trace reads as one tree), and client-side evaluations (llm.scores).

Every span is read by each convention in turn (genai, openinference, openllmetry, openlit),
each filling only what the ones before left empty, so the newest convention a span
carries wins. A span no convention claims is not GenAI: counted as ignored.

Nothing in a span may fail a batch: content that cannot be parsed is skipped and named in
metadata (`otlp.parse_errors`), and a span that still cannot make a valid call or step is
reported back in `rejected` with the field at fault, so the route answers with a partial
success. Identifiers (app, model, environment, prompt version) follow the same rules as
POST /v1/events: the wire schemas validate them, and a span whose identifier breaks them is
rejected naming the field, never stored under a rewritten name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from pydantic import ValidationError

from lookout.core.events import LlmCall, Message, Score, TraceSpan
from lookout.core.ids import span_event_id, uuid_from

from . import genai, openinference, openlit, openllmetry
from .coverage import Coverage
from .spans import Reading, SpanView, as_text, attributes, family, first_text, from_unix_nano, number

CONVENTIONS: tuple[tuple[str, Callable[[SpanView, Reading], None]], ...] = (
    (genai.NAME, genai.read),
    (openinference.NAME, openinference.read),
    (openllmetry.NAME, openllmetry.read),
    (openlit.NAME, openlit.read),
)

# Attributes of these families that no field took are kept in metadata (request
# parameters, ids); others (http.*, server.*) are dropped, and coverage says so.
_KEPT_PREFIXES = ("gen_ai.", "llm.", "openai.", "traceloop.", "openinference.", "embedding.", "retrieval.",
                  "tool.", "openlit.", "lookout.")
# Mapped attributes that are kept in metadata as well: they identify the call or its request.
_ALSO_KEPT = frozenset({"gen_ai.operation.name", "gen_ai.response.id", "gen_ai.agent.name", "gen_ai.tool.name",
                        "gen_ai.tool.call.id", "gen_ai.tool.type", "gen_ai.data_source.id"})
# Never kept raw: pseudonymised into fields by enrichment (session, user) or too long to help.
_NEVER_KEPT = frozenset({"gen_ai.conversation.id", "session.id", "user.id", "enduser.id", "llm.user",
                         "gen_ai.request.user", "gen_ai.tool.definitions"})
_NEVER_KEPT_FAMILIES = ("traceloop.association.properties.",)
# Span events that only mark streaming progress (OpenLLMetry, OpenInference).
_MARKER_EVENTS = frozenset({"llm.content.completion.chunk", "gen_ai.content.completion.chunk",
                            "First Token Stream Event"})
_METADATA_VALUE_MAX = 1024  # metadata values are ShortText
_METADATA_ENTRIES_MAX = 256
_TEXT_MAX = 1_000_000  # LongText
_OUTPUT_ROLES_EXCLUDED = frozenset({"system", "user", "tool"})
_INHERIT_DEPTH = 64

# Friendlier words than pydantic's "Field required" for what a sender most often leaves out.
_MISSING_HINTS = {
    "model": "no gen_ai.response.model or gen_ai.request.model attribute on the span",
    "app_id": "no lookout.app_id or service.name resource attribute, and no default app for this key",
}

# Span kinds of the GenAI and related conventions that are kept as trace steps.
_STEP_KINDS = frozenset({"embedding", "agent", "tool", "retrieval", "chain", "workflow"})


@dataclass
class OtlpResult:
    calls: list[LlmCall] = field(default_factory=list)
    trace_spans: list[TraceSpan] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    ignored: int = 0  # spans that are not GenAI
    # {"index": span ordinal in the request, "field": ..., "message": ...}
    rejected: list[dict[str, Any]] = field(default_factory=list)
    spans: int = 0  # every span seen
    coverage: Coverage = field(default_factory=Coverage)


class _Rejected(Exception):
    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(message)
        self.field = field_path
        self.message = message


def read_span(view: SpanView) -> Reading:
    reading = Reading()
    for _, read in CONVENTIONS:
        read(view, reading)
    return reading


def convert(request: ExportTraceServiceRequest, *, default_app_id: str | None) -> OtlpResult:
    result = OtlpResult()
    views: list[tuple[SpanView, Reading]] = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            for span in scope_spans.spans:
                view = SpanView(span, attributes(span.attributes), resource, scope.name, scope.version, result.spans)
                result.spans += 1
                try:
                    views.append((view, read_span(view)))
                except Exception as exc:  # a shape nobody foresaw costs that span, not the batch
                    result.rejected.append(
                        {"index": view.index, "field": "span", "message": f"could not read the span: {exc!r}"})
    _inherit_from_ancestors(views)
    calls_by_span: dict[bytes, LlmCall] = {}
    for view, reading in views:
        source = (view.scope, view.scope_version)
        if reading.kind is None:
            result.ignored += 1
            result.coverage.span(source, "ignored")
            continue
        try:
            if reading.kind == "llm":
                call = _to_call(view, reading, default_app_id)
                result.calls.append(call)
                calls_by_span[view.span.span_id] = call
                result.coverage.call(source, call)
                step = _to_step(view, reading, call.app_id, call.environment, call)
            else:
                app_id, environment = _app_and_environment(view, reading, default_app_id)
                step = _to_step(view, reading, app_id, environment, None)
            result.trace_spans.append(step)
            result.coverage.span(source, reading.kind)
            _count_attributes(result.coverage, source, view)
        except _Rejected as exc:
            result.rejected.append({"index": view.index, "field": exc.field, "message": exc.message})
            result.coverage.span(source, "rejected")
        except Exception as exc:
            # A span shaped in a way nobody foresaw must cost that span, not the batch.
            result.rejected.append(
                {"index": view.index, "field": "span", "message": f"could not convert the span: {exc!r}"})
            result.coverage.span(source, "rejected")
    for view, reading in views:
        if reading.evaluations:
            result.scores.extend(_scores(view, reading, calls_by_span, result.coverage))
    return result


# --- across spans of one request ------------------------------------------------------------------


def _inherit_from_ancestors(views: list[tuple[SpanView, Reading]]) -> None:
    """A step without a session or user takes its nearest ancestor's, among the spans of the
    same export: agent frameworks set the conversation id on the agent span, and the model
    calls below it (made by another instrumentation) do not repeat it."""
    by_id = {(v.span.trace_id, v.span.span_id): r for v, r in views}
    parents = {(v.span.trace_id, v.span.span_id): v.span.parent_span_id for v, _ in views}
    for view, reading in views:
        if reading.kind is None or (reading.session_id and reading.user_id):
            continue
        key = (view.span.trace_id, view.span.parent_span_id)
        for _ in range(_INHERIT_DEPTH):
            ancestor = by_id.get(key)
            if ancestor is None:
                break
            reading.fill(session_id=ancestor.session_id, user_id=ancestor.user_id)
            if reading.session_id and reading.user_id:
                break
            key = (key[0], parents.get(key, b""))


# --- LLM calls -----------------------------------------------------------------------------------


def _to_call(view: SpanView, reading: Reading, default_app_id: str | None) -> LlmCall:
    span = view.span
    trace_id = _span_id_hex(span.trace_id, 16, "trace_id")
    span_id = _span_id_hex(span.span_id, 8, "span_id")
    if not span.start_time_unix_nano:
        raise _Rejected("ts", "span has no start time")
    model = reading.response_model or reading.request_model
    outputs = reading.output or []
    # Output messages come from the model whatever they call themselves ("assistant", "model").
    texts = [m.content for m in outputs if m.role not in _OUTPUT_ROLES_EXCLUDED and m.content]
    app_id, environment = _app_and_environment(view, reading, default_app_id)
    fields: dict[str, Any] = {
        "event_id": span_event_id(trace_id, span_id),
        "ts": from_unix_nano(span.start_time_unix_nano),
        "trace_id": trace_id,
        "span_id": span_id,
        "input": _without_repeated_system(reading.input or []),
        "output": _clip("\n".join(texts), _TEXT_MAX) or None,
        "metadata": _call_metadata(view, reading, model),
        "tags": _tags(view.resource.get("lookout.tags"), view.take("lookout.tags")),
    }
    optional = {
        "app_id": app_id,
        "environment": environment,
        "provider": reading.provider,
        "model": model,
        "prompt_version": view.text("lookout.prompt_version"),
        "tokens_in": reading.tokens_in,
        "tokens_out": reading.tokens_out,
        "tokens_cache_read": reading.cache_read,
        "tokens_cache_write": reading.cache_write,
        "tokens_reasoning": reading.reasoning,
        "ttft_ms": _seconds_to_ms(reading.ttft_s),
        "user_id": reading.user_id,
        "session_id": reading.session_id,
        "cost_usd": reading.client_cost,
    }
    fields.update({key: value for key, value in optional.items() if value is not None})
    if span.end_time_unix_nano:
        # Left negative when the span ends before it starts: validation names the field.
        fields["latency_ms"] = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    if span.status.code == Status.STATUS_CODE_ERROR:
        fields["status"] = "error"
        fields["error"] = span.status.message or view.text("error.type") or _exception(span) or "error"
    try:
        return LlmCall.model_validate(fields)
    except ValidationError as exc:
        raise _rejection(exc) from exc


def _without_repeated_system(found: list[Message]) -> list[Message]:
    # Some instrumentations (OpenLIT) send the system prompt both as system instructions and
    # as the first input message; it was said once.
    if len(found) >= 2 and found[0].role == found[1].role == "system" and found[0].content == found[1].content:
        return found[1:]
    return found


def _app_and_environment(view: SpanView, reading: Reading, default_app_id: str | None) -> tuple[Any, Any]:
    resource = view.resource
    app = first_text(resource, "lookout.app_id")
    if app is None:
        service = first_text(resource, "service.name") or reading.span_app
        # The SDK fills in "unknown_service[:<process>]" when the app named nothing; that is no app.
        app = service if service is not None and not service.startswith("unknown_service") else default_app_id
    environment = (first_text(resource, "deployment.environment.name", "deployment.environment")
                   or reading.span_environment)
    if app is None:
        raise _Rejected("app_id", _MISSING_HINTS["app_id"])
    return app, environment or "production"


def _call_metadata(view: SpanView, reading: Reading, model: str | None) -> dict[str, str]:
    entries: dict[str, str] = {"otlp.span_name": view.name}
    if view.scope:
        entries["otlp.scope"] = view.scope
    if view.scope_version:
        entries["otlp.scope_version"] = view.scope_version
    if view.span.parent_span_id:
        entries["otlp.parent_span_id"] = view.span.parent_span_id.hex()
    if reading.notes:
        entries["otlp.parse_errors"] = "; ".join(reading.notes)
    entries.update(_kept(view))
    if reading.request_model and reading.request_model != model:
        # What was asked for, where the answer names another model (the identity watch reads it).
        entries["gen_ai.request.model"] = reading.request_model
    else:
        entries.pop("gen_ai.request.model", None)
    if reading.fingerprint:
        entries["openai.response.system_fingerprint"] = reading.fingerprint
    if reading.response_id:
        entries.setdefault("gen_ai.response.id", reading.response_id)
    if reading.finish_reasons:
        entries["gen_ai.response.finish_reasons"] = as_text(reading.finish_reasons)
    if reading.tool_definitions:
        entries["gen_ai.tool.definitions.count"] = str(reading.tool_definitions)
    dropped = sorted({family(key) for key in _dropped(view)})
    if dropped:
        entries["otlp.dropped"] = ",".join(dropped)
    if len(entries) > _METADATA_ENTRIES_MAX:
        kept = dict(list(entries.items())[: _METADATA_ENTRIES_MAX - 1])
        kept["otlp.metadata_dropped"] = str(len(entries) - len(kept))
        entries = kept
    return {key[:_METADATA_VALUE_MAX]: _clip(value, _METADATA_VALUE_MAX) for key, value in entries.items()}


def _never_kept(key: str) -> bool:
    return key in _NEVER_KEPT or key.startswith(_NEVER_KEPT_FAMILIES)


def _kept(view: SpanView) -> dict[str, str]:
    """Attributes of the GenAI families that no field took, plus the ids kept anyway."""
    entries = {}
    for key in sorted(view.attrs):
        if _never_kept(key):
            continue
        if key in _ALSO_KEPT or (key not in view.used and key.startswith(_KEPT_PREFIXES)):
            entries[key] = as_text(view.attrs[key])
    return entries


def _dropped(view: SpanView) -> list[str]:
    return [key for key in view.attrs if key not in view.used and not key.startswith(_KEPT_PREFIXES)
            and not _never_kept(key)]


def _count_attributes(coverage: Coverage, source: tuple[str, str], view: SpanView) -> None:
    outcomes: dict[str, str] = {}
    for key in view.attrs:
        if key in view.used:
            outcome = "mapped"
        elif key.startswith(_KEPT_PREFIXES) and not _never_kept(key):
            outcome = "kept"
        else:
            outcome = "dropped"
        # One count per family and span: llm.input_messages.N.message.content counts once.
        outcomes.setdefault(family(key), outcome)
    for name, outcome in outcomes.items():
        coverage.attribute(source, name, outcome)
    for _, name, _ in view.events():
        if name in genai.CONTENT_EVENTS or name in (genai.EVALUATION_EVENT, "exception"):
            outcome = "mapped"
        elif name in _MARKER_EVENTS:
            outcome = "ignored"  # streaming progress marks: nothing in them to map
        else:
            outcome = "dropped"
        coverage.attribute(source, f"event:{name}", outcome)


# --- trace steps ---------------------------------------------------------------------------------


def _to_step(view: SpanView, reading: Reading, app_id: Any, environment: Any, call: LlmCall | None) -> TraceSpan:
    span = view.span
    trace_id = _span_id_hex(span.trace_id, 16, "trace_id")
    span_id = _span_id_hex(span.span_id, 8, "span_id")
    if not span.start_time_unix_nano:
        raise _Rejected("ts", "span has no start time")
    kind = reading.kind if reading.kind in _STEP_KINDS or reading.kind == "llm" else "chain"
    fields: dict[str, Any] = {
        "span_key": span_event_id(trace_id, span_id),
        "app_id": app_id,
        "environment": environment,
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": span.parent_span_id.hex() if len(span.parent_span_id) == 8 else "",
        "ts": from_unix_nano(span.start_time_unix_nano),
        "kind": kind,
        "name": span.name[:1024],
        "source": view.scope[:1024],
        "source_version": view.scope_version[:1024],
        "session_id": reading.session_id,
        "user_id": reading.user_id,
    }
    if span.end_time_unix_nano and span.end_time_unix_nano >= span.start_time_unix_nano:
        fields["duration_ms"] = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
    if span.status.code == Status.STATUS_CODE_ERROR:
        fields["status"] = "error"
        fields["error"] = span.status.message or view.text("error.type") or _exception(span) or "error"
    if call is not None:
        # The call itself holds the texts; its step row only places it in the tree.
        fields.update(event_id=call.event_id, provider=call.provider, model=call.model, tokens_in=call.tokens_in,
                      tokens_out=call.tokens_out, session_id=call.session_id, user_id=call.user_id)
    else:
        step_input, step_output = _step_texts(reading)
        fields.update(provider=reading.provider, model=reading.response_model or reading.request_model,
                      tokens_in=reading.tokens_in, tokens_out=reading.tokens_out,
                      input=_clip(step_input, _TEXT_MAX) if step_input else None,
                      output=_clip(step_output, _TEXT_MAX) if step_output else None,
                      attributes=_step_attributes(view, reading))
    try:
        return TraceSpan.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise _rejection(exc) from exc


def _step_texts(reading: Reading) -> tuple[str | None, str | None]:
    if reading.kind == "tool":
        return reading.tool_arguments, reading.tool_result
    if reading.kind == "retrieval":
        return reading.query, as_text(reading.documents) if reading.documents else None
    if reading.kind == "embedding":
        return reading.query, None
    return reading.span_input, reading.span_output


def _step_attributes(view: SpanView, reading: Reading) -> dict[str, str]:
    entries = _kept(view)
    named = {"tool.name": reading.tool_name, "tool.call_id": reading.tool_call_id, "agent.name": reading.agent_name,
             "retrieval.documents": str(len(reading.documents)) if reading.documents else None,
             "convention": reading.convention}
    entries.update({k: v for k, v in named.items() if v})
    if reading.notes:
        entries["otlp.parse_errors"] = "; ".join(reading.notes)
    items = list(entries.items())[:_METADATA_ENTRIES_MAX]
    return {key[:_METADATA_VALUE_MAX]: _clip(value, _METADATA_VALUE_MAX) for key, value in items}


# --- client-side evaluations ---------------------------------------------------------------------


def _scores(view: SpanView, reading: Reading, calls: dict[bytes, LlmCall], coverage: Coverage) -> list[Score]:
    """gen_ai.evaluation.result events score the call of their span, or of the span's parent
    when the evaluation ran in a span of its own below the call. Without a call in the same
    export there is no model to file the score under: dropped, and counted."""
    source = (view.scope, view.scope_version)
    call = calls.get(view.span.span_id) or calls.get(view.span.parent_span_id)
    found = []
    ts = from_unix_nano(view.span.end_time_unix_nano or view.span.start_time_unix_nano)
    for evaluation in reading.evaluations:
        if call is None or evaluation.value is None:
            coverage.attribute(source, "event:gen_ai.evaluation.result", "dropped")
            continue
        try:
            found.append(Score(
                score_id=uuid_from(f"otlp-evaluation/{call.app_id}/{call.event_id}/{evaluation.name}"),
                event_id=call.event_id, ts=ts, app_id=call.app_id, model=call.model, name=evaluation.name[:256],
                value=evaluation.value,
                label=_clip(evaluation.label, _METADATA_VALUE_MAX) if evaluation.label else None,
                source="client", evaluator=(view.scope or "client")[:256], evaluator_version=view.scope_version[:1024],
                explanation=_clip(evaluation.explanation, _TEXT_MAX) if evaluation.explanation else None,
                model_version=call.model_version, environment=call.environment,
            ))
        except ValidationError:
            coverage.attribute(source, "event:gen_ai.evaluation.result", "dropped")
    return found


# --- small helpers -------------------------------------------------------------------------------


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


def _seconds_to_ms(value: Any) -> Any:
    seconds = number(value)
    if value is None:
        return None
    # A value that is not a number goes through untouched so validation reports ttft_ms.
    if seconds is None:
        return str(value).lower() if isinstance(value, bool) else value
    return seconds * 1000


def _exception(span: Span) -> str | None:
    for event in span.events:
        if event.name == "exception":
            attrs = attributes(event.attributes)
            kind, text = first_text(attrs, "exception.type"), first_text(attrs, "exception.message")
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


def _clip(text: str, limit: int) -> str:
    # A long value cut short beats rejecting the call.
    return text if len(text) <= limit else text[: limit - 1] + "…"
