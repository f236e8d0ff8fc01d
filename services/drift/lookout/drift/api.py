"""HTTP API of the drift service: results, streams, reference resets (the ops routes are
the runner's, lookout.core.serving).

GET /v1/drift needs the read scope; changing a reference needs admin. Results are read
from drift_results, which the sink fills from llm.drift; GET /v1/drift/{result_id}/report
renders one of them as an Evidently HTML report (report.py). Every error is answered in
the one envelope {"error": {"status", "message", "field"?}} (lookout.core.api_errors);
with LOOKOUT_DRIFT_AUTH=false every request acts with AUTH_OFF_KEY."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import AfterValidator, BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from lookout.core.api_errors import ApiError, error_router, require, scope_dependency
from lookout.core.auth import ApiKey
from lookout.core.events import AppId, LlmCall, ModelId, VersionId, now_utc

from .report import ReportUnavailable
from .windows import StreamKey

if TYPE_CHECKING:
    from .service import DriftService

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


_UPLOAD_NAMESPACE = uuid.UUID("6f1d3c2e-8a4b-5e7f-9c0d-2b1a3e4f5d6c")

StoredTime = Annotated[datetime | None, AfterValidator(_stored_time)]


class UploadItem(BaseModel):
    prompt: str = Field("", max_length=1_000_000)
    response: str = Field("", max_length=1_000_000)


class ReferenceReset(BaseModel):
    # The identifier rules of LlmCall: an uploaded reference is made of calls of this stream.
    app_id: AppId
    model: ModelId
    prompt_version: VersionId = None
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


def build_router(service: DriftService) -> APIRouter:
    """The drift routes of a service; its key store comes from start() (503 until then)."""
    router = error_router(tags=["drift"])
    required = service.settings.drift_auth
    reader = scope_dependency(lambda: service.keys, "read", required=required)
    admin = scope_dependency(lambda: service.keys, "admin", required=required)

    @router.get("/v1/drift")
    async def list_results(
        app_id: str | None = None,
        model: str | None = None,
        signal: str | None = None,
        since: StoredTime = None,
        drifted: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 500,
        key: ApiKey = Depends(reader),
    ) -> dict:
        if key.app_id != "*" and app_id is None:
            app_id = key.app_id  # a key bound to one app lists that app's results only
        require(key, "read", app_id)
        rows = await run_in_threadpool(service.store.list_results, app_id, model, signal, since, limit, drifted)
        return {"results": rows}

    @router.get("/v1/drift/{result_id}/report", response_class=HTMLResponse)
    async def report(result_id: uuid.UUID, key: ApiKey = Depends(reader)) -> HTMLResponse:
        """Evidently report of one result: the same reference and window its test compared.
        Seconds to build (t-SNE of the embeddings); kept once built, results never change."""
        result = await run_in_threadpool(service.store.get_result, result_id)
        if result is None:
            raise ApiError(404, f"no drift result with result_id {result_id}", field="result_id")
        require(key, "read", result["app_id"])
        try:
            page = await service.reports.page(service.store, result)
        except ReportUnavailable as exc:
            raise ApiError(409, str(exc), field="result_id") from None
        return HTMLResponse(page)

    @router.get("/v1/drift/streams")
    async def streams(key: ApiKey = Depends(reader)) -> dict:
        visible = [s for s in service.stream_summaries() if key.allows("read", s["app_id"])]
        # Events skipped per app because it reached a stream cap (LOOKOUT_DRIFT_MAX_STREAMS_PER_APP).
        skipped = {app: n for app, n in sorted(service.over_limit.items()) if key.allows("read", app)}
        return {"streams": visible, "over_stream_limit": skipped}

    @router.post("/v1/drift/reference")
    async def reset_reference(body: ReferenceReset, key: ApiKey = Depends(admin)) -> dict:
        """Reset a stream's reference, e.g. after a deliberate release. Every later result
        carries the new reference_id."""
        require(key, "admin", body.app_id)
        stream = StreamKey(body.app_id, body.model,
                           (body.prompt_version or "") if service.settings.drift_per_prompt_version else "")
        samples = None
        if body.samples is not None:
            if not body.samples:
                raise ApiError(422, "samples must not be empty", field="samples")
            # Ids from the upload itself: the evidence splits its reference by event id, so
            # the same upload makes the same reference (and the same alarms) every time.
            upload = uuid.uuid5(_UPLOAD_NAMESPACE, f"{stream}")
            calls = [
                LlmCall(event_id=uuid.uuid5(upload, f"{i}\x00{item.prompt}\x00{item.response}"), ts=now_utc(),
                        app_id=body.app_id, model=body.model, prompt=item.prompt, output=item.response)
                for i, item in enumerate(body.samples)
            ]
            samples = await run_in_threadpool(service.featurize, calls)
        elif body.policy == "pinned" and not (body.ts_from and body.ts_to):
            raise ApiError(422, "a pinned reference needs 'from' and 'to', or 'samples'", field="from")
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
