"""Sequential evidence of a change from a stream of conformal p-values.

Each p-value is turned into an e-value by a bet: e = h(p), where h is a probability
density on (0, 1) chosen before p is seen. Under no drift p is uniform and independent of
the past (conformal.py), so E[e | past] = 1 exactly, whatever h the past suggested. The bet
here is a plug-in: h is a histogram of the recent p-values shrunk towards uniform, so once
the stream changes, h learns where the new p-values fall (near 0 for novel items; near 0
or 1 for lengths that grew or shrank) and bets there.

The e-values feed a Shiryaev-Roberts statistic R_t = (1 + R_{t-1}) * e_t, a change
detector that restarts its evidence implicitly at every event (R_t = sum over start points
k <= t of the product of e_k..e_t). Under no drift R_t - t is a martingale started at 0,
so by Ville's inequality on the non-negative martingale R_t + (H - t), t <= H:

    P(R_t >= c for some t <= H) <= H / c.

Alarming at c = H / alpha bounds the chance of any false alarm within the first H
observations by alpha; that holds by construction, not by tuning. A shift that persists
multiplies R by its average e-value per event (about exp(KL) of the p-value distribution
from uniform), so evidence becomes more certain with every event and the delay grows only
with log(H / alpha). A CUSUM (max over start points) runs beside it to estimate where the
change began: the last time its log-evidence was at or below zero."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

# Bin edges of the bet's histogram on (0, 1): fine at both ends, where shifted p-values go.
P_EDGES = np.array([0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98,
                    0.99, 0.997, 0.999])
P_WIDTHS = np.diff(np.concatenate([[0.0], P_EDGES, [1.0]]))


@dataclass
class PluginBet:
    """Histogram density of recent p-values, forgotten at rate 1/memory, plus `prior`
    pseudo-observations spread uniformly. Integrates to 1 over (0, 1) by construction."""

    memory: float = 2000.0
    prior: float = 200.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(P_WIDTHS)))

    def density_of_bin(self, b: int) -> float:
        total = float(self.counts.sum())
        return float((self.counts[b] + self.prior * P_WIDTHS[b]) / ((total + self.prior) * P_WIDTHS[b]))

    def update(self, b: int) -> None:
        self.counts *= 1.0 - 1.0 / self.memory
        self.counts[b] += 1.0

    def update_many(self, bins: np.ndarray) -> None:
        keep = 1.0 - 1.0 / self.memory
        n = len(bins)
        self.counts *= keep ** n
        np.add.at(self.counts, bins, keep ** (n - 1 - np.arange(n)))

    def densities(self) -> np.ndarray:
        total = float(self.counts.sum())
        return (self.counts + self.prior * P_WIDTHS) / ((total + self.prior) * P_WIDTHS)


def p_bin(p: float) -> int:
    return int(np.searchsorted(P_EDGES, p, side="right"))


# The fixed bets: power calibrators k * p^(k-1), which bet on small p-values (novel items,
# longer texts: their scores are high), the same on 1 - p (the score fell), and an even
# mix of the two (the spread grew). Milder k bet less and lose less when the shift is small.
POWERS = (0.5, 0.7, 0.85, 0.93)
BETS = tuple((side, k) for side in ("low", "high", "both") for k in POWERS)
_P_FLOOR = 1e-12
# The plug-in bet is refreshed once per this many stream events.
BLOCK = 25


_K = np.array([k for _, k in BETS])
_LOW = np.array([side == "low" for side, _ in BETS])
_HIGH = np.array([side == "high" for side, _ in BETS])


def log_fixed_bets(p: np.ndarray) -> np.ndarray:
    """(n, bets) log e of every fixed bet at each p; each bet is a density on (0, 1), so
    E[e] = 1 under uniform p."""
    p = np.clip(np.asarray(p, dtype=float), _P_FLOOR, 1 - _P_FLOOR)[:, None]
    low = np.log(_K) + (_K - 1) * np.log(p)
    high = np.log(_K) + (_K - 1) * np.log1p(-p)
    return np.where(_LOW, low, np.where(_HIGH, high, np.logaddexp(low, high) - math.log(2)))


@dataclass
class Evidence:
    """Shiryaev-Roberts statistics of several bets side by side, combined as their average
    (itself a Shiryaev-Roberts-type statistic: each R_j - t is a martingale under no drift,
    so their weighted mean is too, and the H / c bound holds for it). Averaging costs at most
    log(number of bets) over the best bet in hindsight. A CUSUM per bet estimates where the
    change began; the best bet's is reported. `seq` numbers the stream's events."""

    log_sr: np.ndarray = field(default_factory=lambda: np.full(len(BETS) + 1, -np.inf))
    cusum: np.ndarray = field(default_factory=lambda: np.zeros(len(BETS) + 1))
    cusum_start: np.ndarray = field(default_factory=lambda: np.zeros(len(BETS) + 1, dtype=np.int64))
    observed: int = 0

    @property
    def combined(self) -> float:
        """log of the average of the bets' statistics."""
        return float(np.logaddexp.reduce(self.log_sr) - math.log(len(self.log_sr)))

    @property
    def change_start(self) -> int:
        return int(self.cusum_start[int(np.argmax(self.log_sr))])

    def update(self, log_e: np.ndarray, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, bets) log e-values of n events with stream sequence numbers `seqs`. Returns,
        after each event, the combined log statistic and the change-point estimate (the
        first event of the best bet's current CUSUM run). Vectorised: with L_t the sum of
        log e up to t, R_t = e^(L_t) (R_0 + sum_(k<=t) e^(-L_(k-1))); CUSUM by the closed
        form of the Lindley recursion, V_t = S_t - min(-V_0, min_(k<=t) S_k)."""
        n, bets = log_e.shape
        if not n:
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        cum = np.cumsum(log_e, axis=0)
        before = np.vstack([np.zeros((1, bets)), cum[:-1]])  # L_(k-1)
        log_sr = cum + np.logaddexp(self.log_sr[None, :], np.logaddexp.accumulate(-before, axis=0))
        v0 = np.maximum(self.cusum, 0.0)
        floor = np.vstack([-v0[None, :], cum])  # row k: S_k, row 0 standing for the carried-over run
        run_min = np.minimum.accumulate(floor, axis=0)
        rows = np.arange(n + 1)[:, None] * np.ones((1, bets), dtype=np.int64)
        last_min = np.maximum.accumulate(np.where(floor <= run_min, rows, 0), axis=0)[1:]  # (n, bets)
        # A run restarted after the k-th event of this call began at the next event; k = 0
        # keeps the run carried over from before (if it was still open).
        starts = np.append(np.asarray(seqs, dtype=np.int64), int(seqs[-1]) + 1)
        carried = np.where(v0 > 0, self.cusum_start, int(seqs[0]))
        start_path = np.where(last_min == 0, carried[None, :], starts[last_min])
        best = np.argmax(log_sr, axis=1)
        self.cusum = cum[-1] - run_min[-1]
        self.cusum_start = start_path[-1]
        self.log_sr = log_sr[-1]
        self.observed += n
        combined = np.logaddexp.reduce(log_sr, axis=1) - math.log(bets)
        return combined, start_path[np.arange(n), best]


@dataclass
class SequentialTest:
    """One signal: every bet on each p-value, the evidence accumulated. The last bet is the
    plug-in histogram, which learns shapes the fixed bets miss."""

    bet: PluginBet = field(default_factory=PluginBet)
    evidence: Evidence = field(default_factory=Evidence)
    frozen: np.ndarray = field(default_factory=lambda: np.ones(len(P_WIDTHS)))
    bet_block: int = -1

    def observe(self, p: np.ndarray, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bet on p-values in order and update; returns, per event, the combined log
        statistic and the change-point estimate. The plug-in histogram is frozen for
        blocks of BLOCK stream events (by sequence number): a bet fixed before the
        p-values it bets on, so still predictable, and the same however the events were
        batched, so a replay or a hand-over computes exactly the same evidence."""
        p = np.asarray(p, dtype=float)
        seqs = np.asarray(seqs, dtype=np.int64)
        if not len(p):
            return np.zeros(0), np.zeros(0, dtype=np.int64)
        bins = np.searchsorted(P_EDGES, p, side="right")
        blocks = seqs // BLOCK
        plug = np.empty(len(p))
        for start, end in _runs(blocks):
            if blocks[start] != self.bet_block:
                self.frozen = self.bet.densities()
                self.bet_block = int(blocks[start])
            plug[start:end] = np.log(self.frozen[bins[start:end]])
            self.bet.update_many(bins[start:end])
        return self.evidence.update(np.hstack([log_fixed_bets(p), plug[:, None]]), seqs)

    @property
    def log_sr(self) -> float:
        return self.evidence.combined

    def dump(self) -> dict[str, Any]:
        e = self.evidence
        return {"bet": [float(c) for c in self.bet.counts], "frozen": [float(x) for x in self.frozen],
                "bet_block": self.bet_block,
                "log_sr": [_num(x) for x in e.log_sr], "cusum": [float(x) for x in e.cusum],
                "cusum_start": [int(x) for x in e.cusum_start], "observed": e.observed}

    @classmethod
    def load(cls, data: dict[str, Any], memory: float, prior: float) -> SequentialTest:
        bet = PluginBet(memory, prior, np.asarray(data["bet"], dtype=float))
        ev = Evidence(np.array([_inf(x) for x in data["log_sr"]]), np.asarray(data["cusum"], dtype=float),
                      np.asarray(data["cusum_start"], dtype=np.int64), data["observed"])
        return cls(bet, ev, np.asarray(data["frozen"], dtype=float), int(data["bet_block"]))


def _runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(values)) + 1
    edges = [0, *cuts.tolist(), len(values)]
    return list(pairwise(edges))


