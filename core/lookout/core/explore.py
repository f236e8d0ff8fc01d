"""Reading calls, traces and sessions back for people: the call explorer (feedback's /calls)
and the read API (ingest's /v1/traces/{trace_id}, /v1/sessions/{session_id}).

Every read is scoped by the apps its caller may see (`apps`: a set of app ids, or None for
a '*' key or reviewer); a call, trace or session of another app does not exist for them.
Every list is capped and cursor-paginated in the shape of GET /v1/calls: {"calls" or
"spans", "next", "truncated"}, `next` a `Cursor` of where the page ended. Texts in
responses are cut at TEXT_MAX characters (the field is named in `clipped`).

Speed on large stores: the call list reads keys (ts, event_id) in widening time windows
from the newest end (an hour, a day, a week, a month, then all), so a page reads the
recent partitions only, and fetches previews for just the rows of the page; a call, a
trace and a session are found through the bloom-filter indexes on event_id, trace_id
and session_id.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from .session import Session

Apps = frozenset[str] | None
TEXT_MAX = 256 * 1024
PREVIEW_CHARS = 300
ATTACHED_MAX = 500  # scores and feedback rows with one call
TRACE_MAX_SPANS = 2000
PAGE_MAX = 200
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# A call's question: its prompt's last user message (else its last message, else the prompt).
_QUESTION = (
    "if(input = '', prompt, JSONExtractString(if(arrayExists(m -> JSONExtractString(m, 'role') = 'user', "
    "JSONExtractArrayRaw(input)), arrayLast(m -> JSONExtractString(m, 'role') = 'user', JSONExtractArrayRaw(input)), "
    "arrayElement(JSONExtractArrayRaw(input), -1)), 'content'))"
)
_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=31), None)


class BadCursor(ValueError):
    """A `cursor` that is not one this API returned."""


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last row's (ts, event_id, app_id), in the listing's order."""

    ts: datetime
    event_id: uuid.UUID
    app_id: str

    def encode(self) -> str:
        ts = self.ts if self.ts.tzinfo else self.ts.replace(tzinfo=UTC)  # the columns are UTC
        raw = orjson.dumps({"ts": ts.isoformat(), "id": str(self.event_id), "app": self.app_id})
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            ts = datetime.fromisoformat(raw["ts"])
            if ts.tzinfo is None or not 1900 <= ts.year <= 2299:
                raise ValueError("ts out of range")
            return cls(ts, uuid.UUID(raw["id"]), str(raw["app"]))
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError, binascii.Error):
            raise BadCursor("cursor is not one this API returned; pass the `next` of the previous page") from None


def apps_clause(apps: Apps, params: dict[str, Any], column: str = "app_id") -> str:
    if apps is None:
        return "1"
    params["apps"] = sorted(apps)
    return f"{column} IN {{apps:Array(String)}}"


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _clip(record: dict[str, Any], names: Iterable[str]) -> None:
    clipped = []
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and len(value) > TEXT_MAX:
            record[name] = value[:TEXT_MAX]
            clipped.append(name)
    if clipped:
        record["clipped"] = clipped


