"""Share of flagged items (empty or refused answers) in two samples: Fisher's exact test."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import fisher_exact

from .outcome import Outcome


def share_test(reference: np.ndarray, current: np.ndarray, *, alpha: float = 0.01) -> Outcome:
    reference = np.asarray(reference, dtype=bool)
    current = np.asarray(current, dtype=bool)
    m, n = len(reference), len(current)
    a, c = int(reference.sum()), int(current.sum())
    exact: Any = fisher_exact([[a, m - a], [c, n - c]])  # scipy's stubs do not name its fields
    p = float(exact.pvalue)
    ref_share, cur_share = a / max(m, 1), c / max(n, 1)
    # Flagged items typify a rising share; unflagged ones a falling share.
    scores = current.astype(float) if cur_share >= ref_share else (~current).astype(float)
    return Outcome(
        method="fisher_exact",
        statistic=cur_share - ref_share,
        p_value=p,
        threshold=alpha,
        crossed=p < alpha,
        example_scores=scores,
        details={"reference_share": round(ref_share, 5), "current_share": round(cur_share, 5)},
    )
