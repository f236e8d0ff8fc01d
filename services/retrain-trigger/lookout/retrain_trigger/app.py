"""The standalone FastAPI app around RetrainService (`python -m lookout.retrain_trigger`)."""

from __future__ import annotations

from fastapi import FastAPI

from lookout.core.body_limit import install_body_limit
from lookout.core.ops import lifespan_of, ops_router

from .service import RetrainService
from .settings import RetrainSettings


def build_app(service: RetrainService, **fastapi_kwargs) -> FastAPI:
    app = FastAPI(title="Lookout retrain-trigger", **fastapi_kwargs)
    install_body_limit(app, service.settings)
    app.include_router(service.router())
    app.include_router(ops_router({"retrain": service.ready}))
    app.state.service = service
    return app


def create_app(settings: RetrainSettings | None = None) -> FastAPI:
    service = RetrainService(settings or RetrainSettings())
    return build_app(service, lifespan=lifespan_of(service))
