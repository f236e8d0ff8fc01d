"""Tests on one numeric signal (token counts, character lengths): Kolmogorov-Smirnov,
Wasserstein distance scaled by the reference spread, and the population stability index.
All three are computed every time; `method` picks the one that decides.

Wasserstein and PSI come with fixed thresholds (an effect size worth a look), but their
noise floor depends on the sample size: at n=100 the scaled Wasserstein distance of two
samples of one distribution exceeds 0.1 most of the time. So they cross only when the
statistic is over its threshold AND a permutation test says it is not noise at alpha."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance

from .outcome import Outcome, permutation_p_value

LengthMethod = Literal["ks", "wasserstein", "psi"]
_EPS = 1e-4


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges at reference quantiles (deduplicated: counts have many ties), open-ended."""
    inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate([[-np.inf], inner, [np.inf]])


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    edges = quantile_edges(reference, bins)
    ref_share = np.histogram(reference, edges)[0] / max(len(reference), 1)
    cur_share = np.histogram(current, edges)[0] / max(len(current), 1)
    ref_s, cur_s = np.maximum(ref_share, _EPS), np.maximum(cur_share, _EPS)
    terms = (cur_s - ref_s) * np.log(cur_s / ref_s)
    buckets = [
        {"bucket": _bucket_label(float(edges[i]), float(edges[i + 1])),
         "reference_share": round(float(ref_share[i]), 4), "current_share": round(float(cur_share[i]), 4)}
        for i in np.argsort(-np.abs(cur_share - ref_share))[:3]
    ]
    return float(terms.sum()), buckets


def _bucket_label(lo: float, hi: float) -> str:
    left = "-inf" if np.isinf(lo) else f"{lo:g}"
    right = "inf" if np.isinf(hi) else f"{hi:g}"
    return f"({left}, {right}]"


def scaled_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    # Scaled by the reference's standard deviation (as Evidently does) so one threshold
    # fits signals measured in tokens and in characters alike.
    spread = float(np.std(reference)) or 1.0
    return float(wasserstein_distance(reference, current) / spread)


def _permutation_p(statistic, reference: np.ndarray, current: np.ndarray, observed: float, permutations: int,
                   rng: np.random.Generator) -> float:
    pooled = np.concatenate([reference, current])
    m = len(reference)
    null = np.empty(permutations)
    for i in range(permutations):
        shuffled = rng.permutation(pooled)
        null[i] = statistic(shuffled[:m], shuffled[m:])
    return permutation_p_value(observed, null)


def length_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    method: LengthMethod = "ks",
    alpha: float = 0.01,
    wasserstein_threshold: float = 0.1,
    psi_threshold: float = 0.2,
    permutations: int = 200,
    rng: np.random.Generator | None = None,
) -> Outcome:
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    ks: Any = ks_2samp(reference, current)  # scipy's stubs do not name its fields
    ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
    wd = scaled_wasserstein(reference, current)
    psi_value, buckets = psi(reference, current)
    ref_med = float(np.median(reference))
    direction = np.sign(float(np.median(current)) - ref_med) or np.sign(current.mean() - reference.mean()) or 1.0
    details = {
        "ks": round(ks_stat, 5), "ks_p_value": ks_p, "wasserstein_scaled": round(wd, 5),
        "psi": round(psi_value, 5), "reference_median": ref_med, "current_median": float(np.median(current)),
        "reference_mean": float(reference.mean()), "current_mean": float(current.mean()), "buckets": buckets,
    }
    scores = (current - ref_med) * direction
    if method == "ks":
        return Outcome("ks", ks_stat, ks_p, alpha, bool(ks_p < alpha), scores, details)
    rng = rng or np.random.default_rng(0)
    if method == "wasserstein":
        over = wd > wasserstein_threshold
        p = _permutation_p(scaled_wasserstein, reference, current, wd, permutations, rng) if over else 1.0
        return Outcome("wasserstein_scaled", wd, p, wasserstein_threshold, p < alpha, scores, details)
    if psi_value <= psi_threshold:
        return Outcome("psi", psi_value, 1.0, psi_threshold, False, scores, details)
    p = _permutation_p(lambda a, b: psi(a, b)[0], reference, current, psi_value, permutations, rng)
    return Outcome("psi", psi_value, p, psi_threshold, p < alpha, scores, details)
