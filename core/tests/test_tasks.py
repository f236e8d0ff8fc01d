"""cancel_and_wait: what every service's stop() uses to end its background tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lookout.core.tasks import cancel_and_wait


async def test_a_running_task_is_cancelled_and_has_ended_when_it_returns():
    cleaned = asyncio.Event()

    async def loop() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0)  # its own clean-up takes a step of the loop
            cleaned.set()

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await cancel_and_wait(task, None)
    assert task.cancelled() and cleaned.is_set()


async def test_a_task_that_had_failed_is_logged_not_raised(caplog):
    async def broken() -> None:
        raise RuntimeError("watch died")

    task = asyncio.create_task(broken(), name="the-watch")
    await asyncio.sleep(0)
    assert task.done()
    with caplog.at_level(logging.ERROR, logger="lookout.core.tasks"):
        await cancel_and_wait(task)
    [record] = caplog.records
    assert "the-watch" in record.getMessage() and "watch died" in str(record.exc_info[1])


async def test_the_callers_own_cancellation_still_reaches_the_caller():
    async def stubborn() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(3600)  # takes its time to end

    inner = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(inner))
    await asyncio.sleep(0.01)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert inner.cancelled()
