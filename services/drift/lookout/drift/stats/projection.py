"""Univariate Kolmogorov-Smirnov tests on a low-dimensional projection of the embeddings
(PCA fitted on the reference, or a fixed random Gaussian projection), Bonferroni-corrected
over the components."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy.stats import ks_2samp

from .outcome import Outcome

Projection = Literal["pca", "random"]


def project(
    reference: np.ndarray, current: np.ndarray, dims: int, kind: Projection, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    dims = max(1, min(dims, reference.shape[1]))
    if kind == "pca":
        # Fitted on both samples pooled. Fitting on the reference alone picks the axes where
        # the reference's own noise is largest, so its spread along them is inflated and KS
        # flags same-distribution windows; pooled axes treat both samples alike.
        pooled = np.vstack([reference, current])
        mean = pooled.mean(axis=0)
        _, _, vt = np.linalg.svd(pooled - mean, full_matrices=False)
        basis = vt[: min(dims, vt.shape[0])].T
        return (reference - mean) @ basis, (current - mean) @ basis
    # A fixed seed: the same axes for every window of every stream.
    basis = np.random.default_rng(seed).standard_normal((reference.shape[1], dims)) / np.sqrt(dims)
    return reference @ basis, current @ basis


def projection_ks_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.01,
    dims: int = 10,
    kind: Projection = "pca",
) -> Outcome:
    ref_p, cur_p = project(reference, current, dims, kind)
    k = ref_p.shape[1]
    ks: Any = ks_2samp  # scipy's stubs know no axis
    result = ks(ref_p, cur_p, axis=0)
    stats = np.atleast_1d(result.statistic)
    pvals = np.atleast_1d(result.pvalue)
    corrected = np.minimum(1.0, pvals * k)
    worst = int(np.argmin(corrected))
    # Items of the current window that sit furthest along the most shifted axis, in the
    # direction it moved, typify the shift.
    ref_med = np.median(ref_p[:, worst])
    direction = np.sign(np.median(cur_p[:, worst]) - ref_med) or 1.0
    scores = (cur_p[:, worst] - ref_med) * direction
    return Outcome(
        method=f"ks_{kind}{k}_bonferroni",
        statistic=float(stats.max()),
        p_value=float(corrected[worst]),
        threshold=alpha,
        crossed=bool(corrected[worst] < alpha),
        example_scores=scores,
        details={"component": worst, "ks_per_component": [round(float(s), 4) for s in stats]},
    )
