"""Which Kafka-protocol broker `lookout up` runs, and keeping it running.

Apache Kafka (durable) whenever Java 17+ is there and its jars are cached or can be
resolved; Tansu (in memory) otherwise, said plainly at start and in /readyz; or none, when
LOOKOUT_EMBEDDED_BROKER names an external cluster's bootstrap servers. The broker is a
child of the stack (it dies with it; a stale one of the same data dir is ended at start),
and BrokerKeeper restarts it if it dies while the stack runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lookout.broker import Broker, KafkaBroker, Pidfile, ResolveError, Tansu, ensure_libs, find_java
from lookout.broker.net import listening
from lookout.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

IN_MEMORY = ("Tansu keeps topics in memory: events accepted but not yet stored by the sink, and every consumer "
             "group's position, are lost when Lookout stops or crashes")


class EmbeddedSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOKOUT_", extra="ignore")

    embedded_broker: str = Field(
        default="auto", pattern=r"^(auto|kafka|tansu|[^\s,:]+:\d+(,[^\s,:]+:\d+)*)$",
        description="Broker of `lookout up`: auto (Apache Kafka when Java 17+ is there, else Tansu, in memory), "
        "kafka, tansu, or host:port[,host:port] of an external cluster (LOOKOUT_KAFKA_* security settings apply).",
    )
    embedded_kafka_heap_mb: int = Field(
        default=512, ge=128, le=65536, description="Java heap of the embedded Apache Kafka."
    )
    kafka_libs: str | None = Field(
        default=None, description="Folder of Apache Kafka's jars (default: resolved from Maven Central once, into the "
        "checkout's .cache/kafka or ~/.cache/lookout/kafka).",
    )

    @property
    def external(self) -> str | None:
        return None if self.embedded_broker in ("auto", "kafka", "tansu") else self.embedded_broker


@dataclass(frozen=True)
class Choice:
    broker: Broker | None  # None: an external cluster
    bootstrap: str | None  # the external cluster's; an embedded broker's comes from it once started
    fallback: str = ""  # why Tansu runs where Apache Kafka was wanted ("" when it was asked for)


def choose(settings: EmbeddedSettings, data_dir: Path, port: int = 0,
           progress: Callable[[str], None] = print) -> Choice:
    pidfile = data_dir / "broker.pid"
    external = settings.external
    if external is not None:
        Pidfile(pidfile).end_stale()  # an embedded broker an earlier run left behind
        return Choice(None, external)

    def tansu(why: str = "") -> Choice:
        return Choice(Tansu(port=port, log_path=data_dir / "tansu.log", pidfile=pidfile), None, why)

    mode = settings.embedded_broker
    if mode == "tansu":
        return tansu()
    java, why = find_java()
    if java is None or why:
        if mode == "kafka":
            raise RuntimeError(f"LOOKOUT_EMBEDDED_BROKER=kafka, but {why}")
        return tansu(why)
    try:
        libs = ensure_libs(settings.kafka_libs, progress=progress)
    except ResolveError as exc:
        if mode == "kafka":
            raise RuntimeError(f"LOOKOUT_EMBEDDED_BROKER=kafka, but {exc}") from None
        return tansu(str(exc))
    workdir = data_dir / "kafka"
    return Choice(KafkaBroker(workdir=workdir, port=port, libs=libs, heap_mb=settings.embedded_kafka_heap_mb,
                              archive_dir=workdir, pidfile=pidfile, java=str(java.path)), None)


@dataclass
class BrokerKeeper:
    """Watches the broker child; when it dies, restarts it (from the event loop's thread,
    which is the main thread under uvicorn, so the new child dies with this process too)
    with a growing pause between tries, and reports not ready until it listens again."""

    broker: Broker
    fallback: str = ""
    after_restart: Callable[[], Awaitable[None]] | None = None  # Tansu comes back empty: make the topics
    poll_s: float = 0.5
    start_timeout_s: float = 90.0
    restarts: int = 0
    problem: str | None = None
    _task: asyncio.Task | None = field(default=None, repr=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="broker-keeper")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def check(self) -> str | None:
        if self.problem:
            return self.problem
        if self._task is not None and self._task.done():
            return "the broker watch stopped"
        return None

    def details(self) -> dict:
        proc = getattr(self.broker, "proc", None)
        out = {"kind": self.broker.kind, "bootstrap": self.broker.bootstrap, "durable": self.broker.durable,
               "pid": proc.pid if proc is not None else None, "restarts": self.restarts,
               "about": self.broker.describe()}
        if not self.broker.durable:
            out["warning"] = IN_MEMORY + (f" (Apache Kafka not used: {self.fallback})" if self.fallback else "")
        return out

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            if self.broker.alive():
                continue
            proc = getattr(self.broker, "proc", None)
            code = proc.returncode if proc is not None else None
            log.warning("the %s broker exited (code %s); restarting it", self.broker.kind, code)
            self.problem = f"the {self.broker.kind} broker exited (code {code}); restarting it"
            await self._restart()

    async def _restart(self) -> None:
        attempt = 0
        while True:
            await asyncio.to_thread(self.broker.stop)  # reaps the dead child, clears its pidfile
            await asyncio.sleep(min(30.0, 0.5 * 2 ** attempt))
            attempt += 1
            began = time.monotonic()
            try:
                self.broker.launch()
            except Exception as exc:
                self.problem = f"the {self.broker.kind} broker could not be started (try {attempt}): {exc}"
                log.error(self.problem)
                continue
            port = int(self.broker.bootstrap.rsplit(":", 1)[1])
            while self.broker.alive() and not await asyncio.to_thread(listening, port):
                if time.monotonic() - began > self.start_timeout_s:
                    break
                await asyncio.sleep(0.1)
            if self.broker.alive() and await asyncio.to_thread(listening, port):
                break
            self.broker.exited_before_ready()
            self.problem = f"the {self.broker.kind} broker did not come back (try {attempt}); trying again"
            log.error(self.problem)
        self.restarts += 1
        log.warning("the %s broker is back after %.1fs (restart %d)", self.broker.kind, time.monotonic() - began,
                    self.restarts)
        if not self.broker.durable:
            log.warning("%s: the events it held are gone", IN_MEMORY)
        if self.after_restart is not None:
            try:
                await self.after_restart()
            except Exception:
                log.exception("set-up after the broker restart failed")
        self.problem = None
