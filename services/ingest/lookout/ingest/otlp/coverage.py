"""What intake made of each source's spans: per instrumentation (scope name and version),
which call fields it filled and which it left empty, and which of its attributes were
mapped to a field, kept in metadata, or dropped. So a user sees at once why a field is
empty: the attribute their library uses for it is in the dropped list.

A request's tallies are gathered in a `Coverage` while converting (no locks, no I/O), then
counted on /metrics in one go (`record`). Sources and attribute names come from clients,
so the label values are bounded: long values cut, and beyond a budget of distinct series
they are counted under "other" instead of growing /metrics without end.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import Counter

from lookout.core.events import LlmCall

SPANS = Counter("lookout_ingest_otlp_spans_total", "OTLP spans by source and what they became",
                ["source", "version", "kind"])
FIELDS = Counter("lookout_ingest_otlp_fields_total", "Call fields filled (mapped) or left empty, by source",
                 ["source", "version", "field", "outcome"])
ATTRIBUTES = Counter("lookout_ingest_otlp_attributes_total",
                     "Span attributes mapped to a field, kept in metadata, or dropped, by source",
                     ["source", "version", "attribute", "outcome"])

# The fields of a call a user looks for first, and how to tell one is filled.
CALL_FIELDS = ("model", "provider", "input", "output", "tokens_in", "tokens_out", "tokens_cache_read",
               "tokens_reasoning", "ttft_ms", "session_id", "user_id")

_MAX_LABEL = 128
_MAX_SOURCES = 64
_MAX_ATTRIBUTE_SERIES = 4000


def filled(call: LlmCall, name: str) -> bool:
    value = getattr(call, name)
    if name == "provider":
        return value not in (None, "", "unknown")
    if name == "input":
        return bool(call.input) or bool(call.prompt)
    return value not in (None, "", [])


@dataclass
class Coverage:
    spans: Tally = field(default_factory=Tally)  # (source, version, kind)
    fields: Tally = field(default_factory=Tally)  # (source, version, field, outcome)
    attributes: Tally = field(default_factory=Tally)  # (source, version, family, outcome)

    def span(self, source: tuple[str, str], kind: str) -> None:
        self.spans[(*source, kind)] += 1

    def call(self, source: tuple[str, str], call: LlmCall) -> None:
        for name in CALL_FIELDS:
            self.fields[(*source, name, "mapped" if filled(call, name) else "empty")] += 1

    def attribute(self, source: tuple[str, str], family: str, outcome: str) -> None:
        self.attributes[(*source, family, outcome)] += 1


class _Budget:
    """Distinct label sets allowed per metric; a new one past the budget becomes "other"."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: set[tuple[str, str]] = set()
        self._attributes: set[tuple[str, ...]] = set()

    def source(self, name: str, version: str) -> tuple[str, str]:
        key = (name[:_MAX_LABEL] or "(none)", version[:_MAX_LABEL])
        with self._lock:
            if key in self._sources:
                return key
            if len(self._sources) < _MAX_SOURCES:
                self._sources.add(key)
                return key
        return ("other", "")

    def attribute(self, key: tuple[str, ...]) -> str:
        family = key[2][:_MAX_LABEL]
        series = (*key[:2], family, key[3])
        with self._lock:
            if series in self._attributes:
                return family
            if len(self._attributes) < _MAX_ATTRIBUTE_SERIES:
                self._attributes.add(series)
                return family
        return "other"


_BUDGET = _Budget()


def record(coverage: Coverage) -> None:
    """Count one request's tallies on /metrics."""
    for (name, version, kind), n in coverage.spans.items():
        SPANS.labels(*_BUDGET.source(name, version), kind).inc(n)
    for (name, version, field_name, outcome), n in coverage.fields.items():
        FIELDS.labels(*_BUDGET.source(name, version), field_name, outcome).inc(n)
    for (name, version, family, outcome), n in coverage.attributes.items():
        source = _BUDGET.source(name, version)
        ATTRIBUTES.labels(*source, _BUDGET.attribute((*source, family, outcome)), outcome).inc(n)
