"""Maximum mean discrepancy with an RBF kernel, bandwidth by the median heuristic, and a
permutation p-value (Gretton et al. 2012). All permutations are evaluated as one matrix
product, so 200 permutations of 500+500 points cost a few hundred ms on two cores."""

from __future__ import annotations

import numpy as np

from .outcome import Outcome, permutation_p_value, permuted_membership


def squared_distances(z: np.ndarray) -> np.ndarray:
    norms = np.einsum("ij,ij->i", z, z)
    sq = norms[:, None] + norms[None, :] - 2.0 * (z @ z.T)
    np.maximum(sq, 0.0, out=sq)
    return sq


def median_heuristic(sq: np.ndarray) -> float:
    """Median of the off-diagonal squared distances of the pooled sample; the kernel is
    exp(-d²/median), the usual scale-free choice that needs no tuning per model."""
    upper = sq[np.triu_indices_from(sq, k=1)]
    med = float(np.median(upper)) if upper.size else 1.0
    return med if med > 1e-12 else 1.0


def _mmd2(kernel: np.ndarray, weights: np.ndarray) -> np.ndarray:
    # weights: (N,) or (N, P) with +1/m on reference items and -1/n on current ones; w'Kw is
    # the biased (V-statistic) MMD². Biased is fine here: the permutation test is exact for
    # any statistic, and this form vectorises over permutations.
    if weights.ndim == 1:
        return np.asarray(weights @ kernel @ weights)
    return np.einsum("ip,ip->p", weights, kernel @ weights)


def mmd_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.01,
    permutations: int = 200,
    rng: np.random.Generator | None = None,
) -> Outcome:
    rng = rng or np.random.default_rng(0)
    m, n = len(reference), len(current)
    z = np.vstack([reference, current]).astype(np.float64, copy=False)
    sq = squared_distances(z)
    bandwidth = median_heuristic(sq)
    kernel = np.exp(-sq / bandwidth)
    weights = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
    observed = float(_mmd2(kernel, weights))
    member = permuted_membership(m, n, permutations, rng)
    null_weights = np.where(member, -1.0 / n, 1.0 / m)
    null = _mmd2(kernel, null_weights)
    p = permutation_p_value(observed, null)
    # Witness function at each current point: mean similarity to the current sample minus to
    # the reference. The highest are where current mass sits and reference mass does not.
    cur_block = kernel[m:]
    witness = cur_block[:, m:].mean(axis=1) - cur_block[:, :m].mean(axis=1)
    return Outcome(
        method="mmd_rbf",
        statistic=observed,
        p_value=p,
        threshold=alpha,
        crossed=p < alpha,
        example_scores=witness,
        details={"bandwidth": bandwidth, "permutations": permutations, "null_q95": float(np.quantile(null, 0.95))},
    )
