"""Conformal p-values of a stream of scores against everything seen before it.

Each event gets a score from a function fixed in advance (a length, a novelty score
against half of the reference; never fitted on the events it scores). Its p-value is the
rank of its score among all scores seen so far (the calibration scores, then every earlier
event), ties broken by an independent uniform draw: the smoothed conformal p-value. If the
reference and the stream are exchangeable (no drift), these p-values are independent
and exactly uniform on (0, 1), however long the stream runs (Vovk, Gammerman and Shafer,
Algorithmic Learning in a Random World, ch. 7-8). That is what makes the sequential
evidence built on them (sequential.py) valid by construction, with no reference-size or
window-overlap caveat.

The scores are kept as counts on a fixed grid (`Grid`), chosen before any data: the
quantised score is itself a fixed score function, so exactness holds and a stream's pool
costs a few hundred integers however many events it saw."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Bin edges (increasing); scores below the first edge fall in bin 0, above the last in
    the top bin."""

    edges: tuple[float, ...]

    @classmethod
    def linear(cls, lo: float, hi: float, bins: int) -> Grid:
        return cls(tuple(float(x) for x in np.linspace(lo, hi, bins + 1)[1:-1]))

    @classmethod
    def geometric(cls, top: float, ratio: float = 1.05) -> Grid:
        """Integer-friendly edges for counts: 0.5, 1.5, ... then growing by `ratio`, so short
        texts are told apart one token at a time and long ones by a few percent."""
        edges, x = [], 0.5
        while x < top:
            edges.append(x)
            x = max(x + 1.0, x * ratio)
        return cls(tuple(edges))

    @property
    def bins(self) -> int:
        return len(self.edges) + 1

    def index(self, scores: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.asarray(self.edges), np.asarray(scores, dtype=float), side="right")


@dataclass
class ScorePool:
    """Counts of every score seen so far on a grid; `observe` returns the smoothed conformal
    p-value of a score (large scores get small p-values) and then adds it to the pool."""

    bins: int
    counts: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = np.zeros(self.bins, dtype=np.int64)
        self.counts = np.asarray(self.counts, dtype=np.int64)

    @property
    def size(self) -> int:
        return int(self.counts.sum())

    def add(self, bin_index: np.ndarray) -> None:
        np.add.at(self.counts, np.asarray(bin_index, dtype=np.int64), 1)

    def observe(self, bin_index: int, u: float) -> float:
        """p = (#{pool > s} + u * (#{pool = s} + 1)) / (#pool + 1), then s joins the pool."""
        above = int(self.counts[bin_index + 1:].sum())
        tied = int(self.counts[bin_index])
        p = (above + u * (tied + 1)) / (self.size + 1)
        self.counts[bin_index] += 1
        return p

    def observe_many(self, bin_index: np.ndarray, u: np.ndarray, chunk: int = 512) -> np.ndarray:
        """`observe` for a sequence of scores in order, vectorised: each score is ranked
        against the pool plus the scores before it."""
        b = np.asarray(bin_index, dtype=np.int64)
        out = np.empty(len(b))
        for start in range(0, len(b), chunk):
            part, uu = b[start: start + chunk], np.asarray(u[start: start + chunk], dtype=float)
            above_pool = np.concatenate([np.cumsum(self.counts[::-1])[::-1][1:], [0]])
            earlier = np.tri(len(part), k=-1, dtype=bool)  # earlier[i, j]: j comes before i
            above = above_pool[part] + (earlier & (part[None, :] > part[:, None])).sum(axis=1)
            tied = self.counts[part] + (earlier & (part[None, :] == part[:, None])).sum(axis=1)
            size = self.size + np.arange(len(part))
            out[start: start + len(part)] = (above + uu * (tied + 1)) / (size + 1)
            self.add(part)
        return out

    def reference_p_values(self, bin_index: np.ndarray, u: np.ndarray) -> np.ndarray:
        """p-values of scores against this pool only, without adding them (for describing a
        window; not for the sequential evidence)."""
        above = np.cumsum(self.counts[::-1])[::-1]
        above = np.concatenate([above[1:], [0]])
        b = np.asarray(bin_index, dtype=np.int64)
        return (above[b] + u * (self.counts[b] + 1)) / (self.size + 1)


def uniform_from_hash(values: np.ndarray) -> np.ndarray:
    """Uniform draws in (0, 1) from 64-bit hashes: a replay draws the same tie-breaks."""
    return (np.asarray(values, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53) + 0.5 / (1 << 53)
