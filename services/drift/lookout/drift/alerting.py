"""M-consecutive-window alerting: a test crossing its threshold in one window is
recorded; the stream is drifted on that signal only once it crossed in M windows in a
row, so one noisy window pages nobody."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Streak:
    needed: int

    def step(self, previous: int, crossed: bool) -> tuple[int, bool]:
        """(new streak length, drifted)."""
        streak = previous + 1 if crossed else 0
        return streak, streak >= self.needed
