"""Fuzzing a service's OpenAPI with schemathesis: every operation, positive and negative
cases generated from its schema, sent by every kind of caller; a 5xx is a failure.

`Served` runs an app under uvicorn on a free port (its own thread and event loop), for
services that have no test stack of their own, and `serving` a service in it as run_service
would; `fuzz_settings` gives a fuzzed service its own topics and database; `keyed_callers`
the usual callers, and `assert_no_5xx` is the fuzz test itself:

    with serving(JudgeService(settings, ...)) as server:
        seen = assert_no_5xx(server.url, {"reader": key})
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from lookout.core.service import Service
from lookout.core.serving import Lifecycle, service_app
from lookout.core.settings import CommonSettings

EXAMPLES = 25  # per operation, each sent by every caller


class Served:
    """An ASGI app on 127.0.0.1:<free port>, served by uvicorn in a thread with its own loop.
    lifespan="on" runs the app's own start-up and shutdown (a service's lifespan); `run`
    executes a coroutine in that loop (start/stop a service the app does not own)."""

    def __init__(self, app: Any, *, lifespan: str = "on") -> None:
        from .brokers import free_port

        self.app = app
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"served-{self.port}", daemon=True)
        self._thread.start()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan=lifespan)
        self._server = uvicorn.Server(config)
        self._task: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine, timeout: float = 120) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 120) -> Served:
        self._task = asyncio.run_coroutine_threadsafe(self._server.serve(), self._loop)
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("the server exited before it started")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app on {self.url} did not start")
            time.sleep(0.05)
        return self

    def close(self) -> None:
        try:
            if self._task is not None:
                self._server.should_exit = True
                self._task.result(60)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@contextmanager
def serving(service: Service) -> Iterator[Served]:
    """The service's app as run_service builds it (its routers, the ops routes, the error
    envelope), served; the service started in the server's loop first and stopped after."""
    life = Lifecycle([service])
    server = Served(service_app(service, lifecycle=life), lifespan="off")
    try:
        server.run(life.start())
        yield server.start()
    finally:
        try:
            server.run(life.stop())
        finally:
            server.close()


def fuzz_settings(broker: Any, chdb_path: Any, name: str) -> CommonSettings:
    """A fuzzed service's settings on the test broker and chdb, with topics (`<name>.`) and a
    database (`name`) of its own; one partition, and a short session, so joining is quick."""
    return CommonSettings(
        kafka_bootstrap=broker.bootstrap, kafka_idempotence="off", topic_prefix=f"{name}.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=name, kafka_topic_partitions=1,
        kafka_session_timeout_ms=4_000,
    )


def keyed_callers(**keys: str) -> dict[str, requests.Session]:
    """An anonymous caller and one per API key given (name=key); close them after use."""
    callers = {"anonymous": requests.Session()}
    for name, key in keys.items():
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        callers[name] = session
    return callers


def fuzz_operations(schema, base_url: str, callers: dict[str, requests.Session], skip=frozenset(),
                    seen: dict[str, Counter] | None = None) -> list[str]:
    """Every operation of the schema, positive and negative cases, through every caller;
    returns one line per failed check (a 5xx). `seen`, when given, collects the status
    codes each "<caller> <METHOD> <path>" got, so a test can check the fuzz got past
    validation and auth into the handlers."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in skip:
            continue
        strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(case=strategy)
        def run(case):
            for who, session in callers.items():
                try:
                    response = case.call(base_url=base_url, session=session, timeout=30)
                    if seen is not None:
                        seen.setdefault(f"{who} {case.operation.method.upper()} {case.operation.path}",
                                        Counter())[response.status_code] += 1
                    case.validate_response(response, checks=[not_a_server_error],
                                           transport_kwargs={"base_url": base_url, "session": session,
                                                             "timeout": 30})
                except Exception as exc:  # schemathesis' FailureGroup for a failed check, or a transport error
                    failures.append(f"{who} {case.operation.method.upper()} {case.operation.path}: {exc}")
                    raise

        try:
            run()
        except Exception:  # recorded above (Hypothesis may group several); next operation
            pass
    return failures


def assert_no_5xx(base_url: str, keys: Mapping[str, str] | None = None, *,
                  callers: dict[str, requests.Session] | None = None, skip=frozenset()) -> dict[str, Counter]:
    """Fuzz every operation of the OpenAPI at base_url (fuzz_operations) and fail on a 5xx.
    Callers: an anonymous one and one per key (name=key), closed after; or `callers`, which
    stay the caller's. Returns the status codes each "<caller> <METHOD> <path>" got, for
    checking that the cases reached the handlers."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    sessions = callers if callers is not None else keyed_callers(**(keys or {}))
    seen: dict[str, Counter] = {}
    try:
        failures = fuzz_operations(schema, base_url, sessions, skip=skip, seen=seen)
    finally:
        if callers is None:
            for session in sessions.values():
                session.close()
    assert not failures, "\n\n".join(failures[:5])
    return seen
