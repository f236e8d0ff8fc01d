"""Findings → DriftResult records for llm.drift. Ids and timestamps derive from the window
(stream, reference, window index, signal), never from the clock, so a window replayed
after a crash produces the same records and storage collapses them."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from lookout.core.events import DriftResult

from .detector import Finding
from .windows import Window

RESULTS_NAMESPACE = uuid.UUID("3d0c6f1e-8a45-4f0e-9d0b-6c6f6f6b6472")


def result_id(window: Window, signal: str) -> uuid.UUID:
    return uuid.uuid5(RESULTS_NAMESPACE, f"{window.key}/{window.reference_id}/{window.index}/{signal}")


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return float(value) if math.isfinite(value) else None


def build(window: Window, finding: Finding, streak: int, drifted: bool, encoder: str) -> DriftResult:
    o = finding.outcome
    details: dict[str, Any] = {
        **o.details,
        "window_index": window.index,
        "window_crossed": o.crossed,
        "consecutive_windows": streak,
        # Sampling: of the events since the previous test, how many the window took.
        "events_seen": window.seen,
        "events_sampled": window.admitted,
        "sample_rate": round(window.admitted / window.seen, 4) if window.seen else 1.0,
        "encoder": encoder,
    }
    return DriftResult(
        result_id=result_id(window, finding.signal),
        ts=window.end.astimezone(UTC) if window.end.tzinfo else window.end.replace(tzinfo=UTC),
        app_id=window.key.app_id,
        model=window.key.model,
        prompt_version=window.key.prompt_version or None,
        window_start=window.start,
        window_end=window.end,
        signal=finding.signal,
        method=o.method,
        statistic=_finite(o.statistic) or 0.0,
        p_value=_finite(o.p_value),
        threshold=_finite(o.threshold),
        drifted=drifted,
        reference_size=finding.reference_size,
        current_size=finding.current_size,
        reference_id=window.reference_id,
        # Examples are named whenever this window crossed, so the first crossing of a
        # streak already shows what is moving.
        examples=finding.examples if o.crossed else [],
        details=details,
    )


def now() -> datetime:
    return datetime.now(UTC)
