"""How much of the current traffic is new, and which calls are the new part.

Model: current = (1 - share) * reference + share * new. Take a score that is higher the
more an item looks like current rather than reference traffic (a cross-fitted classifier:
every item is scored by a model that was not fitted on it, so both samples' scores are
comparable). In the region S where the score is at most the reference's median, the
reference has half its mass, and the new part little if the score separates them:
P_cur(S) = (1 - share) / 2 + share * P_new(S). So share = 1 - 2 P_cur(S) (Storey's
estimator with lambda = 1/2; the region choice of mixture-proportion estimation, fixed in
advance rather than picked as the minimum ratio over many regions, which measured here
overstated shares by 0.1-0.35). New items that look like the reference make it an
underestimate; the interval is a bootstrap of both samples.

Examples are the current items with the highest scores: the most current-like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class ShareEstimate:
    share: float
    low: float
    high: float
    reference: int
    current: int

    def to_json(self) -> dict:
        return {"share": round(self.share, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "reference_events": self.reference, "current_events": self.current}


def _storey(ref: np.ndarray, cur: np.ndarray, quantile: float) -> float:
    cut = np.quantile(ref, quantile)
    return float(np.clip(1.0 - np.mean(cur <= cut) / quantile, 0.0, 1.0))


def mixture_share(
    reference: np.ndarray, current: np.ndarray, *, quantile: float = 0.5, bootstrap: int = 200,
    level: float = 0.9, rng: np.random.Generator | None = None,
) -> ShareEstimate:
    """Share of `current` not explained by `reference`, from one score per item (higher =
    more like current)."""
    rng = rng or np.random.default_rng(0)
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    m, n = len(ref), len(cur)
    if m < 10 or n < 10:
        return ShareEstimate(0.0, 0.0, 1.0, m, n)
    point = _storey(ref, cur, quantile)
    draws = np.array([_storey(ref[rng.integers(0, m, m)], cur[rng.integers(0, n, n)], quantile)
                      for _ in range(bootstrap)]) if bootstrap else np.array([point])
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return ShareEstimate(point, float(min(low, point)), float(max(high, point)), m, n)


def typical_of_new(current_scores: np.ndarray, k: int) -> list[int]:
    """Indices of the k current items most like the new part (highest scores)."""
    return [int(i) for i in np.argsort(-np.asarray(current_scores, dtype=float), kind="stable")[:k]]


def ratio_scores(
    reference: np.ndarray, current: np.ndarray, rng: np.random.Generator | None = None, bins: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """The one-dimensional counterpart of `classifier_scores`: each item's score is the
    current/reference density ratio of its quantile bin, estimated on the other fold."""
    rng = rng or np.random.default_rng(0)
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    x = np.concatenate([ref, cur])
    y = np.concatenate([np.zeros(len(ref), dtype=int), np.ones(len(cur), dtype=int)])
    fold = _folds(y, 2, rng)
    scores = np.empty(len(x))
    for f in (0, 1):
        train = fold != f
        edges = np.unique(np.quantile(x[train], np.linspace(0, 1, bins + 1)[1:-1]))
        k = len(edges) + 1
        tb = np.searchsorted(edges, x[train], side="right")
        r = np.bincount(tb[y[train] == 0], minlength=k) + 0.5
        c = np.bincount(tb[y[train] == 1], minlength=k) + 0.5
        ratio = (c / c.sum()) / (r / r.sum())
        # Ties within a bin are broken towards the extremes of the bin's side of the median.
        jitter = 1e-6 * np.abs(x[~train] - np.median(ref))
        scores[~train] = ratio[np.searchsorted(edges, x[~train], side="right")] + jitter
    return scores[: len(ref)], scores[len(ref):]


def _folds(y: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    fold = np.empty(len(y), dtype=int)
    for label in (0, 1):  # stratified
        idx = np.flatnonzero(y == label)
        fold[idx] = rng.permutation(len(idx)) % folds
    return fold


def classifier_scores(
    reference: np.ndarray, current: np.ndarray, rng: np.random.Generator | None = None, folds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold decision scores of a reference-vs-current logistic regression (higher =
    more like current), for every item of both samples: no item is scored by a model that
    was fitted on it, so the scores of the two samples are comparable."""
    rng = rng or np.random.default_rng(0)
    x = np.vstack([reference, current]).astype(np.float32, copy=False)
    y = np.concatenate([np.zeros(len(reference), dtype=int), np.ones(len(current), dtype=int)])
    fold = _folds(y, folds, rng)
    scores = np.empty(len(y))
    for f in range(folds):
        train = fold != f
        # Strong L2 keeps 384-dimensional fits on a few hundred rows from memorising noise.
        model = LogisticRegression(C=0.1, max_iter=300).fit(x[train], y[train])
        scores[~train] = model.decision_function(x[~train])
    return scores[: len(reference)], scores[len(reference):]
