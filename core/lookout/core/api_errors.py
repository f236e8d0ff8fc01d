"""What every Lookout HTTP API shares: the error format {"error": {"status", "message",
"field"?}} and Bearer API-key authentication with scope and app checks.

The edge of a service's API, in one place:
- `error_router()`: an APIRouter whose routes answer every error in the envelope (ApiError,
  FastAPI's HTTPException, request validation, auth.AuthError), wherever it is mounted.
- `api_key_dependency(keys)`: the request's API key as a FastAPI dependency (401 without a
  valid one); `scope_dependency(keys, scope)` also checks a scope (403).
- `bearer_key` / `require`: the same checks for code that reads the header itself.
- `started(part)`: a part the service fills in when it starts (its store, its producer),
  or 503 with Retry-After while it is not there.
- `install_error_handlers(app)`: the envelope for what happens outside routes (unknown
  paths, wrong methods) and for routes not built with error_router.
The request-size limit (body_limit.py) is middleware, installed by the service's app.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from .auth import SCOPES, ApiKey, ApiKeyStore, AuthError

CHALLENGE = {"WWW-Authenticate": "Bearer"}
T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.headers = status, message, field, headers or {}

    def __reduce__(self) -> tuple:
        # Pickles whole, subclasses too (ingest raises it in worker processes); Exception's
        # default would call the class with the message alone.
        return _rebuild_api_error, (type(self), self.message, dict(self.__dict__))


def _rebuild_api_error(cls: type[ApiError], message: str, state: dict) -> ApiError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


def error_response(exc: ApiError) -> JSONResponse:
    body: dict = {"error": {"status": exc.status, "message": exc.message}}
    if exc.field:
        body["error"]["field"] = exc.field
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def as_api_error(exc: Exception) -> ApiError | None:
    """The envelope's view of an error a route raised, or None for one that is a bug (500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("query", "path", "body", "header", "cookie")]
        return ApiError(422, first.get("msg", "invalid request"), ".".join(loc) or None)
    if isinstance(exc, StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    if isinstance(exc, AuthError):
        return ApiError(exc.status_code, str(exc), headers=CHALLENGE if exc.status_code == 401 else None)
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(as_api_error(exc) or ApiError(422, "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths (404) and methods (405) are answered outside any route.
        return error_response(as_api_error(exc) or ApiError(exc.status_code, "error"))


class ErrorRoute(APIRoute):
    """Answers errors in the Lookout format inside the route itself (ApiError, request
    validation, HTTPException, auth errors), so the routes keep their error format when
    mounted in an app that has no handler for them (the embedded stack's app)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except (ApiError, RequestValidationError, StarletteHTTPException, AuthError) as exc:
                error = as_api_error(exc)
                assert error is not None
                return error_response(error)

        return route


def error_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose every error is answered in the envelope (see ErrorRoute)."""
    return APIRouter(route_class=ErrorRoute, **kwargs)


async def bearer_key(keys: KeySource, authorization: str | None) -> ApiKey:
    """The API key of an `Authorization: Bearer <key>` header, or a 401 saying what is wrong.
    A missing or malformed header is a 401 whether or not the key store is there yet."""
    if not authorization:
        raise ApiError(401, "missing Authorization header (Bearer <api key>)", headers=CHALLENGE)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization must be 'Bearer <api key>'", headers=CHALLENGE)
    key = await run_in_threadpool(_store(keys).verify, token.strip())
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers=CHALLENGE)
    return key


def require(key: ApiKey, scope: str, app_id: str | None = None) -> None:
    """403 unless the key has the scope (and, given an app, is bound to it or to '*')."""
    if not key.allows(scope):
        raise ApiError(403, f"this API key lacks the '{scope}' scope")
    if app_id is not None and not key.allows(scope, app_id):
        raise ApiError(403, f"this API key is bound to app '{key.app_id}', not '{app_id}'", field="app_id")


def started(part: T | None) -> T:
    """`part`, which the service sets when it starts (routes exist before that). Served by
    core.serving the routes answer 503 until the services started anyway; this gives a
    router served without that gate, or a request still running after stop() let go of the
    part, the same answer instead of a 500."""
    if part is None:
        raise ApiError(503, "the service is starting; retry shortly", headers={"Retry-After": "1"})
    return part


# Where a service's key store comes from: the store, or a callable giving it once the
# service has started (None before: the request is answered 503).
KeySource = ApiKeyStore | Callable[[], ApiKeyStore | None]

# The key a request acts with where a deployment turned authentication off
# (e.g. LOOKOUT_DRIFT_AUTH=false): every scope, every app, so the routes need no second path.
AUTH_OFF_KEY = ApiKey(
    "auth-off", "*", frozenset(SCOPES), "authentication switched off", datetime(1970, 1, 1, tzinfo=UTC)
)


def _store(keys: KeySource) -> ApiKeyStore:
    store = keys if isinstance(keys, ApiKeyStore) else keys()
    if store is None:
        raise ApiError(503, "the service is starting; retry shortly", headers={"Retry-After": "1"})
    return store


def api_key_dependency(keys: KeySource, *, required: bool = True) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency giving the request's API key (401 in the envelope without a
    valid `Authorization: Bearer <key>`). With required=False every request acts with
    AUTH_OFF_KEY instead.

        key: ApiKey = Depends(api_key_dependency(lambda: service.keys))
    """
    if not required:

        async def auth_off() -> ApiKey:
            return AUTH_OFF_KEY

        return auth_off

    async def api_key(authorization: Annotated[str | None, Header()] = None) -> ApiKey:
        return await bearer_key(keys, authorization)

    return api_key


def scope_dependency(keys: KeySource, scope: str, *, required: bool = True) -> Callable[..., Awaitable[ApiKey]]:
    """Like api_key_dependency, and 403 unless the key has `scope` (on some app; check the
    app itself with require(key, scope, app_id) once the route knows it)."""
    if not required:

        async def auth_off() -> ApiKey:
            return AUTH_OFF_KEY

        return auth_off

    async def scoped(authorization: Annotated[str | None, Header()] = None) -> ApiKey:
        key = await bearer_key(keys, authorization)
        require(key, scope)
        return key

    return scoped
