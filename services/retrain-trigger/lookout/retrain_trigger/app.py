"""The standalone FastAPI app around RetrainService (`python -m lookout.retrain_trigger`)."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from lookout.core.ops import ops_router

from .service import RetrainService
from .settings import RetrainSettings


def build_app(service: RetrainService, **fastapi_kwargs) -> FastAPI:
    app = FastAPI(title="Lookout retrain-trigger", **fastapi_kwargs)
    app.include_router(service.router())
    app.include_router(ops_router({"retrain": service.ready}))
    app.state.service = service
    return app


def create_app(settings: RetrainSettings | None = None) -> FastAPI:
    service = RetrainService(settings or RetrainSettings())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    return build_app(service, lifespan=lifespan)
