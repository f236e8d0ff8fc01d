"""One ClickHouse session per client: the client and the lock its queries take turns under.

A clickhouse-connect HTTP client sends every query in one server session (it generates a
session_id), and ClickHouse refuses a second query in a session while one runs
(SESSION_IS_LOCKED). chdb keeps per-connection state (the database in use, settings) on
its handle. So every query, command and insert of one client goes through one lock, held
by one `Session`, and a client has at most one Session: `Session.of(client)` returns the
one already made, so two parts of a process that share a client share its lock too (two
wrappers with a lock each would let their queries overlap).

Blocking calls for threads (`query`, `command`, `insert`, `rows`, `named`, `run`) and
awaitable ones for asyncio tasks (`aquery`, ...). The awaitable ones run on the session's
own single thread, so a burst of tasks waiting for the lock holds one thread, not the
event loop's default pool.

The seam for tests: a Session wraps any object with the client's query/command/insert
(`ClientLike`), e.g. a real client with a probe around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

from clickhouse_connect.driver.query import QueryResult
from prometheus_client import Histogram

from . import clickhouse
from .settings import CommonSettings

P = ParamSpec("P")
R = TypeVar("R")

Parameters = Mapping[str, Any] | Sequence[Any] | None

# Successful inserts only (a failed one raises to its caller, who counts what it means).
INSERT_SECONDS = Histogram("lookout_clickhouse_insert_seconds", "Time of one ClickHouse insert, by table", ["table"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))


class ClientLike(Protocol):
    """What a Session needs of a client: clickhouse-connect's Client has it."""

    @property
    def database(self) -> str | None: ...

    def query(self, *args: Any, **kwargs: Any) -> Any: ...

    def command(self, *args: Any, **kwargs: Any) -> Any: ...

    def insert(self, *args: Any, **kwargs: Any) -> Any: ...


class SessionError(RuntimeError):
    pass


# A client carries its Session, so the session (and the lock others took from it) lives
# exactly as long as the client; the cycle between the two is collected with them.
_ATTR = "_lookout_session"
_sessions_lock = threading.Lock()


class Session:
    """The one owner of a ClickHouse client: every call on it takes the session's lock."""

    def __init__(self, client: ClientLike):
        self._setup(client)
        with _sessions_lock:
            if getattr(client, _ATTR, None) is not None:
                raise SessionError("this client already has a Session (use Session.of(client) to share it)")
            setattr(client, _ATTR, self)

    def _setup(self, client: ClientLike) -> None:
        self._client = client
        self._owns_client = False  # True when connect() opened it: close() closes it then
        # Re-entrant: a helper run under the lock (run()) may call query() itself.
        self._lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # -- making one -------------------------------------------------------------------

    @classmethod
    def of(cls, client: ClientLike | Session) -> Session:
        """The Session of `client`, made on first use; a Session is returned as it is."""
        if isinstance(client, Session):
            return client
        with _sessions_lock:
            found = getattr(client, _ATTR, None)
            if found is None:
                found = cls.__new__(cls)
                found._setup(client)
                setattr(client, _ATTR, found)
            return found

    @classmethod
    def connect(cls, settings: CommonSettings, *, database: str | None = None, migrate: bool = False) -> Session:
        """A Session on a new client from the settings (chdb or http; see clickhouse.connect),
        with the numbered migrations applied when `migrate`."""
        session = cls(clickhouse.connect(settings, database=database))
        session._owns_client = True
        if migrate:
            from . import migrations

            session.run(migrations.apply, settings.retention_days)
        return session

    # -- blocking calls (threads) -----------------------------------------------------

    @property
    def database(self) -> str | None:
        return self._client.database

    @property
    def lock(self) -> threading.RLock:
        """For code that still holds a raw client and must take turns with this session."""
        return self._lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[ClientLike]:
        """The raw client, for as long as the block holds the session's lock."""
        with self._lock:
            yield self._client

    def query(self, sql: str, parameters: Parameters = None, **kwargs: Any) -> QueryResult:
        with self._lock:
            return self._client.query(sql, parameters=parameters, **kwargs)

    def command(self, sql: str, parameters: Parameters = None, **kwargs: Any) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters, **kwargs)

    def insert(self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str], **kwargs: Any) -> None:
        """Insert rows; nothing is sent for no rows."""
        if not data:
            return
        rows = [list(row) for row in data]
        with self._lock:
            began = time.perf_counter()
            self._client.insert(table, rows, column_names=list(column_names), **kwargs)
            # Timed under the lock: the insert itself, not the wait for the session.
            INSERT_SECONDS.labels(table).observe(time.perf_counter() - began)

    def rows(self, sql: str, **parameters: Any) -> list[tuple]:
        """The result rows of a query with named {name:Type} parameters."""
        return cast(list[tuple], list(self.query(sql, parameters).result_rows))

    def named(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        """The result rows as dicts keyed by column name."""
        result = self.query(sql, parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def run(self, fn: Callable[Concatenate[Any, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """fn(client, *args, **kwargs) under the lock, for helpers written against a raw client."""
        with self._lock:
            return fn(self._client, *args, **kwargs)

    def problem(self) -> str | None:
        """A readiness check: None when a query answers, else why not."""
        try:
            self.query("SELECT 1")
        except Exception as exc:
            return f"ClickHouse: {type(exc).__name__}: {exc}"
        return None

    # -- awaitable calls (asyncio tasks) ----------------------------------------------

    async def _call(self, fn: Callable[[], R]) -> R:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="clickhouse-session")
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def aquery(self, sql: str, parameters: Parameters = None, **kwargs: Any) -> QueryResult:
        return await self._call(functools.partial(self.query, sql, parameters, **kwargs))

    async def acommand(self, sql: str, parameters: Parameters = None, **kwargs: Any) -> Any:
        return await self._call(functools.partial(self.command, sql, parameters, **kwargs))

    async def ainsert(
        self, table: str, data: Sequence[Sequence[Any]], column_names: Sequence[str], **kwargs: Any
    ) -> None:
        await self._call(functools.partial(self.insert, table, data, column_names, **kwargs))

    async def arows(self, sql: str, **parameters: Any) -> list[tuple]:
        return await self._call(functools.partial(self.rows, sql, **parameters))

    async def anamed(self, sql: str, **parameters: Any) -> list[dict[str, Any]]:
        return await self._call(functools.partial(self.named, sql, **parameters))

    async def arun(self, fn: Callable[Concatenate[Any, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._call(lambda: self.run(fn, *args, **kwargs))

    def close(self) -> None:
        """Stop the session's thread, and close the client if connect() opened it (a client
        handed in belongs to whoever opened it)."""
        with self._executor_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self._owns_client:
            close = getattr(self._client, "close", None)
            with self._lock:
                if close is not None:
                    close()
