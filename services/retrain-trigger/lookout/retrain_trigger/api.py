"""HTTP API: approve or reject a run (admin key), list open runs, list a model's candidate
versions and compare a candidate with the previous version (read key). Built on the one
HTTP edge (lookout.core.api_errors): Bearer keys through the scope dependencies, every
error in the envelope.

The routes need only what `RetrainControl` names, so this module does not import the
service (which imports this one for its routers)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from lookout.core.api_errors import ApiError, error_router, require, scope_dependency
from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.session import Session

from . import versions
from .state import Run


class RetrainControl(Protocol):
    """What the API needs of the service (read-only)."""

    @property
    def runs(self) -> Mapping[uuid.UUID, Run]: ...

    @property
    def keys(self) -> ApiKeyStore | None: ...

    @property
    def session(self) -> Session | None: ...

    async def decide(self, run_id: uuid.UUID, approve: bool, who: str) -> Run: ...


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


def _out(run: Run) -> RunOut:
    return RunOut(run_id=run.run_id, app_id=run.app_id, model=run.model, rule=run.rule, status=run.status,
                  dataset_uri=run.dataset_uri, dataset_hash=run.dataset_hash, dataset_counts=run.dataset_counts,
                  evidence=run.evidence)


def build_router(control: RetrainControl) -> APIRouter:
    router = error_router(tags=["retrain"])
    admin = scope_dependency(lambda: control.keys, "admin")
    reader = scope_dependency(lambda: control.keys, "read")

    def session() -> Session:
        if control.session is None:
            raise ApiError(503, "retrain-trigger is starting", headers={"Retry-After": "1"})
        return control.session

    async def decide(run_id: uuid.UUID, approve: bool, body: Decision | None, k: ApiKey) -> RunOut:
        run = control.runs.get(run_id)
        if run is not None:
            require(k, "admin", run.app_id)
        who = f"key {k.key_id}" + (f" ({body.note})" if body and body.note else "")
        return _out(await control.decide(run_id, approve, who))

    @router.post("/v1/retrain/{run_id}/approve", response_model=RunOut)
    async def approve(run_id: uuid.UUID, body: Decision | None = None, k: ApiKey = Depends(admin)) -> RunOut:
        return await decide(run_id, True, body, k)

    @router.post("/v1/retrain/{run_id}/reject", response_model=RunOut)
    async def reject(run_id: uuid.UUID, body: Decision | None = None, k: ApiKey = Depends(admin)) -> RunOut:
        return await decide(run_id, False, body, k)

    @router.get("/v1/retrain/runs", response_model=list[RunOut])
    async def open_runs(k: ApiKey = Depends(reader)) -> list[RunOut]:
        return [_out(r) for r in list(control.runs.values()) if k.allows("read", r.app_id)]

    @router.get("/v1/models/{app_id}/{model}/versions")
    async def model_versions(app_id: str, model: str, k: ApiKey = Depends(reader)) -> list[dict]:
        require(k, "read", app_id)
        return await asyncio.to_thread(versions.list_versions, session(), app_id, model)

    @router.get("/v1/models/{app_id}/{model}/compare")
    async def compare(app_id: str, model: str, candidate: str = Query(..., min_length=1),
                      baseline: str | None = None, k: ApiKey = Depends(reader)) -> dict:
        require(k, "read", app_id)
        try:
            result = await asyncio.to_thread(versions.compare, session(), app_id, model, candidate, baseline)
        except LookupError as exc:
            raise ApiError(404, str(exc), field="candidate") from None
        return _clean(result)

    return router
