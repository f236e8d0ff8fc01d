"""Producing accepted events to llm.events (and OTLP's trace steps and client evaluations
to llm.spans and llm.scores), all or nothing from the caller's view."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter, Gauge

from lookout.core import topics
from lookout.core.events import LlmCall, Score, TraceSpan

log = logging.getLogger(__name__)

PRODUCED = Counter("lookout_ingest_produced_events_total", "Events acked by Kafka")
UNAVAILABLE = Counter("lookout_ingest_unavailable_total", "Requests answered 503", ["reason"])
INFLIGHT = Gauge("lookout_ingest_inflight_events", "Events waiting for Kafka acks", multiprocess_mode="livesum")


class Unavailable(Exception):
    """Kafka cannot take the events now; the client should retry after a pause."""


class EventPublisher:
    """Produces one request's records and waits for their acks.

    Two connections: a Kafka producer has one produce request in flight per broker, and
    every record queued behind it waits for its ack. So a request whose records exceed
    `bulk_bytes` goes over a producer of its own (`bulk`): a client's 10 MB batch, or a
    hostile one, then delays only other bulk requests, never the small ones' acks (beside
    the hostile soak's 10 MB batches small requests waited 153 ms for theirs at p99 on one
    connection, 34-49 ms on two; 19-21 ms quiet: bench/RESULTS.md)."""

    def __init__(self, producer: AIOKafkaProducer, *, topic_prefix: str, max_inflight: int, timeout_s: float,
                 topic: str = topics.EVENTS, bulk: AIOKafkaProducer | None = None, bulk_bytes: int = 0):
        self._producer = producer
        self._bulk = bulk if bulk is not None and bulk_bytes > 0 else None
        self._bulk_bytes = bulk_bytes
        self._topic = topics.resolve(topic_prefix, topic)
        self._max_inflight = max_inflight
        self._timeout = timeout_s
        self._inflight = 0
        self._partitioner = DefaultPartitioner()

    async def publish(self, calls: list[LlmCall]) -> None:
        """Returns once Kafka acked every call, else raises Unavailable. A partial send
        is harmless: the client retries the whole batch and storage dedups by event_id."""
        await self.publish_records(encode(calls))

    async def publish_records(self, records: list[tuple[bytes, bytes]]) -> None:
        """publish() of calls already encoded (`encode`, on a worker thread: a big batch
        costs tens of milliseconds to serialise, which the event loop must not spend)."""
        if self._inflight + len(records) > self._max_inflight:
            UNAVAILABLE.labels("queue_full").inc()
            raise Unavailable(f"send queue full ({self._inflight} events in flight)")
        self._inflight += len(records)
        INFLIGHT.set(self._inflight)
        producer = self._producer
        if self._bulk is not None and sum(len(value) for _, value in records) > self._bulk_bytes:
            producer = self._bulk
        try:
            await asyncio.wait_for(self._send_all(producer, records), self._timeout)
        except TimeoutError:
            UNAVAILABLE.labels("timeout").inc()
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout:g}s") from None
        except Exception as exc:  # aiokafka raises several types for a broker that is away
            UNAVAILABLE.labels("kafka_error").inc()
            log.warning("produce failed: %r", exc)
            raise Unavailable(f"Kafka refused the events: {type(exc).__name__}") from None
        finally:
            self._inflight -= len(records)
            INFLIGHT.set(self._inflight)
        PRODUCED.inc(len(records))

    async def _send_all(self, producer: AIOKafkaProducer, records: list[tuple[bytes, bytes]]) -> None:
        """One record batch per partition instead of a send() per event: the per-message
        path costs ~20 µs of Python each, the batch path a fraction of that. Partitions
        come from the same murmur2 partitioner Kafka clients use, so a stream's events
        land where a plain keyed send would put them."""
        partitions = sorted(await producer.partitions_for(self._topic))
        by_partition: dict[int, list[tuple[bytes, bytes]]] = {}
        partition_of: dict[bytes, int] = {}  # a batch holds few streams: murmur2 once per key
        for key, value in records:
            partition = partition_of.get(key)
            if partition is None:
                partition = partition_of[key] = self._partitioner(key, partitions, partitions)
            by_partition.setdefault(partition, []).append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, self._topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"event of {len(value)} bytes exceeds the producer's batch size")
            futures.append(await producer.send_batch(batch, self._topic, partition=partition))
        await asyncio.gather(*futures)


def encode(calls: list[LlmCall]) -> list[tuple[bytes, bytes]]:
    """(Kafka key, record value) of each call."""
    return [(topics.event_key(call.app_id, call.model), call.to_bytes()) for call in calls]


def encode_steps(steps: list[TraceSpan]) -> list[tuple[bytes, bytes]]:
    """(Kafka key, record value) of each trace step: a trace's steps share a partition."""
    return [(topics.span_key(step.app_id, step.trace_id), step.to_bytes()) for step in steps]


def encode_scores(scores: list[Score]) -> list[tuple[bytes, bytes]]:
    return [(topics.event_key(score.app_id, score.model), score.to_bytes()) for score in scores]
