"""HTTP API: approve or reject a run (admin key), list open runs, list a model's candidate
versions and compare a candidate with the previous version (read key)."""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, Field

from lookout.core.auth import ApiKey, ApiKeyStore, AuthError, authorize

from . import versions

if TYPE_CHECKING:
    from .service import RetrainService


class Decision(BaseModel):
    note: str = Field("", max_length=1024)


class RunOut(BaseModel):
    run_id: uuid.UUID
    app_id: str
    model: str
    rule: str
    status: str
    dataset_uri: str
    dataset_hash: str
    dataset_counts: dict[str, int]
    evidence: dict[str, Any]


def _clean(value: Any) -> Any:
    """NaN is not JSON: empty sides of a comparison become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def build_router(service: RetrainService) -> APIRouter:
    router = APIRouter(tags=["retrain"])
    keys: dict[str, ApiKeyStore] = {}

    def key(authorization: str | None = Header(None)) -> ApiKey | None:
        if service.client is None:
            raise HTTPException(503, "retrain-trigger is starting")
        store = keys.get("store")
        if store is None:
            store = keys["store"] = ApiKeyStore(service.client)
        token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
        return store.verify(token) if token else None

    def check(k: ApiKey | None, scope: str, app_id: str | None = None) -> None:
        try:
            authorize(k, scope, app_id)
        except AuthError as exc:
            raise HTTPException(exc.status_code, str(exc)) from None

    def out(run) -> RunOut:
        return RunOut(run_id=run.run_id, app_id=run.app_id, model=run.model, rule=run.rule, status=run.status,
                      dataset_uri=run.dataset_uri, dataset_hash=run.dataset_hash,
                      dataset_counts=run.dataset_counts, evidence=run.evidence)

    async def decide(run_id: uuid.UUID, approve: bool, body: Decision | None, k: ApiKey | None) -> RunOut:
        from .service import RunError

        run = service.runs.get(run_id)
        check(k, "admin", run.app_id if run else None)
        who = f"key {k.key_id}" + (f" ({body.note})" if body and body.note else "")
        try:
            return out(await service.decide(run_id, approve, who))
        except RunError as exc:
            raise HTTPException(exc.status_code, str(exc)) from None

    @router.post("/v1/retrain/{run_id}/approve", response_model=RunOut)
    async def approve(run_id: uuid.UUID, body: Decision | None = None, k: ApiKey | None = Depends(key)) -> RunOut:
        return await decide(run_id, True, body, k)

    @router.post("/v1/retrain/{run_id}/reject", response_model=RunOut)
    async def reject(run_id: uuid.UUID, body: Decision | None = None, k: ApiKey | None = Depends(key)) -> RunOut:
        return await decide(run_id, False, body, k)

    @router.get("/v1/retrain/runs", response_model=list[RunOut])
    async def open_runs(k: ApiKey | None = Depends(key)) -> list[RunOut]:
        check(k, "read")
        return [out(r) for r in service.runs.values() if k.allows("read", r.app_id)]

    @router.get("/v1/models/{app_id}/{model}/versions")
    async def model_versions(app_id: str, model: str, k: ApiKey | None = Depends(key)) -> list[dict]:
        check(k, "read", app_id)
        return await asyncio.to_thread(_locked, service, versions.list_versions, app_id, model)

    @router.get("/v1/models/{app_id}/{model}/compare")
    async def compare(app_id: str, model: str, candidate: str = Query(..., min_length=1),
                      baseline: str | None = None, k: ApiKey | None = Depends(key)) -> dict:
        check(k, "read", app_id)
        try:
            result = await asyncio.to_thread(_locked, service, versions.compare, app_id, model, candidate, baseline)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        return _clean(result)

    return router


def _locked(service: RetrainService, fn, *args):
    with service.store.lock:
        return fn(service.client, *args)
