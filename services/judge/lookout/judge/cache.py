"""The judgment cache: an in-memory LRU, keyed by what decides a verdict (rubric and its
judged version, judge model, and the call's data block as the prompt carries it: input,
output, context, reference, after the token budget). Not the messages themselves: their
fence nonce is new on every request.

In memory, so it is per process and empty after a restart; it saves repeat requests for
identical calls and makes a batch retried after an endpoint outage cheap."""

from __future__ import annotations

import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from .rubrics import Rubric


def cache_key(rubric: Rubric, model: str, data: str) -> bytes:
    # The wording and scale too: an edited rubric whose version was not bumped is still
    # asked afresh.
    spec = [rubric.name, rubric.judged_version, rubric.instructions, rubric.low, rubric.high]
    return hashlib.sha256(orjson.dumps([*spec, model, data])).digest()


@dataclass(frozen=True)
class CachedJudgment:
    score: int
    explanation: str
    cost_usd: float
    # The call whose judgment paid for the request: a replay of that call keeps its cost on
    # the score (so the stored row does not change), any other call gets it for free.
    paid_by: uuid.UUID


@dataclass
class JudgmentCache:
    size: int = 10_000
    _items: OrderedDict[bytes, CachedJudgment] = field(default_factory=OrderedDict)

    def get(self, key: bytes) -> CachedJudgment | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: bytes, value: CachedJudgment) -> None:
        if self.size <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