# --- the call list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallQuery:
    apps: Apps
    app_id: str | None = None
    model: str | None = None
    model_version: str | None = None
    environment: str | None = None
    status: Literal["ok", "error"] | None = None
    since: datetime | None = None
    until: datetime | None = None
    score_name: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    feedback: Literal["up", "down", "any", "none", "reviewed"] | None = None
    text: str | None = None
    session_id: str | None = None
    trace_id: str | None = None


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(q: CallQuery, params: dict[str, Any]) -> list[str]:
    where = [apps_clause(q.apps, params)]
    for column, value in (("app_id", q.app_id), ("model", q.model), ("model_version", q.model_version),
                          ("environment", q.environment), ("status", q.status), ("session_id", q.session_id),
                          ("trace_id", q.trace_id)):
        if value is not None:
            params[f"f_{column}"] = value
            where.append(f"{column} = {{f_{column}:String}}")
    if q.since is not None:
        params["since"] = q.since
        where.append("ts >= {since:DateTime64(3, 'UTC')}")
    if q.until is not None:
        params["until"] = q.until
        where.append("ts < {until:DateTime64(3, 'UTC')}")
    if q.text:
        params["text"] = _like(q.text)
        # lower(...) LIKE uses the ngram bloom-filter indexes of migration 0013.
        where.append("(lower(output) LIKE {text:String} OR lower(input) LIKE {text:String})")
    if q.score_name is not None or q.score_min is not None or q.score_max is not None:
        inner = [apps_clause(q.apps, params)]
        if q.score_name is not None:
            params["s_name"] = q.score_name
            inner.append("name = {s_name:String}")
        if q.score_min is not None:
            params["s_min"] = q.score_min
            inner.append("value >= {s_min:Float64}")
        if q.score_max is not None:
            params["s_max"] = q.score_max
            inner.append("value <= {s_max:Float64}")
        if q.since is not None:
            inner.append("ts >= {since:DateTime64(3, 'UTC')}")
        where.append(f"(app_id, event_id) IN (SELECT app_id, event_id FROM scores WHERE {' AND '.join(inner)})")
    if q.feedback is not None:
        inner = [apps_clause(q.apps, params)]
        if q.feedback == "up":
            inner.append("thumbs = 1")
        elif q.feedback == "down":
            inner.append("thumbs = -1")
        elif q.feedback == "reviewed":
            inner.append("source = 'reviewer'")
        subquery = f"(app_id, event_id) IN (SELECT app_id, event_id FROM feedback WHERE {' AND '.join(inner)})"
        where.append(f"NOT {subquery}" if q.feedback == "none" else subquery)
    return where


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next: Cursor | None
    truncated: bool = False


def _upper_bound(q: CallQuery, cursor: Cursor | None) -> datetime:
    # Not max(ts): that reads the ts of every row. A store whose newest calls are older than
    # an hour costs one more (empty, partition-pruned) window query instead.
    for bound in (cursor.ts if cursor is not None else None, q.until):
        if bound is not None:
            return bound if bound.tzinfo else bound.replace(tzinfo=UTC)
    return datetime.now(UTC)


def search_calls(client: Any, q: CallQuery, *, limit: int = 50, cursor: Cursor | None = None) -> Page:
    """Calls newest first matching `q`, at most `limit` (≤ PAGE_MAX), as summaries with
    previews of the prompt's last message and the answer."""
    session = Session.of(client)
    limit = max(1, min(limit, PAGE_MAX))
    params: dict[str, Any] = {"n": limit + 1}
    where = _filters(q, params)
    if cursor is not None:
        where.append(
            "(ts < {c_ts:DateTime64(3, 'UTC')} OR (ts = {c_ts:DateTime64(3, 'UTC')} "
            "AND (event_id, app_id) > ({c_id:UUID}, {c_app:String})))")
        params.update(c_ts=cursor.ts, c_id=str(cursor.event_id), c_app=cursor.app_id)
    upper = _upper_bound(q, cursor)
    keys: Sequence[Sequence[Any]] = []
    for window in _WINDOWS:
        clause = list(where)
        if window is not None:
            lower = upper - window
            if q.since is not None and lower <= q.since:
                window = None  # the window reaches past `since`: the filter alone bounds it
            else:
                params["w_lo"] = lower
                clause.append("ts >= {w_lo:DateTime64(3, 'UTC')}")
        keys = session.query(
            f"SELECT app_id, ts, event_id, model FROM llm_calls WHERE {' AND '.join(clause)} "
            "ORDER BY ts DESC, event_id, app_id LIMIT 1 BY app_id, event_id LIMIT {n:UInt32}",
            parameters=params).result_rows
        if len(keys) > limit or window is None:
            break
    chosen = keys[:limit]
    if not chosen:
        return Page([], None)
    rows = session.query(
        "SELECT event_id, ts, app_id, environment, provider, model, model_version, prompt_version, status, "
        "error, latency_ms, tokens_in, tokens_out, cost_usd, session_id, trace_id, "
        f"substring(output, 1, {PREVIEW_CHARS}) AS answer, "
        f"substring({_QUESTION}, 1, {PREVIEW_CHARS}) AS question "
        # (app, model, ts) bounds follow the sort key, so only the page's granules are read.
        "FROM llm_calls WHERE app_id IN {apps:Array(String)} AND model IN {models:Array(String)} "
        "AND ts BETWEEN {lo:DateTime64(3, 'UTC')} AND {hi:DateTime64(3, 'UTC')} "
        "AND (app_id, event_id) IN {pairs:Array(Tuple(String, UUID))} LIMIT 1 BY app_id, event_id",
        parameters={"apps": sorted({r[0] for r in chosen}), "models": sorted({r[3] for r in chosen}),
                    "lo": min(r[1] for r in chosen), "hi": max(r[1] for r in chosen),
                    "pairs": [(r[0], str(r[2])) for r in chosen]})
    names = rows.column_names
    found = {(r[2], r[0]): {k: _iso(v) for k, v in zip(names, r, strict=True)} for r in rows.result_rows}
    summaries = [found[(app, event)] for app, _, event, _ in chosen if (app, event) in found]
    last = chosen[-1]
    return Page(summaries, Cursor(last[1], last[2], last[0]) if len(keys) > limit else None)


