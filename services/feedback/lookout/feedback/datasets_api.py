"""GET /v1/datasets/export (download JSONL) and POST /v1/datasets (write a version to
LOOKOUT_DATASET_DIR). API key with the review or admin scope; a key bound to one app
exports that app only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from lookout.core.api_errors import ApiError, api_key_dependency, error_router
from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.session import Session

from . import datasets
from .settings import FeedbackSettings


@dataclass
class DatasetContext:
    settings: FeedbackSettings
    session: Session | None = None
    keys: ApiKeyStore | None = None

    def store(self) -> Session:
        if self.session is None:
            raise ApiError(503, "the feedback service is starting; retry shortly", headers={"Retry-After": "1"})
        return self.session


def _utc_year(value: datetime) -> int:
    try:
        return value.astimezone(UTC).year
    except OverflowError:  # year 1 or 9999 shifted past the ends of datetime
        return 0


def _filters(key: ApiKey, app_id, model, since, until, label) -> datasets.DatasetFilters:
    if not (key.allows("review") or key.allows("admin")):
        raise ApiError(403, "this API key lacks the 'review' scope")
    if app_id is None and key.app_id != "*":
        app_id = key.app_id
    if app_id is not None and not key.allows("review", app_id):
        raise ApiError(403, f"this API key is bound to app '{key.app_id}', not '{app_id}'", field="app_id")
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise ApiError(422, f"{name} must carry a timezone, e.g. 2026-01-01T00:00:00Z", field=name)
        # ClickHouse DateTime64 holds 1900-01-01 .. 2299-12-31; outside it the query itself fails.
        if value is not None and not 1900 <= _utc_year(value) <= 2299:
            raise ApiError(422, f"{name} must lie between the years 1900 and 2299", field=name)
    return datasets.DatasetFilters(app_id, model, since, until, label)


def build_router(ctx: DatasetContext) -> APIRouter:
    router = error_router(tags=["datasets"])
    api_key = api_key_dependency(lambda: ctx.keys)

    @router.get("/v1/datasets/export")
    async def download(
        kind: Literal["sft", "preference"] = "sft",
        app_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        label: str | None = None,
        key: ApiKey = Depends(api_key),
    ) -> Response:
        filters = _filters(key, app_id, model, since, until, label)
        built = await run_in_threadpool(datasets.build, ctx.store(), filters, ctx.settings.review_signing_secret)
        body = built.sft if kind == "sft" else built.preference
        headers = {"X-Dataset-Sha256": built.sha256, "X-Dataset-Count": str(
            built.sft_count if kind == "sft" else built.preference_count),
            "X-Dataset-Unverified-Reviews": str(built.unverified)}
        return Response(body, media_type="application/x-ndjson", headers=headers)

    @router.post("/v1/datasets", status_code=201)
    async def export(
        app_id: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        label: str | None = None,
        key: ApiKey = Depends(api_key),
    ) -> dict:
        if not key.allows("admin"):
            raise ApiError(403, "writing a dataset needs the 'admin' scope")
        filters = _filters(key, app_id, model, since, until, label)
        v = await run_in_threadpool(datasets.export_dataset, ctx.store(), filters, ctx.settings.dataset_dir,
                                    ctx.settings.review_signing_secret)
        return {"dataset_id": v.dataset_id, "sha256": v.sha256, "sft_count": v.sft_count,
                "preference_count": v.preference_count, "location": v.location,
                "unverified_reviews": v.unverified}

    return router
