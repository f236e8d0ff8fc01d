"""What every drift test returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Outcome:
    method: str
    statistic: float
    # p-value where the method has one; threshold is what `statistic` (or the p-value,
    # for methods that test at alpha) was compared with.
    p_value: float | None
    threshold: float | None
    crossed: bool
    # One score per current item, higher = more typical of the shift; the caller picks
    # example events from it. None when the method cannot rank items.
    example_scores: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + #null): never 0, exact under exchangeability."""
    return float((1 + np.count_nonzero(null >= observed - 1e-12)) / (1 + null.size))


def permuted_membership(m: int, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean (m+n, permutations) matrix: column j marks which items permutation j puts in
    the 'current' group (n of them). Vectorised statistics use it as a weight matrix."""
    total = m + n
    order = np.argsort(rng.random((permutations, total)), axis=1)
    member = np.zeros((permutations, total), dtype=bool)
    np.put_along_axis(member, order[:, :n], True, axis=1)
    return member.T
