"""The judge's HTTP routes: the agreement report. run_service adds /healthz, /readyz and
/metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Path, Query

from lookout.core.api_errors import ApiError, error_router, require, scope_dependency
from lookout.core.auth import ApiKey
from lookout.core.events import AppId

from .agreement import AgreementReport, agreement
from .rubrics import RubricError, RubricSet
from .service import JudgeService


def agreement_router(service: JudgeService) -> APIRouter:
    """Judge-vs-reviewer agreement of one rubric. Over every app's calls pooled, a key with
    the read scope for all apps ('*') is required; over one app's (`app_id`), a key that may
    read that app."""
    router = error_router(tags=["judge"])
    reader = scope_dependency(lambda: service.keys, "read")
    try:  # listed in the OpenAPI for clients; the route reads the file afresh, other names are a 404
        names = sorted(r.name for r in RubricSet.load(service.settings.judge_rubrics_path).rubrics)
    except RubricError:  # the service's start reports the broken file
        names = []
    rubric_param = Path(json_schema_extra={"enum": names} if names else None)

    @router.get("/v1/judge/agreement/{rubric}", response_model=AgreementReport)
    async def judge_agreement(
        rubric: str = rubric_param,
        days: int = Query(30, ge=1, le=3650, description="Reviews of the last `days` days."),
        evaluator: str = Query("", max_length=256, description="One judge model only (default: any)."),
        app_id: AppId | None = Query(None, description="One app's calls only (default: every app's, pooled)."),
        key: ApiKey = Depends(reader),
    ) -> AgreementReport:
        # The report mixes every app unless it is asked for one.
        require(key, "read", app_id or "*")
        rubrics = RubricSet.load(service.settings.judge_rubrics_path)
        try:
            found = rubrics.by_name(rubric)
        except KeyError:
            raise ApiError(404, f"no rubric named {rubric!r}", field="rubric") from None
        now = datetime.now(UTC)
        session = await service.store()
        return await asyncio.to_thread(agreement, session, found, since=now - timedelta(days=days), until=now,
                                       evaluator=evaluator, app_id=app_id, signing_secret=service.signing_secret())

    return router
