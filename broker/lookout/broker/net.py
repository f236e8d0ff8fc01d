"""Ports on the loopback interface: a free one, whether one is free, waiting for a listener."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is reusable
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def listening(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | None, chars: int = 3000) -> str:
    if path is None or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - chars))
        return f.read().decode(errors="replace")


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None,
              what: str = "broker") -> None:
    """Until something listens on HOST:port; raises if `proc` exits first (with its log's tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on port {port}:\n{tail(log)}")
        if listening(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: nothing listens on {HOST}:{port} after {timeout:.0f}s\n{tail(log)}")
