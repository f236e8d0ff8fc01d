"""One way to boot: `run_service()` in every `__main__`, `service_app()` for tests and the
embedded stack.

    def main() -> None:
        sys.exit(run_service(DriftService, DriftSettings))

run_service: logging from LOOKOUT_LOG_LEVEL, the settings, then `serve()`: the HTTP server
(the services' routers, /healthz, /readyz, /metrics, errors in the envelope) comes up
first, so /healthz answers while the services start and /readyz says what is still
starting; other routes answer 503 until then. Services start in order and stop in reverse.
SIGINT/SIGTERM: the server stops taking requests and finishes those in flight, then each
service stops (finish the batch, commit), then the process exits 0. A service that fails
to start exits the process with 1 after what did start is stopped.

With workers > 1 (ingest: validation and redaction are CPU-bound Python) uvicorn runs that
many processes, each building its services from the environment (`worker_app`), with
Prometheus in multiprocess mode so /metrics adds up every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from .api_errors import ApiError, error_response, install_error_handlers
from .body_limit import install_body_limit
from .http_metrics import install_http_metrics
from .logs import astep, configure_logging
from .ops import ReadinessCheck, ops_router
from .service import Service
from .settings import CommonSettings

log = logging.getLogger(__name__)

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_FACTORY_ENV, _SETTINGS_ENV = "_LOOKOUT_SERVICE_FACTORY", "_LOOKOUT_SERVICE_SETTINGS"


class ServedSettings(Protocol):
    http_host: str
    http_port: int
    log_level: str


S = TypeVar("S", bound=ServedSettings)
Factory = Callable[[S], "Service | Sequence[Service]"]


def _as_list(services: Service | Sequence[Service]) -> list[Service]:
    return [services] if isinstance(services, Service) else list(services)


class Lifecycle:
    """Starts services and stops the ones it tried to start in reverse. `announce`: each
    start is a logged step (what starts, then how long it took), as `lookout up` shows its
    progress. `together`: every service starts at once instead of in order, for a process
    that serves several: a consumer's start waits for its group to be joined (~3 s on a
    local broker), and so do the others' while one loads its model."""

    def __init__(self, services: Sequence[Service], *, announce: bool = False, together: bool = False):
        self.services = list(services)
        self.announce = announce
        self.together = together
        self.state = "not started"
        self.running = False
        self._tried: list[Service] = []

    async def start(self) -> None:
        if self.together:
            self._tried = list(self.services)
            self.state = "starting " + ", ".join(s.name for s in self.services)
            results = await asyncio.gather(*(self._start(s) for s in self.services), return_exceptions=True)
            failed = [r for r in results if isinstance(r, BaseException)]
            if failed:
                raise failed[0]
        else:
            for service in self.services:
                self.state = f"starting {service.name}"
                self._tried.append(service)
                await self._start(service)
        self.state, self.running = "running", True

    async def _start(self, service: Service) -> None:
        step = astep(f"starting {service.name}", service=service.name) if self.announce else contextlib.nullcontext()
        try:
            async with step:
                await service.start()
        except BaseException as exc:
            self.state = f"{service.name} failed to start: {type(exc).__name__}: {exc}"
            raise

    async def stop(self) -> None:
        self.running = False
        self.state = "stopping"
        for service in reversed(self._tried):
            try:
                await service.stop()
            except Exception:
                log.exception("%s did not stop cleanly", service.name)
        self._tried = []
        self.state = "stopped"

    def problem(self) -> str | None:
        return None if self.running else self.state


