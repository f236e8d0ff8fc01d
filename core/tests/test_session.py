"""The ClickHouse Session: one lock per client, shared by every thread and task."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from lookout.core import clickhouse
from lookout.core.session import Session, SessionError

THREADS = 12
TASKS = 12
ROUNDS = 20


class Probe:
    """A real client with a count of its calls in flight: the thing a session must keep at one."""

    def __init__(self, client: Any):
        self.client = client
        self.in_flight = 0
        self.most_in_flight = 0
        self._count = threading.Lock()

    @property
    def database(self) -> str | None:
        return self.client.database

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._count:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return getattr(self.client, name)(*args, **kwargs)
        finally:
            with self._count:
                self.in_flight -= 1

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("query", *args, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("command", *args, **kwargs)

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("insert", *args, **kwargs)


class LockPerWrapper:
    """Today's bug: a wrapper with a lock of its own (feedback Db, drift _Locked, ApiKeyStore...)."""

    def __init__(self, client: Any):
        self.client = client
        self._lock = threading.Lock()

    def query(self, sql: str, parameters: Any = None) -> Any:
        with self._lock:
            return self.client.query(sql, parameters=parameters)

    def insert(self, table: str, data: list, column_names: list[str]) -> None:
        with self._lock:
            self.client.insert(table, data, column_names=column_names)

    async def aquery(self, sql: str, parameters: Any = None) -> Any:
        return await asyncio.to_thread(self.query, sql, parameters)

    async def ainsert(self, table: str, data: list, column_names: list[str]) -> None:
        await asyncio.to_thread(self.insert, table, data, column_names)


@dataclass
class Outcome:
    errors: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    inserted: dict[str, int] = field(default_factory=dict)


SQL = "SELECT {base:UInt64} + number, toString({base:UInt64}) FROM numbers({n:UInt64})"


def _check(outcome: Outcome, who: str, base: int, n: int, rows: list) -> None:
    if rows != [(base + i, str(base)) for i in range(n)]:
        outcome.wrong.append(f"{who}: asked base {base} n {n}, got {rows[:3]}... ({len(rows)} rows)")


