"""HTTP request metrics of every Lookout app: a latency histogram by method, route and
status, and the requests in flight.

The route label is the matched route's template (`/v1/calls/{event_id}`), never the raw
path: clients choose paths, so a raw-path label would let anyone create series without
bound. A request that matched no route is `(unmatched)`; one refused before routing (413
for its body size, 503 while starting) is `(unrouted)`. Methods outside the standard
ones are `OTHER`. So the number of series is bounded by the app's own routes.

Installed by `serving.service_app` (outermost, so refused requests are timed too); an app
built by hand calls `install_http_metrics(app)`.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from prometheus_client import Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Seconds: from a fast health check to a slow judge call or a large batch.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION = Histogram(
    "lookout_http_request_duration_seconds", "HTTP request latency, by method, route template and status",
    ["method", "route", "status"], buckets=BUCKETS,
)
IN_FLIGHT = Gauge("lookout_http_requests_in_flight", "HTTP requests being served")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED, UNROUTED = "(unmatched)", "(unrouted)"


def route_label(scope: Scope) -> str:
    """The template of the route that handled the request (see the module doc)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    # The router ran (it sets "router") but nothing matched: a 404 or 405 on an unknown path.
    return UNMATCHED if "router" in scope else UNROUTED


class HttpMetrics:
    """ASGI middleware: times each HTTP request from its start to its last response byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = [500]  # a request that raises before answering is a 500 to its client

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            IN_FLIGHT.dec()
            method = scope.get("method", "")
            DURATION.labels(method if method in METHODS else "OTHER", route_label(scope), str(status[0])).observe(
                time.perf_counter() - began)


def install_http_metrics(app: FastAPI) -> None:
    """Add the middleware as the app's outermost one (call it after every other add_middleware)."""
    app.add_middleware(HttpMetrics)
