"""The error format every Lookout API answers with: {"error": {"status", "message", "field"?}}."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}


def error_response(exc: ApiError) -> JSONResponse:
    body: dict = {"error": {"status": exc.status, "message": exc.message}}
    if exc.field:
        body["error"]["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header", "cookie")]
        return error_response(ApiError(422, first.get("msg", "invalid request"), ".".join(loc) or None))


class ErrorRoute(APIRoute):
    """Answers ApiError in the Lookout format inside the route itself, so the routes keep
    their error format when mounted in an app that has no handler for this class (the
    embedded stack's app)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return error_response(exc)

        return route
