"""Runs every signal's test on one window and says which events typify each shift.

A signal is one quantity compared between reference and current: an embedding, a length,
the token distribution, the share of empty/refused answers. Which test decides each kind of
signal is configuration (DetectorConfig); the tests themselves live in stats/."""

from __future__ import annotations

import logging
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .features import Sample
from .stats.classifier import classifier_test
from .stats.frequency import token_frequency_test
from .stats.mmd import mmd_test
from .stats.outcome import Outcome
from .stats.projection import projection_ks_test
from .stats.proportion import share_test
from .stats.univariate import length_test
from .windows import Window

log = logging.getLogger(__name__)

# Fewest items per side for a test to mean anything.
MIN_ITEMS = 5


@dataclass(frozen=True)
class DetectorConfig:
    embedding_method: str = "mmd"
    alpha: float = 0.01
    permutations: int = 200
    projection: str = "pca"
    projection_dims: int = 10
    length_method: str = "ks"
    wasserstein_threshold: float = 0.1
    psi_threshold: float = 0.2
    token_method: str = "chi2"
    token_bins: int = 200
    examples: int = 5
    seed: int = 0


@dataclass(frozen=True)
class Finding:
    signal: str
    outcome: Outcome
    reference_size: int
    current_size: int
    examples: list[uuid.UUID]


EMBEDDING_SIGNALS = {"prompt_embedding": "prompt_embedding", "response_embedding": "response_embedding"}
LENGTH_SIGNALS = {"prompt_tokens": "prompt_tokens", "response_tokens": "response_tokens",
                  "prompt_chars": "prompt_chars", "response_chars": "response_chars"}
TOKEN_SIGNALS = {"prompt_token_frequency": "prompt_token_ids", "response_token_frequency": "response_token_ids"}
SHARE_SIGNAL = "response_empty_or_refused"
ALL_SIGNALS = (*EMBEDDING_SIGNALS, *LENGTH_SIGNALS, *TOKEN_SIGNALS, SHARE_SIGNAL)


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
            try:
                finding = self._signal(window, signal)
            except Exception:
                # One failing test must not cost the stream its other signals.
                log.exception("drift test %s failed on %s window %d", signal, window.key, window.index)
                continue
            if finding is not None:
                findings.append(finding)
        return findings

    def _signal(self, window: Window, signal: str) -> Finding | None:
        c = self.config
        rng = self._rng(window, signal)
        if signal in EMBEDDING_SIGNALS:
            attr = EMBEDDING_SIGNALS[signal]
            ref = [s for s in window.reference if getattr(s, attr) is not None]
            cur = [s for s in window.current if getattr(s, attr) is not None]
            if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
                return None
            outcome = self.embedding_test(
                np.stack([getattr(s, attr) for s in ref]), np.stack([getattr(s, attr) for s in cur]), rng
            )
        elif signal in LENGTH_SIGNALS:
            attr = LENGTH_SIGNALS[signal]
            ref, cur = window.reference, window.current
            if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
                return None
            outcome = length_test(
                np.array([getattr(s, attr) for s in ref]), np.array([getattr(s, attr) for s in cur]),
                method=c.length_method, alpha=c.alpha, wasserstein_threshold=c.wasserstein_threshold,
                psi_threshold=c.psi_threshold, permutations=c.permutations, rng=rng,
            )
        elif signal in TOKEN_SIGNALS:
            attr = TOKEN_SIGNALS[signal]
            ref, cur = window.reference, window.current
            if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
                return None
            if sum(len(getattr(s, attr)) for s in ref) == 0 or sum(len(getattr(s, attr)) for s in cur) == 0:
                return None
            outcome = token_frequency_test(
                [getattr(s, attr) for s in ref], [getattr(s, attr) for s in cur], method=c.token_method,
                alpha=c.alpha, bins=c.token_bins, permutations=c.permutations, token_name=self.token_name, rng=rng,
            )
        else:
            ref, cur = window.reference, window.current
            if len(ref) < MIN_ITEMS or len(cur) < MIN_ITEMS:
                return None
            outcome = share_test(
                np.array([s.empty_or_refused for s in ref]), np.array([s.empty_or_refused for s in cur]), alpha=c.alpha
            )
        return Finding(signal, outcome, len(ref), len(cur), self._examples(outcome, cur))

    def _examples(self, outcome: Outcome, current: list[Sample]) -> list[uuid.UUID]:
        if outcome.example_scores is None or not self.config.examples:
            return []
        top = np.argsort(-np.asarray(outcome.example_scores), kind="stable")[: self.config.examples]
        return [current[i].event_id for i in top]
