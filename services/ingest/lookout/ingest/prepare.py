"""The CPU part of each intake route, from body bytes to calls ready to produce: decoding,
validation, the key's app check, and enrichment (PII redaction, pseudonyms, prices). All of
it runs on a worker thread (workers.WorkerPool), never on the event loop: a body can hold
10 MiB of hostile text, and the loop must keep answering everyone else meanwhile."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lookout.core.api_errors import ApiError, require
from lookout.core.auth import ApiKey
from lookout.core.events import LlmCall

from . import intake, otlp
from .enrich import Enricher
from .publisher import encode, encode_scores, encode_steps


@dataclass
class Prepared:
    calls: list[LlmCall]
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "field", "message"}
    redactions: int = 0
    ignored: int = 0  # OTLP spans that are not GenAI calls
    # OTLP's trace steps (llm.spans) and client evaluations (llm.scores), encoded
    step_records: list[tuple[bytes, bytes]] = field(default_factory=list)
    score_records: list[tuple[bytes, bytes]] = field(default_factory=list)
    coverage: otlp.coverage.Coverage | None = None
    records: list[tuple[bytes, bytes]] = field(init=False)  # the calls as Kafka (key, value)

    def __post_init__(self) -> None:
        self.records = encode(self.calls)


def events(
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    *,
    key: ApiKey,
    enricher: Enricher,
    max_bytes: int,
    max_events: int,
) -> Prepared:
    """POST /v1/events."""
    try:
        payload = intake.decode_body(body, content_type, content_encoding, max_bytes=max_bytes)
        accepted, rejected = intake.validate_events(payload, max_events=max_events)
    except intake.IntakeError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from None
    calls, redactions = _enrich((call for _, call in accepted), key, enricher)
    return Prepared(calls, [r.as_dict() for r in rejected], redactions)


def traces(
    body: bytes,
    content_type: str,
    content_encoding: str | None,
    *,
    key: ApiKey,
    enricher: Enricher,
    max_bytes: int,
    max_spans: int,
) -> Prepared:
    """POST /v1/traces (OTLP/HTTP, protobuf or JSON)."""
    try:
        if (content_encoding or "identity").strip().lower() == "gzip":
            body = intake.gunzip(body, max_bytes)
        decoded = otlp.decode_request(body, content_type)
    except intake.IntakeError as exc:
        raise ApiError(exc.status, exc.message) from None
    except otlp.UnsupportedMediaType as exc:
        raise ApiError(415, str(exc)) from None
    except otlp.OtlpDecodeError as exc:
        raise ApiError(400, str(exc)) from None
    spans = otlp.span_count(decoded)
    if spans > max_spans:
        # Refused before any span is converted: conversion is the per-span cost.
        raise ApiError(413, f"{spans} spans in one request; the limit is {max_spans} "
                            "(LOOKOUT_MAX_SPANS_PER_REQUEST): send smaller batches", field="resourceSpans")
    result = otlp.convert(decoded, default_app_id=None if key.app_id == "*" else key.app_id)
    for step in result.trace_spans:
        require(key, "ingest", step.app_id)
    calls, redactions = _enrich(result.calls, key, enricher)
    steps, scores = [], []
    for step in result.trace_spans:
        step, n = enricher.step(step)
        steps.append(step)
        redactions += n
    for score in result.scores:
        score, n = enricher.score(score)
        scores.append(score)
        redactions += n
    return Prepared(calls, result.rejected, redactions, result.ignored, encode_steps(steps), encode_scores(scores),
                    result.coverage)


def _enrich(calls: Iterable[LlmCall], key: ApiKey, enricher: Enricher) -> tuple[list[LlmCall], int]:
    calls = list(calls)
    # Every app is checked before any work is spent on enriching: one foreign app refuses the request.
    for call in calls:
        require(key, "ingest", call.app_id)
    enriched, total = [], 0
    for call in calls:
        call, redactions = enricher(call)
        enriched.append(call)
        total += redactions
    return enriched, total
