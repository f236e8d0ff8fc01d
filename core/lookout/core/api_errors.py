"""What every Lookout HTTP API shares: the error format {"error": {"status", "message",
"field"?}} and Bearer API-key authentication with scope and app checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from .auth import ApiKey, ApiKeyStore

CHALLENGE = {"WWW-Authenticate": "Bearer"}


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


async def bearer_key(keys: ApiKeyStore, authorization: str | None) -> ApiKey:
    """The API key of an `Authorization: Bearer <key>` header, or a 401 saying what is wrong."""
    if not authorization:
        raise ApiError(401, "missing Authorization header (Bearer <api key>)", headers=CHALLENGE)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization must be 'Bearer <api key>'", headers=CHALLENGE)
    key = await run_in_threadpool(keys.verify, token.strip())
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=CHALLENGE)
    return key


def require(key: ApiKey, scope: str, app_id: str | None = None) -> None:
    """403 unless the key has the scope (and, given an app, is bound to it or to '*')."""
    if not key.allows(scope):
        raise ApiError(403, f"this API key lacks the '{scope}' scope")
    if app_id is not None and not key.allows(scope, app_id):
        raise ApiError(403, f"this API key is bound to app '{key.app_id}', not '{app_id}'", field="app_id")
