"""The judge's HTTP app as run_service builds it (its routers, the ops routes, the error
envelope), for a service the test starts and stops itself."""

from __future__ import annotations

from fastapi import FastAPI

from lookout.core.serving import service_app
from lookout.judge.service import JudgeService


def app_of(service: JudgeService) -> FastAPI:
    app = service_app(service)
    app.state.lifecycle.running = True  # the test runs start() and stop() itself
    return app
