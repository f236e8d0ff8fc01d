"""Per-stream state: the reference, the sequential evidence since it, the current window,
and when to report.

- The reference is fixed until reset (first_n, pinned) or is the previous reported window
  (previous_period, where windows tumble so reference and current never overlap, and the
  evidence starts again with each new reference).
- Every event, embedded or not, is observed by the evidence (evidence.py) and enters the
  current window: the last N events, no older than T minutes of event time.
- A window is reported every K events or S seconds of event time, and at once when a
  signal's evidence reaches its threshold. Event time and event counts, not the wall
  clock or batch boundaries, so a replay after a crash or a hand-over cuts the same
  windows with the same evidence and yields the same results.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from .evidence import EvidenceConfig, Path, SignalStatus, StreamEvidence
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
    seen: int  # events of the stream since the previous report
    embedded: int  # of those, the ones the encoder embedded (the rest were sampled out)
    # Where the reference's samples are stored (StreamState.reference_source), recorded
    # with the window so a report can reload exactly this reference later.
    reference_source: str = "stream"
    # The evidence at the window's last event, per signal, and the stream's evidence
    # object (its score functions explain the window).
    statuses: dict[str, SignalStatus] = field(default_factory=dict)
    evidence: StreamEvidence | None = None
    first_seq: int = 0  # evidence sequence number of current[0]
    cause: str = "schedule"  # or "evidence": a signal reached its threshold
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
    embedded_since_test: int = 0
    last_test_ts: datetime | None = None
    last_reset: int = 0  # version of the last reset request applied
    evidence_config: EvidenceConfig = field(default_factory=EvidenceConfig)
    evidence: StreamEvidence | None = None
    # Per signal, the highest log evidence since the previous report (a crossing between
    # two reports is still reported).
    peaks: dict[str, float] = field(default_factory=dict)
    # Kafka partition -> last offset admitted: a replayed batch is skipped exactly, however
    # far its events have moved out of the window.
    offsets: dict[int, int] = field(default_factory=dict)
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
        self.new_since_test = self.seen_since_test = self.embedded_since_test = 0
        self.last_test_ts = None
        self.last_reset = max(self.last_reset, version)
        self.evidence = None if self.collecting else StreamEvidence(self.evidence_config, self.reference)
        self.peaks = {}

    def admit(self, sample: Sample) -> Window | None:
        """One event; the window to report if one is due (tests use this one at a time)."""
        windows = self.admit_many([sample])
        return windows[-1] if windows else None

    def admit_many(self, samples: list[Sample]) -> list[Window]:
        """Events of this stream in arrival order; returns the windows due among them."""
        windows: list[Window] = []
        i = 0
        while i < len(samples):
            if self.collecting:
                self._collect(samples[i])
                i += 1
                continue
            chunk = samples[i:]
            if self.policy == "previous_period":
                # The evidence restarts at each tumble: observe no further than the next cut.
                chunk = chunk[: max(1, self.config.test_every_events - self.new_since_test)]
            evidence = self._evidence()
            first_seq = evidence.seq
            path = evidence.observe(chunk)
            i += self._windows(chunk, path, first_seq, windows)
        return windows

    def _evidence(self) -> StreamEvidence:
        # Present whenever the reference is complete (made with it, in reset and _collect).
        if self.evidence is None:
            raise RuntimeError(f"stream {self.key}: no evidence while not collecting a reference")
        return self.evidence

    def _collect(self, sample: Sample) -> None:
        self.seen_since_test += 1
        self.embedded_since_test += sample.prompt_embedding is not None or sample.response_embedding is not None
        self.reference.append(sample)
        if len(self.reference) >= self.config.reference_size:
            self.collecting = False
            self.last_test_ts = sample.ts
            self.seen_since_test = self.embedded_since_test = 0
            self.evidence = StreamEvidence(self.evidence_config, self.reference)
            self.peaks = {}

    def _windows(self, chunk: list[Sample], path: Path, first_seq: int, out: list[Window]) -> int:
        """Walk the observed events into the window; returns how many it consumed (fewer
        than the chunk when a previous_period window tumbled: the rest belong to the next
        reference's evidence)."""
        segment = 0  # first event of the chunk not yet folded into the peaks
        for j, sample in enumerate(chunk):
            self.current.append(sample)
            self.new_since_test += 1
            self.seen_since_test += 1
            self.embedded_since_test += sample.prompt_embedding is not None or sample.response_embedding is not None
            self._trim(sample.ts)
            crossed = bool(path.crossed[j])
            if not (crossed or self._due(sample.ts)):
                continue
            self._fold_peaks(path, segment, j + 1)
            segment = j + 1
            out.append(self._cut(sample, path, j, first_seq, "evidence" if crossed else "schedule"))
            if self.policy == "previous_period":
                return j + 1
        self._fold_peaks(path, segment, len(chunk))
        return len(chunk)

    def _fold_peaks(self, path: Path, start: int, end: int) -> None:
        if end <= start:
            return
        for signal, values in path.log_sr.items():
            self.peaks[signal] = max(self.peaks.get(signal, -np.inf), float(values[start:end].max()))

    def _cut(self, sample: Sample, path: Path, j: int, first_seq: int, cause: str) -> Window:
        ev = self._evidence()
        statuses = {
            signal: ev.status(signal, float(path.log_sr[signal][j]), self.peaks.get(signal, -np.inf),
                              int(path.observed[signal][j]), int(path.change[signal][j]))
            for signal in path.log_sr
        }
        seq = first_seq + j
        window = Window(self.key, self.reference_id, self.index, list(self.reference), list(self.current),
                        self.seen_since_test, self.embedded_since_test, self.reference_source, statuses, ev,
                        seq - len(self.current) + 1, cause)
        self.index += 1
        self.new_since_test = self.seen_since_test = self.embedded_since_test = 0
        self.last_test_ts = sample.ts
        # The next report's peak starts from where the evidence stands now.
        self.peaks = {signal: float(path.log_sr[signal][j]) for signal in path.log_sr}
        if self.policy == "previous_period":
            # The reported window becomes the next reference; windows tumble.
            self.reference = list(self.current)
            self.reference_id = new_reference_id(self.key, "previous_period", f"{self.generation}/{window.index}")
            self.current.clear()
            self.evidence = StreamEvidence(self.evidence_config, self.reference)
            self.peaks = {}
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
