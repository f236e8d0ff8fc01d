"""Wire schemas for every topic. JSON (orjson) on the wire, versioned by the `schema` field.

A new field that old readers may ignore keeps the version; a change of meaning or a
removed field bumps it (`llm_call/2`) and readers accept both for a release.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

Name = Annotated[str, Field(min_length=1, max_length=256)]
ShortText = Annotated[str, Field(max_length=1024)]
Environment = Annotated[str, Field(min_length=1, max_length=64)]

# Identifiers: the values dashboards group by and Grafana substitutes into panel SQL (app_id,
# model, environment, prompt_version, model_version). Every real model name fits
# ("gpt-4o-mini-2024-07-18", "meta-llama/Llama-3.1-8B-Instruct", "claude-3-5-sonnet@20240620",
# "models/gemini-1.5-pro", "ft:gpt-4o-mini:org:name:id", "anthropic.claude-3-haiku-v1:0"),
# yet none can carry a quote, a backslash, whitespace, "--" (an SQL comment) or any of
# $ { } ( ) [ ] ; , * % # | = < > ? ! ~ ^ & ` , so no value can leave a quoted SQL string or a
# template, or comment out the rest of a query where it is substituted raw. app_id is
# narrower still (no / @ +): it also names key bindings and appears in paths.
IDENTIFIER_CHARS = "ASCII letters, digits and . _ : / @ + -"
APP_ID_CHARS = "ASCII letters, digits and . _ : -"
_IDENTIFIER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:/@+]|-(?!-))*")
_APP_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:]|-(?!-))*")


def _identifier_check(whole: re.Pattern[str], allowed: str) -> AfterValidator:
    # One message per rule, never the value (it may be huge or hostile); a stable message
    # also lets clients such as the SDK log a reason once rather than once per value.
    rule = f"may hold only {allowed}, start with a letter or digit, and never contain '--'"

    def check(value: str) -> str:
        if not whole.fullmatch(value):
            raise ValueError(rule)
        return value

    return AfterValidator(check)


def _blank_is_none(value: Any) -> Any:
    # An empty optional version means "none": SDKs and OTLP senders send "" for unset.
    return None if value == "" else value


AppId = Annotated[str, Field(min_length=1, max_length=128), _identifier_check(_APP_ID, APP_ID_CHARS)]
Identifier = Annotated[str, _identifier_check(_IDENTIFIER, IDENTIFIER_CHARS)]
# The length limits come before the character check, as for AppId: pydantic then checks
# them in its core (a length limit after a Python validator costs two more Python calls
# per value), and a hostile 1 MB value is refused before any pattern runs over it.
_IDENTIFIER_CHECK = _identifier_check(_IDENTIFIER, IDENTIFIER_CHARS)
ModelId = Annotated[str, Field(min_length=1, max_length=256), _IDENTIFIER_CHECK]
EnvironmentId = Annotated[str, Field(min_length=1, max_length=64), _IDENTIFIER_CHECK]
# Versions keep the 1 KiB the SDK trims them to.
Version = Annotated[str, Field(min_length=1, max_length=1024), _IDENTIFIER_CHECK]
VersionId = Annotated[Version | None, BeforeValidator(_blank_is_none)]
# Metadata keys are capped like the SDK caps them.
MetadataKey = Annotated[str, Field(max_length=1024)]
# A generous cap per text field; the request-size limit of ingest is the real bound.
LongText = Annotated[str, Field(max_length=1_000_000)]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)

    def to_bytes(self) -> bytes:
        # pydantic's Rust serializer writes JSON bytes directly (about twice as fast as
        # model_dump + orjson on a 1 KB call).
        return self.__pydantic_serializer__.to_json(self, by_alias=True)

    @classmethod
    def from_bytes(cls, data: bytes):
        """A record read from Kafka. Readers are tolerant of top-level fields they do not know:
        during a rolling upgrade a newer producer adds optional fields, and an older sink
        must store the record, not dead-letter it. What enters from outside is validated
        strictly (model_validate at the HTTP intake), so unknown fields never get in there."""
        raw = orjson.loads(data)
        if isinstance(raw, dict):
            known = _wire_keys(cls)
            if not raw.keys() <= known:
                raw = {k: v for k, v in raw.items() if k in known}
        return cls.model_validate(raw)


@functools.cache
def _wire_keys(cls: type[_Wire]) -> frozenset[str]:
    return frozenset(k for name, f in cls.model_fields.items() for k in (name, f.alias) if k)


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (e.g. 2026-01-01T12:00:00Z)")
    return ts.astimezone(UTC)


def _utc_or_none(ts: datetime | None) -> datetime | None:
    return None if ts is None else _utc(ts)


def update_in_place(model: BaseModel, fields: dict[str, object]) -> None:
    """What model_copy(update=fields) does to its copy, done to `model` itself: for an
    object nobody else holds (one a worker has just validated for its request)."""
    vars(model).update(fields)
    model.__pydantic_fields_set__.update(fields)


def now_utc() -> datetime:
    return datetime.now(UTC)


class Message(_Wire):
    role: Annotated[str, Field(min_length=1, max_length=64)]
    content: LongText | None = None
    name: ShortText | None = None


class LlmCall(_Wire):
    """One LLM call an application made. event_id is the client-made idempotency key."""

    schema_: Literal["llm_call/1"] = Field(default="llm_call/1", alias="schema")
    event_id: uuid.UUID
    ts: datetime
    app_id: AppId
    environment: EnvironmentId = "production"
    provider: Annotated[str, Field(min_length=1, max_length=64)] = "unknown"
    model: ModelId
    model_version: VersionId = None
    prompt_version: VersionId = None
    input: list[Message] = Field(default_factory=list, max_length=10_000)
    prompt: LongText | None = None
    output: LongText | None = None
    tokens_in: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    tokens_out: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    # Parts of tokens_in read from (or written to) the provider's prompt cache, and the part
    # of tokens_out spent reasoning; priced apart where the price table knows them.
    tokens_cache_read: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    tokens_cache_write: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    tokens_reasoning: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    latency_ms: Annotated[float, Field(ge=0, le=86_400_000)] | None = None
    ttft_ms: Annotated[float, Field(ge=0, le=86_400_000)] | None = None
    status: Literal["ok", "error"] = "ok"
    error: LongText | None = None
    cost_usd: Annotated[float, Field(ge=0)] | None = None
    user_id: ShortText | None = None
    session_id: ShortText | None = None
    trace_id: Annotated[str, Field(max_length=64)] | None = None
    span_id: Annotated[str, Field(max_length=32)] | None = None
    tags: list[ShortText] = Field(default_factory=list, max_length=256)
    metadata: dict[MetadataKey, ShortText] = Field(default_factory=dict, max_length=256)
    context: list[LongText] | None = None
    reference: LongText | None = None
    logprobs: list[float] | None = Field(default=None, max_length=1_000_000)

    _ts = field_validator("ts")(_utc)

    def prompt_text(self) -> str:
        """The whole prompt as one text: explicit prompt, else the messages joined."""
        if self.prompt:
            return self.prompt
        return "\n".join(m.content or "" for m in self.input)


class Score(_Wire):
    schema_: Literal["score/1"] = Field(default="score/1", alias="schema")
    score_id: uuid.UUID
    event_id: uuid.UUID
    ts: datetime
    app_id: AppId
    model: Name
    name: Name
    value: float
    label: ShortText | None = None
    # client: an evaluation the app ran itself and reported (OTLP gen_ai.evaluation.result).
    source: Literal["model", "llm_judge", "human", "heuristic", "client"]
    evaluator: Name
    evaluator_version: ShortText = ""
    explanation: LongText | None = None
    cost_usd: Annotated[float, Field(ge=0)] = 0.0
    # The scored call's identity (with app_id and model above), stamped by the producer,
    # which has the call in hand (the judge), so no consumer or per-version view reads the
    # call back to learn it.
    model_version: ShortText | None = None
    environment: Environment | None = None

    _ts = field_validator("ts")(_utc)


class DriftResult(_Wire):
    schema_: Literal["drift/1"] = Field(default="drift/1", alias="schema")
    result_id: uuid.UUID
    ts: datetime
    app_id: AppId
    model: Name
    prompt_version: ShortText | None = None
    window_start: datetime
    window_end: datetime
    signal: Name
    method: Name
    statistic: float
    p_value: float | None = None
    threshold: float | None = None
    drifted: bool
    reference_size: Annotated[int, Field(ge=0)]
    current_size: Annotated[int, Field(ge=0)]
    reference_id: ShortText
    examples: list[uuid.UUID] = Field(default_factory=list, max_length=16)
    details: dict[str, Any] = Field(default_factory=dict)

    _ts = field_validator("ts", "window_start", "window_end")(_utc)


class Feedback(_Wire):
    schema_: Literal["feedback/1"] = Field(default="feedback/1", alias="schema")
    feedback_id: uuid.UUID
    event_id: uuid.UUID
    ts: datetime
    app_id: AppId
    source: Literal["end_user", "reviewer"]
    author: ShortText
    thumbs: Literal[-1, 1] | None = None
    rating: Annotated[int, Field(ge=1, le=5)] | None = None
    labels: list[ShortText] = Field(default_factory=list, max_length=64)
    corrected_output: LongText | None = None
    comment: LongText | None = None
    # The rated call's identity, stamped where the call is known: the thumbs API and the
    # review UI read it once at the edge, where a vote names its call, so no consumer (task
    # builder, retrain trigger, sink) reads the call back. Per-version views count a vote at
    # its call's minute (call_ts). A vote without a model cannot join its call's stream: the
    # retrain trigger dead-letters it.
    model: Name | None = None
    model_version: ShortText | None = None
    environment: Environment | None = None
    call_ts: datetime | None = None
    # The thumbs of this author's earlier vote on the call that this vote replaces: the
    # per-version rollup takes that vote back, so it keeps only each author's latest.
    replaces_thumbs: Literal[-1, 1] | None = None
    # Reviewer rows: HMAC of the row by the feedback service (lookout.core.review_signing);
    # datasets take only reviewer rows whose signature verifies.
    signature: ShortText | None = None

    _ts = field_validator("ts")(_utc)
    _call_ts = field_validator("call_ts")(_utc_or_none)


RetrainState = Literal["requested", "approved", "rejected", "launched", "running", "succeeded", "failed", "timed_out"]


class Retrain(_Wire):
    schema_: Literal["retrain/1"] = Field(default="retrain/1", alias="schema")
    run_id: uuid.UUID
    ts: datetime
    app_id: AppId
    model: Name
    status: RetrainState
    rule: ShortText = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    dataset_uri: LongText | None = None
    dataset_counts: dict[str, int] = Field(default_factory=dict)
    dataset_hash: ShortText | None = None
    model_version: ShortText | None = None
    message: LongText | None = None

    _ts = field_validator("ts")(_utc)


class DeadLetter(_Wire):
    schema_: Literal["dead_letter/1"] = Field(default="dead_letter/1", alias="schema")
    dlq_id: uuid.UUID
    ts: datetime
    source_topic: ShortText
    partition: int
    offset: int
    key: str | None = None
    payload_b64: str
    error: LongText
    service: ShortText

    _ts = field_validator("ts")(_utc)


SpanKind = Literal["llm", "embedding", "agent", "tool", "retrieval", "chain", "workflow"]


class TraceSpan(_Wire):
    """One step of a trace that OTLP intake keeps beside the calls: an agent run, a tool
    call, a retrieval, an embedding, a chain, and a row for each LLM call span too (kind
    "llm", `event_id` naming the call), so a trace reads as one tree from one table."""

    schema_: Literal["trace_span/1"] = Field("trace_span/1", alias="schema")
    span_key: uuid.UUID  # ids.span_event_id(trace_id, span_id): the call's event_id for kind "llm"
    app_id: AppId
    trace_id: Annotated[str, Field(min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$")]
    span_id: Annotated[str, Field(min_length=16, max_length=16, pattern=r"^[0-9a-f]{16}$")]
    parent_span_id: Annotated[str, Field(max_length=16, pattern=r"^([0-9a-f]{16})?$")] = ""
    ts: datetime  # start
    duration_ms: Annotated[float, Field(ge=0, le=86_400_000)] | None = None
    kind: SpanKind
    name: Annotated[str, Field(max_length=1024)] = ""
    status: Literal["ok", "error"] = "ok"
    error: LongText | None = None
    environment: EnvironmentId = "production"
    session_id: ShortText | None = None
    user_id: ShortText | None = None
    event_id: uuid.UUID | None = None
    provider: ShortText | None = None
    model: ModelId | None = None
    tokens_in: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    tokens_out: Annotated[int, Field(ge=0, le=100_000_000)] | None = None
    cost_usd: Annotated[float, Field(ge=0)] | None = None
    # What the step took and gave: tool arguments and result, a retrieval's query and
    # documents, an agent's input and answer. Capped like a call's texts.
    input: LongText | None = None
    output: LongText | None = None
    attributes: dict[Annotated[str, Field(max_length=1024)], ShortText] = Field(default_factory=dict, max_length=256)
    source: ShortText = ""  # instrumentation scope name and version
    source_version: ShortText = ""

    _ts = field_validator("ts")(_utc)


# Which schema each topic carries; llm.retrain.status carries Retrain updates too.
TOPIC_SCHEMAS: dict[str, type[_Wire]] = {
    "llm.events": LlmCall,
    "llm.scores": Score,
    "llm.drift": DriftResult,
    "llm.feedback": Feedback,
    "llm.retrain": Retrain,
    "llm.retrain.status": Retrain,
    "llm.dlq": DeadLetter,
    "llm.spans": TraceSpan,
}
