"""Calls rated down are always judged: thumbs-down records on llm.feedback bring their call
to the evaluator LLM whatever the sampling rate, once each.

The feedback record names its call (app_id, event_id) but carries no text. The judge gets
the text without a read per record:
- RecentCalls: the calls the judge's own llm.events consumer saw lately, bounded by count
  and by characters. Thumbs come seconds to minutes after a call, so with one judge (the
  embedded stack, a small deployment) nearly every rated call is found here.
- else one batched ClickHouse read for all the batch's calls that are not: calls older
  than the buffer, or on llm.events partitions another judge replica consumes (llm.events
  is keyed by app and model, llm.feedback by call, so a replica's two assignments differ).

Once each: a call is not judged again when
- sampling picks it anyway (the llm.events path judges it, deterministically by event id),
- this process already judged it (a bounded set both paths fill), or
- its judge scores are stored (one batched read of the scores table per batch: this is
  what keeps a restart or a replay of llm.feedback from paying twice).
Scores of a rated-down judgment are the same records (same ids) as a sampled one's.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC

import orjson
from clickhouse_connect.driver.client import Client

from lookout.core.dead_letters import Batch
from lookout.core.events import Feedback, LlmCall, Message, Score
from lookout.core.session import Session

from . import metrics
from .sampling import Sampler

log = logging.getLogger(__name__)

Key = tuple[str, uuid.UUID]  # (app_id, event_id)


def _size(call: LlmCall) -> int:
    return len(call.output or "") + len(call.prompt or "") + sum(len(m.content or "") for m in call.input) + sum(
        len(c) for c in call.context or []) + len(call.reference or "")


class RecentCalls:
    """The latest calls by (app_id, event_id), oldest dropped first beyond `max_calls`
    calls or `max_chars` characters of text."""

    def __init__(self, max_calls: int, max_chars: int):
        self.max_calls, self.max_chars = max_calls, max_chars
        self._calls: OrderedDict[Key, tuple[LlmCall, int]] = OrderedDict()
        self.chars = 0

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, calls: Iterable[LlmCall]) -> None:
        if self.max_calls <= 0:
            return
        for call in calls:
            key = (call.app_id, call.event_id)
            if key in self._calls:
                self._calls.move_to_end(key)
                continue
            size = _size(call)
            if size > self.max_chars:
                continue  # would evict everything else; the ClickHouse read finds it
            self._calls[key] = (call, size)
            self.chars += size
            while len(self._calls) > self.max_calls or self.chars > self.max_chars:
                _, (_, dropped) = self._calls.popitem(last=False)
                self.chars -= dropped

    def get(self, key: Key) -> LlmCall | None:
        found = self._calls.get(key)
        return found[0] if found else None


class JudgedSet:
    """Calls this process sent to the evaluator (bounded: the oldest are forgotten first;
    the stored scores cover those)."""

    def __init__(self, max_items: int = 100_000):
        self.max_items = max_items
        self._keys: OrderedDict[Key, None] = OrderedDict()

    def add(self, key: Key) -> None:
        self._keys[key] = None
        self._keys.move_to_end(key)
        while len(self._keys) > self.max_items:
            self._keys.popitem(last=False)

    def __contains__(self, key: Key) -> bool:
        return key in self._keys


_CALL_COLUMNS = ("event_id, ts, app_id, environment, provider, model, model_version, prompt_version, input, "
                 "prompt, output, status, context, reference")


def stored_calls(client: Client, keys: list[Key]) -> dict[Key, LlmCall]:
    """The stored calls among `keys`, in one query (blocking: run it in a thread)."""
    if not keys:
        return {}
    result = client.query(
        f"SELECT {_CALL_COLUMNS} FROM llm_calls FINAL WHERE app_id IN {{apps:Array(String)}} "
        "AND event_id IN {ids:Array(UUID)}",
        parameters={"apps": sorted({a for a, _ in keys}), "ids": sorted({str(e) for _, e in keys})})
    wanted = set(keys)
    out: dict[Key, LlmCall] = {}
    for row in result.result_rows:
        r = dict(zip(result.column_names, row, strict=True))
        key = (r["app_id"], r["event_id"])
        if key not in wanted:
            continue
        ts = r["ts"] if r["ts"].tzinfo else r["ts"].replace(tzinfo=UTC)  # the column is UTC
        out[key] = LlmCall(
            event_id=r["event_id"], ts=ts, app_id=r["app_id"], environment=r["environment"] or "production",
            provider=r["provider"] or "unknown", model=r["model"], model_version=r["model_version"] or None,
            prompt_version=r["prompt_version"] or None,
            input=[Message(**m) for m in (orjson.loads(r["input"]) if r["input"] else [])],
            prompt=r["prompt"] or None, output=r["output"] or None, status=r["status"] or "ok",
            context=list(r["context"]) or None, reference=r["reference"] or None)
    return out


def judged_in_store(client: Client, keys: list[Key]) -> set[Key]:
    """Which of `keys` already have an evaluator-LLM score stored (one query; blocking)."""
    if not keys:
        return set()
    rows = client.query(
        "SELECT DISTINCT app_id, event_id FROM scores WHERE app_id IN {apps:Array(String)} "
        "AND event_id IN {ids:Array(UUID)} AND source = 'llm_judge'",
        parameters={"apps": sorted({a for a, _ in keys}), "ids": sorted({str(e) for _, e in keys})}).result_rows
    return {(a, e) for a, e in rows} & set(keys)


class RatedDownJudge:
    """The consumer handler on llm.feedback: judges each rated-down call once. Unreadable
    records never reach it: the ConsumerWorker dead-letters them."""

    def __init__(self, *, sampler: Sampler, recent: RecentCalls, judged: JudgedSet,
                 judge_calls: Callable[[list[LlmCall]], Awaitable[list[Score]]],
                 send: Callable[[list[Score]], Awaitable[None]], session: Callable[[], Awaitable[Session]],
                 lookup_tries: int = 3, lookup_wait_s: float = 1.0):
        self.sampler, self.recent, self.judged = sampler, recent, judged
        self.judge_calls, self.send, self.session = judge_calls, send, session
        self.lookup_tries, self.lookup_wait_s = lookup_tries, lookup_wait_s

    async def handle(self, batch: Batch) -> None:
        keys: list[Key] = []
        for f in batch.of(Feedback):
            if f.thumbs != -1:
                continue
            key = (f.app_id, f.event_id)
            if key in keys:
                continue
            if key in self.judged:
                metrics.RATED_DOWN.labels("already_judged").inc()
            elif self.sampler.wants(f.app_id, f.event_id):
                metrics.RATED_DOWN.labels("sampled").inc()  # the llm.events path judges it
            else:
                keys.append(key)
        if not keys:
            return
        session = await self.session()
        stored = await session.arun(judged_in_store, keys)
        metrics.RATED_DOWN.labels("already_judged").inc(len(stored))
        keys = [k for k in keys if k not in stored]
        calls = {k: c for k in keys if (c := self.recent.get(k)) is not None}
        for attempt in range(self.lookup_tries):
            missing = [k for k in keys if k not in calls]
            if not missing:
                break
            if attempt:  # a call the sink has not stored yet: give it a moment
                await asyncio.sleep(self.lookup_wait_s)
            calls.update(await session.arun(stored_calls, missing))
        for key in keys:
            if key not in calls:
                metrics.RATED_DOWN.labels("call_not_found").inc()
                log.warning("thumbs down on call %s of %s: call not found (recent buffer, store); not judged",
                            key[1], key[0])
        todo = [calls[k] for k in keys if k in calls]
        if not todo:
            return
        scores = await self.judge_calls(todo)
        await self.send(scores)  # acknowledged before the batch is committed
        # A call with no score (budget spent, every reply invalid) may be judged on a later thumbs.
        scored = {s.event_id for s in scores}
        for call in todo:
            if call.event_id in scored:
                self.judged.add((call.app_id, call.event_id))
        metrics.RATED_DOWN.labels("judged").inc(sum(c.event_id in scored for c in todo))
