"""How much of the current traffic is new, and which calls are the new part.

Model: current = (1 - share) * reference + share * new. For any region S of a score,
P_cur(S) = (1 - share) P_ref(S) + share P_new(S) >= (1 - share) P_ref(S), with equality
where the new part puts no mass. So 1 - share = min over S of P_cur(S) / P_ref(S) (the
mixture-proportion identity of Blanchard, Lee and Scott 2010; the "best bin" estimator of
Garg et al. 2021). Regions are runs of consecutive quantile bins of the score, the one
picked is the one whose upper confidence bound on the ratio is lowest (so a tiny region
cannot win by noise), and the interval comes from a bootstrap of both samples.

The estimate is a lower bound on the true share when the new part overlaps the old
everywhere (no region free of it); with a score that separates them it is consistent.
For embeddings the score is a cross-fitted classifier (reference vs current, each item
scored by the model that did not see it); for one-dimensional signals, the signal itself."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

_Z = 1.0  # region choice: one standard error


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


def _edges(ref: np.ndarray, cur: np.ndarray, bins: int) -> np.ndarray:
    pooled = np.concatenate([ref, cur])
    return np.unique(np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1]))


def _share(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    m, n = ref_counts.sum(), cur_counts.sum()
    cr, cc = np.concatenate([[0], np.cumsum(ref_counts)]), np.concatenate([[0], np.cumsum(cur_counts)])
    k = len(ref_counts)
    i, j = np.triu_indices(k + 1, 1)  # regions = bins i..j-1
    a, b = (cr[j] - cr[i]) / m, (cc[j] - cc[i]) / n
    se_a, se_b = np.sqrt(a * (1 - a) / m), np.sqrt(b * (1 - b) / n + 1.0 / n ** 2)
    lower_a = a - _Z * se_a
    ok = lower_a > 0.02
    if not ok.any():
        return 0.0
    bound = np.where(ok, (b + _Z * se_b) / np.where(ok, lower_a, 1.0), np.inf)
    best = int(np.argmin(bound))
    return float(np.clip(1.0 - b[best] / a[best], 0.0, 1.0))


def mixture_share(
    reference: np.ndarray, current: np.ndarray, *, bins: int = 10, bootstrap: int = 200, level: float = 0.9,
    rng: np.random.Generator | None = None,
) -> ShareEstimate:
    """Share of `current` not explained by `reference`, from one score per item."""
    rng = rng or np.random.default_rng(0)
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    m, n = len(ref), len(cur)
    if m < 10 or n < 10:
        return ShareEstimate(0.0, 0.0, 1.0, m, n)
    edges = _edges(ref, cur, bins)
    k = len(edges) + 1

    def counts(x: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(edges, x, side="right"), minlength=k)

    point = _share(counts(ref), counts(cur))
    rb = np.searchsorted(edges, ref, side="right")
    cb = np.searchsorted(edges, cur, side="right")
    draws = np.empty(bootstrap)
    for t in range(bootstrap):
        draws[t] = _share(np.bincount(rb[rng.integers(0, m, m)], minlength=k),
                          np.bincount(cb[rng.integers(0, n, n)], minlength=k))
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return ShareEstimate(point, float(min(low, point)), float(max(high, point)), m, n)


def typical_of_new(reference: np.ndarray, current: np.ndarray, k: int, *, bins: int = 10) -> list[int]:
    """Indices of the k current items most typical of the new part: those in the score bins
    where current mass most exceeds reference mass, furthest from the reference median
    within a bin."""
    ref, cur = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if not len(cur) or not k:
        return []
    if len(ref) < 2:
        return list(np.argsort(-cur, kind="stable")[:k])
    edges = _edges(ref, cur, bins)
    kk = len(edges) + 1
    rb, cb = np.searchsorted(edges, ref, side="right"), np.searchsorted(edges, cur, side="right")
    ratio = ((np.bincount(cb, minlength=kk) + 0.5) / len(cur)) / ((np.bincount(rb, minlength=kk) + 0.5) / len(ref))
    spread = np.abs(cur - np.median(ref))
    order = np.lexsort((-spread, -ratio[cb]))
    return [int(i) for i in order[:k]]


def classifier_scores(
    reference: np.ndarray, current: np.ndarray, rng: np.random.Generator | None = None, folds: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold decision scores of a reference-vs-current logistic regression (higher =
    more like current), for every item of both samples: no item is scored by a model that
    was fitted on it, so the scores of the two samples are comparable."""
    rng = rng or np.random.default_rng(0)
    x = np.vstack([reference, current]).astype(np.float32, copy=False)
    y = np.concatenate([np.zeros(len(reference), dtype=int), np.ones(len(current), dtype=int)])
    fold = np.empty(len(y), dtype=int)
    for label in (0, 1):  # stratified
        idx = np.flatnonzero(y == label)
        fold[idx] = rng.permutation(len(idx)) % folds
    scores = np.empty(len(y))
    for f in range(folds):
        train = fold != f
        # Strong L2 keeps 384-dimensional fits on a few hundred rows from memorising noise.
        model = LogisticRegression(C=0.1, max_iter=300).fit(x[train], y[train])
        scores[~train] = model.decision_function(x[~train])
    return scores[: len(reference)], scores[len(reference):]
