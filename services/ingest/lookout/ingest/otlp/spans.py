"""The shared span model every convention reads from, and what they read into.

A `SpanView` is one OTLP span with its attributes decoded once and the resource and scope
it came with. Conventions read attributes through it (`take`, `text`, `number`), which
records each key read, so what was mapped and what was dropped is known per span
(coverage). A `Reading` is what the conventions together found in a span: the fields of
a call, a tool run, a retrieval, in Lookout's terms, filled newest convention first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from lookout.core.events import Message

Attrs = dict[str, Any]
Kind = Literal["llm", "embedding", "agent", "tool", "retrieval", "chain", "workflow"]


# --- attribute values -------------------------------------------------------------------------


def attributes(key_values: Iterable[KeyValue]) -> Attrs:
    return {kv.key: value_of(kv.value) for kv in key_values}


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in value.kvlist_value.values}
    return None if kind is None else getattr(value, kind)


def first_text(attrs: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def number(value: Any) -> float | None:
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


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_unix_nano(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


# Indexed attribute families (llm.input_messages.3.message.content, gen_ai.prompt.0.role)
# count as one key in coverage: "llm.input_messages.N.message.content".
_INDEX = re.compile(r"\.\d+(?=\.|$)")


def family(key: str) -> str:
    return _INDEX.sub(".N", key)


# --- the span ---------------------------------------------------------------------------------


@dataclass
class SpanView:
    span: Span
    attrs: Attrs
    resource: Attrs
    scope: str
    scope_version: str
    index: int  # ordinal of the span in its request
    used: set[str] = field(default_factory=set)  # attribute keys a convention mapped

    @property
    def name(self) -> str:
        return self.span.name

    def has(self, key: str) -> bool:
        return self.attrs.get(key) is not None

    def take(self, *keys: str) -> Any:
        """The first of `keys` that is set; every key looked at and set is marked mapped."""
        found = None
        for key in keys:
            value = self.attrs.get(key)
            if value is not None:
                self.used.add(key)
                if found is None:
                    found = value
        return found

    def text(self, *keys: str) -> str | None:
        for key in keys:
            value = first_text(self.attrs, key)
            if value is not None:
                self.used.add(key)
                return value
        return None

    def count(self, *keys: str) -> Any:
        """A token count: an int, or the raw value (a bool, a word) for validation to name."""
        value = self.take(*keys)
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    def indexed(self, prefix: str) -> dict[int, dict[str, Any]]:
        """Attributes `<prefix>.<n>.<rest>` as {n: {rest: value}}, marked mapped."""
        slots: dict[int, dict[str, Any]] = {}
        start = prefix + "."
        for key, value in self.attrs.items():
            if not key.startswith(start):
                continue
            head, _, rest = key[len(start):].partition(".")
            if head.isdigit() and rest:
                slots.setdefault(int(head), {})[rest] = value
                self.used.add(key)
        return dict(sorted(slots.items()))

    def events(self, *names: str) -> Iterator[tuple[int, str, Attrs]]:
        for position, event in enumerate(self.span.events):
            if not names or event.name in names:
                yield position, event.name, attributes(event.attributes)


# --- what the conventions found -----------------------------------------------------------------


@dataclass
class Evaluation:
    """A client-side evaluation (gen_ai.evaluation.result) of the span's call."""

    name: str
    value: float | None
    label: str | None
    explanation: str | None


@dataclass
class Reading:
    kind: Kind | None = None
    convention: str | None = None  # the convention that named the kind
    operation: str | None = None
    provider: str | None = None
    request_model: str | None = None
    response_model: str | None = None
    fingerprint: str | None = None
    response_id: str | None = None
    input: list[Message] | None = None
    output: list[Message] | None = None
    finish_reasons: list[str] = field(default_factory=list)
    tokens_in: Any = None
    tokens_out: Any = None
    cache_read: Any = None
    cache_write: Any = None
    reasoning: Any = None
    ttft_s: Any = None
    session_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_arguments: str | None = None
    tool_result: str | None = None
    tool_definitions: int | None = None  # how many tools the call offered
    query: str | None = None
    documents: list[str] | None = None
    span_input: str | None = None  # agent / chain input and output as text
    span_output: str | None = None
    client_cost: float | None = None  # a cost the instrumentation computed (OpenLIT)
    span_environment: str | None = None  # set on the span rather than the resource (OpenLIT)
    span_app: str | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # content that could not be parsed

    def fill(self, **values: Any) -> None:
        """Set each field still empty; what a newer convention said is never overridden."""
        for name, value in values.items():
            if value is None or value == [] or value == "":
                continue
            if getattr(self, name) in (None, [], ""):
                setattr(self, name, value)
