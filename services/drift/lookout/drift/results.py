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
from .stats.outcome import Outcome
from .windows import Window

RESULTS_NAMESPACE = uuid.UUID("3d0c6f1e-8a45-4f0e-9d0b-6c6f6f6b6472")


def result_id(window: Window, signal: str) -> uuid.UUID:
    return uuid.uuid5(RESULTS_NAMESPACE, f"{window.key}/{window.reference_id}/{window.index}/{signal}")


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    return float(value) if math.isfinite(value) else None


def _window_test(o: Outcome | None) -> dict[str, Any] | None:
    if o is None:
        return None
    # The fixed-window test's own explanation (tokens or length buckets that moved most)
    # is kept; its example scores are not (the examples come from the new part).
    keep = {k: v for k, v in o.details.items() if k in ("top_tokens", "buckets", "reference_share", "current_share",
                                                        "reference_median", "current_median", "bandwidth")}
    return {"method": o.method, "statistic": _finite(o.statistic), "p_value": _finite(o.p_value),
            "threshold": _finite(o.threshold), "crossed": o.crossed, **keep}


def build(window: Window, finding: Finding, encoder: str) -> DriftResult:
    o = finding.outcome
    details: dict[str, Any] = {
        **o.details,
        "window_index": window.index,
        # Why this window was reported: on schedule, or at once because evidence crossed.
        "reported_because": window.cause,
        # Sampling: of the events since the previous report, how many the encoder embedded.
        # Signals without the encoder (lengths, tokens, empty/refused) used every event.
        "events_seen": window.seen,
        "events_embedded": window.embedded,
        "sample_rate": round(window.embedded / window.seen, 4) if window.seen else 1.0,
        "encoder": encoder,
        "window_test": _window_test(finding.window_outcome),
    }
    if finding.share is not None:
        details["shift_share"] = {**finding.share.to_json(), "since_change_events": finding.share_events}
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
        drifted=o.crossed,
        reference_size=finding.reference_size,
        current_size=finding.current_size,
        reference_id=window.reference_id,
        # Examples from the part of the window that is new, named whenever the signal is
        # drifted, so the first drifted result already shows what moved.
        examples=finding.examples if o.crossed else [],
        details=details,
    )


def now() -> datetime:
    return datetime.now(UTC)
