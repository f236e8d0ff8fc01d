"""Domain-classifier test: can a classifier tell current items from reference ones?

A logistic regression is trained on half of the pooled items and scored on the other half;
the statistic is the ROC AUC on that held-out half, and the threshold is the (1 - alpha)
quantile of the AUC of those same held-out scores under permuted labels.

Why a single held-out half and not k-fold out-of-fold scores: with k folds every fold's
model trains on the other folds' labels, and under no drift the pooled out-of-fold AUC is
more variable than the label-permutation null; measured on real MiniLM windows it raised
false alarms to 12-14 % at alpha 0.05. On a held-out half the model never saw those labels,
so permuting them is an exact null."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from .outcome import Outcome, permutation_p_value, permuted_membership


def _model() -> LogisticRegression:
    # Strong L2 keeps 384-dimensional fits on a few hundred rows from memorising noise.
    return LogisticRegression(C=0.1, max_iter=300)


def auc_from_ranks(ranks: np.ndarray, positives: np.ndarray, n_pos: int, n_neg: int) -> np.ndarray:
    """Mann-Whitney AUC; positives is a boolean (N,) or a 0/1 (N, P) membership."""
    rank_sum = ranks @ positives if positives.ndim == 2 else ranks[positives].sum()
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def classifier_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    alpha: float = 0.01,
    permutations: int = 200,
    rng: np.random.Generator | None = None,
) -> Outcome:
    rng = rng or np.random.default_rng(0)
    m, n = len(reference), len(current)
    x = np.vstack([reference, current])
    y = np.concatenate([np.zeros(m, dtype=int), np.ones(n, dtype=int)])
    train, test = train_test_split(np.arange(m + n), test_size=0.5, stratify=y, random_state=int(rng.integers(1 << 31)))
    scores = _model().fit(x[train], y[train]).decision_function(x[test])
    y_test = y[test]
    n_pos, n_neg = int(y_test.sum()), int(len(y_test) - y_test.sum())
    ranks = rankdata(scores)
    auc = float(auc_from_ranks(ranks, y_test.astype(bool), n_pos, n_neg))
    null = auc_from_ranks(ranks, permuted_membership(n_neg, n_pos, permutations, rng).astype(float), n_pos, n_neg)
    p = permutation_p_value(auc, null)
    # Examples are ranked by a model of all items (no test is made on these scores).
    typical = _model().fit(x, y).decision_function(current)
    return Outcome(
        method="domain_classifier_auc",
        statistic=auc,
        p_value=p,
        threshold=float(np.quantile(null, 1.0 - alpha)),
        crossed=p < alpha,
        example_scores=typical,
        details={"held_out": len(test), "permutations": permutations},
    )
