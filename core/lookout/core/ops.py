"""/healthz, /readyz and /metrics for every long-running Lookout process."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

# A readiness check returns None when fine, else the reason it is not ready.
ReadinessCheck = Callable[[], str | None]


def ops_router(checks: dict[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz")
    def readyz() -> JSONResponse:
        problems = {}
        for name, check in checks.items():
            try:
                reason = check()
            except Exception as exc:  # a failing check means not ready, never a 500
                reason = f"{type(exc).__name__}: {exc}"
            if reason:
                problems[name] = reason
        status = 503 if problems else 200
        return JSONResponse({"ready": not problems, "problems": problems}, status_code=status)

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
