"""The call explorer behind /calls: search and filter calls, open one with its scores,
votes and reviews, its trace as a tree and its session as a conversation, and see per
instrumentation what OTLP intake mapped and dropped (/calls/coverage).

Same server and same sign-in as the review UI (the reviewer session cookie); every read is
scoped to the reviewer's apps (admins and '*' reviewers see every app), so a call, trace
or session of another app answers 404, as if it did not exist. Reads only: no CSRF token
is needed, and nothing here changes state. Queries live in lookout.core.explore (shared
with ingest's read API); this module is the HTTP edge and the page routes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Cookie, Depends, Query
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from lookout.core import explore
from lookout.core.api_errors import ApiError, error_router, started
from lookout.core.session import Session

from .accounts import Accounts, Reviewer
from .review import CHALLENGE  # the same credential as the review API: its session cookie

STATIC = Path(__file__).parent / "static"
_FACETS_MAX = 200
_COVERAGE_SOURCES_MAX = 100
_DROPPED_MAX = 50

Text = Annotated[str | None, Query(max_length=256)]


@dataclass
class ExplorerContext:
    session: Session | None = None
    accounts: Accounts | None = None


def _apps(reviewer: Reviewer) -> explore.Apps:
    scope = reviewer.app_scope()
    return None if scope is None else frozenset(scope)


def _utc(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ApiError(422, f"{name} must carry a timezone, e.g. 2026-01-01T00:00:00Z", field=name)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ApiError(422, f"{name} must lie between the years 1900 and 2299", field=name) from None
    if not 1900 <= value.year <= 2299:  # ClickHouse DateTime64's range
        raise ApiError(422, f"{name} must lie between the years 1900 and 2299", field=name)
    return value


def _cursor(text: str | None) -> explore.Cursor | None:
    try:
        return explore.Cursor.decode(text) if text else None
    except explore.BadCursor as exc:
        raise ApiError(422, str(exc), field="cursor") from None


def _page(page: explore.Page, name: str = "calls") -> dict[str, Any]:
    return {name: page.rows, "next": page.next.encode() if page.next else None, "truncated": page.truncated}


def build_router(ctx: ExplorerContext) -> APIRouter:
    router = error_router(prefix="/calls/api", tags=["explorer"])

    async def viewer(lookout_review: Annotated[str | None, Cookie()] = None) -> Reviewer:
        found = await run_in_threadpool(started(ctx.accounts).session, lookout_review)
        if found is None:
            raise ApiError(401, "not logged in: sign in at /review (or on this page)", headers=CHALLENGE)
        return found[1]

    def visible(reviewer: Reviewer, app_id: str | None) -> explore.Apps:
        """The apps a read may look at: the reviewer's, narrowed to `app_id` when given."""
        if app_id is not None and not reviewer.sees(app_id):
            # Another app's calls do not exist for this reviewer: an empty scope, not a 403.
            return frozenset()
        apps = _apps(reviewer)
        return frozenset({app_id}) if app_id is not None else apps

    @router.get("/calls")
    async def list_calls(
        reviewer: Reviewer = Depends(viewer),
        app_id: Text = None, model: Text = None, model_version: Text = None, environment: Text = None,
        status: Literal["ok", "error"] | None = None,
        since: Annotated[datetime | None, Query(description="Oldest ts (with a timezone).")] = None,
        until: Annotated[datetime | None, Query(description="Newest ts, exclusive.")] = None,
        score_name: Text = None,
        score_min: Annotated[float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False)] = None,
        score_max: Annotated[float | None, Query(ge=-1e12, le=1e12, allow_inf_nan=False)] = None,
        feedback: Literal["up", "down", "any", "none", "reviewed"] | None = None,
        q: Annotated[str | None, Query(max_length=200, description="Text in the prompt or the answer.")] = None,
        session_id: Annotated[str | None, Query(max_length=1024)] = None,
        trace_id: Annotated[str | None, Query(max_length=32, pattern="^[0-9a-fA-F]{32}$")] = None,
        limit: Annotated[int, Query(ge=1, le=explore.PAGE_MAX)] = 50,
        cursor: Annotated[str | None, Query(max_length=1000, description="`next` of the previous page.")] = None,
    ) -> dict:
        """Calls newest first, as summaries with previews; `next` continues with the same filters."""
        apps = visible(reviewer, app_id)
        if apps is not None and not apps:
            return {"calls": [], "next": None, "truncated": False}
        query = explore.CallQuery(
            apps=apps, model=model, model_version=model_version, environment=environment, status=status,
            since=_utc(since, "since"), until=_utc(until, "until"), score_name=score_name, score_min=score_min,
            score_max=score_max, feedback=feedback, text=q.strip() if q and q.strip() else None,
            session_id=session_id, trace_id=trace_id.lower() if trace_id else None)
        page = await run_in_threadpool(started(ctx.session).run, explore.search_calls, query, limit=limit,
                                       cursor=_cursor(cursor))
        return _page(page)

    @router.get("/calls/{event_id}")
    async def get_call(
        event_id: uuid.UUID, reviewer: Reviewer = Depends(viewer),
        app_id: Annotated[str | None, Query(max_length=128, description="The call's app, when several apps used "
                                                                          "this id.")] = None,
    ) -> dict:
        """One call with its scores (and evaluators), votes and reviews, and its review tasks."""
        missing = ApiError(404, f"no call with event_id {event_id}", field="event_id")
        apps = visible(reviewer, app_id)
        if apps is not None and not apps:
            raise missing
        # One query: the call of the app named (and visible), else of the one visible app
        # that stored the id; only a miss asks which apps have it (none: 404, several: 409).
        record = await run_in_threadpool(started(ctx.session).run, explore.call, app_id, event_id, apps=apps)
        if record is None and app_id is None:
            found = await run_in_threadpool(started(ctx.session).run, explore.apps_with_call, apps, event_id)
            if len(found) > 1:
                raise ApiError(409, f"event_id {event_id} was used by several apps ({', '.join(found)}); "
                                    "choose one with ?app_id=", field="app_id")
        if record is None:
            raise missing
        return record

    @router.get("/traces/{trace_id}")
    async def get_trace(
        trace_id: Annotated[str, PathParam(min_length=32, max_length=32, pattern="^[0-9a-fA-F]{32}$")],
        reviewer: Reviewer = Depends(viewer),
    ) -> dict:
        """The trace as a tree of steps with timings, of the reviewer's apps only; at most
        2000 steps (`truncated`, with `spans_total` and `calls_total`, beyond)."""
        found = await run_in_threadpool(started(ctx.session).run, explore.trace, _apps(reviewer), trace_id.lower())
        if found is None:
            raise ApiError(404, f"no trace {trace_id}", field="trace_id")
        return found

    @router.get("/sessions/{session_id}")
    async def get_session(
        session_id: Annotated[str, PathParam(min_length=1, max_length=1024)],
        reviewer: Reviewer = Depends(viewer),
        limit: Annotated[int, Query(ge=1, le=explore.PAGE_MAX)] = 100,
        cursor: Annotated[str | None, Query(max_length=1000)] = None,
    ) -> dict:
        """A session (stored, pseudonymous id) as a conversation, oldest turn first, however
        long it ran (`next` pages on)."""
        page = await run_in_threadpool(started(ctx.session).run, explore.session_calls, _apps(reviewer), session_id,
                                       limit=limit, cursor=_cursor(cursor))
        if not page.rows and cursor is None:
            raise ApiError(404, f"no session {session_id}", field="session_id")
        return {"session_id": session_id, **_page(page)}

    @router.get("/facets")
    async def facets(reviewer: Reviewer = Depends(viewer)) -> dict:
        """Apps, models, versions and score names of the last 31 days, for the filters."""
        params: dict[str, Any] = {"n": _FACETS_MAX}
        where = explore.apps_clause(_apps(reviewer), params)
        calls = await run_in_threadpool(
            started(ctx.session).named,
            f"SELECT app_id, model, environment FROM calls_1m WHERE {where} AND minute >= now() - INTERVAL 31 DAY "
            "GROUP BY app_id, model, environment ORDER BY app_id, model LIMIT {n:UInt32}", **params)
        versions = await run_in_threadpool(
            started(ctx.session).named,
            f"SELECT DISTINCT model_version FROM versions_1m WHERE {where} AND model_version != '' "
            "AND minute >= now() - INTERVAL 31 DAY ORDER BY model_version LIMIT {n:UInt32}", **params)
        scores = await run_in_threadpool(
            started(ctx.session).named,
            f"SELECT DISTINCT name FROM scores WHERE {where} AND ts >= now() - INTERVAL 31 DAY "
            "ORDER BY name LIMIT {n:UInt32}", **params)
        return {"apps": sorted({r["app_id"] for r in calls}), "models": sorted({r["model"] for r in calls}),
                "environments": sorted({r["environment"] for r in calls}),
                "model_versions": [r["model_version"] for r in versions], "score_names": [r["name"] for r in scores]}

    @router.get("/coverage")
    async def coverage(
        reviewer: Reviewer = Depends(viewer),
        days: Annotated[int, Query(ge=1, le=31)] = 7,
    ) -> dict:
        """Per instrumentation (OTLP scope name and version) over the last `days`: calls, how
        many had each field filled, and the attributes intake dropped (none of its
        conventions knows them), most frequent first."""
        params: dict[str, Any] = {"days": days, "n": _COVERAGE_SOURCES_MAX, "d": _DROPPED_MAX}
        where = explore.apps_clause(_apps(reviewer), params)
        filled = ", ".join(f"countIf({sql}) AS {name}" for name, sql in _FILLED)
        sources = await run_in_threadpool(
            started(ctx.session).named,
            f"SELECT metadata['otlp.scope'] AS source, metadata['otlp.scope_version'] AS version, count() AS calls, "
            f"{filled} FROM llm_calls WHERE {where} AND ts >= now() - INTERVAL {{days:UInt32}} DAY "
            "AND mapContains(metadata, 'otlp.span_name') GROUP BY source, version ORDER BY calls DESC "
            "LIMIT {n:UInt32}", **params)
        dropped = await run_in_threadpool(
            started(ctx.session).named,
            "SELECT metadata['otlp.scope'] AS source, metadata['otlp.scope_version'] AS version, attribute, "
            "count() AS calls FROM llm_calls ARRAY JOIN splitByChar(',', metadata['otlp.dropped']) AS attribute "
            f"WHERE {where} AND ts >= now() - INTERVAL {{days:UInt32}} DAY AND metadata['otlp.dropped'] != '' "
            "GROUP BY source, version, attribute ORDER BY calls DESC LIMIT {d:UInt32} BY source, version", **params)
        steps = await run_in_threadpool(
            started(ctx.session).named,
            "SELECT source, source_version AS version, kind, count() AS spans FROM trace_spans "
            f"WHERE {where} AND ts >= now() - INTERVAL {{days:UInt32}} DAY GROUP BY source, version, kind "
            "ORDER BY spans DESC LIMIT 1000", **params)
        by_source: dict[tuple[str, str], dict[str, Any]] = {}
        for row in sources:
            key = (row.pop("source"), row.pop("version"))
            calls = row.pop("calls")
            by_source[key] = {"source": key[0], "version": key[1], "calls": calls,
                              "fields": {name: row[name] for name, _ in _FILLED}, "dropped": [], "steps": {}}
        for row in dropped:
            entry = by_source.get((row["source"], row["version"]))
            if entry is not None:
                entry["dropped"].append({"attribute": row["attribute"], "calls": row["calls"]})
        for row in steps:
            entry = by_source.setdefault((row["source"], row["version"]), {
                "source": row["source"], "version": row["version"], "calls": 0, "fields": {}, "dropped": [],
                "steps": {}})
            entry["steps"][row["kind"]] = row["spans"]
        return {"days": days, "fields": [name for name, _ in _FILLED], "sources": list(by_source.values())}

    return router


