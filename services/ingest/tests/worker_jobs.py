"""Jobs for the worker pool's process-mode tests: module-level, so a worker process can
import them by name (test modules themselves are imported under pytest's own names)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lookout.core.api_errors import ApiError


def where(context: object) -> tuple[int, int, object]:
    """The worker's pid, its niceness and its context."""
    return os.getpid(), os.nice(0), context


def held(context: object, folder: str, name: str) -> str:
    """Says it runs (`name`.pid holds its pid), then waits for `release` in `folder`."""
    Path(folder, f"{name}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 20
    while not Path(folder, "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return name


def refuse(context: object) -> None:
    raise ApiError(413, "too big", field="events", headers={"X-Limit": "1"})


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def raise_unpicklable(context: object) -> None:
    raise Unpicklable(1, 2)


def runner_kind(conn) -> None:
    """In a (daemonic) child: which runner a process-mode pool gets there."""
    from lookout.ingest.workers import WorkerPool

    pool = WorkerPool.create("process", 1, dict, per_key=1, queue_per_key=0)
    conn.send(type(pool.runner).__name__)
    pool.close()


def serve_pool(conn) -> None:
    """In a child: a started process pool, its worker pids sent, then waiting to be killed."""
    import asyncio

    from lookout.ingest.workers import ProcessRunner

    runner = ProcessRunner(2, dict)
    asyncio.run(runner.start())
    conn.send(runner.pids())
    time.sleep(120)
