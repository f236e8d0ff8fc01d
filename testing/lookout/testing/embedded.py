"""`lookout up` as a subprocess for tests: its own data dir and port, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import httpx


class LookoutUp(subprocess.Popen):
    """The child's log is drained as it comes, by a thread: a pipe nobody reads fills up
    after 64 KiB and the stack then blocks on its next log line. communicate() returns
    everything it printed, like Popen's."""

    def __init__(self, args: list[str]):
        super().__init__(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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


def start_lookout_up(data_dir, port: int, *extra: str) -> LookoutUp:
    return LookoutUp(
        [sys.executable, "-m", "lookout.stack.cli", "up", "--data-dir", str(data_dir), "--port", str(port), *extra]
    )


def wait_ready(proc: LookoutUp, port: int, timeout: float = 90) -> None:
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
