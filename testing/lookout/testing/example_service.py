"""A small service in the one shape, for the tests of the shape itself (run_service, the
ConsumerWorker, the HTTP edge) and as the worked example of docs/architecture.md.

It consumes llm.events (group LOOKOUT_EXAMPLE_GROUP), remembers each call's app, and
serves GET /v1/example/calls/{event_id} (read scope, the call's app) and POST
/v1/example/notes (feedback scope on the note's app). The LOOKOUT_EXAMPLE_* settings
slow or break it on purpose, and LOOKOUT_EXAMPLE_RECORD names a file where it writes
what it did (handled event ids, 'stopped'), so a test in another process can check.

    python -m lookout.testing.example_service [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from collections.abc import Mapping, Sequence

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from lookout.core import topics
from lookout.core.api_errors import ApiError, api_key_dependency, error_router, require, scope_dependency
from lookout.core.auth import ApiKey, ApiKeyStore
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.events import AppId, LlmCall
from lookout.core.kafka import start_producer
from lookout.core.ops import ReadinessCheck
from lookout.core.serving import run_service
from lookout.core.session import Session
from lookout.core.settings import CommonSettings, ServerSettings


class ExampleSettings(CommonSettings, ServerSettings):
    example_group: str = Field(default="lookout-example", description="Consumer group on llm.events.")
    example_handle_delay_s: float = Field(default=0.0, ge=0, description="Each batch takes this long.")
    example_start_delay_s: float = Field(default=0.0, ge=0, description="start() takes this long.")
    example_fail_start: bool = Field(default=False, description="start() fails after the delay.")
    example_record: str = Field(default="", description="File the service appends what it did to.")
    example_clickhouse: bool = Field(default=True, description="Use ClickHouse (API keys); off: no key is valid.")


class Note(BaseModel):
    app_id: AppId
    text: str = Field(min_length=1, max_length=200)


class ExampleService:
    name = "example"

    def __init__(self, settings: ExampleSettings, session: Session | None = None):
        self.settings = settings
        self.session = session
        self.keys: ApiKeyStore | None = None
        self.seen: dict[uuid.UUID, str] = {}
        self.worker = ConsumerWorker(settings, self.name, settings.example_group, [topics.EVENTS], self.handle,
                                     max_records=100, linger_ms=50, grace_s=20)
        self._producer = None

    def _record(self, line: str) -> None:
        if self.settings.example_record:
            with open(self.settings.example_record, "a") as f:
                f.write(f"{os.getpid()} {line}\n")
                f.flush()
                os.fsync(f.fileno())

    async def start(self) -> None:
        s = self.settings
        await asyncio.sleep(s.example_start_delay_s)
        if s.example_fail_start:
            raise RuntimeError("configured to fail (LOOKOUT_EXAMPLE_FAIL_START)")
        if self.session is None and s.example_clickhouse:
            self.session = Session.connect(s, migrate=True)
        if self.session is not None:
            # ApiKeyStore takes a raw client and its lock from Session.of(client): one lock.
            self.keys = self.session.run(lambda client: ApiKeyStore(client))
        self._producer = await start_producer(s)
        await self.worker.start(self._producer)

    async def handle(self, batch: Batch) -> None:
        self._record(f"batch {len(batch.records)}")
        await asyncio.sleep(self.settings.example_handle_delay_s)
        for call in batch.of(LlmCall):
            self.seen[call.event_id] = call.app_id
            self._record(f"handled {call.event_id}")

    async def stop(self) -> None:
        await self.worker.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self.session is not None:
            self.session.close()
        self._record("stopped")

    def routers(self) -> Sequence[APIRouter]:
        router = error_router(tags=["example"])
        key = api_key_dependency(lambda: self.keys)
        reader = scope_dependency(lambda: self.keys, "read")

        @router.get("/v1/example/calls/{event_id}")
        async def call(event_id: uuid.UUID, k: ApiKey = Depends(reader)) -> dict:
            app_id = self.seen.get(event_id)
            # Another app's call reads as missing: its existence is not this key's business.
            if app_id is None or not k.allows("read", app_id):
                raise ApiError(404, f"no call with event_id {event_id}", field="event_id")
            return {"event_id": str(event_id), "app_id": app_id}

        @router.post("/v1/example/notes")
        async def note(body: Note, k: ApiKey = Depends(key)) -> dict:
            require(k, "feedback", body.app_id)
            return {"ok": True}

        return [router]

    def checks(self) -> Mapping[str, ReadinessCheck]:
        checks: dict[str, ReadinessCheck] = {"consumer": self.worker.ready}
        if self.settings.example_clickhouse:
            checks["clickhouse"] = lambda: self.session.problem() if self.session else "not connected"
        return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lookout.testing.example_service")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    return run_service(ExampleService, ExampleSettings, workers=args.workers)


if __name__ == "__main__":
    raise SystemExit(main())