async def hammer(targets: list[Any], table: str) -> Outcome:
    """THREADS threads and TASKS asyncio tasks at once, each querying (and checking the
    answer is its own) and inserting rows tagged with its name, spread over `targets`."""
    outcome = Outcome()

    def thread(i: int) -> None:
        target, who = targets[i % len(targets)], f"thread-{i}"
        for r in range(ROUNDS):
            base, n = i * 1_000_000 + r * 1000, 50 + r
            try:
                _check(outcome, who, base, n, target.query(SQL, {"base": base, "n": n}).result_rows)
                target.insert(table, [[who, r, "x" * 200]], ["who", "round", "payload"])
            except Exception as exc:
                outcome.errors.append(f"{who}: {type(exc).__name__}: {exc}"[:300])

    async def task(i: int) -> None:
        target, who = targets[i % len(targets)], f"task-{i}"
        for r in range(ROUNDS):
            base, n = 500_000_000 + i * 1_000_000 + r * 1000, 50 + r
            try:
                _check(outcome, who, base, n, (await target.aquery(SQL, {"base": base, "n": n})).result_rows)
                await target.ainsert(table, [[who, r, "y" * 200]], ["who", "round", "payload"])
            except Exception as exc:
                outcome.errors.append(f"{who}: {type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    await asyncio.gather(*(task(i) for i in range(TASKS)))
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    rows = targets[0].query(f"SELECT who, count() FROM {table} GROUP BY who").result_rows
    outcome.inserted = dict(rows)
    return outcome


def takes_turns(outcome: Outcome, probe: Probe) -> list[str]:
    """What the session promises, as a list of broken promises (empty: kept)."""
    broken = [*outcome.errors, *outcome.wrong]
    expected = {f"thread-{i}": ROUNDS for i in range(THREADS)} | {f"task-{i}": ROUNDS for i in range(TASKS)}
    if outcome.inserted != expected:
        broken.append(f"rows per writer {outcome.inserted} != {ROUNDS} each")
    if probe.most_in_flight != 1:
        broken.append(f"{probe.most_in_flight} calls ran at once on one client")
    return broken


@pytest.fixture
def table(ch) -> str:
    ch.command("CREATE TABLE hammer (who String, round UInt32, payload String) ENGINE = MergeTree ORDER BY who")
    return "hammer"


async def test_one_session_hammered_by_threads_and_tasks_at_once_runs_one_call_at_a_time(ch, table):
    probe = Probe(ch)
    session = Session.of(probe)
    outcome = await hammer([session], table)
    assert takes_turns(outcome, probe) == []
    session.close()


async def test_two_wrappers_with_a_lock_each_on_one_client_fail_that_check(ch, table):
    """The check above can fail: today's pattern (each wrapper its own lock) lets calls overlap."""
    probe = Probe(ch)
    outcome = await hammer([LockPerWrapper(probe), LockPerWrapper(probe)], table)
    broken = takes_turns(outcome, probe)
    assert any("calls ran at once on one client" in b for b in broken), broken


async def test_wrappers_built_on_session_of_the_same_client_share_its_lock(ch, table):
    """The adoption path: old wrappers take their lock from Session.of(client) and stop overlapping."""
    probe = Probe(ch)
    first, second = Session.of(probe), Session.of(probe)
    assert first is second
    outcome = await hammer([first, second], table)
    assert takes_turns(outcome, probe) == []


def test_a_client_gets_one_session_only(ch):
    Session.of(ch)
    with pytest.raises(SessionError, match="already has a Session"):
        Session(ch)
    assert Session.of(Session.of(ch)) is Session.of(ch)


def test_rows_named_insert_and_run_share_the_lock_reentrantly(ch, table):
    session = Session.of(ch)
    session.insert(table, [], ["who", "round", "payload"])  # no rows: nothing sent
    session.insert(table, [("a", 1, "p"), ("b", 2, "q")], ["who", "round", "payload"])
    assert session.rows(f"SELECT who, round FROM {table} WHERE round >= {{r:UInt32}} ORDER BY who", r=1) == [
        ("a", 1), ("b", 2)]
    assert session.named(f"SELECT who FROM {table} WHERE who = {{w:String}}", w="b") == [{"who": "b"}]

    def helper(client: Any, table_name: str) -> int:
        # A helper written against a raw client, which calls the session again (RLock).
        assert client is ch
        return session.rows(f"SELECT count() FROM {table_name}")[0][0]

    assert session.run(helper, table) == 2
    with session.locked() as client:
        assert client.query("SELECT 1").result_rows == [(1,)]
    assert session.problem() is None


async def test_awaitable_calls_run_on_the_sessions_own_thread(ch, table):
    session = Session.of(ch)
    names = set()

    def where(_client: Any) -> None:
        names.add(threading.current_thread().name)

    await asyncio.gather(*(session.arun(where) for _ in range(20)))
    assert len(names) == 1 and next(iter(names)).startswith("clickhouse-session")
    await session.ainsert(table, [("c", 3, "r")], ["who", "round", "payload"])
    assert await session.arows(f"SELECT who FROM {table}") == [("c",)]
    assert await session.anamed(f"SELECT round FROM {table}") == [{"round": 3}]
    assert (await session.aquery("SELECT 2")).result_rows == [(2,)]
    session.close()
    assert (await session.aquery("SELECT 3")).result_rows == [(3,)]  # a closed thread comes back on use


def test_connect_opens_a_migrated_session_from_settings(ch_settings):
    session = Session.connect(ch_settings, migrate=True)
    try:
        assert session.database == ch_settings.clickhouse_database
        assert session.rows("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                            "AND name = 'schema_migrations'") == [(1,)]
    finally:
        session.command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")
        session.close()


def test_problem_names_what_fails(ch_settings):
    client = clickhouse.connect(ch_settings)
    session = Session(client)
    assert session.problem() is None
    client.close()
    assert session.problem() == "ClickHouse: ProgrammingError: The client has been closed"


def test_a_bad_dsn_is_refused_before_any_client_is_made():
    from lookout.core.settings import CommonSettings

    with pytest.raises(clickhouse.ClickHouseConfigError, match="chdb:///path or http"):
        Session.connect(CommonSettings.model_validate({"clickhouse_dsn": "tcp://somewhere:9000"}))


def test_the_session_lives_as_long_as_its_client_so_a_lock_taken_from_it_stays_the_one(ch):
    import gc

    lock = Session.of(ch).lock  # e.g. ApiKeyStore keeps only the lock
    gc.collect()
    assert Session.of(ch).lock is lock
    from lookout.core.auth import ApiKeyStore

    assert ApiKeyStore(ch)._db_lock is lock
