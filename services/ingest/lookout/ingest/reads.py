"""Reading stored calls back (GET /v1/calls...). ClickHouse is the only query store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

# GET /v1/calls pages with the explorer's cursor: (ts, event_id, app_id), ts descending.
from lookout.core.explore import BadCursor, Cursor  # noqa: F401  (BadCursor: the API's to catch)
from lookout.core.session import Session

_CALL_COLUMNS = (
    "event_id, ts, app_id, environment, provider, model, model_version, prompt_version, input, prompt, output, "
    "tokens_in, tokens_out, tokens_cache_read, tokens_cache_write, tokens_reasoning, latency_ms, ttft_ms, status, "
    "error, cost_usd, cost_source, user_id, session_id, "
    "trace_id, span_id, tags, metadata, context, reference, pii_redactions, ingested_at"
)


def _row_to_call(names: Sequence[str], row: Sequence[Any]) -> dict:
    call = dict(zip(names, row, strict=True))
    call["event_id"] = str(call["event_id"])
    call["input"] = orjson.loads(call["input"]) if call["input"] else []
    for key in ("ts", "ingested_at"):
        call[key] = call[key].isoformat()
    return call


# Most scores and feedback rows returned with one call (the newest); more is flagged.
MAX_ATTACHED = 500


def apps_with_call(client: Session, event_id: uuid.UUID, limit: int = 10) -> list[str]:
    """The apps that stored a call with this id (ids are client-chosen, so two apps may
    share one), at most `limit` of them."""
    result = client.query(
        "SELECT DISTINCT app_id FROM llm_calls WHERE event_id = {id:UUID} ORDER BY app_id LIMIT {n:UInt32}",
        parameters={"id": str(event_id), "n": limit},
    )
    return [r[0] for r in result.result_rows]


def get_call(client: Session, event_id: uuid.UUID, app_id: str) -> dict | None:
    """App `app_id`'s call with this id, with that app's scores and feedback on it."""
    params = {"id": str(event_id), "app": app_id, "n": MAX_ATTACHED + 1}
    result = client.query(
        f"SELECT {_CALL_COLUMNS} FROM llm_calls FINAL WHERE app_id = {{app:String}} AND event_id = {{id:UUID}} "
        "LIMIT 1",
        parameters=params,
    )
    if not result.result_rows:
        return None
    call = _row_to_call(result.column_names, result.result_rows[0])
    scores = client.query(
        "SELECT score_id, name, value, label, source, evaluator, evaluator_version, explanation, ts "
        "FROM scores FINAL WHERE app_id = {app:String} AND event_id = {id:UUID} ORDER BY ts DESC LIMIT {n:UInt32}",
        parameters=params,
    )
    call["scores"] = [
        {**dict(zip(scores.column_names, r, strict=True)), "score_id": str(r[0]), "ts": r[-1].isoformat()}
        for r in reversed(scores.result_rows[:MAX_ATTACHED])
    ]
    feedback = client.query(
        "SELECT feedback_id, source, author, thumbs, rating, labels, corrected_output, comment, ts "
        "FROM feedback FINAL WHERE app_id = {app:String} AND event_id = {id:UUID} ORDER BY ts DESC LIMIT {n:UInt32}",
        parameters=params,
    )
    call["feedback"] = [
        {**dict(zip(feedback.column_names, r, strict=True)), "feedback_id": str(r[0]), "ts": r[-1].isoformat()}
        for r in reversed(feedback.result_rows[:MAX_ATTACHED])
    ]
    if len(scores.result_rows) > MAX_ATTACHED or len(feedback.result_rows) > MAX_ATTACHED:
        call["truncated"] = True  # only the newest MAX_ATTACHED scores and feedback rows are here
    return call


# About how many bytes a call takes in a response: its text columns, plus the rest.
_CALL_SIZE = (
    "length(input) + length(prompt) + length(output) + length(error) + length(reference) "
    "+ length(model_version) + length(prompt_version) + length(user_id) + length(session_id) "
    "+ length(trace_id) + length(span_id) + arraySum(arrayMap(x -> length(x), context)) "
    "+ arraySum(arrayMap(x -> length(x), tags)) + arraySum(arrayMap(x -> length(x), mapKeys(metadata))) "
    "+ arraySum(arrayMap(x -> length(x), mapValues(metadata))) + 600"
)


@dataclass(frozen=True)
class Page:
    calls: list[dict]
    next: Cursor | None  # more calls follow: ask again with cursor=next
    truncated: bool  # the page stopped before `limit` calls, at the byte budget


def list_calls(
    client: Session,
    *,
    app_id: str | None,
    model: str | None,
    trace_id: str | None,
    since: datetime | None,
    limit: int,
    max_bytes: int,
    cursor: Cursor | None = None,
) -> Page:
    """Calls newest first: at most `limit`, and at most about `max_bytes` of them (always at
    least one). Two queries: the page's keys with each call's size (lengths only, no text
    read), then the text of just the calls that fit."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit + 1}
    if app_id:
        where.append("app_id = {app:String}")
        params["app"] = app_id
    if model:
        where.append("model = {model:String}")
        params["model"] = model
    if trace_id:
        where.append("trace_id = {trace:String}")
        params["trace"] = trace_id
    if since:
        where.append("ts >= {since:DateTime64(3, 'UTC')}")
        params["since"] = since
    if cursor:
        where.append(
            "(ts < {c_ts:DateTime64(3, 'UTC')} OR (ts = {c_ts:DateTime64(3, 'UTC')} "
            "AND (event_id, app_id) > ({c_id:UUID}, {c_app:String})))"
        )
        params.update(c_ts=cursor.ts, c_id=str(cursor.event_id), c_app=cursor.app_id)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    keys = client.query(
        f"SELECT app_id, model, ts, event_id, {_CALL_SIZE} FROM llm_calls FINAL {clause} "
        "ORDER BY ts DESC, event_id, app_id LIMIT {limit:UInt32}",
        parameters=params,
    ).result_rows
    chosen, total = [], 0
    for row in keys[:limit]:
        if chosen and total + row[4] > max_bytes:
            break
        chosen.append(row)
        total += row[4]
    if not chosen:
        return Page([], None, False)
    full = client.query(
        f"SELECT {_CALL_COLUMNS}, model FROM llm_calls FINAL "
        "WHERE app_id IN {apps:Array(String)} AND ts BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
        "AND (app_id, event_id) IN {pairs:Array(Tuple(String, UUID))}",
        parameters={
            "apps": sorted({r[0] for r in chosen}),
            "lo": min(r[2] for r in chosen),
            "hi": max(r[2] for r in chosen),
            "pairs": [(r[0], str(r[3])) for r in chosen],
        },
    )
    names = full.column_names[:-1]
    app, ts, event = names.index("app_id"), names.index("ts"), names.index("event_id")
    # Keyed like the first query's rows, (app_id, model, ts, event_id), to keep its order.
    by_key = {(row[app], row[-1], row[ts], row[event]): row[:-1] for row in full.result_rows}
    calls = [_row_to_call(names, by_key[key]) for key in (tuple(r[:4]) for r in chosen) if key in by_key]
    last = chosen[-1]
    more = len(keys) > len(chosen)
    return Page(calls, Cursor(last[2], last[3], last[0]) if more else None, len(chosen) < min(limit, len(keys)))
