"""The ingest HTTP API: POST /v1/events, POST /v1/traces, GET /v1/calls[/{event_id}],
GET /v1/traces/{trace_id}, GET /v1/sessions/{session_id}."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from prometheus_client import Counter

from lookout.core import explore
from lookout.core.api_errors import ApiError, api_key_dependency, error_router, require, started
from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.pii import pseudonymise
from lookout.core.session import Session

from . import otlp, prepare, reads
from .enrich import Enricher
from .otlp import response as otlp_response
from .publisher import EventPublisher, Unavailable
from .settings import IngestSettings
from .workers import Busy, WorkerLost, WorkerPool

log = logging.getLogger(__name__)

ACCEPTED = Counter("lookout_ingest_accepted_events_total", "Events accepted", ["route"])
REJECTED = Counter("lookout_ingest_rejected_events_total", "Events rejected per item", ["route"])
REFUSED = Counter("lookout_ingest_refused_requests_total", "Whole requests refused", ["route", "status"])
OTLP_IGNORED = Counter("lookout_ingest_otlp_ignored_spans_total", "Spans that are not GenAI calls")
REDACTED = Counter("lookout_ingest_pii_redactions_total", "PII values redacted")


@dataclass
class IngestContext:
    """What the routes need; filled in when the service starts (routes exist before that)."""

    settings: IngestSettings
    publisher: EventPublisher | None = None
    enricher: Enricher | None = None
    keys: ApiKeyStore | None = None
    clickhouse: Session | None = None
    workers: WorkerPool | None = None
    # Small requests' workers (LOOKOUT_WORK_QUICK_WORKERS; None: every request on `workers`).
    quick_workers: WorkerPool | None = None
    # OTLP's trace steps (llm.spans) and client evaluations (llm.scores).
    step_publisher: EventPublisher | None = None
    score_publisher: EventPublisher | None = None


async def _read_body(request: Request, limit: int) -> bytes:
    """Read at most `limit` bytes; a larger body is refused before it is all in memory."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def body_limits(settings: IngestSettings) -> dict[str, int]:
    """The intake routes' own request-body limit, for lookout.core.body_limit."""
    return {"/v1/events": settings.max_body_bytes, "/v1/traces": settings.max_body_bytes}


def _utc_year(value: datetime) -> int:
    try:
        return value.astimezone(UTC).year
    except OverflowError:  # year 1 or 9999 shifted past the ends of datetime
        return 0


