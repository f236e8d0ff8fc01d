"""Where the evaluator reads the time: the wall clock, or one a test sets (so a 5 minute
`for` takes no 5 minutes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware time")
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> datetime:
        self.at += timedelta(seconds=seconds)
        return self.at

    def set(self, at: datetime) -> datetime:
        self.at = at
        return at
