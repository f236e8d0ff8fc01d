"""Processes from /proc, for the benchmarks' CPU and memory accounting (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str, tid: int | None = None) -> list[str] | None:
    """The fields of /proc/<pid>[/task/<tid>]/stat after the command name; None once it is gone."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int | str = "self", tid: int | None = None) -> float:
    """User + system CPU seconds of a process (every thread) or of one of its threads; 0 once gone."""
    fields = _stat(pid, tid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields else 0.0


def _parents() -> dict[int, list[int]]:
    """parent pid -> the live processes it started, from one pass over /proc."""
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(entry.name)
            if fields is not None:
                kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`."""
    return _parents().get(pid, [])


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of `pid` and of its live descendants: ingest's request work runs in worker
    processes (a forkserver's children), which count as the server's cost."""
    kids = _parents()
    total, todo = 0.0, [pid]
    while todo:
        one = todo.pop()
        total += cpu_seconds(one)
        todo += kids.get(one, [])
    return total