def _num(x: float) -> float | None:
    return None if math.isinf(x) else float(x)


def _inf(x: float | None) -> float:
    return -math.inf if x is None else float(x)


@dataclass(frozen=True)
class Budget:
    """One false-alarm budget for a stream, split over its signals (Bonferroni, valid under
    any dependence between them): a signal with weight w alarms when its evidence reaches
    horizon / (w * alpha). Then the chance that an unchanged stream raises any false alarm,
    on any signal, within `horizon` observations is at most alpha; within n observations,
    at most alpha * n / horizon."""

    alpha: float
    horizon: float
    weights: dict[str, float]

    @classmethod
    def equal(cls, alpha: float, horizon: float, signals: tuple[str, ...]) -> Budget:
        return cls(alpha, horizon, {s: 1.0 / len(signals) for s in signals})

    def log_threshold(self, signal: str) -> float:
        return math.log(self.horizon / (self.weights[signal] * self.alpha))

    def p_value(self, signal: str, log_sr: float) -> float:
        """Family-adjusted bound on the chance of evidence this strong within the horizon
        under no drift: min(1, horizon / (w * R)). The signal alarms when it is <= alpha."""
        if math.isinf(log_sr):
            return 1.0
        return float(min(1.0, math.exp(math.log(self.horizon / self.weights[signal]) - log_sr)))
