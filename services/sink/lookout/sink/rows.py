"""How each topic's records become rows of their ClickHouse table."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson

from lookout.core import events, topics

from . import sql_rows


def _s(value: str | None) -> str:
    return value or ""


def _call_row(c: events.LlmCall) -> dict:
    return {
        "event_id": c.event_id,
        "ts": c.ts,
        "app_id": c.app_id,
        "environment": c.environment,
        "provider": c.provider,
        "model": c.model,
        "model_version": _s(c.model_version),
        "prompt_version": _s(c.prompt_version),
        "input": orjson.dumps([m.model_dump(exclude_none=True) for m in c.input]).decode() if c.input else "",
        "prompt": _s(c.prompt),
        "output": _s(c.output),
        "tokens_in": c.tokens_in,
        "tokens_out": c.tokens_out,
        "tokens_cache_read": c.tokens_cache_read,
        "tokens_cache_write": c.tokens_cache_write,
        "tokens_reasoning": c.tokens_reasoning,
        "latency_ms": c.latency_ms,
        "ttft_ms": c.ttft_ms,
        "status": c.status,
        "error": _s(c.error),
        "cost_usd": c.cost_usd,
        "cost_source": _cost_source(c),
        "user_id": _s(c.user_id),
        "session_id": _s(c.session_id),
        "trace_id": _s(c.trace_id),
        "span_id": _s(c.span_id),
        "tags": c.tags,
        "metadata": c.metadata,
        "context": c.context or [],
        "reference": _s(c.reference),
        "logprobs": c.logprobs or [],
        "pii_redactions": int(c.metadata.get("lookout.pii_redactions", "0") or 0),
        "ingested_at": datetime.now(UTC),
    }


def _cost_source(c: events.LlmCall) -> str:
    if c.cost_usd is None:
        return "unknown"
    return "price_table" if "lookout.price_table" in c.metadata else "client"


def _score_row(s: events.Score) -> dict:
    return {
        "score_id": s.score_id, "event_id": s.event_id, "ts": s.ts, "app_id": s.app_id, "model": s.model,
        "name": s.name, "value": s.value, "label": _s(s.label), "source": s.source, "evaluator": s.evaluator,
        "evaluator_version": s.evaluator_version, "explanation": _s(s.explanation), "cost_usd": s.cost_usd,
        "model_version": _s(s.model_version), "environment": _s(s.environment),
    }


def _drift_row(d: events.DriftResult) -> dict:
    return {
        "result_id": d.result_id, "ts": d.ts, "app_id": d.app_id, "model": d.model,
        "prompt_version": _s(d.prompt_version), "window_start": d.window_start, "window_end": d.window_end,
        "signal": d.signal, "method": d.method, "statistic": d.statistic, "p_value": d.p_value,
        "threshold": d.threshold, "drifted": int(d.drifted), "reference_size": d.reference_size,
        "current_size": d.current_size, "reference_id": d.reference_id, "examples": d.examples,
        "details": orjson.dumps(d.details).decode(),
    }


def _feedback_row(f: events.Feedback) -> dict:
    return {
        "feedback_id": f.feedback_id, "event_id": f.event_id, "ts": f.ts, "app_id": f.app_id, "source": f.source,
        "author": f.author, "thumbs": f.thumbs, "rating": f.rating, "labels": f.labels,
        "corrected_output": _s(f.corrected_output), "comment": _s(f.comment), "model": _s(f.model),
        "model_version": _s(f.model_version), "environment": _s(f.environment), "call_ts": f.call_ts,
        "replaces_thumbs": f.replaces_thumbs, "signature": _s(f.signature),
    }


def _retrain_row(r: events.Retrain) -> dict:
    return {
        "run_id": r.run_id, "ts": r.ts, "app_id": r.app_id, "model": r.model, "status": r.status, "rule": r.rule,
        "evidence": orjson.dumps(r.evidence).decode(), "dataset_uri": _s(r.dataset_uri),
        "dataset_counts": r.dataset_counts, "dataset_hash": _s(r.dataset_hash),
        "model_version": _s(r.model_version), "message": _s(r.message),
    }


def _span_row(t: events.TraceSpan) -> dict:
    return {
        "span_key": t.span_key, "app_id": t.app_id, "trace_id": t.trace_id, "span_id": t.span_id,
        "parent_span_id": t.parent_span_id, "ts": t.ts, "duration_ms": t.duration_ms, "kind": t.kind, "name": t.name,
        "status": t.status, "error": _s(t.error), "environment": t.environment, "session_id": _s(t.session_id),
        "user_id": _s(t.user_id), "event_id": t.event_id, "provider": _s(t.provider), "model": _s(t.model),
        "tokens_in": t.tokens_in, "tokens_out": t.tokens_out, "cost_usd": t.cost_usd, "input": _s(t.input),
        "output": _s(t.output), "attributes": t.attributes, "source": t.source, "source_version": t.source_version,
        "ingested_at": datetime.now(UTC),
    }


def _dead_row(d: events.DeadLetter) -> dict:
    return {
        "dlq_id": d.dlq_id, "ts": d.ts, "source_topic": d.source_topic, "partition": d.partition,
        "offset": d.offset, "key": _s(d.key), "payload": base64.b64decode(d.payload_b64).decode("utf-8", "replace"),
        "error": d.error, "service": d.service,
    }


# The call's fields a score or vote row copies; environment is never empty on a stored
# call, so an empty one marks a row whose producer did not know its call.
CALL_FIELDS: dict[str, tuple[str, ...]] = {
    "scores": ("model_version", "environment"),
    "feedback": ("model", "model_version", "environment", "call_ts"),
}


W = TypeVar("W", bound=events._Wire)


@dataclass(frozen=True)
class TableSpec(Generic[W]):
    table: str
    # Rows whose id is already stored are skipped, so rollup views do not count replays;
    # None where one id has many rows (a retrain run's status transitions).
    id_column: str | None
    to_row: Callable[[W], dict]
    # Ids are chosen by clients, so two apps may pick the same one: where rows carry an
    # app_id, a row is a replay only of a row of the same app with the same id.
    app_scoped: bool = True
    # The same rows built by ClickHouse from the records' JSON (sql_rows.py), tried first;
    # None: every batch is validated in Python.
    sql: sql_rows.SqlRows | None = None

    @property
    def call_fields(self) -> tuple[str, ...]:
        """Columns the sink copies from the stored call when the producer left them empty."""
        return CALL_FIELDS.get(self.table, ())

    @property
    def dedup_key(self) -> tuple[str, ...]:
        """The columns that name one row for replay detection: (app_id, id), or (id,)."""
        if self.id_column is None:
            return ()
        return ("app_id", self.id_column) if self.app_scoped else (self.id_column,)


# Any: which record type a spec takes follows from its topic (TOPIC_SCHEMAS), not a type.
TABLES: dict[str, TableSpec[Any]] = {
    topics.EVENTS: TableSpec("llm_calls", "event_id", _call_row, sql=sql_rows.CALLS),
    topics.SCORES: TableSpec("scores", "score_id", _score_row),
    topics.DRIFT: TableSpec("drift_results", "result_id", _drift_row),
    topics.FEEDBACK: TableSpec("feedback", "feedback_id", _feedback_row),
    topics.RETRAIN: TableSpec("retrain_runs", None, _retrain_row),
    topics.RETRAIN_STATUS: TableSpec("retrain_runs", None, _retrain_row),
    topics.DLQ: TableSpec("dead_letters", "dlq_id", _dead_row, app_scoped=False),
    topics.SPANS: TableSpec("trace_spans", "span_key", _span_row),
}