# --- one call ------------------------------------------------------------------------------------

_CALL_COLUMNS = (
    "event_id, ts, app_id, environment, provider, model, model_version, prompt_version, input, prompt, output, "
    "tokens_in, tokens_out, tokens_cache_read, tokens_cache_write, tokens_reasoning, latency_ms, ttft_ms, status, "
    "error, cost_usd, cost_source, user_id, session_id, trace_id, span_id, tags, metadata, context, reference, "
    "pii_redactions, ingested_at"
)


def apps_with_call(client: Any, apps: Apps, event_id: uuid.UUID, limit: int = 10) -> list[str]:
    params: dict[str, Any] = {"id": str(event_id), "n": limit}
    rows = Session.of(client).query(
        f"SELECT DISTINCT app_id FROM llm_calls WHERE event_id = {{id:UUID}} AND {apps_clause(apps, params)} "
        "ORDER BY app_id LIMIT {n:UInt32}", parameters=params).result_rows
    return [r[0] for r in rows]


def _near(event_id: uuid.UUID, around: datetime | None, days: int = 1) -> tuple[datetime, datetime] | None:
    """A time window that holds the call: around a time the caller knows (a list row, the
    call a trace or session was opened from), or the time inside a UUIDv7 event id (the
    SDK's); None when neither is known (the bloom-filter index alone finds it)."""
    if around is None and event_id.version == 7:
        around = datetime.fromtimestamp((event_id.int >> 80) / 1000, UTC)
    if around is None:
        return None
    around = around if around.tzinfo else around.replace(tzinfo=UTC)
    return around - timedelta(days=days), around + timedelta(days=days)


