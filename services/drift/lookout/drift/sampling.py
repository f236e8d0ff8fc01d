"""Sampling by consumer lag: embed everything while the consumer keeps up, sample only
when it falls behind.

While the newest event of a batch is at most `budget_s` old (the consumer lag, from the
Kafka record timestamps), every event is embedded. Beyond that, a batch embeds what the
encoder manages in `headroom` of the time its events took to arrive, so the worker keeps
pace with the traffic and the lag comes back under the budget; the rest is a uniform
subset, chosen by a hash of the event id (the same share of every stream, the same on a
replay). Signals that need no encoder (lengths, tokens, empty/refused share) use every
event either way; each result records the share that was embedded."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass


def rank(event_id: uuid.UUID, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.bytes, digest_size=8, salt=seed.to_bytes(16, "little")).digest())


def uniform_subset(event_ids: Sequence[uuid.UUID], keep: int, seed: int = 0) -> list[int]:
    """Indices of `keep` events chosen uniformly without replacement, in input order."""
    if keep >= len(event_ids):
        return list(range(len(event_ids)))
    order = sorted(range(len(event_ids)), key=lambda i: rank(event_ids[i], seed))
    return sorted(order[: max(keep, 0)])


@dataclass
class LagSampler:
    """How many events of a batch to embed. `fixed_texts_per_s` (texts/s) wins over the
    measured encoder rate; the measured rate starts at `initial`."""

    budget_s: float = 60.0
    fixed_texts_per_s: float = 0.0
    initial: float = 100.0
    headroom: float = 0.8
    min_span_s: float = 0.2

    def plan(self, events: int, lag_s: float, span_s: float, texts_per_event: float,
             measured_texts_per_s: float) -> int:
        if lag_s <= self.budget_s or events == 0:
            return events
        rate = self.fixed_texts_per_s or measured_texts_per_s or self.initial
        capacity = rate / max(texts_per_event, 1.0) * self.headroom * max(span_s, self.min_span_s)
        return max(1, min(events, int(capacity)))
