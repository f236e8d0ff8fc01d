"""Turns one reported window into a finding per signal: the sequential evidence that
decides `drifted` (evidence.py), the share of the window that is new with example calls
from that part, and, for comparison, the fixed-window test of this window alone.

A signal is one quantity compared between reference and current: an embedding, a length,
the token distribution, the share of empty/refused answers. Which fixed-window test is
shown for each kind of signal is configuration (DetectorConfig); the tests themselves
live in stats/. They no longer decide: one test per window per signal at alpha has no
false-alarm guarantee over time or across signals (bench/RESULTS.md measures it)."""

from __future__ import annotations

import logging
import math
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .evidence import ALL_SIGNALS, EMBEDDING_SIGNALS, LENGTH_SIGNALS, SHARE_SIGNAL, TOKEN_SIGNALS, SignalStatus
from .stats.classifier import classifier_test
from .stats.frequency import TokenMethod, token_frequency_test
from .stats.mixture import ShareEstimate
from .stats.mmd import mmd_test
from .stats.outcome import Outcome
from .stats.projection import Projection, projection_ks_test
from .stats.proportion import share_test
from .stats.univariate import LengthMethod, length_test
from .windows import Window

log = logging.getLogger(__name__)

# Fewest items per side for a fixed-window test to mean anything.
MIN_ITEMS = 5
SEQUENTIAL_METHOD = "conformal_shiryaev_roberts"

__all__ = ["ALL_SIGNALS", "Detector", "DetectorConfig", "Finding"]


@dataclass(frozen=True)
class DetectorConfig:
    embedding_method: str = "mmd"
    alpha: float = 0.01
    permutations: int = 200
    projection: Projection = "pca"
    projection_dims: int = 10
    length_method: LengthMethod = "ks"
    wasserstein_threshold: float = 0.1
    psi_threshold: float = 0.2
    token_method: TokenMethod = "chi2"
    token_bins: int = 200
    examples: int = 5
    seed: int = 0
    window_tests: bool = True


@dataclass(frozen=True)
class Finding:
    signal: str
    outcome: Outcome  # the sequential evidence: what decides
    reference_size: int
    current_size: int
    examples: list[uuid.UUID]
    status: SignalStatus | None = None
    share: ShareEstimate | None = None
    window_outcome: Outcome | None = None  # the fixed-window test of this window alone
    share_events: int = 0  # window events the share estimate used (since the change point)


def sequential_outcome(status: SignalStatus) -> Outcome:
    """statistic and threshold in log10 (decimal digits of evidence); the p-value is the
    family-adjusted bound min(1, horizon / (weight * R)), drifted when <= alpha."""
    log10 = 1 / math.log(10)
    return Outcome(
        method=SEQUENTIAL_METHOD,
        statistic=status.log_sr * log10 if math.isfinite(status.log_sr) else 0.0,
        p_value=status.p_value,
        threshold=status.log_threshold * log10,
        crossed=status.drifted,
        details={"evidence": {"log10": round(status.log_sr * log10, 4) if math.isfinite(status.log_sr) else None,
                              "peak_log10": round(status.peak * log10, 4) if math.isfinite(status.peak) else None,
                              "log10_threshold": round(status.log_threshold * log10, 4),
                              "observed": status.observed, "change_seq": status.change_seq}},
    )


