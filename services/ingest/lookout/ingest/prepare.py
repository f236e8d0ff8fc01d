"""The CPU part of each intake route, from body bytes to Kafka records ready to produce:
decoding, validation, the key's app check, and enrichment (PII redaction, pseudonyms,
prices). All of it runs on a worker (workers.WorkerPool: a worker process by default), never
on the event loop: a body can hold 10 MiB of hostile text, and the loop must keep answering
everyone else meanwhile.

What goes in and out crosses a process boundary, so it is kept cheap to pickle: body bytes
and the key in; records (bytes), rejections and counts out. A pydantic graph of the calls
would cost far more to send back than the records it becomes (bench/RESULTS.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from lookout.core.api_errors import ApiError, require
from lookout.core.auth import ApiKey
from lookout.core.events import LlmCall

from . import intake, otlp
from .enrich import Enricher
from .publisher import encode, encode_scores, encode_steps

Records = list[tuple[bytes, bytes]]  # Kafka (key, value)


class NotQuick(Exception):
    """A job on a small-request worker met a body that decodes to more than that lane takes
    (a small gzip body may hold megabytes): the request goes to the other workers."""


@contextlib.contextmanager
def _decoding(quick: bool) -> Iterator[None]:
    # On a small-request worker `max_bytes` is the lane's limit: beyond it, not a 413 but NotQuick.
    try:
        yield
    except intake.IntakeError as exc:
        if quick and exc.status == 413:
            raise NotQuick() from None
        raise


@dataclass
class Prepared:
    records: Records  # the accepted calls, for llm.events
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"index", "field", "message"}
    redactions: int = 0
    ignored: int = 0  # OTLP spans that are not GenAI calls
    # OTLP's trace steps (llm.spans) and client evaluations (llm.scores)
    step_records: Records = field(default_factory=list)
    score_records: Records = field(default_factory=list)
    coverage: otlp.coverage.Coverage | None = None

    @property
    def accepted(self) -> int:
        return len(self.records)


def events(
    enricher: Enricher,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    *,
    key: ApiKey,
    max_bytes: int,
    max_events: int,
    quick: bool = False,
) -> Prepared:
    """POST /v1/events (on a worker: `enricher` is the worker's own). `quick`: on a
    small-request worker, where `max_bytes` is that lane's limit (NotQuick beyond it)."""
    try:
        with _decoding(quick):
            payload = intake.decode_body(body, content_type, content_encoding, max_bytes=max_bytes)
        accepted, rejected = intake.validate_events(payload, max_events=max_events)
    except intake.IntakeError as exc:
        raise ApiError(exc.status, exc.message, exc.field) from None
    # Validated from the body's JSON: every object of every call is this request's own.
    calls, redactions = _enrich((call for _, call in accepted), key, enricher, own_messages=True)
    return Prepared(encode(calls), [r.as_dict() for r in rejected], redactions)


def traces(
    enricher: Enricher,
    body: bytes,
    content_type: str,
    content_encoding: str | None,
    *,
    key: ApiKey,
    max_bytes: int,
    max_spans: int,
    quick: bool = False,
) -> Prepared:
    """POST /v1/traces (OTLP/HTTP, protobuf or JSON); `quick` as for events."""
    try:
        if (content_encoding or "identity").strip().lower() == "gzip":
            with _decoding(quick):
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
    return Prepared(encode(calls), result.rejected, redactions, result.ignored, encode_steps(steps),
                    encode_scores(scores), result.coverage)


def _enrich(calls: Iterable[LlmCall], key: ApiKey, enricher: Enricher, *,
            own_messages: bool = False) -> tuple[list[LlmCall], int]:
    calls = list(calls)
    # Every app is checked before any work is spent on enriching: one foreign app refuses the request.
    for call in calls:
        require(key, "ingest", call.app_id)
    # The calls were validated (or converted) for this request alone: enriched in place.
    total = 0
    for call in calls:
        total += enricher.apply(call, own_messages=own_messages)
    return calls, total
