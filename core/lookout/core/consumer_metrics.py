"""Prometheus metrics of every consumer loop (kafka.CommitAfterLoop, so every
ConsumerWorker and every service loop), labelled by consumer group:

- `lookout_consumer_lag_records{group,topic,partition}`: records on the partition the
  group has not handled yet (the partition's high watermark minus the consumer's
  position), for the partitions this process owns, as of the loop's last poll;
- `lookout_consumer_records_total`, `lookout_consumer_batches_total`: handled and committed;
- `lookout_consumer_errors_total`: batches whose handler raised (the batch is retried);
- `lookout_consumer_commit_failures_total`: commits refused after a rebalance (the
  partition's new owner handles those records again);
- `lookout_consumer_batch_seconds`: time to handle one batch, commit included.

Lag is clamped at 0: Tansu reports a high watermark below the end offset the group has
already committed (its watermark lags its log), which would read as negative lag.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RECORDS = Counter("lookout_consumer_records_total", "Records handled and committed", ["group"])
BATCHES = Counter("lookout_consumer_batches_total", "Batches handled and committed", ["group"])
ERRORS = Counter("lookout_consumer_errors_total", "Batches whose handler raised (retried from the same offsets)",
                 ["group"])
COMMIT_FAILURES = Counter("lookout_consumer_commit_failures_total",
                          "Commits refused after a rebalance (the new owner handles the records again)", ["group"])
BATCH_SECONDS = Histogram("lookout_consumer_batch_seconds", "Time to handle and commit one batch", ["group"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0))


class LagSource(Protocol):
    group: str

    def lag_snapshot(self) -> Mapping[tuple[str, int], int]: ...


class LagCollector(Collector):
    """Reads each live loop's last lag snapshot (a dict the loop replaces whole after each
    poll, so a scrape in another thread never sees one half-written)."""

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[LagSource] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, source: LagSource) -> None:
        with self._lock:
            self._sources.add(source)

    def discard(self, source: LagSource) -> None:
        with self._lock:
            self._sources.discard(source)

    def lags(self) -> dict[tuple[str, str, int], int]:
        """(group, topic, partition) -> lag; two loops of one group in this process own
        different partitions, so each key comes from one of them (max if not)."""
        with self._lock:
            sources = list(self._sources)
        out: dict[tuple[str, str, int], int] = {}
        for source in sources:
            for (topic, partition), lag in source.lag_snapshot().items():
                key = (source.group, topic, partition)
                out[key] = max(out.get(key, 0), lag)
        return out

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "lookout_consumer_lag_records",
            "Records on a partition the group has not handled yet (high watermark - position, >= 0)",
            labels=["group", "topic", "partition"],
        )
        for (group, topic, partition), lag in sorted(self.lags().items()):
            family.add_metric([group, topic, str(partition)], lag)
        yield family


LAG = LagCollector()
REGISTRY.register(LAG)
