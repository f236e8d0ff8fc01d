"""Uniform sampling when traffic outgrows the encoder.

Each consumer batch may embed as many texts as the encoder manages in the time since the
previous batch. Past that, the batch keeps a uniform random subset of its events, the same
share of every stream, so each window stays an unbiased sample of its traffic. Which
events are kept is decided by a hash of the event id: uniform, and the same on a replay
of the same batch."""

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
class EncoderBudget:
    """Texts the encoder may take now. `fixed` (texts/s) wins over the measured rate; the
    measured rate starts at `initial`, about what all-MiniLM-L6-v2 does on two CPU cores."""

    fixed: float = 0.0
    initial: float = 200.0
    # A batch after a long quiet spell may not embed an unbounded backlog at once.
    max_interval_s: float = 5.0
    min_interval_s: float = 0.2

    def texts_for(self, elapsed_s: float, measured_texts_per_s: float) -> int:
        rate = self.fixed or measured_texts_per_s or self.initial
        interval = min(max(elapsed_s, self.min_interval_s), self.max_interval_s)
        return max(int(rate * interval), 1)
