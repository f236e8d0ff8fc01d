"""Evidently's embedding drift methods as an option of the windowed tests
(LOOKOUT_DRIFT_EMBEDDING_METHOD=evidently), called directly: its Report also computes a
slow t-SNE plot the per-window test does not need (the on-demand HTML report, report.py,
does use the Report). evidently 0.7 is a main dependency of lookout-drift since that
report; it needs pandas<3, which pins pandas for the drift service's environment."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .outcome import Outcome

# Evidently's telemetry: `DO_NOT_TRACK` (evidently.telemetry's switch, read on each event),
# `ITERATIVE_DO_NOT_TRACK` (the iterative-telemetry logger under it) and
# `EVIDENTLY_DISABLE_TELEMETRY=1` (evidently.legacy._config, read once at import).
_TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "ITERATIVE_DO_NOT_TRACK": "1", "EVIDENTLY_DISABLE_TELEMETRY": "1"}


def no_telemetry() -> None:
    """Switch Evidently's telemetry off; call before the first `import evidently`. The
    service runs where there may be no internet, and sends nothing it was not asked to."""
    for name, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def evidently_available() -> bool:
    no_telemetry()
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

    no_telemetry()
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    # Evidently's method object is untyped here: its bootstrap and threshold are attributes.
    method: Any = model(bootstrap=len(reference) < 1000)
    score, drifted, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
    return Outcome(
        method="evidently_model",
        statistic=float(score),
        p_value=None,
        threshold=None if method.bootstrap else method.threshold,
        crossed=bool(drifted),
    )
