"""AsyncLookout: the client that sends from a task on the running asyncio loop."""

from __future__ import annotations

import asyncio
import logging
import time

from . import _transport
from ._caller import ClientBase
from ._lifecycle import ensure_exit_hooks

logger = logging.getLogger("lookout_sdk")


class AsyncLookout(ClientBase):
    """The asyncio flavour of `Lookout`: same arguments and counters, sending from a task
    on the running event loop with httpx.AsyncClient.

    >>> async def main():
    ...     async with AsyncLookout(app_id="support-bot") as lookout:  # endpoint/key from env
    ...         event_id = lookout.log_call(model="gpt-4o-mini", input="Hi", output="Hello!")
    ...         await lookout.flush()

    log_call() and feedback() stay plain (non-async) methods that return at once; the task
    starts with the first call made on a running loop. Events still queued when the loop
    is gone are sent (or spilled) synchronously at interpreter exit.
    """

    def _reset_state(self) -> None:
        super()._reset_state()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake_event: asyncio.Event | None = None
        self._ainterrupt: asyncio.Event | None = None
        self._wake_pending = False
        self._waiters: list[asyncio.Future[None]] = []

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Called from outside the loop (a worker thread): start it on the loop, if any.
            loop = self._loop
            if loop is not None and not loop.is_closed() and loop.is_running():
                loop.call_soon_threadsafe(self._start)
            return
        with self._outbox.lock:
            if self._started:
                return
            self._started = True
        ensure_exit_hooks()
        self._loop = loop
        self._wake_event = asyncio.Event()
        self._ainterrupt = asyncio.Event()
        self._wake_pending = False
        self._task = loop.create_task(self._run(), name="lookout-sender")

    def _wake(self) -> None:
        if self._wake_pending or self._loop is None:
            return
        self._wake_pending = True
        try:
            self._loop.call_soon_threadsafe(self._set_wake)
        except RuntimeError:  # the loop is closed
            self._wake_pending = False

    def _set_wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    def _notify_progress(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            try:
                if not waiter.done():
                    waiter.set_result(None)
            except RuntimeError:  # its loop is gone (the exit-time drain)
                pass

    async def _run(self) -> None:
        assert self._wake_event is not None and self._ainterrupt is not None
        http = _transport.async_http_client(self._config)
        outbox = self._outbox
        try:
            drain_due = time.monotonic() + self._config.flush_interval
            while True:
                drain_all, drain_due = self._next_round(drain_due)
                try:
                    await _transport.run_async(outbox.pump(drain_all), http, self._ainterrupt)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("lookout_sdk: sender error")
                    outbox.abandon_in_flight()
                    await asyncio.sleep(min(1.0, self._config.flush_interval))
                if outbox.stopping and not outbox.queue:
                    return
                try:
                    await asyncio.wait_for(self._wake_event.wait(), max(0.0, drain_due - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
                self._wake_event.clear()
                self._wake_pending = False
        except asyncio.CancelledError:
            # The loop is shutting down (asyncio.run's end): put the batch in hand back, so
            # the exit-time drain sends it.
            in_flight, outbox.in_flight = outbox.in_flight, []
            outbox.queue.extendleft(reversed(in_flight))
            raise
        finally:
            self._started = False
            try:
                await http.aclose()
            except Exception:
                pass

    async def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything logged before this call is sent, refused or spilled; False
        after `timeout` seconds."""
        outbox = self._outbox
        target = outbox.enqueued
        if outbox.processed >= target:
            return True
        if not self._started:
            self._start()
        self._flush_requested = True
        if self._wake_event is not None:
            self._wake_event.set()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while outbox.processed < target:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            try:
                await asyncio.wait_for(waiter, remaining)
            except asyncio.TimeoutError:
                return outbox.processed >= target
        return True

    async def aclose(self, timeout: float | None = None) -> None:
        """Flush for at most `timeout` seconds (default `shutdown_timeout`) and stop the task;
        what is left is spilled or counted as failed."""
        outbox = self._outbox
        if outbox.closed:
            return
        if outbox.queue and not self._started:
            self._start()
        deadline = self._begin_close(timeout)
        if self._ainterrupt is not None:
            self._ainterrupt.set()
        if self._wake_event is not None:
            self._wake_event.set()
        task = self._task
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
        outbox.give_up_items(outbox.drain())

    def _close_at_exit(self) -> None:
        """The loop is gone at interpreter exit: send what is left with a blocking client."""
        outbox = self._outbox
        if outbox.closed:
            return
        self._begin_close(None)
        self._interrupt.clear()  # no one will interrupt this drain; the deadline bounds it
        if outbox.queue and self._enabled:
            try:
                with _transport.http_client(self._config) as http:
                    _transport.run(outbox.pump(True), http, self._interrupt)
            except Exception:
                logger.exception("lookout_sdk: exit-time send failed")
        outbox.give_up_items(outbox.drain())

    async def __aenter__(self) -> AsyncLookout:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