class Detector:
    def __init__(self, config: DetectorConfig, token_name: Callable[[int], str] = str):
        self.config = config
        self.token_name = token_name

    def _rng(self, window: Window, signal: str) -> np.random.Generator:
        # Seeded by the window's identity: a replayed window draws the same permutations.
        text = f"{self.config.seed}/{window.key}/{window.reference_id}/{window.index}/{signal}"
        return np.random.default_rng(zlib.crc32(text.encode()))

    def embedding_test(self, reference: np.ndarray, current: np.ndarray, rng: np.random.Generator) -> Outcome:
        c = self.config
        if c.embedding_method == "mmd":
            return mmd_test(reference, current, alpha=c.alpha, permutations=c.permutations, rng=rng)
        if c.embedding_method == "classifier":
            return classifier_test(reference, current, alpha=c.alpha, permutations=c.permutations, rng=rng)
        if c.embedding_method == "ks_projection":
            return projection_ks_test(reference, current, alpha=c.alpha, dims=c.projection_dims, kind=c.projection)
        if c.embedding_method == "evidently":
            from .stats.evidently_methods import evidently_default_test

            return evidently_default_test(reference, current)
        raise ValueError(f"unknown embedding method {c.embedding_method!r}")

    def run(self, window: Window) -> list[Finding]:
        findings = []
        for signal in ALL_SIGNALS:
            status = window.statuses.get(signal)
            if status is None:
                continue  # the signal sits out (e.g. no response embeddings in the reference)
            try:
                findings.append(self._finding(window, signal, status))
            except Exception:
                # One failing signal must not cost the stream its other signals.
                log.exception("drift signal %s failed on %s window %d", signal, window.key, window.index)
        return findings

    def _finding(self, window: Window, signal: str, status: SignalStatus) -> Finding:
        window_outcome = None
        if self.config.window_tests:
            try:
                window_outcome = self._window_test(window, signal)
            except Exception:
                log.exception("fixed-window test %s failed on %s window %d", signal, window.key, window.index)
        share, examples, used = None, [], 0
        if window.evidence is not None:
            x = window.evidence.explain(signal, window.current, window.first_seq, status.change_seq)
            share, used = x.share, window.first_seq + len(window.current) - x.since_seq
            examples = x.examples[: self.config.examples]
        # Sizes as compared: for an embedding, the samples that have one (the report
        # reloads exactly these).
        attr = EMBEDDING_SIGNALS.get(signal)
        n_ref, n_cur = (sum(getattr(s, attr) is not None for s in side) if attr else len(side)
                        for side in (window.reference, window.current))
        return Finding(signal, sequential_outcome(status), n_ref, n_cur, examples, status, share, window_outcome,
                       used)

    def _window_test(self, window: Window, signal: str) -> Outcome | None:
        c = self.config
        rng = self._rng(window, signal)
        if signal in EMBEDDING_SIGNALS:
            attr = EMBEDDING_SIGNALS[signal]
            ref = [s for s in window.reference if getattr(s, attr) is not None]
            cur = [s for s in window.current if getattr(s, attr) is not None]
            if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
                return None
            return self.embedding_test(
                np.stack([getattr(s, attr) for s in ref]), np.stack([getattr(s, attr) for s in cur]), rng
            )
        ref, cur = window.reference, window.current
        if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
            return None
        if signal in LENGTH_SIGNALS:
            attr = LENGTH_SIGNALS[signal]
            return length_test(
                np.array([getattr(s, attr) for s in ref]), np.array([getattr(s, attr) for s in cur]),
                method=c.length_method, alpha=c.alpha, wasserstein_threshold=c.wasserstein_threshold,
                psi_threshold=c.psi_threshold, permutations=c.permutations, rng=rng,
            )
        if signal in TOKEN_SIGNALS:
            attr = TOKEN_SIGNALS[signal]
            if sum(len(getattr(s, attr)) for s in ref) == 0 or sum(len(getattr(s, attr)) for s in cur) == 0:
                return None
            return token_frequency_test(
                [getattr(s, attr) for s in ref], [getattr(s, attr) for s in cur], method=c.token_method,
                alpha=c.alpha, bins=c.token_bins, permutations=c.permutations, token_name=self.token_name, rng=rng,
            )
        assert signal == SHARE_SIGNAL
        return share_test(np.array([s.empty_or_refused for s in ref]), np.array([s.empty_or_refused for s in cur]),
                          alpha=c.alpha)
