"""Evidently's embedding drift methods as an option, called directly (its Report also
computes a slow t-SNE plot we do not need). evidently 0.7 needs pandas<3, so it is an
optional extra: `pip install 'lookout-drift[evidently]'`."""

from __future__ import annotations

import numpy as np

from .outcome import Outcome


def evidently_available() -> bool:
    try:
        import evidently  # noqa: F401
    except ImportError:
        return False
    return True


def evidently_default_test(reference: np.ndarray, current: np.ndarray) -> Outcome:
    """Evidently's default for EmbeddingsDriftMetric: the `model` method (SGD classifier on
    a 50/50 split, ROC AUC), with its bootstrap threshold when the reference is under 1000
    rows, exactly as the metric chooses it."""
    import pandas as pd
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    method = model(bootstrap=len(reference) < 1000)
    score, drifted, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
    return Outcome(
        method="evidently_model",
        statistic=float(score),
        p_value=None,
        threshold=None if method.bootstrap else method.threshold,
        crossed=bool(drifted),
    )
