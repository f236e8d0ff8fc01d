"""What bounds the evaluator LLM's use: requests and tokens per minute, and a daily budget."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from . import metrics


@dataclass
class _Slot:
    at: float
    tokens: int


@dataclass
class RateLimiter:
    """Sliding one-minute window over requests and tokens. A request reserves its estimated
    tokens when it starts and is settled to the tokens the endpoint reported."""

    rpm: int | None = None
    tpm: int | None = None
    clock: Callable[[], float] = time.monotonic
    window_s: float = 60.0
    _slots: deque[_Slot] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _wait_needed(self, tokens: int) -> float:
        now = self.clock()
        while self._slots and now - self._slots[0].at >= self.window_s:
            self._slots.popleft()
        if not self._slots:
            return 0.0  # a request larger than the whole TPM still goes, alone in its window
        over_rpm = self.rpm is not None and len(self._slots) >= self.rpm
        over_tpm = self.tpm is not None and sum(s.tokens for s in self._slots) + tokens > self.tpm
        if not (over_rpm or over_tpm):
            return 0.0
        return self._slots[0].at + self.window_s - now

    async def acquire(self, tokens: int) -> _Slot | None:
        if self.rpm is None and self.tpm is None:
            return None
        async with self._lock:  # one waiter at a time: first come, first served
            # A timed wait, not an event: what frees a slot is the clock, not another task.
            while (wait := self._wait_needed(tokens)) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            slot = _Slot(self.clock(), tokens)
            self._slots.append(slot)
            return slot

    @staticmethod
    def settle(slot: _Slot | None, tokens: int | None) -> None:
        if slot is not None and tokens is not None:
            slot.tokens = tokens


@dataclass
class DailyBudget:
    """Judge spend per UTC day. Once today's spend reaches the limit, judging pauses until
    the day changes. Requests already in flight still count, so the overshoot is at most
    the concurrency's worth of requests."""

    limit_usd: float | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _day: date | None = None
    _spent: float = 0.0

    def _roll(self) -> None:
        today = self.clock().astimezone(UTC).date()
        if today != self._day:
            self._day, self._spent = today, 0.0
            metrics.SPENT_TODAY.set(0.0)

    def add(self, usd: float) -> None:
        self._roll()
        self._spent += usd
        metrics.SPENT_TODAY.set(self._spent)

    @property
    def spent_today(self) -> float:
        self._roll()
        return self._spent

    def exhausted(self) -> bool:
        paused = self.limit_usd is not None and self.spent_today >= self.limit_usd
        metrics.BUDGET_PAUSED.set(1 if paused else 0)
        return paused