def call(client: Any, app_id: str, event_id: uuid.UUID, *, around: datetime | None = None) -> dict[str, Any] | None:
    """App `app_id`'s call with this id, its scores (with evaluators), votes and reviews,
    and the open review task if there is one."""
    session = Session.of(client)
    params: dict[str, Any] = {"id": str(event_id), "app": app_id, "n": ATTACHED_MAX + 1}
    window = _near(event_id, around)
    where = "app_id = {app:String} AND event_id = {id:UUID}"
    # First the call's sort key from small columns (the bloom index finds its granules), then
    # the whole row by that key: one granule of the big text columns, not the index block's four.
    found: Sequence[Sequence[Any]] = []
    if window:
        params.update(w_lo=window[0], w_hi=window[1])
        found = session.query(
            f"SELECT model, ts FROM llm_calls WHERE {where} "
            "AND ts BETWEEN {w_lo:DateTime64(3, 'UTC')} AND {w_hi:DateTime64(3, 'UTC')} LIMIT 1",
            parameters=params).result_rows
    if not found:  # no hint, or a wrong one (a stale link, a UUIDv7 minted apart from the call's ts)
        found = session.query(f"SELECT model, ts FROM llm_calls WHERE {where} LIMIT 1", parameters=params).result_rows
    if not found:
        return None
    params.update(model=found[0][0], ts=found[0][1], after=found[0][1] - timedelta(days=1))
    result = session.query(
        f"SELECT {_CALL_COLUMNS} FROM llm_calls WHERE app_id = {{app:String}} AND model = {{model:String}} "
        "AND ts = {ts:DateTime64(3, 'UTC')} AND event_id = {id:UUID} LIMIT 1", parameters=params)
    if not result.result_rows:
        return None
    record = {k: _iso(v) for k, v in zip(result.column_names, result.result_rows[0], strict=True)}
    record["input"] = orjson.loads(record["input"]) if record["input"] else []
    for message in record["input"]:
        if isinstance(message.get("content"), str) and len(message["content"]) > TEXT_MAX:
            message["content"] = message["content"][:TEXT_MAX]
            record.setdefault("clipped", []).append("input")
    _clip(record, ("prompt", "output", "error", "reference"))
    scores = session.query(
        "SELECT score_id, name, value, label, source, evaluator, evaluator_version, substring(explanation, 1, 4000), "
        "cost_usd, ts FROM scores WHERE app_id = {app:String} AND event_id = {id:UUID} "
        "AND ts >= {after:DateTime64(3, 'UTC')} "
        "ORDER BY ts DESC LIMIT 1 BY score_id LIMIT {n:UInt32}", parameters=params)
    names = ("score_id", "name", "value", "label", "source", "evaluator", "evaluator_version", "explanation",
             "cost_usd", "ts")
    record["scores"] = [{k: _iso(v) for k, v in zip(names, r, strict=True)} for r in scores.result_rows[:ATTACHED_MAX]]
    feedback = session.query(
        "SELECT feedback_id, source, author, thumbs, rating, labels, substring(corrected_output, 1, 65536), "
        "substring(comment, 1, 4000), ts FROM feedback WHERE app_id = {app:String} AND event_id = {id:UUID} "
        "AND ts >= {after:DateTime64(3, 'UTC')} "
        "ORDER BY ts DESC LIMIT 1 BY feedback_id LIMIT {n:UInt32}", parameters=params)
    names = ("feedback_id", "source", "author", "thumbs", "rating", "labels", "corrected_output", "comment", "ts")
    record["feedback"] = [{k: _iso(v) for k, v in zip(names, r, strict=True)}
                          for r in feedback.result_rows[:ATTACHED_MAX]]
    if len(scores.result_rows) > ATTACHED_MAX or len(feedback.result_rows) > ATTACHED_MAX:
        record["truncated"] = True
    return record


# --- traces --------------------------------------------------------------------------------------


def trace(client: Any, apps: Apps, trace_id: str, *, max_spans: int = TRACE_MAX_SPANS,
          around: datetime | None = None) -> dict[str, Any] | None:
    """The steps of a trace as a tree: `spans` in depth-first order, each with its `depth`,
    `offset_ms` from the trace's start, `duration_ms` and `children` (span ids); calls the
    SDK stored with this trace id (no OTLP span) join as LLM steps."""
    if around is not None:  # the trace of a call the caller opened: its days' partitions only
        around = around if around.tzinfo else around.replace(tzinfo=UTC)
        near = _trace(client, apps, trace_id, max_spans, (around - timedelta(days=1), around + timedelta(days=1)))
        if near is not None:
            return near
    return _trace(client, apps, trace_id, max_spans, None)  # a wrong hint costs one more read


