"""A real ingest service + sink for tests, on a real broker and the session's chdb path.

It runs in a background thread with its own asyncio loop (the way `lookout up` runs
services in one loop), serving HTTP on a free port. `stop_http()` / `start_http()` take
the intake away and bring it back on the same port; `stop_sink()` / `start_sink()` do the
same for the sink.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from lookout.core import clickhouse, migrations
from lookout.core.auth import ApiKeyStore
from lookout.core.serving import Lifecycle, service_app
from lookout.core.session import Session
from lookout.ingest.service import IngestService
from lookout.ingest.settings import IngestSettings
from lookout.sink.service import SinkService
from lookout.sink.settings import SinkSettings

from .brokers import free_port

ALL_SCOPES = ["ingest", "read", "feedback", "review", "admin"]


class IngestStack:
    def __init__(self, settings: IngestSettings):
        self.settings = settings.model_copy(update={"http_port": settings.http_port or free_port()})
        self.port = free_port()
        self.client = clickhouse.connect(self.settings)
        migrations.apply(self.client, self.settings.retention_days)
        self.keys = ApiKeyStore(self.client)
        _, self.api_key = self.keys.create("*", ALL_SCOPES, name="tests")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ingest-stack", daemon=True)
        self._thread.start()
        self.session = Session.of(self.client)
        self.service = IngestService(self.settings, session=self.session)
        self._life = Lifecycle([self.service])
        self.sink = self._new_sink()
        self._server: uvicorn.Server | None = None
        self._server_task: asyncio.Future | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, coro: Coroutine, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _new_sink(self) -> SinkService:
        # The sink's own settings, from the stack's (model_copy'd values included).
        values = {k: v for k, v in vars(self.settings).items() if k in SinkSettings.model_fields}
        return SinkService(SinkSettings(**values), session=self.session)

    def start(self) -> IngestStack:
        self.start_intake()
        self.start_sink()
        return self

    def start_intake(self) -> IngestStack:
        """Ingest and its HTTP server, without the sink."""
        self._run(self._life.start())
        self.start_http()
        return self

    def app(self) -> FastAPI:
        """The HTTP app of the intake, as run_service serves it (its lifecycle is the stack's)."""
        return service_app(self.service, lifecycle=self._life)

    def start_http(self) -> None:
        app = self.app()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._server_task = asyncio.run_coroutine_threadsafe(self._server.serve(), self._loop)
        deadline = time.monotonic() + 20
        while not self._server.started:
            if self._server_task.done():
                self._server_task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("ingest HTTP server did not start")
            time.sleep(0.02)

    def stop_http(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server_task.result(30)
            self._server = None

    def start_sink(self) -> None:
        self.sink = self._new_sink()
        self._run(self.sink.start())

    def stop_sink(self) -> None:
        self._run(self.sink.stop())

    def close(self) -> None:
        try:
            self.stop_http()
            self.stop_sink()
            self._run(self._life.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self.client.command(f"DROP DATABASE IF EXISTS {self.settings.clickhouse_database}")

    # --- reading back -------------------------------------------------------------
    def http(self, **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.api_key}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def count_calls(self, app_id: str | None = None) -> int:
        where, params = ("WHERE app_id = {app:String}", {"app": app_id}) if app_id else ("", {})
        return self.client.query(f"SELECT uniqExact(event_id) FROM llm_calls {where}", parameters=params).result_rows[
            0
        ][0]

    def duplicate_rows(self, app_id: str | None = None) -> int:
        """Rows stored beyond one per event id, before any background merge."""
        where, params = ("WHERE app_id = {app:String}", {"app": app_id}) if app_id else ("", {})
        return self.client.query(
            f"SELECT count() - uniqExact(event_id) FROM llm_calls {where}", parameters=params
        ).result_rows[0][0]

    def wait_for_calls(self, app_id: str | None, n: int, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        count = self.count_calls(app_id)
        while count < n and time.monotonic() < deadline:
            time.sleep(0.2)
            count = self.count_calls(app_id)
        return count

    def wait_for(self, sql: str, expected: Any, timeout: float = 60, **params) -> Any:
        """Poll a single-value query until it returns `expected` (or time runs out)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.client.query(sql, parameters=params).result_rows[0][0]
            if value == expected:
                break
            time.sleep(0.2)
        return value


def ingest_settings_for(common) -> IngestSettings:
    return IngestSettings(**{"pii_secret": "test-secret-0123456789", **common.model_dump()})