def build_router(ctx: IngestContext) -> APIRouter:
    router = error_router()
    api_key = api_key_dependency(lambda: ctx.keys)

    async def prepared(step, body: bytes, *args, key: ApiKey, max_bytes: int, **kwargs) -> prepare.Prepared:
        # Decoding, validation and redaction are CPU work: on a worker (the worker's own
        # enricher is passed to `step`), never on the loop. A small request goes to the
        # small-request workers, so it never waits or starves behind megabyte jobs; one that
        # decodes to more than they take comes back NotQuick and goes to the others.
        retry = {"Retry-After": str(ctx.settings.retry_after_s)}
        quick_bytes = ctx.settings.bulk_request_bytes
        try:
            if ctx.quick_workers is not None and len(body) <= quick_bytes:
                try:
                    return await ctx.quick_workers.run(key.key_id, step, body, *args, key=key,
                                                       max_bytes=min(max_bytes, quick_bytes), quick=True, **kwargs)
                except prepare.NotQuick:
                    pass
            return await started(ctx.workers).run(key.key_id, step, body, *args, key=key, max_bytes=max_bytes,
                                                  **kwargs)
        except Busy as exc:
            raise ApiError(429, f"{exc}; retry later", headers=retry) from None
        except WorkerLost as exc:
            raise ApiError(503, f"{exc}; retry later", headers=retry) from None

    async def publish(route: str, ready: prepare.Prepared) -> int:
        REDACTED.inc(ready.redactions)
        if ready.records:
            try:
                await started(ctx.publisher).publish_records(ready.records)
            except Unavailable as exc:
                raise ApiError(
                    503, f"{exc}; retry later", headers={"Retry-After": str(ctx.settings.retry_after_s)}
                ) from None
        try:
            # OTLP's trace steps and client evaluations, after the calls they belong to.
            if ready.step_records:
                await started(ctx.step_publisher).publish_records(ready.step_records)
            if ready.score_records:
                await started(ctx.score_publisher).publish_records(ready.score_records)
        except Unavailable as exc:
            raise ApiError(
                503, f"{exc}; retry later", headers={"Retry-After": str(ctx.settings.retry_after_s)}
            ) from None
        ACCEPTED.labels(route).inc(ready.accepted)
        REJECTED.labels(route).inc(len(ready.rejected))
        return ready.accepted

    @router.post("/v1/events", tags=["ingest"])
    async def post_events(request: Request, key: ApiKey = Depends(api_key)) -> dict:
        require(key, "ingest")
        settings = ctx.settings
        body = await _read_body(request, settings.max_body_bytes)
        ready = await prepared(
            prepare.events,
            body,
            request.headers.get("content-type"),
            request.headers.get("content-encoding"),
            key=key,
            max_bytes=settings.max_body_bytes,
            max_events=settings.max_batch_events,
        )
        count = await publish("events", ready)
        return {"accepted": count, "rejected": ready.rejected}

    @router.post("/v1/traces", tags=["ingest"])
    async def post_traces(request: Request, key: ApiKey = Depends(api_key)) -> Response:
        require(key, "ingest")
        settings = ctx.settings
        body = await _read_body(request, settings.max_body_bytes)
        content_type = request.headers.get("content-type", "")
        ready = await prepared(
            prepare.traces,
            body,
            content_type,
            request.headers.get("content-encoding"),
            key=key,
            max_bytes=settings.max_body_bytes,
            max_spans=settings.max_spans_per_request,
        )
        OTLP_IGNORED.inc(ready.ignored)
        await publish("traces", ready)
        if ready.coverage is not None:
            otlp.coverage.record(ready.coverage)
        return otlp_response.build(content_type, rejected=len(ready.rejected), message=_summary(ready.rejected))

    @router.get("/v1/calls/{event_id}", tags=["read"])
    async def get_call(
        event_id: uuid.UUID,
        key: ApiKey = Depends(api_key),
        app_id: Annotated[str | None, Query(description="The app whose call to read (for '*' keys).")] = None,
    ) -> dict:
        """The call with this id of the key's app. Event ids are chosen by clients, so two
        apps may have used the same one: a key bound to one app reads only its app's call;
        a '*' key names the app with ?app_id= when the id is in more than one (else 409)."""
        require(key, "read")
        missing = ApiError(404, f"no call with event_id {event_id}", field="event_id")
        if key.app_id != "*":
            if app_id is not None and app_id != key.app_id:
                require(key, "read", app_id)
            app_id = key.app_id
        elif app_id is None:
            apps = await run_in_threadpool(reads.apps_with_call, started(ctx.clickhouse), event_id)
            if not apps:
                raise missing
            if len(apps) > 1:
                raise ApiError(
                    409, f"event_id {event_id} was used by several apps ({', '.join(apps)}); "
                    "choose one with ?app_id=", field="app_id",
                )
            app_id = apps[0]
        call = await run_in_threadpool(reads.get_call, started(ctx.clickhouse), event_id, app_id)
        # Another app's call is reported as missing: its existence is not this key's business.
        if call is None:
            raise missing
        return call

    @router.get("/v1/calls", tags=["read"])
    async def list_calls(
        key: ApiKey = Depends(api_key),
        app_id: str | None = None,
        model: str | None = None,
        trace_id: str | None = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=1000, description="`next` of the previous page.")] = None,
    ) -> dict:
        """Calls newest first, in pages of at most `limit` calls and about
        LOOKOUT_MAX_RESPONSE_BYTES; `next` (when not null) continues with the same filters."""
        require(key, "read")
        if app_id is None and key.app_id != "*":
            app_id = key.app_id
        if app_id is not None:
            require(key, "read", app_id)
        if since is not None and since.tzinfo is None:
            raise ApiError(422, "since must carry a timezone, e.g. 2026-01-01T00:00:00Z", field="since")
        if since is not None and not 1900 <= _utc_year(since) <= 2299:
            # ClickHouse DateTime64 holds 1900-01-01 .. 2299-12-31; outside it the query itself fails.
            raise ApiError(422, "since must lie between the years 1900 and 2299", field="since")
        try:
            position = reads.Cursor.decode(cursor) if cursor else None
        except reads.BadCursor as exc:
            raise ApiError(422, str(exc), field="cursor") from None
        page = await run_in_threadpool(
            partial(reads.list_calls, started(ctx.clickhouse), app_id=app_id, model=model, trace_id=trace_id,
                    since=since, limit=limit, max_bytes=ctx.settings.max_response_bytes, cursor=position)
        )
        return {"calls": page.calls, "next": page.next.encode() if page.next else None, "truncated": page.truncated}

    def readable_apps(key: ApiKey, app_id: str | None) -> explore.Apps:
        require(key, "read")
        if app_id is not None:
            require(key, "read", app_id)
            return frozenset({app_id})
        return None if key.app_id == "*" else frozenset({key.app_id})

    @router.get("/v1/traces/{trace_id}", tags=["read"])
    async def get_trace(
        trace_id: Annotated[str, Path(min_length=32, max_length=32, pattern="^[0-9a-fA-F]{32}$",
                                      description="The trace id, 32 hex digits.")],
        key: ApiKey = Depends(api_key),
        app_id: Annotated[str | None, Query(max_length=128, description="Only this app's steps.")] = None,
    ) -> dict:
        """The trace's steps as a tree (agent runs, tool calls, retrievals, embeddings and the
        LLM calls between them), in depth-first order with timings: `spans[].depth`,
        `offset_ms`, `duration_ms`, `children`. At most 2000 steps (`truncated` beyond)."""
        apps = readable_apps(key, app_id)
        found = await run_in_threadpool(explore.trace, started(ctx.clickhouse), apps, trace_id.lower())
        if found is None:
            raise ApiError(404, f"no trace {trace_id}", field="trace_id")
        return found

    @router.get("/v1/sessions/{session_id}", tags=["read"])
    async def get_session(
        session_id: Annotated[str, Path(min_length=1, max_length=1024)],
        key: ApiKey = Depends(api_key),
        app_id: Annotated[str | None, Query(max_length=128, description="Only this app's calls.")] = None,
        limit: Annotated[int, Query(ge=1, le=explore.PAGE_MAX)] = 100,
        cursor: Annotated[str | None, Query(max_length=1000, description="`next` of the previous page.")] = None,
    ) -> dict:
        """The calls of a session (conversation id) oldest first, as turns. The id is the
        app's own (ingest pseudonymises it the way it did when storing) or the stored one."""
        apps = readable_apps(key, app_id)
        try:
            position = explore.Cursor.decode(cursor) if cursor else None
        except explore.BadCursor as exc:
            raise ApiError(422, str(exc), field="cursor") from None
        if session_id.startswith("u_"):
            stored = session_id
        else:
            stored = pseudonymise(session_id, started(ctx.enricher).secret)
        page = await run_in_threadpool(partial(explore.session_calls, started(ctx.clickhouse), apps, stored,
                                               limit=limit, cursor=position))
        if not page.rows and position is None:
            raise ApiError(404, f"no session {session_id}", field="session_id")
        return {"session_id": stored, "calls": page.rows, "next": page.next.encode() if page.next else None,
                "truncated": page.truncated}

    return router


def _summary(rejected: list[dict]) -> str:
    if not rejected:
        return ""
    first = rejected[0]
    return f"{len(rejected)} span(s) rejected; first: span {first['index']}: {first['field']}: {first['message']}"
