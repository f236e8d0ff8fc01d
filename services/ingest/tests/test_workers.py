"""The worker pool that keeps request CPU work off the event loop: bounded in workers, in
each key's share of them and in each key's queue (the bounds are the same for threads and
processes, so they are shown with threads); in process mode, the work runs in warmed,
lower-priority worker processes, and one that dies loses only its own job."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from lookout.core.api_errors import ApiError
from lookout.ingest.workers import Busy, ProcessRunner, ThreadRunner, WorkerLost, WorkerPool
from services.ingest.tests import worker_jobs


def threads(size: int, *, per_key: int, queue_per_key: int) -> WorkerPool:
    return WorkerPool(ThreadRunner(size, None), per_key, queue_per_key)


class Gate:
    """Jobs that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def job(self, _context: object, value: object = None) -> object:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.open.wait(10)
        with self.lock:
            self.running -= 1
        return value


async def until(condition) -> None:
    # The state is changed by worker threads, so it is polled rather than awaited.
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


async def test_a_job_runs_on_another_thread_and_returns_its_result_or_raises_its_error():
    pool = WorkerPool(ThreadRunner(2, "the context"), 1, 1)
    try:
        thread, context = await pool.run("k", lambda context: (threading.get_ident(), context))
        assert thread != threading.get_ident() and context == "the context"
        with pytest.raises(ZeroDivisionError):
            await pool.run("k", lambda _: 1 / 0)
    finally:
        pool.close()


async def test_one_key_holds_at_most_its_share_so_another_key_is_served_at_once():
    gate = Gate()
    pool = threads(3, per_key=2, queue_per_key=2)
    try:
        flood = [asyncio.ensure_future(pool.run("hostile", gate.job)) for _ in range(4)]
        await until(lambda: gate.running == 2)
        other = await asyncio.wait_for(pool.run("normal", lambda _: "served"), 5)
        assert other == "served"
        assert gate.most == 2  # the hostile key never got a third thread
        gate.open.set()
        await asyncio.gather(*flood)
    finally:
        gate.open.set()
        pool.close()


async def test_a_key_with_its_share_running_and_its_queue_full_is_refused_at_once():
    gate = Gate()
    pool = threads(2, per_key=1, queue_per_key=2)
    try:
        held = [asyncio.ensure_future(pool.run("k", gate.job)) for _ in range(3)]
        await until(lambda: gate.running == 1)
        with pytest.raises(Busy, match="3 requests"):
            await pool.run("k", gate.job)
        assert await pool.run("other", lambda _: 1) == 1
        gate.open.set()
        await asyncio.gather(*held)
        assert await pool.run("k", lambda _: 2) == 2  # the share comes back once the jobs end
    finally:
        gate.open.set()
        pool.close()


async def test_a_request_that_goes_away_keeps_its_thread_until_the_job_ends():
    gate = Gate()
    pool = threads(1, per_key=1, queue_per_key=4)
    try:
        first = asyncio.ensure_future(pool.run("a", gate.job))
        await until(lambda: gate.running == 1)
        first.cancel()  # the client hung up; its job still runs
        second = asyncio.ensure_future(pool.run("b", gate.job))
        await asyncio.sleep(0.1)
        assert gate.most == 1 and not second.done()
        gate.open.set()
        assert await asyncio.wait_for(second, 5) is None
    finally:
        gate.open.set()
        pool.close()


async def test_waiting_requests_that_go_away_free_their_place_in_the_queue():
    gate = Gate()
    pool = threads(1, per_key=1, queue_per_key=1)
    try:
        running = asyncio.ensure_future(pool.run("k", gate.job))
        await until(lambda: gate.running == 1)
        waiting = asyncio.ensure_future(pool.run("k", gate.job))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await asyncio.sleep(0.05)
        queued_again = asyncio.ensure_future(pool.run("k", gate.job))  # not Busy: the place was freed
        gate.open.set()
        await asyncio.gather(running, queued_again)
    finally:
        gate.open.set()
        pool.close()


# --- process mode ------------------------------------------------------------------------


@pytest.fixture
async def processes():
    pool = WorkerPool(ProcessRunner(2, functools.partial(dict, built="in the worker"), nice=5), 1, 4)
    await pool.start()
    yield pool
    pool.close()


