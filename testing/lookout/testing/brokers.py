"""Real Kafka-protocol brokers for tests, from the launcher the embedded stack uses
(lookout.broker): Apache Kafka 4.x in KRaft mode (jars from `make kafka`, or
LOOKOUT_KAFKA_LIBS) and Tansu. Nothing here mocks a broker.

Each lives in a temporary folder, removed by close(). stop() and start() keep the folder
and the ports, so a test can take a broker away and bring it back. Kafka's class archive is
kept in the user's cache (shared by test sessions), so a session's broker starts in a few
seconds after the first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from lookout.broker import KafkaBroker as _Kafka
from lookout.broker import Tansu, find_libs, free_port, wait_port
from lookout.broker.jars import ResolveError

__all__ = ["KafkaBroker", "TansuBroker", "free_port", "kafka_libs", "wait_port"]


def kafka_libs() -> Path:
    """Where `make kafka` put the jars (LOOKOUT_KAFKA_LIBS overrides)."""
    found = find_libs()
    if found is None:
        raise ResolveError("Apache Kafka jars not found: run `make kafka` (or set LOOKOUT_KAFKA_LIBS)")
    return found


def archive_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lookout" / "kafka-test-cds"


class KafkaBroker(_Kafka):
    def __init__(self, workdir: Path | None = None, port: int = 0, controller_port: int = 0):
        super().__init__(
            workdir=workdir or Path(tempfile.mkdtemp(prefix="lookout-kafka-")),
            port=port or free_port(), controller_port=controller_port or free_port(), libs=kafka_libs(),
            heap_mb=768, archive_dir=archive_dir(),
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class TansuBroker(Tansu):
    """Tansu with in-memory storage: what the embedded stack falls back to, started the same way."""

    def __init__(self) -> None:
        log = Path(tempfile.mkdtemp(prefix="lookout-tansu-")) / "tansu.log"
        super().__init__(port=free_port(), log_path=log)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def revive(self) -> str | None:
        """Start it again on its port if it died (a CI run once lost a session's Tansu
        mid-run, and every later test of that process failed to connect): what its log
        ended with, or None when it was running. Its topics were in memory: tests make
        their own, so the next ones start clean."""
        if self.alive():
            return None
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else "(no log)"
        self.stop()
        self.start()
        return tail
