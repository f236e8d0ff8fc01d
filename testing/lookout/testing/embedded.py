"""`lookout up` as a subprocess for tests: its own data dir and port, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from lookout.broker import Pidfile
from lookout.broker.child import Recorded


class LookoutUp(subprocess.Popen):
    """The child's log is drained as it comes, by a thread: a pipe nobody reads fills up
    after 64 KiB and the stack then blocks on its next log line. communicate() returns
    everything it printed, like Popen's."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None):
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, name="lookout-up-log", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def communicate(self, input=None, timeout=None):
        self.wait(timeout)
        self._reader.join(timeout)
        return self.output(), None


def start_lookout_up(data_dir, port: int, *extra: str, env: Mapping[str, str | None] | None = None) -> LookoutUp:
    """`env`: variables set (or, with value None, removed) over this process's environment."""
    merged = None
    if env is not None:
        merged = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    return LookoutUp(
        [sys.executable, "-m", "lookout.stack.cli", "up", "--data-dir", str(data_dir), "--port", str(port), *extra],
        env=merged,
    )


def broker_of(data_dir) -> Recorded | None:
    """The broker process the stack on `data_dir` runs (its pidfile), None when there is none."""
    return Pidfile(Path(data_dir) / "broker.pid").read()


def wait_ready(proc: LookoutUp, port: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"lookout up exited with {proc.returncode}:\n{proc.communicate(10)[0][-5000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("lookout up did not become ready")