# What "filled" means for each field the coverage page shows.
_FILLED = (
    ("model", "model != ''"),
    ("provider", "provider NOT IN ('', 'unknown')"),
    ("input", "input NOT IN ('', '[]') OR prompt != ''"),
    ("output", "output != ''"),
    ("tokens_in", "tokens_in IS NOT NULL"),
    ("tokens_out", "tokens_out IS NOT NULL"),
    ("tokens_cache_read", "tokens_cache_read IS NOT NULL"),
    ("tokens_reasoning", "tokens_reasoning IS NOT NULL"),
    ("ttft_ms", "ttft_ms IS NOT NULL"),
    ("cost_usd", "cost_usd IS NOT NULL"),
    ("session_id", "session_id != ''"),
    ("user_id", "user_id != ''"),
)


def pages_router() -> APIRouter:
    """The explorer's pages (one HTML file; the script reads the path it was opened at) and
    its assets."""
    router = error_router()

    def page() -> FileResponse:
        return FileResponse(STATIC / "explorer.html", headers={"Cache-Control": "no-store"})

    @router.get("/calls", include_in_schema=False)
    async def calls_page() -> FileResponse:
        return page()

    @router.get("/calls/coverage", include_in_schema=False)
    async def coverage_page() -> FileResponse:
        return page()

    assets = {name: STATIC / name for name in ("explorer.js", "explorer.css", "review.css")}

    @router.get("/calls/static/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise ApiError(404, f"no asset {name}")
        return FileResponse(assets[name])

    @router.get("/calls/{event_id:uuid}", include_in_schema=False)
    async def call_page(event_id: uuid.UUID) -> FileResponse:
        return page()

    return router