def _trace(client: Any, apps: Apps, trace_id: str, max_spans: int,
           window: tuple[datetime, datetime] | None) -> dict[str, Any] | None:
    session = Session.of(client)
    params: dict[str, Any] = {"t": trace_id, "n": max_spans + 1}
    apps_sql = apps_clause(apps, params)
    if window is not None:
        params.update(w_lo=window[0], w_hi=window[1])
        apps_sql += " AND ts BETWEEN {w_lo:DateTime64(3, 'UTC')} AND {w_hi:DateTime64(3, 'UTC')}"
    steps = session.query(
        "SELECT span_key, app_id, span_id, parent_span_id, ts, duration_ms, kind, name, status, "
        "substring(error, 1, 2000) AS error, event_id, provider, model, tokens_in, tokens_out, cost_usd, "
        f"substring(input, 1, {TEXT_MAX}) AS input, substring(output, 1, {TEXT_MAX}) AS output, attributes, source, "
        f"source_version, session_id FROM trace_spans WHERE trace_id = {{t:String}} AND {apps_sql} "
        "ORDER BY ts LIMIT 1 BY app_id, span_id LIMIT {n:UInt32}", parameters=params)
    calls = session.query(
        "SELECT event_id, app_id, span_id, metadata['otlp.parent_span_id'] AS parent_span_id, ts, latency_ms, model, "
        "provider, status, substring(error, 1, 2000) AS error, tokens_in, tokens_out, cost_usd, session_id, "
        f"substring(output, 1, {PREVIEW_CHARS}) AS answer FROM llm_calls "
        f"WHERE trace_id = {{t:String}} AND {apps_sql} ORDER BY ts LIMIT 1 BY app_id, event_id LIMIT {{n:UInt32}}",
        parameters=params)
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for row in steps.result_rows:
        node = {k: _iso(v) for k, v in zip(steps.column_names, row, strict=True)}
        nodes[(node["app_id"], node["span_id"])] = node
    for row in calls.result_rows:
        found = {k: _iso(v) for k, v in zip(calls.column_names, row, strict=True)}
        key = (found["app_id"], found["span_id"] or str(found["event_id"]))
        node = nodes.get(key)
        if node is None:  # a call of the SDK (or one whose span row is not stored yet)
            node = nodes[key] = {"span_key": found["event_id"], "app_id": found["app_id"], "span_id": key[1],
                                 "parent_span_id": found["parent_span_id"], "ts": found["ts"],
                                 "duration_ms": found["latency_ms"], "kind": "llm", "name": found["model"],
                                 "status": found["status"], "error": found["error"], "event_id": found["event_id"],
                                 "provider": found["provider"], "model": found["model"], "input": "", "output": "",
                                 "attributes": {}, "source": "", "source_version": "",
                                 "session_id": found["session_id"], "tokens_in": found["tokens_in"],
                                 "tokens_out": found["tokens_out"]}
        node["cost_usd"] = found["cost_usd"]
        node["answer"] = found["answer"]
    if not nodes:
        return None
    truncated = len(steps.result_rows) > max_spans or len(calls.result_rows) > max_spans
    ordered = _tree(list(nodes.values()))[:max_spans]
    return {"trace_id": trace_id, "spans": ordered, "truncated": truncated}


