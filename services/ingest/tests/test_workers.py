"""The worker pool that keeps request CPU work off the event loop: bounded in threads, in
each key's share of them and in each key's queue."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lookout.ingest.workers import Busy, WorkerPool


class Gate:
    """Jobs that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def job(self, value: object = None) -> object:
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
    pool = WorkerPool(threads=2, per_key=1, queue_per_key=1)
    try:
        assert await pool.run("k", threading.get_ident) != threading.get_ident()
        with pytest.raises(ZeroDivisionError):
            await pool.run("k", lambda: 1 / 0)
    finally:
        pool.close()


async def test_one_key_holds_at_most_its_share_so_another_key_is_served_at_once():
    gate = Gate()
    pool = WorkerPool(threads=3, per_key=2, queue_per_key=2)
    try:
        flood = [asyncio.ensure_future(pool.run("hostile", gate.job)) for _ in range(4)]
        await until(lambda: gate.running == 2)
        other = await asyncio.wait_for(pool.run("normal", lambda: "served"), 5)
        assert other == "served"
        assert gate.most == 2  # the hostile key never got a third thread
        gate.open.set()
        await asyncio.gather(*flood)
    finally:
        gate.open.set()
        pool.close()


async def test_a_key_with_its_share_running_and_its_queue_full_is_refused_at_once():
    gate = Gate()
    pool = WorkerPool(threads=2, per_key=1, queue_per_key=2)
    try:
        held = [asyncio.ensure_future(pool.run("k", gate.job)) for _ in range(3)]
        await until(lambda: gate.running == 1)
        with pytest.raises(Busy, match="3 requests"):
            await pool.run("k", gate.job)
        assert await pool.run("other", lambda: 1) == 1
        gate.open.set()
        await asyncio.gather(*held)
        assert await pool.run("k", lambda: 2) == 2  # the share comes back once the jobs end
    finally:
        gate.open.set()
        pool.close()


async def test_a_request_that_goes_away_keeps_its_thread_until_the_job_ends():
    gate = Gate()
    pool = WorkerPool(threads=1, per_key=1, queue_per_key=4)
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
    pool = WorkerPool(threads=1, per_key=1, queue_per_key=1)
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
