"""The Kafka-protocol broker of one machine, for the embedded stack (`lookout up`) and the
test fixtures alike: Apache Kafka in KRaft mode (durable; needs Java 17+ and its jars,
resolved from Maven Central once) or Tansu (in memory). Each runs as a child process that
dies with its parent, named in a pidfile so a later start can end one that did not.

No dependency beyond the Tansu wheel: importing this costs nothing of the services.
"""

from __future__ import annotations

from typing import Protocol

from .child import Pidfile, dies_with_parent
from .jars import KAFKA_VERSION, ResolveError, ensure_libs, find_libs
from .java import Java, find_java
from .kafka import KafkaBroker
from .net import free_port, port_is_free, wait_port
from .tansu import Tansu


class Broker(Protocol):
    """What the stack and the fixtures use of either broker."""

    kind: str
    durable: bool
    supports_idempotence: bool

    @property
    def bootstrap(self) -> str: ...

    def describe(self) -> str: ...

    def launch(self) -> object: ...  # the child process (each broker's own Popen)

    def wait_ready(self, timeout: float = ...) -> None: ...

    def exited_before_ready(self) -> None: ...

    def alive(self) -> bool: ...

    def stop(self, timeout: float = ...) -> None: ...


__all__ = [
    "KAFKA_VERSION", "Broker", "Java", "KafkaBroker", "Pidfile", "ResolveError", "Tansu", "dies_with_parent",
    "ensure_libs", "find_java", "find_libs", "free_port", "port_is_free", "wait_port",
]
