"""The judge's HTTP side: /healthz, /readyz, /metrics and the agreement report."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query

from lookout.core.api_errors import ErrorRoute, bearer_key, require
from lookout.core.auth import ApiKeyStore
from lookout.core.body_limit import install_body_limit
from lookout.core.ops import ops_router

from .agreement import AgreementReport, agreement
from .rubrics import RubricError, RubricSet
from .service import JudgeService


def agreement_router(service: JudgeService) -> APIRouter:
    """Judge-vs-reviewer agreement over every app's data: an API key with the read scope
    for all apps ('*') is required, since the report mixes apps."""
    router = APIRouter(tags=["judge"], route_class=ErrorRoute)
    keys: list[ApiKeyStore] = []
    try:  # listed in the OpenAPI for clients; the route reads the file afresh, other names are a 404
        names = sorted(r.name for r in RubricSet.load(service.settings.judge_rubrics_path).rubrics)
    except RubricError:  # the service's start reports the broken file
        names = []
    rubric_param = Path(json_schema_extra={"enum": names} if names else None)

    async def reader(authorization: Annotated[str | None, Header()] = None) -> None:
        if not keys:
            keys.append(ApiKeyStore(service.clickhouse_client()))
        require(await bearer_key(keys[0], authorization), "read", "*")

    @router.get("/v1/judge/agreement/{rubric}", response_model=AgreementReport, dependencies=[Depends(reader)])
    async def judge_agreement(
        rubric: str = rubric_param,
        days: int = Query(30, ge=1, le=3650),
        evaluator: str = Query("", max_length=256, description="One judge model only (default: any)."),
    ) -> AgreementReport:
        rubrics = RubricSet.load(service.settings.judge_rubrics_path)
        try:
            found = rubrics.by_name(rubric)
        except KeyError:
            raise HTTPException(404, f"no rubric named {rubric!r}") from None
        since = datetime.now(UTC) - timedelta(days=days)
        client = service.clickhouse_client()
        return await asyncio.to_thread(agreement, client, found, since=since, evaluator=evaluator)

    return router


def create_app(service: JudgeService) -> FastAPI:
    app = FastAPI(title="Lookout judge")
    install_body_limit(app, service.settings)
    app.include_router(ops_router(service.checks()))
    app.include_router(agreement_router(service))
    return app
