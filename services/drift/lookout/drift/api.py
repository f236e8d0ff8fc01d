"""HTTP API of the drift service: results, streams, reference resets, and the ops routes.

GET /v1/drift needs the read scope; changing a reference needs admin. Results are read
from drift_results, which the sink fills from llm.drift; GET /v1/drift/{result_id}/report
renders one of them as an Evidently HTML report (report.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.body_limit import install_body_limit
from lookout.core.events import AppId, LlmCall, Name, ShortText, now_utc
from lookout.core.ops import ops_router

from .report import ReportCache, ReportUnavailable
from .service import DriftService
from .windows import StreamKey

_CHALLENGE = {"WWW-Authenticate": "Bearer"}

# What a DateTime64 column holds; a time outside it is refused here (422 naming the field)
# instead of failing inside ClickHouse (a 500).
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)


def _stored_time(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # times without a zone are UTC, as stored
    try:
        inside = _EARLIEST <= value <= _LATEST
    except OverflowError:  # an offset that moves year 1 or 9999 out of datetime's range
        inside = False
    if not inside:
        raise ValueError("must be between 1900-01-01 and 2299-12-31 (UTC)")
    return value.astimezone(UTC)


StoredTime = Annotated[datetime | None, AfterValidator(_stored_time)]


class UploadItem(BaseModel):
    prompt: str = Field("", max_length=1_000_000)
    response: str = Field("", max_length=1_000_000)


class ReferenceReset(BaseModel):
    app_id: AppId
    model: Name
    prompt_version: ShortText | None = None
    policy: Literal["first_n", "previous_period", "pinned"] = "first_n"
    # pinned: either a time range of the stream's stored events, or an uploaded set.
    ts_from: StoredTime = Field(None, alias="from")
    ts_to: StoredTime = Field(None, alias="to")
    samples: list[UploadItem] | None = Field(None, max_length=10_000)

    @model_validator(mode="after")
    def _ordered(self) -> ReferenceReset:
        if self.ts_from and self.ts_to and self.ts_from > self.ts_to:
            raise PydanticCustomError("time_range", "'from' must not be after 'to'")
        return self


def build_router(service: DriftService, keys: Callable[[], ApiKeyStore | None]) -> APIRouter:
    router = APIRouter(tags=["drift"])
    reports = ReportCache()

    async def api_key(authorization: Annotated[str | None, Header()] = None) -> ApiKey | None:
        store = keys()
        if store is None:  # auth switched off (LOOKOUT_DRIFT_AUTH=false)
            return None
        if not authorization:
            raise HTTPException(401, "missing Authorization header (Bearer <api key>)", headers=_CHALLENGE)
        scheme, _, token = authorization.partition(" ")
        key = await run_in_threadpool(store.verify, token.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
        return key

    def require(key: ApiKey | None, scope: str, app_id: str | None = None) -> None:
        if key is not None and not key.allows(scope, app_id):
            raise HTTPException(403, f"this API key may not use scope '{scope}' on app '{app_id or '*'}'")

    @router.get("/v1/drift")
    async def list_results(
        app_id: str | None = None,
        model: str | None = None,
        signal: str | None = None,
        since: StoredTime = None,
        drifted: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
        key: ApiKey | None = Depends(api_key),
    ) -> dict:
        if key is not None and key.app_id != "*" and app_id is None:
            app_id = key.app_id  # a key bound to one app lists that app's results only
        require(key, "read", app_id)
        rows = await run_in_threadpool(service.store.list_results, app_id, model, signal, since, limit, drifted)
        return {"results": rows}

    @router.get("/v1/drift/{result_id}/report", response_class=HTMLResponse)
    async def report(result_id: uuid.UUID, key: ApiKey | None = Depends(api_key)) -> HTMLResponse:
        """Evidently report of one result: the same reference and window its test compared.
        Seconds to build (t-SNE of the embeddings); kept once built, results never change."""
        result = await run_in_threadpool(service.store.get_result, result_id)
        if result is None:
            raise HTTPException(404, f"no drift result with result_id {result_id}")
        require(key, "read", result["app_id"])
        try:
            page = await reports.page(service.store, result)
        except ReportUnavailable as exc:
            raise HTTPException(409, str(exc)) from None
        return HTMLResponse(page)

    @router.get("/v1/drift/streams")
    async def streams(key: ApiKey | None = Depends(api_key)) -> dict:
        require(key, "read")
        visible = [s for s in service.stream_summaries() if key is None or key.allows("read", s["app_id"])]
        # Events skipped per app because it reached a stream cap (LOOKOUT_DRIFT_MAX_STREAMS_PER_APP).
        skipped = {app: n for app, n in sorted(service.over_limit.items()) if key is None or key.allows("read", app)}
        return {"streams": visible, "over_stream_limit": skipped}

    @router.post("/v1/drift/reference")
    async def reset_reference(body: ReferenceReset, key: ApiKey | None = Depends(api_key)) -> dict:
        """Reset a stream's reference, e.g. after a deliberate release. Every later result
        carries the new reference_id."""
        require(key, "admin", body.app_id)
        stream = StreamKey(body.app_id, body.model,
                           (body.prompt_version or "") if service.settings.drift_per_prompt_version else "")
        samples = None
        if body.samples is not None:
            if not body.samples:
                raise HTTPException(422, "samples must not be empty")
            calls = [
                LlmCall(event_id=uuid.uuid4(), ts=now_utc(), app_id=body.app_id, model=body.model,
                        prompt=item.prompt, output=item.response)
                for item in body.samples
            ]
            samples = await run_in_threadpool(service._featurize, calls)
        elif body.policy == "pinned" and not (body.ts_from and body.ts_to):
            raise HTTPException(422, "a pinned reference needs 'from' and 'to', or 'samples'")
        request = await service.request_reset(stream, body.policy, body.ts_from, body.ts_to, samples)
        state = service.states.get(stream)
        return {
            "stream": str(stream),
            "reset_version": request.version,
            "reference_id": state.reference_id if state and state.last_reset >= request.version else None,
            "policy": state.policy if state else body.policy,
            "reference_size": len(state.reference) if state else 0,
        }

    return router


def create_app(service: DriftService) -> FastAPI:
    """The service's whole HTTP surface; `python -m lookout.drift` serves it, and the
    lifespan runs the worker in the same loop."""
    from contextlib import asynccontextmanager

    keys: dict[str, ApiKeyStore | None] = {"store": None}

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        if service.settings.drift_auth:
            keys["store"] = ApiKeyStore(service.client)
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Lookout drift", lifespan=lifespan)
    install_body_limit(app, service.settings)
    app.include_router(build_router(service, lambda: keys["store"]))
    checks = {"kafka": service.ready, "clickhouse": lambda: None if service.store else "not connected"}
    app.include_router(ops_router(checks))
    return app
