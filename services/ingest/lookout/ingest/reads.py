"""Reading stored calls back (GET /v1/calls...). ClickHouse is the only query store."""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
from clickhouse_connect.driver.client import Client

_CALL_COLUMNS = (
    "event_id, ts, app_id, environment, provider, model, model_version, prompt_version, input, prompt, output, "
    "tokens_in, tokens_out, latency_ms, ttft_ms, status, error, cost_usd, cost_source, user_id, session_id, "
    "trace_id, span_id, tags, metadata, context, reference, pii_redactions, ingested_at"
)


def _row_to_call(names: tuple[str, ...], row: tuple) -> dict:
    call = dict(zip(names, row, strict=True))
    call["event_id"] = str(call["event_id"])
    call["input"] = orjson.loads(call["input"]) if call["input"] else []
    for key in ("ts", "ingested_at"):
        call[key] = call[key].isoformat()
    return call


def get_call(client: Client, event_id: uuid.UUID) -> dict | None:
    result = client.query(
        f"SELECT {_CALL_COLUMNS} FROM llm_calls FINAL WHERE event_id = {{id:UUID}} LIMIT 1",
        parameters={"id": str(event_id)},
    )
    if not result.result_rows:
        return None
    call = _row_to_call(result.column_names, result.result_rows[0])
    scores = client.query(
        "SELECT score_id, name, value, label, source, evaluator, evaluator_version, explanation, ts "
        "FROM scores FINAL WHERE event_id = {id:UUID} ORDER BY ts",
        parameters={"id": str(event_id)},
    )
    call["scores"] = [
        {**dict(zip(scores.column_names, r, strict=True)), "score_id": str(r[0]), "ts": r[-1].isoformat()}
        for r in scores.result_rows
    ]
    feedback = client.query(
        "SELECT feedback_id, source, author, thumbs, rating, labels, corrected_output, comment, ts "
        "FROM feedback FINAL WHERE event_id = {id:UUID} ORDER BY ts",
        parameters={"id": str(event_id)},
    )
    call["feedback"] = [
        {**dict(zip(feedback.column_names, r, strict=True)), "feedback_id": str(r[0]), "ts": r[-1].isoformat()}
        for r in feedback.result_rows
    ]
    return call


def list_calls(
    client: Client,
    *,
    app_id: str | None,
    model: str | None,
    trace_id: str | None,
    since: datetime | None,
    limit: int,
) -> list[dict]:
    where, params = [], {"limit": limit}
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
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    result = client.query(
        f"SELECT {_CALL_COLUMNS} FROM llm_calls FINAL {clause} ORDER BY ts DESC, event_id LIMIT {{limit:UInt32}}",
        parameters=params,
    )
    return [_row_to_call(result.column_names, row) for row in result.result_rows]
