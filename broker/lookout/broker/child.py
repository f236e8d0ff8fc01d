"""A broker process as a child that cannot outlive its parent, and the pidfile that lets a
later start find and end one that did (a parent killed on a system without PDEATHSIG, a
child stopped when its parent died).

On Linux the child asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG,
set between fork and exec). The kernel sends it when the *thread* that forked the child
ends, not the process, so spawn from a thread that lives as long as the broker should
(the embedded stack spawns from its main thread).

A pidfile names the process by pid and start time: a pid recycled for another process
after a reboot or a long time has another start time, and is never signalled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


# Looked up once here, in the parent: the child between fork and exec only calls it.
_PRCTL = _prctl()


def dies_with_parent() -> bool:
    """Whether children spawned here get a signal when their parent dies (Linux)."""
    return _PRCTL is not None


def _preexec(parent: int, sig: int) -> Callable[[], None]:
    prctl = _PRCTL

    def set_death_signal() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before the request: act on it now
                os.kill(os.getpid(), sig)

    return set_death_signal


def spawn(argv: list[str], log_path: Path | None, *, die_with_parent: bool = True,
          env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start `argv` in its own session (a Ctrl-C in the terminal reaches the parent, which
    stops the broker in order), output appended to `log_path`."""
    log = log_path.open("ab") if log_path is not None else None
    try:
        return subprocess.Popen(
            argv, stdout=log if log is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=cwd,
            preexec_fn=_preexec(os.getpid(), signal.SIGTERM) if die_with_parent and _PRCTL else None,
        )
    finally:
        if log is not None:
            log.close()  # the child holds its own copy


# -- process identity -------------------------------------------------------------------

@dataclass(frozen=True)
class ProcInfo:
    start: str  # start time, as the system reports it: the same pid with another start is another process
    zombie: bool


def proc_info(pid: int) -> ProcInfo | None:
    """The process's start time and whether it is a zombie; None when there is no such process."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            text = stat.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return None
        # Fields after the command name, which may hold spaces and parentheses itself.
        fields = text[text.rindex(")") + 2:].split()
        return ProcInfo(start=fields[19], zombie=fields[0] in ("Z", "X"))
    out = subprocess.run(["ps", "-o", "stat=,lstart=", "-p", str(pid)], capture_output=True, text=True)
    line = out.stdout.strip()
    if out.returncode != 0 or not line:
        return None
    state, _, start = line.partition(" ")
    return ProcInfo(start=" ".join(start.split()), zombie="Z" in state)


def alive(pid: int, start: str | None = None) -> bool:
    """The process exists, is not a zombie, and (when given) started at `start`."""
    info = proc_info(pid)
    return info is not None and not info.zombie and (start is None or info.start == start)


# -- the pidfile ------------------------------------------------------------------------

@dataclass(frozen=True)
class Recorded:
    pid: int
    start: str
    kind: str
    owner: int  # the pid of the process that started it

    def alive(self) -> bool:
        return alive(self.pid, self.start)


class Pidfile:
    def __init__(self, path: Path):
        self.path = path

    def write(self, pid: int, kind: str) -> None:
        info = proc_info(pid)
        if info is None:
            return  # gone already: nothing to find later
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"pid": pid, "start": info.start, "kind": kind, "owner": os.getpid()}))
        os.replace(tmp, self.path)

    def read(self) -> Recorded | None:
        try:
            doc = json.loads(self.path.read_text())
            return Recorded(int(doc["pid"]), str(doc["start"]), str(doc.get("kind", "broker")),
                            int(doc.get("owner", 0)))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable pidfile %s", self.path)
            return None

    def remove(self, pid: int | None = None) -> None:
        """Remove the file (only if it still names `pid`, when given)."""
        found = self.read()
        if pid is None or found is None or found.pid == pid:
            self.path.unlink(missing_ok=True)

    def end_stale(self, grace_s: float = 30.0) -> Recorded | None:
        """End the process the file names, if it still runs: SIGTERM (and SIGCONT, in case
        it is stopped), then SIGKILL after `grace_s`. Returns what was ended, else None.
        The caller makes sure no live owner still uses it (the embedded stack holds a lock
        on its data dir)."""
        found = self.read()
        if found is None or not found.alive():
            self.path.unlink(missing_ok=True)
            return None
        log.warning("ending a stale %s broker (pid %d) left by an earlier run", found.kind, found.pid)
        _signal(found.pid, signal.SIGTERM)
        _signal(found.pid, signal.SIGCONT)
        if not _wait_gone(found, grace_s):
            log.warning("stale %s broker (pid %d) ignored SIGTERM for %.0fs; killing it", found.kind, found.pid,
                        grace_s)
            _signal(found.pid, signal.SIGKILL)
            _wait_gone(found, 10)
        self.path.unlink(missing_ok=True)
        return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(found: Recorded, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while found.alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