def live(pool: WorkerPool) -> list[int]:
    assert isinstance(pool.runner, ProcessRunner)
    return pool.runner.pids()


async def test_workers_are_started_at_start_and_run_jobs_in_their_own_lower_priority_process(processes):
    started = set(live(processes))
    assert len(started) == 2  # before any job: the first request pays no start-up
    pid, niceness, context = await processes.run("k", worker_jobs.where)
    assert pid in started and pid != os.getpid()
    assert niceness == os.nice(0) + 5
    assert context == {"built": "in the worker"}


async def test_an_api_error_raised_in_a_worker_arrives_whole_and_a_bad_exception_is_not_a_dead_worker(processes):
    with pytest.raises(ApiError) as refused:
        await processes.run("k", worker_jobs.refuse)
    assert (refused.value.status, refused.value.message, refused.value.field, refused.value.headers) == (
        413, "too big", "events", {"X-Limit": "1"})
    # An exception pickle cannot rebuild comes back as a plain error, and the worker lives on.
    before = set(live(processes))
    with pytest.raises(RuntimeError, match="Unpicklable: 1/2"):
        await processes.run("k", worker_jobs.raise_unpicklable)
    assert set(live(processes)) == before


def pid_in(path: Path) -> int | None:
    text = path.read_text() if path.exists() else ""
    return int(text) if text else None


async def wait_for_file(path: Path) -> int:
    await until(lambda: pid_in(path))  # another process writes it
    pid = pid_in(path)
    assert pid is not None
    return pid


async def test_a_worker_killed_mid_job_loses_that_job_only_and_is_replaced(processes, tmp_path):
    lost_before = REGISTRY.get_sample_value("lookout_ingest_work_lost_total") or 0
    doomed = asyncio.ensure_future(processes.run("a", worker_jobs.held, str(tmp_path), "doomed"))
    survivor = asyncio.ensure_future(processes.run("b", worker_jobs.held, str(tmp_path), "survivor"))
    waiting = asyncio.ensure_future(processes.run("c", worker_jobs.held, str(tmp_path), "waiting"))
    victim = await wait_for_file(tmp_path / "doomed.pid")
    await wait_for_file(tmp_path / "survivor.pid")
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        await asyncio.wait_for(doomed, 10)
    # The waiting job gets the new worker; the one running beside the dead one carries on.
    assert await wait_for_file(tmp_path / "waiting.pid") != victim
    (tmp_path / "release").touch()
    assert await asyncio.wait_for(asyncio.gather(survivor, waiting), 10) == ["survivor", "waiting"]
    assert (REGISTRY.get_sample_value("lookout_ingest_work_lost_total") or 0) == lost_before + 1
    pids = live(processes)
    assert len(pids) == 2 and victim not in pids
    assert (await processes.run("a", worker_jobs.where))[2] == {"built": "in the worker"}


async def test_a_worker_killed_between_jobs_costs_no_request(processes):
    killed = live(processes)
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # At once, before the executors may have noticed: the jobs never reached the dead
    # workers, so they go to the new ones.
    results = await asyncio.gather(*(processes.run(key, worker_jobs.where) for key in ("a", "b")))
    assert len({pid for pid, _, _ in results}) == 2 and not {pid for pid, _, _ in results} & set(killed)


def test_in_a_daemonic_process_which_may_not_start_children_the_work_falls_back_to_threads():
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    child = context.Process(target=worker_jobs.runner_kind, args=(there,), daemon=True)
    child.start()
    try:
        assert here.poll(60)
        assert here.recv() == "ThreadRunner"
    finally:
        child.join(10)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_workers_exit_when_their_server_is_killed_outright():
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    here, there = context.Pipe()
    server = context.Process(target=worker_jobs.serve_pool, args=(there,))
    server.start()
    try:
        assert here.poll(60)
        pids = here.recv()
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
    finally:
        server.kill()
        server.join(10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in pids)


async def test_closing_the_pool_stops_its_worker_processes(processes):
    pids = live(processes)
    processes.close()
    assert not any(alive(pid) for pid in pids)
