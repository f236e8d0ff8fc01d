"""Reading calls, traces and sessions back for people: the call explorer (feedback's /calls)
and the read API (ingest's /v1/traces/{trace_id}, /v1/sessions/{session_id}).

Every read is scoped by the apps its caller may see (`apps`: a set of app ids, or None for
a '*' key or reviewer); a call, trace or session of another app does not exist for them.
Every list is capped and cursor-paginated in the shape of GET /v1/calls: {"calls" or
"spans", "next", "truncated"}, `next` a `Cursor` of where the page ended. Texts in
responses are cut at TEXT_MAX characters (the field is named in `clipped`).

Speed on large stores: the call list reads in widening time windows from the newest end
(an hour, a day, a week, a month, then all), one query a window: the keys of the page's
rows, then their previews by primary key, from `call_previews` (migration 0018), the
list's columns in time order, so the newest page of all apps, or one deep in the cursor,
is a granule or two of small rows. A text search reads its keys from llm_calls (its
ngram indexes hold the whole texts), and so does a list of a few apps (its app_id
prefix). A call (with its scores, votes and review tasks, in one query), a trace (one
query) and a session are read by id through `id_lookup` (migration 0017), an index from
each id to the sort keys of the rows that carry it: a few granules there, then exactly
those rows, whatever the store's size or the rows' age, so no time hint is needed and a
long session is read whole.
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
TRACES_PER_SESSION_MAX = 10_000
PAGE_MAX = 200
FEW_APPS = 4  # a list scoped to at most this many apps reads its keys by llm_calls' app_id prefix
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# A call's question: its prompt's last user message (else its last message, else the prompt).
_QUESTION = (
    "if(input = '', prompt, JSONExtractString(if(arrayExists(m -> JSONExtractString(m, 'role') = 'user', "
    "JSONExtractArrayRaw(input)), arrayLast(m -> JSONExtractString(m, 'role') = 'user', JSONExtractArrayRaw(input)), "
    "arrayElement(JSONExtractArrayRaw(input), -1)), 'content'))"
)
# Reads of rows by their sort keys (from id_lookup, migration 0017): a granule or two per
# table, which one thread reads best, and the bloom-filter indexes would only add reads.
# The keys go in PREWHERE (ClickHouse does not move an IN subquery there itself), so the
# texts are read after the rows are chosen.
BY_KEY = " SETTINGS max_threads = 1, use_skip_indexes = 0"
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


# Scores and votes are dated at or after their call (a score at its call's ts, a vote when
# cast), so the semi-joins on them read only the partitions from the listing's time window
# on, less a day's slack for a score dated by a client's clock: `scored_lo` (search_calls).
_SINCE_SCORED = "ts >= {scored_lo:DateTime64(3, 'UTC')}"
_SCORE_SLACK = timedelta(days=1)
_OLDEST = datetime(1900, 1, 1, tzinfo=UTC)  # DateTime64's first day


def _filters(q: CallQuery, params: dict[str, Any], keys: str) -> list[str]:
    """The WHERE terms of `q` on llm_calls or call_previews (both have its columns);
    `keys` is the table's tuple of (app_id, model-or-nothing, ts, event_id) that id_lookup's
    (app_id, sort, ts, row_id) address: its primary key finds a session's or trace's rows."""
    where = [apps_clause(q.apps, params)]
    for column, value in (("app_id", q.app_id), ("model", q.model), ("model_version", q.model_version),
                          ("environment", q.environment), ("status", q.status), ("session_id", q.session_id),
                          ("trace_id", q.trace_id)):
        if value is not None:
            params[f"f_{column}"] = value
            where.append(f"{column} = {{f_{column}:String}}")
    looked_up = "app_id, sort, ts, row_id" if keys == _CALL_KEY else "ts, app_id, row_id"
    for kind, value in (("session", q.session_id), ("trace", q.trace_id)):
        if value is not None:  # the calls' sort keys from id_lookup: the primary key finds their granules
            where.append(f"{keys} IN (SELECT {looked_up} FROM id_lookup "
                         f"WHERE kind = '{kind}' AND id = {{f_{kind}_id:String}} AND {apps_clause(q.apps, params)})")
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
        inner.append(_SINCE_SCORED)
        where.append(f"(app_id, event_id) IN (SELECT app_id, event_id FROM scores WHERE {' AND '.join(inner)})")
    if q.feedback is not None:
        inner = [apps_clause(q.apps, params), _SINCE_SCORED]
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


_CALL_KEY = "(app_id, model, ts, event_id)"  # llm_calls' sort key
_PREVIEW_KEY = "(ts, app_id, event_id)"  # call_previews' (migration 0018)
_PREVIEW_COLUMNS = ("event_id, ts, app_id, environment, provider, model, model_version, prompt_version, status, "
                    "error, latency_ms, tokens_in, tokens_out, cost_usd, session_id, trace_id, answer, question")


def search_calls(client: Any, q: CallQuery, *, limit: int = 50, cursor: Cursor | None = None) -> Page:
    """Calls newest first matching `q`, at most `limit` (≤ PAGE_MAX), as summaries with
    previews of the prompt's last message, the answer and the error.

    One query per time window, newest window first: the keys of the page's rows (from
    call_previews, whose time order makes the newest rows its last granules; from llm_calls
    when searching text, which its ngram indexes find), then those rows' previews from
    call_previews by its primary key."""
    session = Session.of(client)
    limit = max(1, min(limit, PAGE_MAX))
    params: dict[str, Any] = {"n": limit + 1}
    # Text is searched in the whole prompt and answer, which only llm_calls holds; a few
    # apps' keys are read there too, by its primary key's prefix (app_id), where the time
    # order of call_previews would scan every app's rows of a window for a small app's.
    few_apps = q.app_id is not None or (q.apps is not None and len(q.apps) <= FEW_APPS)
    source, keys = ("llm_calls", _CALL_KEY) if q.text or few_apps else ("call_previews", _PREVIEW_KEY)
    where = _filters(q, params, keys)
    if cursor is not None:
        where.append(
            "(ts < {c_ts:DateTime64(3, 'UTC')} OR (ts = {c_ts:DateTime64(3, 'UTC')} "
            "AND (event_id, app_id) > ({c_id:UUID}, {c_app:String})))")
        params.update(c_ts=cursor.ts, c_id=str(cursor.event_id), c_app=cursor.app_id)
    upper = _upper_bound(q, cursor)
    found: Sequence[Sequence[Any]] = []
    names: Sequence[str] = []
    # A session or trace filter goes through id_lookup to its calls' granules: no windows.
    windows = (None,) if q.session_id is not None or q.trace_id is not None else _WINDOWS
    for window in windows:
        clause = list(where)
        lower = q.since
        if window is not None:
            if q.since is not None and upper - window <= q.since:
                window = None  # the window reaches past `since`: the filter alone bounds it
            else:
                lower = params["w_lo"] = upper - window
                clause.append("ts >= {w_lo:DateTime64(3, 'UTC')}")
        params["scored_lo"] = max(_OLDEST, lower - _SCORE_SLACK) if lower is not None else _OLDEST
        result = session.query(
            f"SELECT {_PREVIEW_COLUMNS} FROM call_previews PREWHERE {_PREVIEW_KEY} IN (SELECT ts, app_id, event_id "
            f"FROM {source} WHERE {' AND '.join(clause)} ORDER BY ts DESC, event_id, app_id "
            f"LIMIT 1 BY app_id, event_id LIMIT {{n:UInt32}}) WHERE {apps_clause(q.apps, params)} "
            "ORDER BY ts DESC, event_id, app_id LIMIT 1 BY app_id, event_id", parameters=params)
        found, names = result.result_rows, result.column_names
        if len(found) > limit or window is None:
            break
    if not found:
        return Page([], None)
    summaries = [{k: _iso(v) for k, v in zip(names, r, strict=True)} for r in found[:limit]]
    last = found[limit - 1] if len(found) > limit else None
    return Page(summaries, Cursor(last[1], last[0], last[2]) if last is not None else None)


# --- one call ------------------------------------------------------------------------------------

_CALL_COLUMNS = (
    "event_id, ts, app_id, environment, provider, model, model_version, prompt_version, input, prompt, output, "
    "tokens_in, tokens_out, tokens_cache_read, tokens_cache_write, tokens_reasoning, latency_ms, ttft_ms, status, "
    "error, cost_usd, cost_source, user_id, session_id, trace_id, span_id, tags, metadata, context, reference, "
    "pii_redactions, ingested_at"
)


def apps_with_call(client: Any, apps: Apps, event_id: uuid.UUID, limit: int = 10) -> list[str]:
    """The apps (of `apps`) that stored a call with this id: ids are client-chosen, so two
    apps may share one."""
    params: dict[str, Any] = {"id": str(event_id), "n": limit}
    rows = Session.of(client).query(
        "SELECT DISTINCT app_id FROM id_lookup WHERE kind = 'call' AND id = {id:String} "
        f"AND {apps_clause(apps, params)} ORDER BY app_id LIMIT {{n:UInt32}}", parameters=params).result_rows
    return [r[0] for r in rows]


def _keys_of(kind: str, columns: str = "app_id, sort, ts, row_id") -> str:
    """The sort keys id_lookup holds for `kind` rows of id {id} in app `the_app`, the newest {n}."""
    return (f"(SELECT {columns} FROM id_lookup WHERE kind = '{kind}' AND id = {{id:String}} "
            "AND app_id = the_app ORDER BY ts DESC LIMIT 1 BY app_id, row_id LIMIT {n:UInt32})")


_SCORE_FIELDS = ("score_id", "name", "value", "label", "source", "evaluator", "evaluator_version", "explanation",
                 "cost_usd", "ts")
_VOTE_FIELDS = ("feedback_id", "source", "author", "thumbs", "rating", "labels", "corrected_output", "comment", "ts")
_TASK_FIELDS = ("kind", "reason", "severity", "created_at")
TASKS_MAX = 50


def call(client: Any, app_id: str | None, event_id: uuid.UUID, *, apps: Apps = None) -> dict[str, Any] | None:
    """App `app_id`'s call with this id, its scores (with evaluators), votes and reviews, and
    its review tasks; with no `app_id`, the call of the one app (of `apps`) that stored this
    id (None when none did, or several did: ids are client-chosen, see apps_with_call).

    One query, each table read by its primary key: the call's row, and scores and votes
    through the keys id_lookup names for the id, as arrays beside the row (a query a part
    costs more than the parts' reads on a busy machine)."""
    session = Session.of(client)
    params: dict[str, Any] = {"id": str(event_id), "n": ATTACHED_MAX + 1, "tasks": TASKS_MAX}
    if app_id is not None:
        params["app"] = app_id
        the_app = "{app:String}"
    else:
        the_app = ("(SELECT if(uniqExact(app_id) = 1, any(app_id), '') FROM id_lookup WHERE kind = 'call' "
                   f"AND id = {{id:String}} AND {apps_clause(apps, params)})")
    scores = ("SELECT score_id, name, value, label, source, evaluator, evaluator_version, "
              f"substring(explanation, 1, 4000), cost_usd, ts FROM scores PREWHERE (app_id, name, ts, score_id) IN "
              f"{_keys_of('score')} AND event_id = {{id:UUID}} ORDER BY ts DESC LIMIT 1 BY score_id")
    votes = ("SELECT feedback_id, source, author, thumbs, rating, labels, substring(corrected_output, 1, 65536), "
             "substring(comment, 1, 4000), ts FROM feedback PREWHERE (app_id, ts, feedback_id) IN "
             f"{_keys_of('vote', 'app_id, ts, row_id')} AND event_id = {{id:UUID}} "
             "ORDER BY ts DESC LIMIT 1 BY feedback_id")
    tasks = ("SELECT kind, reason, severity, created_at FROM review_tasks WHERE app_id = the_app "
             "AND event_id = {id:UUID} ORDER BY created_at LIMIT 1 BY kind, reason LIMIT {tasks:UInt32}")
    result = session.query(
        f"WITH {the_app} AS the_app SELECT {_CALL_COLUMNS}, "
        f"(SELECT groupArray(tuple(*)) FROM ({scores})) AS scores, "
        f"(SELECT groupArray(tuple(*)) FROM ({votes})) AS feedback, "
        f"(SELECT groupArray(tuple(*)) FROM ({tasks})) AS review_tasks "
        f"FROM llm_calls PREWHERE (app_id, model, ts, event_id) IN {_keys_of('call')} "
        f"ORDER BY ts DESC LIMIT 1{BY_KEY}", parameters=params)
    if not result.result_rows:
        return None
    record = {k: _iso(v) for k, v in zip(result.column_names, result.result_rows[0], strict=True)}
    record["input"] = orjson.loads(record["input"]) if record["input"] else []
    for message in record["input"]:
        if isinstance(message.get("content"), str) and len(message["content"]) > TEXT_MAX:
            message["content"] = message["content"][:TEXT_MAX]
            record.setdefault("clipped", []).append("input")
    _clip(record, ("prompt", "output", "error", "reference"))
    scores_found, votes_found = record["scores"], record["feedback"]
    for name, fields, rows in (("scores", _SCORE_FIELDS, scores_found), ("feedback", _VOTE_FIELDS, votes_found),
                               ("review_tasks", _TASK_FIELDS, record["review_tasks"])):
        record[name] = [{k: _iso(v) for k, v in zip(fields, r, strict=True)} for r in rows[:ATTACHED_MAX]]
    if len(scores_found) > ATTACHED_MAX or len(votes_found) > ATTACHED_MAX:
        record["truncated"] = True
    return record


# --- traces --------------------------------------------------------------------------------------

_STEP_FIELDS = ("span_key", "app_id", "span_id", "parent_span_id", "ts", "duration_ms", "kind", "name", "status",
                "error", "event_id", "provider", "model", "tokens_in", "tokens_out", "cost_usd", "input", "output",
                "attributes", "source", "source_version", "session_id")
_STEP_CALL_FIELDS = ("event_id", "app_id", "span_id", "parent_span_id", "ts", "latency_ms", "model", "provider",
                     "status", "error", "tokens_in", "tokens_out", "cost_usd", "session_id", "answer")


def trace(client: Any, apps: Apps, trace_id: str, *, max_spans: int = TRACE_MAX_SPANS) -> dict[str, Any] | None:
    """The steps of a trace as a tree: `spans` in depth-first order, each with its `depth`,
    `offset_ms` from the trace's start, `duration_ms` and `children` (span ids); calls the
    SDK stored with this trace id (no OTLP span) join as LLM steps. At most `max_spans`
    steps: a longer trace is cut, `truncated` says so and `spans_total` / `calls_total`
    count what is stored."""
    session = Session.of(client)
    params: dict[str, Any] = {"t": trace_id, "n": max_spans + 1}
    scope = apps_clause(apps, params)
    # Where the trace lives, from id_lookup (migration 0017): the apps and days of its spans
    # (the sort key (app_id, trace_id) inside those partitions), the sort keys of its calls.
    steps_sql = (
        "SELECT span_key, app_id, span_id, parent_span_id, ts, duration_ms, kind, name, status, "
        "substring(error, 1, 2000) AS error, event_id, provider, model, tokens_in, tokens_out, cost_usd, "
        f"substring(input, 1, {TEXT_MAX}) AS input, substring(output, 1, {TEXT_MAX}) AS output, attributes, "
        "source, source_version, session_id FROM trace_spans PREWHERE trace_id = {t:String} "
        "AND (app_id, toDate(ts)) IN (SELECT app_id, toDate(ts) FROM id_lookup WHERE kind = 'span' "
        f"AND id = {{t:String}} AND {scope}) "
        "ORDER BY ts LIMIT 1 BY app_id, span_id LIMIT {n:UInt32}")
    calls_sql = (
        "SELECT event_id, app_id, span_id, metadata['otlp.parent_span_id'] AS parent_span_id, ts, latency_ms, "
        "model, provider, status, substring(error, 1, 2000) AS error, tokens_in, tokens_out, cost_usd, session_id, "
        f"substring(output, 1, {PREVIEW_CHARS}) AS answer FROM llm_calls PREWHERE (app_id, model, ts, event_id) IN "
        f"(SELECT app_id, sort, ts, row_id FROM id_lookup WHERE kind = 'trace' AND id = {{t:String}} AND {scope} "
        "ORDER BY ts LIMIT 1 BY app_id, row_id LIMIT {n:UInt32}) "
        "ORDER BY ts LIMIT 1 BY app_id, event_id")
    # Both in one query, as arrays of rows: a query a part costs more than its reads.
    steps_rows, all_calls = session.query(
        f"SELECT (SELECT groupArray(tuple(*)) FROM ({steps_sql})), (SELECT groupArray(tuple(*)) FROM ({calls_sql}))"
        f"{BY_KEY}", parameters=params).result_rows[0]
    calls_rows = all_calls[:max_spans]
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for row in steps_rows:
        node = {k: _iso(v) for k, v in zip(_STEP_FIELDS, row, strict=True)}
        nodes[(node["app_id"], node["span_id"])] = node
    for row in calls_rows:
        found = {k: _iso(v) for k, v in zip(_STEP_CALL_FIELDS, row, strict=True)}
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
    truncated = len(steps_rows) > max_spans or len(all_calls) > max_spans or len(nodes) > max_spans
    ordered = _tree(list(nodes.values()))[:max_spans]
    result: dict[str, Any] = {"trace_id": trace_id, "spans": ordered, "truncated": truncated}
    if truncated:  # what a cut trace holds in all, for the reader to know how much is missing
        totals = session.query(
            "SELECT (SELECT uniqExact(app_id, span_id) FROM trace_spans WHERE trace_id = {t:String} AND "
            f"(app_id, toDate(ts)) IN (SELECT app_id, toDate(ts) FROM id_lookup WHERE kind = 'span' "
            f"AND id = {{t:String}} AND {scope})), (SELECT uniqExact(app_id, row_id) FROM id_lookup "
            f"WHERE kind = 'trace' AND id = {{t:String}} AND {scope}){BY_KEY}", parameters=params).result_rows[0]
        result.update(spans_total=totals[0], calls_total=totals[1])
    return result


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
                  cursor: Cursor | None = None) -> Page:
    """The calls of a session (conversation) oldest first, as turns: the prompt's last user
    message, the answer, and ids to open each call or its trace. A call belongs to the
    session named on it, or on any step of its trace (an agent run's conversation id,
    exported apart from the model calls below it). The whole session, however long it
    ran, page by page; a session of more than TRACES_PER_SESSION_MAX traces is read
    through its first ones only, and says so (`truncated`)."""
    session = Session.of(client)
    limit = max(1, min(limit, PAGE_MAX))
    params: dict[str, Any] = {"s": session_id, "n": limit + 1, "traces_max": TRACES_PER_SESSION_MAX,
                              "over": TRACES_PER_SESSION_MAX + 1}
    scope = apps_clause(apps, params)
    # One query through id_lookup (migration 0017): the traces whose steps name the session;
    # the sort keys of one page of the calls that name it or belong to one of those traces;
    # those calls' rows by their keys; and whether the session had more traces than read.
    traces = (f"SELECT app_id, sort FROM id_lookup WHERE kind = 'span_session' AND id = {{s:String}} AND {scope} "
              "ORDER BY ts, sort LIMIT 1 BY app_id, sort")
    searched = f"{traces} LIMIT {{traces_max:UInt32}}"
    where = [scope, f"((kind = 'session' AND id = {{s:String}}) OR (kind = 'trace' AND id IN (SELECT sort FROM "
                    f"({searched})) AND (app_id, id) IN ({searched})))"]
    if cursor is not None:
        where.append("(ts > {c_ts:DateTime64(3, 'UTC')} OR (ts = {c_ts:DateTime64(3, 'UTC')} "
                     "AND (row_id, app_id) > ({c_id:UUID}, {c_app:String})))")
        params.update(c_ts=cursor.ts, c_id=str(cursor.event_id), c_app=cursor.app_id)
    rows = session.query(
        f"WITH (SELECT count() FROM ({traces} LIMIT {{over:UInt32}})) AS traces_found "
        "SELECT event_id, ts, app_id, model, status, latency_ms, tokens_in, tokens_out, cost_usd, trace_id, "
        f"substring({_QUESTION}, 1, {TEXT_MAX}) AS question, substring(output, 1, {TEXT_MAX}) AS answer, "
        "traces_found > {traces_max:UInt32} AS traces_cut FROM llm_calls PREWHERE (app_id, model, ts, event_id) IN "
        f"(SELECT app_id, sort, ts, row_id FROM id_lookup WHERE {' AND '.join(where)} "
        "ORDER BY ts, row_id, app_id LIMIT 1 BY app_id, row_id LIMIT {n:UInt32}) "
        f"ORDER BY ts, event_id, app_id LIMIT 1 BY app_id, event_id{BY_KEY}", parameters=params)
    names = rows.column_names[:-1]
    found = rows.result_rows
    truncated = bool(found) and bool(found[0][-1])
    page = [{k: _iso(v) for k, v in zip(names, r[:-1], strict=True)} for r in found[:limit]]
    if not page:
        return Page([], None, truncated)
    last = found[len(page) - 1]
    return Page(page, Cursor(last[1], last[0], last[2]) if len(found) > limit else None, truncated)
