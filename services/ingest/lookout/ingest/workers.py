"""A bounded pool of threads for the CPU-heavy part of each request (decoding, validation,
PII redaction, OTLP conversion), so the event loop keeps answering every other request,
/healthz included, while a megabyte of hostile text is being redacted.

Bounded three ways, so a flood can neither queue unbounded work nor starve other clients:
at most `threads` jobs run at once; one API key holds at most `per_key` of them (so with
per_key < threads another key always finds a thread free); and a key with `per_key + queue`
requests already running or waiting is answered 429 + Retry-After at once.

A thread's slot is given back when its job ends, not when the request does: a client that
hangs up while its job runs cannot make room for more jobs than there are threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from prometheus_client import Counter, Gauge

T = TypeVar("T")

# livesum: with several worker processes (LOOKOUT_HTTP_WORKERS) a scrape sees the sum over the live ones.
RUNNING = Gauge("lookout_ingest_work_running", "Request jobs running on the CPU worker threads",
                multiprocess_mode="livesum")
WAITING = Gauge("lookout_ingest_work_waiting", "Request jobs waiting for a CPU worker thread",
                multiprocess_mode="livesum")
REFUSED = Counter("lookout_ingest_work_refused_total", "Requests refused because their key had too many waiting")


class Busy(Exception):
    """This key already has as many requests running and waiting as it may have."""


@dataclass
class _KeyShare:
    threads: asyncio.Semaphore
    outstanding: int = 0  # running or waiting


@dataclass
class WorkerPool:
    threads: int
    per_key: int
    queue_per_key: int
    _executor: ThreadPoolExecutor = field(init=False, repr=False)
    _slots: asyncio.Semaphore = field(init=False, repr=False)
    _keys: dict[str, _KeyShare] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.threads < 1 or self.per_key < 1 or self.queue_per_key < 0:
            raise ValueError("a worker pool needs threads >= 1, per_key >= 1 and queue_per_key >= 0")
        self.per_key = min(self.per_key, self.threads)
        self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="ingest-work")
        self._slots = asyncio.Semaphore(self.threads)

    async def run(self, key: str, fn: Callable[..., T], *args: object) -> T:
        """fn(*args) on a worker thread, its result or exception returned here. Raises Busy
        when `key` already has its share running and its queue full."""
        share = self._keys.get(key)
        if share is None:
            share = self._keys[key] = _KeyShare(asyncio.Semaphore(self.per_key))
        if share.outstanding >= self.per_key + self.queue_per_key:
            REFUSED.inc()
            raise Busy(f"{share.outstanding} requests of this key are already running or waiting")
        share.outstanding += 1
        WAITING.inc()
        submitted = False
        try:
            async with _holding(share.threads) as key_slot, _holding(self._slots) as pool_slot:
                future = self._executor.submit(fn, *args)
                submitted = True
                WAITING.dec()
                RUNNING.inc()
                loop = asyncio.get_running_loop()
                # Both slots pass to the job; they come back when it ends, whatever the caller does.
                key_slot.keep(), pool_slot.keep()
                future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finished, key, share))
            return await asyncio.wrap_future(future)
        finally:
            if not submitted:
                WAITING.dec()
                self._release_key(key, share)

    def _finished(self, key: str, share: _KeyShare) -> None:
        RUNNING.dec()
        share.threads.release()
        self._slots.release()
        self._release_key(key, share)

    def _release_key(self, key: str, share: _KeyShare) -> None:
        share.outstanding -= 1
        if share.outstanding == 0 and self._keys.get(key) is share:
            del self._keys[key]  # memory stays bounded by the keys with requests in flight

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _holding:
    """async with: acquire a semaphore; release it on the way out unless keep() handed it on."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore
        self._kept = False

    def keep(self) -> None:
        self._kept = True

    async def __aenter__(self) -> _holding:
        await self._semaphore.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._kept:
            self._semaphore.release()

