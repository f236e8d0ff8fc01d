"""One request-body limit for every Lookout HTTP app, enforced before anything else runs.

`install_body_limit(app, settings, routes)` adds an ASGI middleware that refuses a body
larger than its route's limit with a 413 in the standard error format, before routing,
authentication or parsing: first by Content-Length, then by counting what is streamed
(chunked bodies carry no length). The body is read up to the limit and handed on, so the
route sees it unchanged; a larger one is never held in memory.

Every route gets LOOKOUT_MAX_REQUEST_BODY_BYTES; `routes` maps exact paths to their own
limit (ingest's /v1/events and /v1/traces take LOOKOUT_MAX_BODY_BYTES).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from fastapi import FastAPI
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api_errors import ApiError, error_response
from .settings import CommonSettings

REFUSED = Counter("lookout_http_oversized_bodies_total", "Requests refused with 413 for their body size")


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit (see the module doc)."""

    def __init__(self, app: ASGIApp, *, default_bytes: int, routes: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.routes = dict(routes or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get(scope["path"], self.default_bytes)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(scope, send, limit, f"request body of {declared} bytes")
            return
        # Read the whole body (at most `limit` bytes) now, so that a chunked body over the
        # limit is refused before the route authenticates or parses anything.
        buffered: deque[Message] = deque()
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            if size > limit:
                await self._refuse(scope, send, limit, "request body")
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.popleft() if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send, limit: int, what: str) -> None:
        REFUSED.inc()
        route = f"{scope.get('method', '')} {scope['path'][:200]}"
        # Connection: close, since the rest of the body is left unread.
        response = error_response(
            ApiError(413, f"{what} exceeds the limit of {limit} bytes for {route}", headers={"Connection": "close"})
        )
        await response(scope, _nothing, send)


async def _nothing() -> Message:
    return {"type": "http.disconnect"}


def install_body_limit(app: FastAPI, settings: CommonSettings, routes: Mapping[str, int] | None = None) -> None:
    """Refuse bodies over settings.max_request_body_bytes (or the route's entry in `routes`)."""
    app.add_middleware(BodyLimit, default_bytes=settings.max_request_body_bytes, routes=routes)
