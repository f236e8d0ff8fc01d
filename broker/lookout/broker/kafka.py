"""Apache Kafka 4 in KRaft mode, one node (broker and controller in one JVM), as a child
process: its log and metadata under `workdir`, sized for a laptop, started fast.

Durable: a record Kafka acknowledged (acks=all) is on disk when the producer hears so
(`fsync_each_append`), and a restart on the same `workdir` finds its topics, offsets and
consumer groups again, after a clean stop or a kill alike (Kafka recovers its log).

Fast start: the JVM runs C1 only and the serial collector (a small heap, a short life), and
an AppCDS archive of Kafka's classes, written at the first clean stop and keyed by the
runtime and the jars, takes class loading off later starts (about 13 s → 5 s to listening
on a loaded 2-core machine; see bench/RESULTS.md).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import child, jars, net

log = logging.getLogger(__name__)

# Kafka logs through log4j2; without a configuration it would print errors only. This keeps
# warnings and the start/stop lines, on stdout, which the launcher appends to broker.log.
LOG4J2 = """\
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""


def cluster_id() -> str:
    """A KRaft cluster id as Kafka makes one (a random UUID, URL-safe base64, unpadded),
    made here to save a JVM start; Kafka's own never begins with '-'."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not made.startswith("-"):
            return made


def _previous_ports(props: Path) -> tuple[int, int]:
    """(broker, controller) ports of the last configuration, (0, 0) when there is none."""
    if not props.exists():
        return 0, 0
    text = props.read_text()
    plain = re.search(r"^listeners=.*PLAINTEXT://[^:]+:(\d+)", text, re.M)
    ctrl = re.search(r"^listeners=.*CONTROLLER://[^:]+:(\d+)", text, re.M)
    return (int(plain.group(1)) if plain else 0), (int(ctrl.group(1)) if ctrl else 0)


@dataclass
class KafkaBroker:
    workdir: Path
    port: int = 0  # 0: the last start's port when it is free, else any free one
    controller_port: int = 0
    libs: Path | None = None  # None: jars.find_libs()
    heap_mb: int = 512
    fsync_each_append: bool = True
    archive_dir: Path | None = None  # where AppCDS archives are kept; None: no archive
    pidfile: Path | None = None
    die_with_parent: bool = True
    java: str = "java"
    proc: subprocess.Popen | None = None
    _dumping: Path | None = field(default=None, repr=False)
    _archive: Path | None = field(default=None, repr=False)
    _used_archive: bool = field(default=False, repr=False)

    kind = "kafka"
    durable = True
    supports_idempotence = True

    @property
    def bootstrap(self) -> str:
        return f"{net.HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def describe(self) -> str:
        return f"Apache Kafka {jars.KAFKA_VERSION} (KRaft) on {self.bootstrap}, log under {self.data}"

    # -- configuration --------------------------------------------------------------------

    def _libs(self) -> Path:
        if self.libs is None:
            found = jars.find_libs()
            if found is None:
                raise jars.ResolveError("Apache Kafka jars not found: run `make kafka` (or set LOOKOUT_KAFKA_LIBS)")
            self.libs = found
        return self.libs

    def _classpath(self) -> str:
        return str(self._libs() / "*")

    def _choose_ports(self, props: Path) -> None:
        before, before_ctrl = _previous_ports(props)
        if not self.port:
            self.port = before if before and net.port_is_free(before) else net.free_port()
        if not self.controller_port:
            ok = before_ctrl and before_ctrl != self.port and net.port_is_free(before_ctrl)
            self.controller_port = before_ctrl if ok else net.free_port()
            while self.controller_port == self.port:
                self.controller_port = net.free_port()

    def _properties(self) -> str:
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{net.HOST}:{self.controller_port}",
            f"listeners=PLAINTEXT://{net.HOST}:{self.port},CONTROLLER://{net.HOST}:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://{net.HOST}:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.data}",
            # One node: nothing to replicate to.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            # Few partitions to load at start; a handful of groups use them.
            "offsets.topic.num.partitions=4",
            "num.partitions=3",
            "auto.create.topics.enable=true",
            "group.initial.rebalance.delay.ms=0",
            # A laptop's share: small segments and indexes, a week or 256 MiB per partition.
            "log.segment.bytes=33554432",
            "log.index.size.max.bytes=1048576",
            "log.retention.hours=168",
            "log.retention.bytes=268435456",
            "num.network.threads=2",
            "num.io.threads=2",
            "background.threads=2",
            "num.recovery.threads.per.data.dir=2",
        ]
        if self.fsync_each_append:
            # An acknowledged record is on disk, not only in the page cache: a power cut or
            # a kernel crash loses nothing accepted either.
            lines.append("log.flush.interval.messages=1")
        return "\n".join(lines) + "\n"

    def _configure(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        props = self.workdir / "server.properties"
        self._choose_ports(props)
        props.write_text(self._properties())
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        if not (self.data / "meta.properties").exists():
            self._format(props)
        return props

    def _jvm(self, heap_mb: int) -> list[str]:
        return [self.java, f"-Xms{min(heap_mb, 128)}m", f"-Xmx{heap_mb}m", "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData", "-Djava.awt.headless=true"]

    def _format(self, props: Path) -> None:
        archive = self._archive_path()
        shared = [f"-XX:SharedArchiveFile={archive}"] if archive is not None and archive.exists() else []
        out = subprocess.run(
            [*self._jvm(256), *shared, "-cp", self._classpath(), "kafka.tools.StorageTool", "format",
             "-t", cluster_id(), "-c", str(props)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"formatting Kafka's log dir {self.data} failed:\n{(out.stdout + out.stderr)[-3000:]}")

    # -- the class archive ----------------------------------------------------------------

    def _archive_key(self) -> str:
        h = hashlib.sha256()
        # The runtime by its real file (an upgraded JDK is another file or mtime) and every jar.
        java = Path(shutil.which(self.java) or self.java).resolve()
        for path in [java, *sorted(self._libs().glob("*.jar"))]:
            try:
                st = path.stat()
                h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{path}\n".encode())
        return h.hexdigest()[:16]

    def _archive_path(self) -> Path | None:
        if self.archive_dir is None:
            return None
        if self._archive is None:
            self._archive = self.archive_dir / f"kafka-{self._archive_key()}.jsa"
        return self._archive

    def _archive_flags(self) -> list[str]:
        archive = self._archive_path()
        if archive is None:
            return []
        archive.parent.mkdir(parents=True, exist_ok=True)
        if archive.exists():
            return [f"-XX:SharedArchiveFile={archive}"]
        # Dumped by the JVM when it exits; kept only after a clean stop (see _keep_archive).
        self._dumping = archive.parent / f".{archive.stem}-{secrets.token_hex(4)}.jsa.part"
        return [f"-XX:ArchiveClassesAtExit={self._dumping}"]

    def _keep_archive(self) -> None:
        dumped, self._dumping = self._dumping, None
        if dumped is None or self._archive is None:
            return
        if dumped.exists() and dumped.stat().st_size > 0:
            os.replace(dumped, self._archive)
            for old in self._archive.parent.glob("kafka-*.jsa"):
                if old != self._archive:
                    old.unlink(missing_ok=True)
        dumped.unlink(missing_ok=True)

    def _drop_archive(self) -> None:
        """An archive the JVM could not start with is not used again."""
        if self._archive is not None:
            self._archive.unlink(missing_ok=True)
        if self._dumping is not None:
            self._dumping.unlink(missing_ok=True)
            self._dumping = None

    # -- life -----------------------------------------------------------------------------

    def launch(self, *, use_archive: bool = True) -> subprocess.Popen:
        """Spawn the JVM and return at once (wait_ready waits for it to listen)."""
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).end_stale()
        props = self._configure()
        argv = [*self._jvm(self.heap_mb), "-XX:+ExitOnOutOfMemoryError",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                *(self._archive_flags() if use_archive else []),
                "-cp", self._classpath(), "kafka.Kafka", str(props)]
        self._used_archive = use_archive and self.archive_dir is not None
        with self.log_path.open("ab") as f:
            f.write(f"--- starting at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        self.proc = child.spawn(argv, self.log_path, die_with_parent=self.die_with_parent)
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).write(self.proc.pid, self.kind)
        return self.proc

    def exited_before_ready(self) -> None:
        """Called when the JVM died before it listened: if it ran with an archive, the next
        launch goes without (a JVM that maps the archive badly never starts)."""
        if self._used_archive:
            log.warning("Kafka exited during start with a class archive; starting without it")
            self._drop_archive()

    def wait_ready(self, timeout: float = 90) -> None:
        assert self.proc is not None
        try:
            net.wait_port(self.port, timeout, self.proc, self.log_path, what="Apache Kafka")
        except RuntimeError:
            self.exited_before_ready()
            raise

    def start(self, timeout: float = 90) -> KafkaBroker:
        self.launch()
        try:
            self.wait_ready(timeout)
        except RuntimeError:
            if not self._used_archive:
                raise
            self.launch(use_archive=False)
            self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """A clean shutdown (SIGTERM: Kafka closes its logs), SIGKILL after `timeout`."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        clean = False
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
                clean = True
            except subprocess.TimeoutExpired:
                log.warning("Kafka (pid %d) did not stop within %.0fs; killing it", proc.pid, timeout)
                proc.kill()
                proc.wait(10)
        if clean:
            self._keep_archive()
        elif self._dumping is not None:
            self._dumping.unlink(missing_ok=True)
            self._dumping = None
        if self.pidfile is not None:
            child.Pidfile(self.pidfile).remove(proc.pid)
