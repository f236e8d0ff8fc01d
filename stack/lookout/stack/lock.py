"""One `lookout up` per data dir: an exclusive lock on <data-dir>/lookout.lock, held for the
life of the process and released by the kernel however it ends (a SIGKILL included), so
a start that gets it knows any broker the data dir's pidfile names is a stale one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class DataDirInUse(RuntimeError):
    pass


def lock_data_dir(data_dir: Path) -> int:
    """The open, locked file descriptor (keep it open); DataDirInUse when another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "lookout.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(f"another `lookout up` (pid {holder}) runs on {data_dir}; stop it first, or give this "
                           "one its own --data-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
