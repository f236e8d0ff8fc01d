"""Which calls the evaluator LLM rates: a share per app, calls flagged toxic always.

The decision is HMAC-SHA256 of the event id under a server-side secret. The event id is
chosen by the client, so a public function of it (a plain hash) would let a client pick
ids that are always judged (spending the judge budget on its own calls, or steering which
calls get rated); without the secret no id is likelier to be judged than another. Keyed,
it is still a fixed function of the id, so every replay of a call, on any replica that
shares the secret, decides the same."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field

MIN_SECRET_CHARS = 16


class SamplingError(ValueError):
    pass


@dataclass(frozen=True)
class Sampler:
    default_rate: float = 1.0
    app_rates: dict[str, float] = field(default_factory=dict)
    secret: bytes = b""

    def __post_init__(self) -> None:
        fractional = [r for r in (self.default_rate, *self.app_rates.values()) if 0 < r < 1]
        if fractional and len(self.secret) < MIN_SECRET_CHARS:
            raise SamplingError(
                "LOOKOUT_JUDGE_SAMPLING_SECRET must be set (at least 16 characters, the same on every judge "
                "replica) when a sample rate is between 0 and 1: sampling from the event id alone lets "
                "clients choose ids that are always judged"
            )

    def rate(self, app_id: str) -> float:
        return self.app_rates.get(app_id, self.default_rate)

    def unit(self, event_id: uuid.UUID) -> float:
        """A number in [0, 1), a fixed function of the event id under the secret."""
        digest = hmac.new(self.secret, event_id.bytes, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def wants(self, app_id: str, event_id: uuid.UUID, *, flagged: bool = False) -> bool:
        if flagged:
            return True
        rate = self.rate(app_id)
        if rate >= 1 or rate <= 0:
            return rate >= 1
        return self.unit(event_id) < rate
