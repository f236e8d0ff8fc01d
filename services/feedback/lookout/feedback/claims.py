"""Who holds which review task: a claim log on one Kafka partition.

ClickHouse has no row locks, so claims are not decided there. Every claim, release, skip
and completion is a record on a single-partition topic; every feedback instance folds the
whole log in offset order with the same pure rules (`fold`), so all instances reach the
same verdict for every record without talking to each other. A request is answered once
this instance's fold has reached the request's own record: the log's total order is the
lock.

Rules, applied to a record at its position in the log, with the record's own timestamp:
- claim: wins unless the task is done or another reviewer's lease is still live at that
  timestamp; the winner holds it until ts + lease.
- release / skip: ends the lease when the sender holds it; skip also hides the task from
  that reviewer for good.
- done: wins only for the current holder of a live lease and only once per reviewer, so
  a task is completed exactly `need` times (1; 2 for the overlap share, which the first
  record of a task fixes), by different reviewers, one holder at a time, even when a
  lease expired and someone else took it over.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from lookout.core import kafka, topics
from lookout.core.settings import CommonSettings
from lookout.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Op = Literal["claim", "release", "skip", "done"]


@dataclass
class TaskState:
    holder: str | None = None
    expires_ms: int = 0
    done: bool = False
    need: int = 0
    done_by: set[str] = field(default_factory=set)
    skipped_by: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Verdict:
    won: bool
    reason: str = ""
    expires_ms: int = 0


@dataclass
class ClaimState:
    tasks: dict[str, TaskState] = field(default_factory=dict)
    # reviewer -> task they hold (the latest won claim); used to resume after a reload.
    held: dict[str, str] = field(default_factory=dict)

    def apply(self, op: str, task: str, reviewer: str, ts_ms: int, lease_ms: int, need: int = 1) -> Verdict:
        state = self.tasks.setdefault(task, TaskState())
        state.need = state.need or max(1, need)
        live = state.holder is not None and state.expires_ms > ts_ms
        if op == "claim":
            if state.done:
                return Verdict(False, "already reviewed")
            if reviewer in state.done_by:
                return Verdict(False, "already reviewed by this reviewer")
            if live and state.holder != reviewer:
                return Verdict(False, "held by another reviewer")
            state.holder, state.expires_ms = reviewer, ts_ms + lease_ms
            self.held[reviewer] = task
            return Verdict(True, expires_ms=state.expires_ms)
        if op in ("release", "skip"):
            if op == "skip":
                state.skipped_by.add(reviewer)
            if state.holder == reviewer:
                state.holder, state.expires_ms = None, 0
                self.held.pop(reviewer, None)
                return Verdict(True)
            return Verdict(op == "skip", "" if op == "skip" else "not held by this reviewer")
        if op == "done":
            if state.done or reviewer in state.done_by:
                return Verdict(False, "already reviewed")
            if not live or state.holder != reviewer:
                return Verdict(False, "the lease expired or is held by another reviewer")
            state.done_by.add(reviewer)
            state.done = len(state.done_by) >= state.need
            state.holder, state.expires_ms = None, 0
            self.held.pop(reviewer, None)
            return Verdict(True)
        return Verdict(False, f"unknown op {op!r}")

    def available(self, task: str, reviewer: str, now_ms: int) -> bool:
        """Whether `reviewer` may try to claim `task` now (a hint; the log decides)."""
        state = self.tasks.get(task)
        if state is None:
            return True
        if state.done or reviewer in state.skipped_by or reviewer in state.done_by:
            return False
        return state.holder in (None, reviewer) or state.expires_ms <= now_ms

    def holding(self, reviewer: str, now_ms: int) -> str | None:
        task = self.held.get(reviewer)
        if task is None:
            return None
        state = self.tasks[task]
        return task if state.holder == reviewer and state.expires_ms > now_ms and not state.done else None


class ClaimTimeout(Exception):
    """The claim log did not answer in time: HTTP 503."""


class ClaimLog:
    def __init__(self, settings: CommonSettings, base_topic: str, lease_s: float, timeout_s: float = 15.0):
        self.settings = settings
        self.base_topic = base_topic
        self.topic = topics.resolve(settings.topic_prefix, base_topic)
        self.lease_ms = int(lease_s * 1000)
        self.timeout_s = timeout_s
        self.state = ClaimState()
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._waiting: dict[str, asyncio.Future] = {}
        self._caught_up = asyncio.Event()

    async def start(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        # One partition: the total order of the log is what makes claims exclusive.
        await kafka.ensure_topics(self.settings.model_copy(update={"kafka_topic_partitions": 1}), [self.base_topic])
        self._consumer = consumer = kafka.make_consumer(self.settings, None, fetch_max_wait_ms=20)
        await consumer.start()
        tp = TopicPartition(self.topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        self._task = asyncio.create_task(self._run(consumer, tp, end), name="lookout-claim-log")
        await asyncio.wait_for(self._caught_up.wait(), 120)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def ready(self) -> str | None:
        if self._task is None:
            return "claim log not started"
        if self._task.done():
            return "claim log reader stopped"
        return None

    async def _run(self, consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> None:
        if end == 0:
            self._caught_up.set()
        while True:
            batches = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
            for record in batches.get(tp, []):
                self._fold(record.value)
                if record.offset + 1 >= end:
                    self._caught_up.set()

    def _fold(self, value: bytes | None) -> None:
        try:
            if value is None:
                raise ValueError("a record without a value")
            r = orjson.loads(value)
            verdict = self.state.apply(r["op"], r["task"], r["reviewer"], int(r["ts"]), int(r["lease_ms"]),
                                       int(r.get("need", 1)))
        except Exception as exc:  # an unreadable record must not stop every claim
            log.error("unreadable claim record skipped: %s", exc)
            return
        waiter = self._waiting.pop(r.get("req", ""), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(verdict)

    async def request(self, op: Op, task: uuid.UUID | str, reviewer: str, need: int = 1) -> Verdict:
        """Append a record and wait for this instance's fold to reach it."""
        if self._producer is None:
            raise RuntimeError("the claim log has not started: no producer")
        req = uuid.uuid4().hex
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[req] = waiter
        record = {
            "req": req, "op": op, "task": str(task), "reviewer": reviewer,
            "ts": time.time_ns() // 1_000_000, "lease_ms": self.lease_ms, "need": need,
        }
        try:
            ack = await self._producer.send(self.topic, orjson.dumps(record), partition=0)
            await asyncio.wait_for(ack, self.timeout_s)
            return await asyncio.wait_for(waiter, self.timeout_s)
        except TimeoutError:
            raise ClaimTimeout("the claim log did not answer in time") from None
        finally:
            self._waiting.pop(req, None)
