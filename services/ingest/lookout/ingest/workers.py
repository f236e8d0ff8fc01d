"""A bounded pool of workers for the CPU-heavy part of each request (decoding, validation,
PII redaction, OTLP conversion), so the serving process keeps answering every other
request, /healthz included, while a megabyte of hostile text is being redacted.

Two kinds of worker (LOOKOUT_WORK_MODE):
- process (default): worker processes, so the work does not share the serving process's
  interpreter lock: threads would keep the loop off the CPU for as long as a job holds the
  lock, which made normal clients' p99 ~19x slower under hostile load (bench/RESULTS.md).
  Processes come from a forkserver (never a fork of the serving process, which has Kafka
  clients, chdb and threads), are started and warmed when the service starts, and run at a
  lower priority (LOOKOUT_WORK_NICE), so the serving process wins the CPU on a small machine.
  Each worker holds its own copy of the job's context (the Enricher), built once from the
  settings; a job sends body bytes in and gets Kafka-ready records out, cheap to pickle.
- thread: a thread pool in the serving process, for where extra processes are unwelcome.

Bounded three ways, so a flood can neither queue unbounded work nor starve other clients:
at most `size` jobs run at once; one API key holds at most `per_key` of them (so with
per_key < size another key always finds a worker free); and a key with `per_key + queue`
requests already running or waiting is answered 429 + Retry-After at once.

A worker's slot is given back when its job ends, not when the request does: a client that
hangs up while its job runs cannot make room for more jobs than there are workers.

A worker process that dies mid-job (killed, out of memory) loses that job only: the
request gets WorkerLost (the API answers 503 + Retry-After), the dead worker is replaced
by a fresh one, and every other job, running or waiting, carries on; a job that met a
worker already dead (killed while idle) goes to the fresh one. A worker exits when its
server does.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter, Gauge

T = TypeVar("T")

log = logging.getLogger(__name__)

# livesum: with several worker processes (LOOKOUT_HTTP_WORKERS) a scrape sees the sum over the live ones.
RUNNING = Gauge("lookout_ingest_work_running", "Request jobs running on the CPU workers",
                multiprocess_mode="livesum")
WAITING = Gauge("lookout_ingest_work_waiting", "Request jobs waiting for a CPU worker",
                multiprocess_mode="livesum")
REFUSED = Counter("lookout_ingest_work_refused_total", "Requests refused because their key had too many waiting")
LOST = Counter("lookout_ingest_work_lost_total",
               "Request jobs lost because their worker process died (answered 503; the worker is replaced)")


class Busy(Exception):
    """This key already has as many requests running and waiting as it may have."""


class WorkerLost(Exception):
    """The worker process running this job died; the job is lost, the pool has a new worker."""


class Runner(Protocol):
    """Where jobs run: `submit(fn, *args)` runs fn(context, *args) on a free worker. The
    pool never submits more than `size` jobs at once."""

    size: int

    async def start(self) -> None: ...

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future: ...

    def close(self) -> None: ...


class ThreadRunner:
    def __init__(self, size: int, context: object) -> None:
        self.size = size
        self._context = context
        self._executor = ThreadPoolExecutor(size, thread_name_prefix="ingest-work")

    async def start(self) -> None:
        pass

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return self._executor.submit(fn, self._context, *args, **kwargs)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# --- in each worker process --------------------------------------------------------------

_context: object = None
_started: Any = None  # this worker's lane's shared "last job started" number


def _init_worker(make_context: Callable[[], object], nice: int, started: Any) -> None:
    global _context, _started
    _started = started
    # Ctrl-C reaches the whole process group; the serving process decides when work stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        # A worker never outlives its server: one killed outright sends no "stop", and the
        # worker would wait for jobs forever (it holds its own queue's write end).
        threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    if nice:
        os.nice(nice)
    _context = make_context()


def _exit_with(parent: BaseProcess) -> None:
    parent.join()
    os._exit(0)


def _warm() -> int:
    return os.getpid()


def _call(job: int, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    _started.value = job  # from here on, a death of this worker loses this job
    try:
        return fn(_context, *args, **kwargs)
    except Exception as exc:
        # An exception that does not survive pickling would be taken for a dead worker
        # (the pool breaks on a result it cannot read): send a plain one instead.
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from None
        raise


# --- in the serving process ----------------------------------------------------------------

_PRELOAD = ["lookout.ingest.work_process"]


def _forkserver() -> BaseContext:
    try:
        context = multiprocessing.get_context("forkserver")
    except ValueError:  # no forkserver on this platform
        return multiprocessing.get_context("spawn")
    # The forkserver imports what jobs need once; every worker forked from it starts warm.
    # (Only effective before the forkserver first starts; later workers import on demand.)
    context.set_forkserver_preload(_PRELOAD)
    return context


@dataclass(eq=False)
class _Lane:
    """One worker process in its own executor, and the number of the last job it started
    (shared memory, written by the worker), which tells a job lost with its worker from one
    that never reached it."""

    executor: ProcessPoolExecutor
    started: Any
    jobs: int = 0


class ProcessRunner:
    """`size` worker processes, each its own single-process executor (a lane), so that one
    dying breaks only its own lane: concurrent.futures fails every job of a pool whose
    process dies, the others' included.

    A job that finds its lane's worker already dead (killed while idle, not yet noticed)
    never reached a worker: it is sent again, once, to the replacement. A job whose worker
    died while running it fails with BrokenProcessPool (WorkerLost for the caller): it is
    never run twice, since it may be what killed the worker."""

    def __init__(self, size: int, make_context: Callable[[], object], *, nice: int = 10) -> None:
        self.size = size
        self._make_context = make_context
        self._nice = nice
        self._mp = _forkserver()
        self._idle: queue.SimpleQueue[_Lane] = queue.SimpleQueue()
        self._lanes: list[_Lane] = []
        self._lock = threading.Lock()
        self._closed = False
        for _ in range(size):
            self._idle.put(self._new_lane())

    def _new_lane(self) -> _Lane:
        started = self._mp.RawValue("q", 0)
        executor = ProcessPoolExecutor(1, mp_context=self._mp, initializer=_init_worker,
                                       initargs=(self._make_context, self._nice, started))
        lane = _Lane(executor, started)
        with self._lock:
            self._lanes.append(lane)
        return lane

    async def start(self) -> None:
        """Every worker started and its context built before the first request comes."""
        lanes = [self._idle.get_nowait() for _ in range(self.size)]
        try:
            await asyncio.gather(*(asyncio.wrap_future(lane.executor.submit(_warm)) for lane in lanes))
        finally:
            for lane in lanes:
                self._idle.put(lane)

    def pids(self) -> list[int]:
        """The live worker processes (for tests and operators)."""
        with self._lock:
            lanes = list(self._lanes)
        return [pid for lane in lanes for pid, process in (lane.executor._processes or {}).items()
                if process.is_alive()]

    def jobs_started(self) -> int:
        """How many jobs the current workers have started (for tests and operators)."""
        with self._lock:
            return sum(lane.started.value for lane in self._lanes)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        outer: Future = Future()
        outer.set_running_or_notify_cancel()
        self._dispatch(outer, fn, args, kwargs, resend=True)
        return outer

    def _dispatch(self, outer: Future, fn: Callable[..., Any], args: tuple, kwargs: dict, *, resend: bool) -> None:
        lane = self._idle.get_nowait()  # never empty: the pool holds a slot per submitted job
        lane.jobs += 1
        try:
            inner = lane.executor.submit(_call, lane.jobs, fn, args, kwargs)
        except BrokenProcessPool:  # its death was noticed while it was idle
            lane = self._replace(lane)
            lane.jobs += 1
            inner = lane.executor.submit(_call, lane.jobs, fn, args, kwargs)
        job = lane.jobs
        inner.add_done_callback(lambda done: self._job_done(lane, job, done, outer, fn, args, kwargs, resend))

    def _job_done(self, lane: _Lane, job: int, inner: Future, outer: Future, fn: Callable[..., Any], args: tuple,
                  kwargs: dict, resend: bool) -> None:
        # The lane is idle again before the caller learns the result (and gives the slot back).
        error = BrokenProcessPool("the pool was closed") if inner.cancelled() else inner.exception()
        if isinstance(error, BrokenProcessPool) and not self._closed:
            reached = lane.started.value == job
            self._idle.put(self._replace(lane))
            if not reached and resend:
                self._dispatch(outer, fn, args, kwargs, resend=False)
                return
            LOST.inc()
            log.warning("an ingest worker process died mid-job; its request gets a 503, a new worker takes its place")
        else:
            self._idle.put(lane)
        if error is not None:
            outer.set_exception(error)
        else:
            outer.set_result(inner.result())

    def _replace(self, broken: _Lane) -> _Lane:
        # The broken executor has already shut itself down; only our reference goes.
        with self._lock:
            if broken in self._lanes:
                self._lanes.remove(broken)
        lane = self._new_lane()
        if not self._closed:
            lane.executor.submit(_warm)  # the new worker starts now, not when the next job comes
        return lane

    def close(self, grace_s: float = 2.0) -> None:
        """Stop every worker: idle ones at once, one still running a job after `grace_s`."""
        self._closed = True
        with self._lock:
            lanes, self._lanes = self._lanes, []
        processes = [p for lane in lanes for p in (lane.executor._processes or {}).values()]
        for lane in lanes:
            lane.executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace_s
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()


@dataclass
class _KeyShare:
    slots: asyncio.Semaphore
    outstanding: int = 0  # running or waiting


@dataclass
class WorkerPool:
    runner: Runner
    per_key: int
    queue_per_key: int
    _slots: asyncio.Semaphore = field(init=False, repr=False)
    _keys: dict[str, _KeyShare] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.runner.size < 1 or self.per_key < 1 or self.queue_per_key < 0:
            raise ValueError("a worker pool needs size >= 1, per_key >= 1 and queue_per_key >= 0")
        self.per_key = min(self.per_key, self.runner.size)
        self._slots = asyncio.Semaphore(self.runner.size)

    @classmethod
    def create(cls, mode: str, size: int, make_context: Callable[[], object], *, per_key: int,
               queue_per_key: int, nice: int = 10) -> WorkerPool:
        """mode "process": worker processes building their context with make_context (it
        must pickle); "thread": threads sharing one context built here."""
        if mode not in ("process", "thread"):
            raise ValueError(f"work mode must be process or thread, not {mode!r}")
        if mode == "process" and multiprocessing.current_process().daemon:
            # multiprocessing forbids a daemonic process children (a service run inside
            # one, e.g. by a benchmark): the work still leaves the loop, on threads.
            log.warning("ingest runs in a daemonic process, which may not start worker processes: "
                        "request work runs on threads (LOOKOUT_WORK_MODE=thread)")
            mode = "thread"
        runner: Runner = (ProcessRunner(size, make_context, nice=nice) if mode == "process"
                          else ThreadRunner(size, make_context()))
        return cls(runner, per_key, queue_per_key)

    @property
    def size(self) -> int:
        return self.runner.size

    async def start(self) -> None:
        await self.runner.start()

    async def run(self, key: str, fn: Callable[..., T], /, *args: object, **kwargs: object) -> T:
        """fn(context, *args, **kwargs) on a worker, its result or exception returned here.
        Raises Busy when `key` already has its share running and its queue full, and
        WorkerLost when the worker process died while running it."""
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
            async with _holding(share.slots) as key_slot, _holding(self._slots) as pool_slot:
                future = self.runner.submit(fn, *args, **kwargs)
                submitted = True
                WAITING.dec()
                RUNNING.inc()
                loop = asyncio.get_running_loop()
                # Both slots pass to the job; they come back when it ends, whatever the caller does.
                key_slot.keep()
                pool_slot.keep()
                future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._finished, key, share))
            try:
                return await asyncio.wrap_future(future)
            except BrokenProcessPool:
                raise WorkerLost("the worker process running this request died") from None
        finally:
            if not submitted:
                WAITING.dec()
                self._release_key(key, share)

    def _finished(self, key: str, share: _KeyShare) -> None:
        RUNNING.dec()
        share.slots.release()
        self._slots.release()
        self._release_key(key, share)

    def _release_key(self, key: str, share: _KeyShare) -> None:
        share.outstanding -= 1
        if share.outstanding == 0 and self._keys.get(key) is share:
            del self._keys[key]  # memory stays bounded by the keys with requests in flight

    def close(self) -> None:
        self.runner.close()


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
