"""Progress as Retrain status events: on llm.retrain.status when a Kafka bootstrap is
configured (LOOKOUT_KAFKA_BOOTSTRAP or --bootstrap), else one JSON line per event on
stdout, which the local launcher relays."""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from lookout.core import kafka, topics
from lookout.core.events import Retrain, RetrainState, now_utc
from lookout.core.settings import CommonSettings


@dataclass
class RunInfo:
    run_id: uuid.UUID
    app_id: str
    model: str
    rule: str = ""
    dataset_uri: str | None = None
    dataset_hash: str | None = None


class StatusReporter:
    def __init__(self, run: RunInfo, settings: CommonSettings | None = None):
        self.run = run
        self.settings = settings
        self._kafka: _KafkaSink | None = None

    def __enter__(self) -> StatusReporter:
        if self.settings is not None:
            self._kafka = _KafkaSink(self.settings)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._kafka is not None:
            self._kafka.close()
            self._kafka = None

    def report(self, status: RetrainState, message: str = "", evidence: dict[str, Any] | None = None,
               model_version: str | None = None) -> Retrain:
        event = Retrain(
            run_id=self.run.run_id, ts=now_utc(), app_id=self.run.app_id, model=self.run.model, status=status,
            rule=self.run.rule, evidence=evidence or {}, dataset_uri=self.run.dataset_uri,
            dataset_hash=self.run.dataset_hash, model_version=model_version, message=message or None,
        )
        if self._kafka is None:
            sys.stdout.write(event.to_bytes().decode() + "\n")
            sys.stdout.flush()
        else:
            self._kafka.send(event.to_bytes(), key=str(self.run.run_id).encode())
        return event


class _KafkaSink:
    """A producer on llm.retrain.status, driven from this synchronous job by its own loop."""

    def __init__(self, settings: CommonSettings) -> None:
        self._topic = topics.resolve(settings.topic_prefix, topics.RETRAIN_STATUS)
        self._loop = asyncio.new_event_loop()
        try:
            self._producer = self._loop.run_until_complete(kafka.start_producer(settings))
        except BaseException:
            self._loop.close()
            raise

    def send(self, value: bytes, key: bytes) -> None:
        self._loop.run_until_complete(self._producer.send_and_wait(self._topic, value, key=key))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._producer.stop())
        finally:
            self._loop.close()
