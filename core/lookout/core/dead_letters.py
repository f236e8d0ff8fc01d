"""The one policy for a record a consumer cannot read or handle: a DeadLetter on llm.dlq
with the error and the record's topic, partition, offset, key and payload; the rest of the
batch goes on.

A dead letter's id is its record's position (topic/partition/offset), so a replayed batch,
or a second service meeting the same bad record, writes the same dead letter, and the
sink's ReplacingMergeTree keeps one. A record on llm.dlq itself that cannot be read is
logged and counted, never re-queued (that would loop). Payloads are cut to
`max_payload_bytes` so a dead letter of a record near the broker's size limit still fits
(base64 adds a third); the error says how much was kept.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import Counter
from pydantic import BaseModel

from . import ids, topics
from .events import TOPIC_SCHEMAS, DeadLetter

log = logging.getLogger(__name__)

DEAD = Counter("lookout_dead_letters_total", "Records sent to llm.dlq", ["service", "topic"])
LOST = Counter("lookout_unreadable_dead_letters_total", "Unreadable records on llm.dlq itself (dropped)", ["service"])

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_ERROR_CHARS = 10_000

M = TypeVar("M", bound=BaseModel)


def dlq_id(topic: str, partition: int, offset: int) -> Any:
    """The id of the dead letter of the record at this position (the sink's since 0001)."""
    return ids.uuid_from(f"{topic}/{partition}/{offset}")


def dead_letter(
    record: ConsumerRecord, error: BaseException | str, service: str, *, max_payload_bytes: int = MAX_PAYLOAD_BYTES
) -> DeadLetter:
    """The DeadLetter of one record, with the error that stopped it."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    payload = record.value or b""
    if len(payload) > max_payload_bytes:
        text = f"{text} (payload cut to its first {max_payload_bytes} of {len(payload)} bytes)"
        payload = payload[:max_payload_bytes]
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return DeadLetter(
        schema="dead_letter/1",
        dlq_id=dlq_id(record.topic, record.partition, record.offset),
        ts=datetime.now(UTC),
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key.decode("utf-8", "replace") if record.key else None,
        payload_b64=base64.b64encode(payload).decode(),
        error=text,
        service=service,
    )


@dataclass(frozen=True)
class Decoded(Generic[M]):
    """A readable record: where it came from and what it says."""

    record: ConsumerRecord
    topic: str  # base name, without LOOKOUT_TOPIC_PREFIX
    message: M


@dataclass
class Batch:
    """What a consumer handler gets: every record, the readable ones decoded, and the dead
    letters so far (unreadable records; add more with dead_letter())."""

    records: list[ConsumerRecord]
    messages: list[Decoded[Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    service: str = ""
    topic_prefix: str = ""
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    lost: int = 0  # unreadable records on llm.dlq itself, dropped

    def of(self, kind: type[M]) -> list[M]:
        """The decoded messages of one schema, in order."""
        return [d.message for d in self.messages if isinstance(d.message, kind)]

    def dead_letter(self, record: ConsumerRecord, error: BaseException | str) -> None:
        """A readable record that cannot be handled (e.g. a row ClickHouse refuses): it goes
        to llm.dlq with the batch, unless it came from llm.dlq itself."""
        if topics.base_name(self.topic_prefix, record.topic) == topics.DLQ:
            self.lost += 1
            log.error("%s: dead letter %s[%d]@%d dropped: %s", self.service, record.topic, record.partition,
                      record.offset, error)
            return
        self.dead.append(dead_letter(record, error, self.service, max_payload_bytes=self.max_payload_bytes))


@dataclass
class RecordDecoder:
    """Decodes a batch by topic with the wire schemas; what does not decode is dead-lettered."""

    service: str
    topic_prefix: str = ""
    schemas: Mapping[str, type[BaseModel]] = field(default_factory=lambda: dict(TOPIC_SCHEMAS))
    max_payload_bytes: int = MAX_PAYLOAD_BYTES

    def check(self, base_topics: Iterable[str]) -> None:
        missing = [t for t in base_topics if t not in self.schemas]
        if missing:
            raise ValueError(f"no wire schema for topic(s) {', '.join(missing)}: pass schemas= or decode=False")

    def decode(self, records: Sequence[ConsumerRecord]) -> Batch:
        batch = Batch(list(records), service=self.service, topic_prefix=self.topic_prefix,
                      max_payload_bytes=self.max_payload_bytes)
        for record in records:
            base = topics.base_name(self.topic_prefix, record.topic)
            schema = self.schemas.get(base)
            try:
                if schema is None:
                    raise ValueError(f"no wire schema for topic {base}")
                if record.value is None:
                    raise ValueError("record has no value (a tombstone)")
                message = schema.from_bytes(record.value)  # type: ignore[attr-defined]
            except Exception as exc:
                batch.dead_letter(record, exc)
                continue
            batch.messages.append(Decoded(record, base, message))
        return batch


async def send(producer: AIOKafkaProducer, topic_prefix: str, batch: Batch) -> None:
    """Produce the batch's dead letters and wait for every ack (before the batch commits)."""
    if batch.lost:
        LOST.labels(batch.service).inc(batch.lost)
    if not batch.dead:
        return
    dlq = topics.resolve(topic_prefix, topics.DLQ)
    futures = [await producer.send(dlq, d.to_bytes(), key=d.source_topic.encode()) for d in batch.dead]
    for future in futures:
        await future
    for d in batch.dead:
        DEAD.labels(batch.service, topics.base_name(topic_prefix, d.source_topic)).inc()
    log.warning("%s: %d record(s) sent to %s; first: %s[%d]@%d: %s", batch.service, len(batch.dead), dlq,
                batch.dead[0].source_topic, batch.dead[0].partition, batch.dead[0].offset, batch.dead[0].error[:300])
