"""Which calls the evaluator LLM rates: a share per app, decided from the event id so every
replay of a call decides the same; calls flagged toxic are always rated."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field


def _unit(event_id: uuid.UUID) -> float:
    """A number in [0, 1) that is a fixed function of the event id."""
    return int.from_bytes(hashlib.blake2b(event_id.bytes, digest_size=8).digest(), "big") / 2**64


@dataclass(frozen=True)
class Sampler:
    default_rate: float = 1.0
    app_rates: dict[str, float] = field(default_factory=dict)

    def rate(self, app_id: str) -> float:
        return self.app_rates.get(app_id, self.default_rate)

    def wants(self, app_id: str, event_id: uuid.UUID, *, flagged: bool = False) -> bool:
        return flagged or _unit(event_id) < self.rate(app_id)
