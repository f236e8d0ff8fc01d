"""/healthz, /readyz and /metrics for every long-running Lookout process."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

# A readiness check returns None when fine, else the reason it is not ready.
ReadinessCheck = Callable[[], str | None]


def ops_router(checks: dict[str, ReadinessCheck], details: Callable[[], dict] | None = None) -> APIRouter:
    """`details`, when given, adds what an operator should know beside readiness to /readyz
    (the embedded stack names its broker there, and warns when it keeps events in memory)."""
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
        body: dict = {"ready": not problems, "problems": problems}
        if details is not None:
            body["details"] = details()
        return JSONResponse(body, status_code=status)

    @router.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def lifespan_of(service: Startable):
    """A FastAPI lifespan that starts the service with the server and stops it after."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return lifespan


async def serve_until_signal(app: FastAPI, host: str, port: int, service: Startable) -> None:
    """Serve `app` next to an already started worker until SIGINT/SIGTERM, then stop the
    worker (finish its batch, commit) before the process exits.

    uvicorn swaps in its own handlers while serving and re-raises the signal when done,
    landing in ours; either way the worker is stopped before we return."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(*_: object) -> None:
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    http = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await service.stop()
    await http
