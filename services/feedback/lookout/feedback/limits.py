"""Request limits held in memory: token buckets (votes per feedback token and per API key)
and failure counters (reviewer logins per account and per client address).

Both are per instance: behind a load balancer with N feedback instances a client gets up to
N times each limit, which still bounds it. Each keeps at most `max_keys` keys (the least
recently used go first), so a flood of distinct keys costs bounded memory; an evicted key
starts afresh, which only matters under a flood that the other limits already bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class TokenBuckets:
    """`burst` requests at once, then `rate` per second, per key."""

    rate: float
    burst: float
    max_keys: int = 100_000
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None) -> float:
        """0 when the request may go ahead (one token taken), else the seconds until it may."""
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


def retry_after(wait_s: float) -> str:
    """A Retry-After value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


@dataclass
class _Failures:
    times: list[float] = field(default_factory=list)
    locked_until: float = 0.0


@dataclass
class FailureCounter:
    """Failures per key in a sliding window; `limit` of them lock the key for `lockout_s`."""

    limit: int
    window_s: float
    lockout_s: float
    max_keys: int = 100_000
    _keys: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def locked_for(self, key: str, now: float | None = None) -> float:
        """Seconds the key stays locked (0: not locked)."""
        now = time.monotonic() if now is None else now
        entry = self._keys.get(key)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def fail(self, key: str, now: float | None = None) -> float:
        """Count a failure; returns the seconds the key is now locked for (0: not locked)."""
        now = time.monotonic() if now is None else now
        entry = self._keys.pop(key, None) or _Failures()
        entry.times = [t for t in entry.times if t > now - self.window_s][-self.limit:]
        entry.times.append(now)
        if len(entry.times) >= self.limit:
            entry.locked_until = now + self.lockout_s
            entry.times = []
        self._keys[key] = entry
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
        return max(0.0, entry.locked_until - now)

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)