def _tree(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {(n["app_id"], n["span_id"]): n for n in nodes}
    by_span = {n["span_id"]: n for n in nodes}
    children: dict[tuple[str, str], list[dict[str, Any]]] = {}
    roots = []
    for node in sorted(nodes, key=lambda n: n["ts"]):
        parent = (node["app_id"], node.get("parent_span_id") or "")
        # A span whose parent was not kept is a root; one whose parent is another app's (a
        # distributed trace) hangs below it where the caller may see both.
        parent_node = by_id.get(parent) or (by_span.get(parent[1]) if parent[1] else None)
        if parent_node is None or parent_node is node:
            roots.append(node)
        else:
            children.setdefault((parent_node["app_id"], parent_node["span_id"]), []).append(node)
    start = min(datetime.fromisoformat(n["ts"]) for n in nodes)
    ordered: list[dict[str, Any]] = []
    stack = [(root, 0) for root in reversed(roots)]
    seen: set[tuple[str, str]] = set()
    while stack:
        node, depth = stack.pop()
        key = (node["app_id"], node["span_id"])
        if key in seen:  # a cycle of parent ids (a hostile sender) ends here
            continue
        seen.add(key)
        kids = children.get(key, [])
        node["depth"] = depth
        node["offset_ms"] = (datetime.fromisoformat(node["ts"]) - start).total_seconds() * 1000
        node["children"] = [k["span_id"] for k in kids]
        ordered.append(node)
        stack.extend((kid, depth + 1) for kid in reversed(kids))
    return ordered


# --- sessions ------------------------------------------------------------------------------------


def session_calls(client: Any, apps: Apps, session_id: str, *, limit: int = 100,
                  cursor: Cursor | None = None, around: datetime | None = None) -> Page:
    """The calls of a session (conversation) oldest first, as turns: the prompt's last user
    message, the answer, and ids to open each call or its trace. A call belongs to the
    session named on it, or on any step of its trace (an agent run's conversation id,
    exported apart from the model calls below it). `around`: a time in the session (the
    call it was opened from); the session is then read within a week of it."""
    session = Session.of(client)
    limit = max(1, min(limit, PAGE_MAX))
    params: dict[str, Any] = {"s": session_id, "n": limit + 1, "traces_max": 1000}
    scope = apps_clause(apps, params)
    if around is not None:
        around = around if around.tzinfo else around.replace(tzinfo=UTC)
        params.update(w_lo=around - timedelta(days=7), w_hi=around + timedelta(days=7))
        scope += " AND ts BETWEEN {w_lo:DateTime64(3, 'UTC')} AND {w_hi:DateTime64(3, 'UTC')}"
    where = [scope]
    if cursor is not None:
        where.append("(ts > {c_ts:DateTime64(3, 'UTC')} OR (ts = {c_ts:DateTime64(3, 'UTC')} "
                     "AND (event_id, app_id) > ({c_id:UUID}, {c_app:String})))")
        params.update(c_ts=cursor.ts, c_id=str(cursor.event_id), c_app=cursor.app_id)
    columns = ("SELECT event_id, ts, app_id, model, status, latency_ms, tokens_in, tokens_out, cost_usd, trace_id, "
               f"substring({_QUESTION}, 1, {TEXT_MAX}) AS question, substring(output, 1, {TEXT_MAX}) AS answer "
               "FROM llm_calls WHERE ")
    order = " ORDER BY ts, event_id, app_id LIMIT 1 BY app_id, event_id LIMIT {n:UInt32}"
    named = session.query(columns + " AND ".join([*where, "session_id = {s:String}"]) + order, parameters=params)
    traces = session.query(
        f"SELECT DISTINCT app_id, trace_id FROM trace_spans WHERE {scope} AND session_id = {{s:String}} "
        "LIMIT {traces_max:UInt32}", parameters=params).result_rows
    found = {(r[2], r[0]): r for r in named.result_rows}
    if traces:
        params["traces"] = [(app, trace) for app, trace in traces]
        params["trace_ids"] = sorted({trace for _, trace in traces})
        joined = session.query(
            columns + " AND ".join([*where, "trace_id IN {trace_ids:Array(String)}",
                                    "(app_id, trace_id) IN {traces:Array(Tuple(String, String))}"]) + order,
            parameters=params)
        found.update({(r[2], r[0]): r for r in joined.result_rows})
    ordered = sorted(found.values(), key=lambda r: (r[1], str(r[0]), r[2]))[: limit + 1]
    page = [{k: _iso(v) for k, v in zip(named.column_names, r, strict=True)} for r in ordered[:limit]]
    if not page and around is not None and cursor is None:  # a wrong hint: the whole store
        return session_calls(client, apps, session_id, limit=limit)
    if not page:
        return Page([], None)
    last = ordered[len(page) - 1]
    return Page(page, Cursor(last[1], last[0], last[2]) if len(ordered) > limit else None)

