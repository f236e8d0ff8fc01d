"""Per-stream window state: the reference, the current window, and when to test.

- The reference is fixed until reset (first_n, pinned) or is the previous tested window
  (previous_period, where windows tumble so reference and current never overlap).
- The current window holds the last N events, no older than T minutes of event time, and
  is tested every K new events or every S seconds of event time. Event time, not the wall
  clock, so a replay after a crash cuts the same windows and yields the same results.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from .features import Sample

Policy = Literal["first_n", "previous_period", "pinned"]


@dataclass(frozen=True)
class StreamKey:
    app_id: str
    model: str
    prompt_version: str = ""

    def __str__(self) -> str:
        base = f"{self.app_id}/{self.model}"
        return f"{base}/{self.prompt_version}" if self.prompt_version else base

    @property
    def kafka_key(self) -> bytes:
        return f"{self.app_id}/{self.model}".encode()


@dataclass(frozen=True)
class WindowConfig:
    policy: Policy = "first_n"
    reference_size: int = 500
    window_size: int = 500
    window_minutes: float = 0.0
    test_every_events: int = 250
    test_every_seconds: float = 0.0
    min_window_events: int = 50


@dataclass
class Window:
    """One window handed to the detector: immutable copies of both sides."""

    key: StreamKey
    reference_id: str
    index: int
    reference: list[Sample]
    current: list[Sample]
    seen: int  # events of the stream since the previous test, sampled or not
    admitted: int  # of those, the ones sampled into the window
    # Where the reference's samples are stored (StreamState.reference_source), recorded
    # with the window so a report can reload exactly this reference later.
    reference_source: str = "stream"

    @property
    def start(self) -> datetime:
        return min(s.ts for s in self.current)

    @property
    def end(self) -> datetime:
        return max(s.ts for s in self.current)


def new_reference_id(key: StreamKey, policy: str, tag: str) -> str:
    return f"{policy}:{uuid.uuid5(uuid.NAMESPACE_URL, f'lookout-drift/{key}/{tag}').hex[:12]}"


@dataclass
class StreamState:
    key: StreamKey
    config: WindowConfig
    policy: Policy = "first_n"
    generation: int = 0  # bumps on every reset; part of the reference id
    reference_id: str = ""
    reference: list[Sample] = field(default_factory=list)
    # first_n (and previous_period before its first window) collect the reference from the
    # stream; pinned references arrive whole.
    collecting: bool = True
    current: deque[Sample] = field(default_factory=deque)
    index: int = 0  # windows tested under this reference
    new_since_test: int = 0
    seen_since_test: int = 0
    last_test_ts: datetime | None = None
    streaks: dict[str, int] = field(default_factory=dict)  # signal -> consecutive crossed windows
    last_reset: int = 0  # version of the last reset request applied
    # Where the reference samples are stored: 'stream' (events of the stream) or
    # 'upload:<id>' (a set sent to the API).
    reference_source: str = "stream"

    def __post_init__(self) -> None:
        if not self.reference_id:
            self.reference_id = new_reference_id(self.key, self.policy, str(self.generation))

    def ids(self) -> set[uuid.UUID]:
        return {s.event_id for s in self.reference} | {s.event_id for s in self.current}

    def reset(self, policy: Policy, reference: list[Sample] | None = None, version: int = 0) -> None:
        self.policy = policy
        self.generation += 1
        self.reference_id = new_reference_id(self.key, policy, str(self.generation))
        self.reference = list(reference or [])[-self.config.reference_size:]
        # An empty pinned set (a time range with no stored events) falls back to collecting.
        self.collecting = not self.reference
        self.current.clear()
        self.index = 0
        self.new_since_test = self.seen_since_test = 0
        self.last_test_ts = None
        self.streaks.clear()
        self.last_reset = max(self.last_reset, version)

    def observe_unsampled(self, count: int) -> None:
        self.seen_since_test += count

    def admit(self, sample: Sample) -> Window | None:
        """Add one sampled event; returns the window to test when one is due."""
        self.seen_since_test += 1
        if self.collecting:
            self.reference.append(sample)
            if len(self.reference) >= self.config.reference_size:
                self.collecting = False
                self.last_test_ts = sample.ts
                self.seen_since_test = 0
            return None
        self.current.append(sample)
        self.new_since_test += 1
        self._trim(sample.ts)
        if not self._due(sample.ts):
            return None
        window = Window(self.key, self.reference_id, self.index, list(self.reference), list(self.current),
                        self.seen_since_test, self.new_since_test, self.reference_source)
        self.index += 1
        self.new_since_test = self.seen_since_test = 0
        self.last_test_ts = sample.ts
        if self.policy == "previous_period":
            # The tested window becomes the next reference; windows tumble.
            self.reference = list(self.current)
            self.reference_id = new_reference_id(self.key, "previous_period", f"{self.generation}/{window.index}")
            self.current.clear()
        return window

    def _trim(self, newest: datetime) -> None:
        while len(self.current) > self.config.window_size:
            self.current.popleft()
        if self.config.window_minutes:
            oldest = newest - timedelta(minutes=self.config.window_minutes)
            while self.current and self.current[0].ts < oldest:
                self.current.popleft()

    def _due(self, newest: datetime) -> bool:
        if len(self.current) < self.config.min_window_events:
            return False
        if self.new_since_test >= self.config.test_every_events:
            return True
        seconds = self.config.test_every_seconds
        return bool(seconds and self.last_test_ts and (newest - self.last_test_ts).total_seconds() >= seconds)