class _StartGate:
    """Answers the services' routes with 503 (envelope, Retry-After) until they started."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle):
        self.app, self.lifecycle = app, lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.lifecycle.running and scope["path"] not in OPS_PATHS:
            response = error_response(ApiError(503, f"not serving yet: {self.lifecycle.state}",
                                               headers={"Retry-After": "1"}))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _checks(services: Sequence[Service], lifecycle: Lifecycle) -> dict[str, ReadinessCheck]:
    checks: dict[str, ReadinessCheck] = {"service": lifecycle.problem}
    for service in services:
        for name, check in service.checks().items():
            # One service: its own names (kafka, clickhouse...); several: prefixed by service.
            checks[name if len(services) == 1 else f"{service.name}.{name}"] = check
    return checks


def install_middleware(app: FastAPI, services: Sequence[Service]) -> None:
    """Middleware every service's app has: the request-size limit (body_limit.py), from the
    first service's settings, with the larger limits services declare for their own routes
    (an optional `body_limits()` -> {path: bytes}, e.g. ingest's batch routes); then, outermost,
    the request metrics (http_metrics.py), so refused requests are timed too."""
    found = [getattr(s, "settings", None) for s in services]
    settings = next((s for s in found if isinstance(s, CommonSettings)), None) or CommonSettings()
    routes: dict[str, int] = {}
    for service in services:
        limits = getattr(service, "body_limits", None)
        if callable(limits):
            routes.update(cast("Mapping[str, int]", limits()))
    install_body_limit(app, settings, routes)
    install_http_metrics(app)


def service_app(
    services: Service | Sequence[Service], *, title: str | None = None, lifecycle: Lifecycle | None = None,
    lifespan: bool = False, **fastapi_kwargs: Any,
) -> FastAPI:
    """The HTTP app of one or more services: their routers, the ops routes, the envelope.

    lifespan=True: the app starts and stops the services itself (uvicorn workers, TestClient
    as a context manager); otherwise whoever holds `lifecycle` does (serve())."""
    found = _as_list(services)
    life = lifecycle or Lifecycle(found)

    @contextlib.asynccontextmanager
    async def run(_: FastAPI) -> AsyncIterator[None]:
        try:
            await life.start()
            yield
        finally:
            await life.stop()

    app = FastAPI(title=title or f"Lookout {' + '.join(s.name for s in found)}",
                  lifespan=run if lifespan else None, **fastapi_kwargs)
    install_error_handlers(app)
    # Added last, so outermost: an oversized body is refused (413) before anything else
    # runs, the start gate's 503 included.
    app.add_middleware(_StartGate, lifecycle=life)
    install_middleware(app, found)
    for service in found:
        for router in service.routers():
            app.include_router(router)
    app.include_router(ops_router(_checks(found, life)))
    app.state.lifecycle = life
    return app


async def serve(
    services: Service | Sequence[Service], host: str, port: int, *, grace_s: float = 30.0, title: str | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM (or the server ends), then stop; the exit status."""
    import uvicorn

    found = _as_list(services)
    life = Lifecycle(found)
    app = service_app(found, title=title, lifecycle=life)
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None,
                            timeout_graceful_shutdown=int(grace_s))
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logged why (the address is taken...)
        return 1
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # No logging here: a handler runs between any two bytecodes, maybe inside logging's lock.
        received.append(signum)
        loop.call_soon_threadsafe(stop.set)

    # uvicorn puts its own handlers in place while it serves and raises the signal again
    # when it is done, which lands here; either way `stop` is set.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    http = asyncio.create_task(server.serve(sockets=[sock]), name="http")
    starting = asyncio.create_task(life.start(), name="start")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    status = 0
    try:
        await asyncio.wait({http, starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and not starting.cancelled() and starting.exception() is None:
            log.info("%s running on http://%s:%d", " + ".join(s.name for s in found), host, port)
            await asyncio.wait({http, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if received:
            log.info("%s: stopping", signal.Signals(received[0]).name)
        if starting.done() and not starting.cancelled() and starting.exception() is not None:
            log.error("%s", life.state, exc_info=starting.exception())
            status = 1
        elif http.done() and not received:
            log.error("the HTTP server ended on its own")
            status = 1
    finally:
        server.should_exit = True
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await asyncio.gather(http, return_exceptions=True)  # requests in flight finish first
        await life.stop()
        stopping.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return status


def run_service(factory: Factory[S], settings: S | type[S], *, workers: int = 1) -> int:
    """Boot a service process: logging, settings, serve() (or `workers` processes); the
    exit status, for sys.exit."""
    loaded: S = settings() if isinstance(settings, type) else settings
    configure_logging(loaded.log_level, getattr(loaded, "log_format", "text"))
    if workers > 1:
        if str(getattr(loaded, "clickhouse_dsn", "")).startswith("chdb:"):
            # chdb locks its path to one process: a second worker could not open the store.
            log.error("%d worker processes need a ClickHouse server (LOOKOUT_CLICKHOUSE_DSN=http(s)://...); "
                      "embedded chdb serves one process", workers)
            return 2
        return _run_workers(factory, type(loaded), loaded, workers)
    return asyncio.run(serve(factory(loaded), loaded.http_host, loaded.http_port))


def _path(obj: Any) -> str:
    return f"{obj.__module__}:{obj.__qualname__}"


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    found: Any = importlib.import_module(module)
    for part in name.split("."):
        found = getattr(found, part)
    return found


def _run_workers(factory: Factory[Any], settings_cls: type, settings: ServedSettings, workers: int) -> int:
    import uvicorn

    # Each worker process imports these and reads its settings from the same environment.
    os.environ[_FACTORY_ENV], os.environ[_SETTINGS_ENV] = _path(factory), _path(settings_cls)
    with _multiprocess_metrics():
        uvicorn.run("lookout.core.serving:worker_app", factory=True, workers=workers, host=settings.http_host,
                    port=settings.http_port, log_config=None, lifespan="on")
    return 0


@contextlib.contextmanager
def _multiprocess_metrics() -> Iterator[None]:
    """Prometheus's multiprocess mode for the workers: each writes its metrics to files in
    PROMETHEUS_MULTIPROC_DIR and /metrics of any worker adds them all up (ops.py), so a
    scrape, whichever worker answers it, sees the service, not one process of it. The
    folder is ours for this run: made and removed here, or, when the environment names
    one, emptied at start (files of an earlier run would be counted again)."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        yield
        return
    folder = tempfile.mkdtemp(prefix="lookout-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(folder, ignore_errors=True)


def worker_app() -> FastAPI:
    """The app of one uvicorn worker process (run_service with workers > 1)."""
    settings = _load(os.environ[_SETTINGS_ENV])()
    configure_logging(settings.log_level, getattr(settings, "log_format", "text"))
    return service_app(_load(os.environ[_FACTORY_ENV])(settings), lifespan=True)

