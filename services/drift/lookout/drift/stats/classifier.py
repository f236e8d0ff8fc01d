"""Domain-classifier test: can a classifier tell current items from reference ones?
ROC AUC of out-of-fold predictions (every item is scored by a model that did not train on
it), against a permutation threshold: the AUC of those same scores under shuffled labels."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .outcome import Outcome, permutation_p_value, permuted_membership


def out_of_fold_scores(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    scores = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, y):
        # Strong L2 keeps 384-dimensional fits on a few hundred rows from memorising noise.
        model = LogisticRegression(C=0.1, max_iter=300)
        model.fit(x[train], y[train])
        scores[test] = model.decision_function(x[test])
    return scores


def auc_from_ranks(ranks: np.ndarray, positives: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    """Mann-Whitney AUC; positives is a boolean (N,) or (N, P) membership."""
    rank_sum = ranks @ positives if positives.ndim == 2 else ranks[positives].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def classifier_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.01,
    permutations: int = 200,
    folds: int = 5,
    rng: np.random.Generator | None = None,
) -> Outcome:
    rng = rng or np.random.default_rng(0)
    m, n = len(reference), len(current)
    x = np.vstack([reference, current])
    y = np.concatenate([np.zeros(m, dtype=int), np.ones(n, dtype=int)])
    folds = max(2, min(folds, m, n))
    scores = out_of_fold_scores(x, y, folds, seed=int(rng.integers(1 << 31)))
    ranks = rankdata(scores)
    auc = float(auc_from_ranks(ranks, y.astype(bool), n, m))
    null = auc_from_ranks(ranks, permuted_membership(m, n, permutations, rng).astype(float), n, m)
    threshold = float(np.quantile(null, 1.0 - alpha))
    p = permutation_p_value(auc, null)
    return Outcome(
        method="domain_classifier_auc",
        statistic=auc,
        p_value=p,
        threshold=threshold,
        crossed=p < alpha,
        example_scores=scores[m:],
        details={"folds": folds, "permutations": permutations},
    )
