"""Producing Feedback to llm.feedback, keyed by event_id; callers answer only after the ack."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter

from lookout.core import topics
from lookout.core.events import Feedback

PRODUCED = Counter("lookout_feedback_produced_total", "Feedback records acked by Kafka", ["source"])


class Unavailable(Exception):
    """Kafka did not take the record: HTTP 503, the client retries."""


class FeedbackPublisher:
    def __init__(self, producer: AIOKafkaProducer, topic_prefix: str, timeout_s: float):
        self._producer = producer
        self._topic = topics.resolve(topic_prefix, topics.FEEDBACK)
        self._timeout = timeout_s

    async def publish(self, feedback: Feedback) -> None:
        try:
            ack = await self._producer.send(self._topic, feedback.to_bytes(), key=str(feedback.event_id).encode())
            await asyncio.wait_for(ack, self._timeout)
        except TimeoutError:
            raise Unavailable(f"Kafka did not acknowledge within {self._timeout:g}s") from None
        except Exception as exc:  # aiokafka raises several types for a broker that is away
            raise Unavailable(f"Kafka refused the record: {type(exc).__name__}") from None
        PRODUCED.labels(feedback.source).inc()
