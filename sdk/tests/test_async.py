"""AsyncLookout: the same delivery from a task on the running loop, with httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from lookout_sdk import AsyncLookout


@pytest.fixture
async def make_async(client_options):
    clients: list[AsyncLookout] = []

    def make(**kwargs) -> AsyncLookout:
        client = AsyncLookout(**client_options("async-app", kwargs))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose(timeout=2)


async def test_calls_are_sent_from_a_task_without_a_thread(ingest, make_async):
    threads_before = threading.active_count()
    client = make_async(batch_size=10)
    ids = [client.log_call(model="m", output=str(i)) for i in range(25)]
    assert threading.active_count() == threads_before
    assert await client.flush(5)
    assert ingest.ids() == ids
    assert [len(r.body["events"]) for r in ingest.event_requests()] == [10, 10, 5]
    assert client.stats.sent == 25


async def test_retry_after_is_honoured(ingest, make_async):
    ingest.reply(503, {"Retry-After": "1"})
    client = make_async()
    client.log_call(model="m")
    assert await client.flush(10)
    first, second = ingest.event_requests()
    assert second.at - first.at >= 1.0
    assert (client.stats.sent, client.stats.retried) == (1, 1)


async def test_a_4xx_is_not_retried(ingest, make_async):
    ingest.reply(422, body={"detail": "bad"})
    client = make_async()
    client.log_call(model="m")
    client.log_call(model="m")
    assert await client.flush(5)
    await asyncio.sleep(0.2)
    assert len(ingest.event_requests()) == 1
    assert (client.stats.failed, client.stats.retried) == (2, 0)


async def test_a_full_queue_drops_and_log_call_never_waits(ingest, make_async):
    ingest.gate.clear()
    client = make_async(max_queue_size=50, batch_size=10)
    client.log_call(model="m")
    assert await client.flush(0.2) is False  # the task is stuck on the held request
    worst = 0.0
    for _ in range(500):
        started = time.perf_counter()
        client.log_call(model="m")
        worst = max(worst, time.perf_counter() - started)
    assert client.stats.dropped == 450
    assert worst < 0.05
    ingest.gate.set()
    assert await client.flush(10)
    assert client.stats.sent == 51


async def test_calls_logged_from_other_threads_are_delivered(ingest, make_async):
    client = make_async()
    client.log_call(model="m")  # starts the task on this loop

    def work() -> list[str]:
        return [client.log_call(model="m", output="from a thread") for _ in range(30)]

    ids = await asyncio.to_thread(work)
    assert await client.flush(5)
    assert set(ids) <= set(ingest.ids())


async def test_aclose_sends_what_is_left(ingest, make_async):
    client = make_async(flush_interval=60, batch_size=1000)
    for _ in range(7):
        client.log_call(model="m")
    await client.aclose()
    assert len(ingest.events) == 7


async def test_the_spill_directory_works_the_same(ingest, make_async, tmp_path):
    client = make_async(spill_dir=tmp_path, max_retry_time=0.1, backoff_max=0.2)
    ingest.stop()
    ids = [client.log_call(model="m") for _ in range(40)]
    assert await client.flush(5)
    assert client.stats.spilled == 40
    ingest.start()
    for _ in range(300):
        if set(ids) <= set(ingest.ids()):
            break
        await asyncio.sleep(0.05)
    assert set(ids) <= set(ingest.ids())
    assert client.stats.sent == 40


def test_calls_left_when_the_loop_ends_are_sent_at_interpreter_exit(ingest):
    code = f"""
        import asyncio, lookout_sdk
        client = lookout_sdk.AsyncLookout(
            endpoint={ingest.url!r}, api_key={ingest.api_key!r}, app_id="a", flush_interval=60, batch_size=1000)
        async def main():
            for i in range(40):
                client.log_call(model="m")
        asyncio.run(main())  # the loop (and the sender task) are gone after this
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(ingest.events) == 40
