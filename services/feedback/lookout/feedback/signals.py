"""Review tasks from signals on the topics: one row per (call, reason) in review_tasks.

- llm.feedback: an end user's thumbs down.
- llm.scores: toxicity.* above its threshold, judge.* below its threshold.
- llm.drift: the example calls of a drifted result.
- llm.events: a random audit sample per app. The draw is a hash of the event id, so every
  replay and every instance draws the same calls.

Severity (higher first): thumbs down 3, toxicity 2 + score, judge 2 + shortfall, drift 1,
audit 0.5. The queue adds age on top (see queue.py).

Each record says which call it is about and that call's model (identity on the record), so
no signal reads a call back. A record that does not decode with its topic's schema is
dead-lettered by the ConsumerWorker (lookout.core.dead_letters), like everywhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter
from pydantic import BaseModel

from lookout.core import topics
from lookout.core.dead_letters import Batch
from lookout.core.events import DriftResult, Feedback, LlmCall, Score
from lookout.core.session import Session

from .runtime import RuntimeSettings
from .settings import FeedbackSettings

QUEUED = Counter("lookout_review_reasons_total", "Reasons a call was queued for review", ["kind"])
COLUMNS = ["event_id", "app_id", "model", "kind", "reason", "severity", "created_at"]


@dataclass(frozen=True)
class Reason:
    event_id: uuid.UUID
    app_id: str
    model: str
    kind: str
    reason: str
    severity: float
    created_at: datetime

    def row(self) -> list:
        return [self.event_id, self.app_id, self.model, self.kind, self.reason, self.severity, self.created_at]


def audit_draw(event_id: uuid.UUID) -> float:
    """A uniform number in [0, 1) fixed by the event id."""
    return int.from_bytes(hashlib.sha256(event_id.bytes).digest()[:8], "big") / 2**64


def reasons_for(settings: FeedbackSettings, message: BaseModel) -> list[Reason]:
    """The reasons one decoded record gives to review its call (usually none)."""
    if isinstance(message, Feedback):
        f = message
        if f.source == "end_user" and f.thumbs == -1:
            return [Reason(f.event_id, f.app_id, f.model or "", "thumbs_down", "thumbs down from an end user", 3.0,
                           f.ts)]
    elif isinstance(message, Score):
        s = message
        if s.name.startswith("toxicity.") and s.value > settings.review_toxicity_threshold:
            return [Reason(s.event_id, s.app_id, s.model, "toxicity", f"{s.name} = {s.value:.3f}", 2.0 + s.value, s.ts)]
        if s.name.startswith("judge.") and s.value < settings.review_judge_threshold:
            shortfall = settings.review_judge_threshold - s.value
            return [Reason(s.event_id, s.app_id, s.model, "judge", f"{s.name} = {s.value:.3f}", 2.0 + shortfall, s.ts)]
    elif isinstance(message, DriftResult):
        d = message
        if d.drifted:
            why = f"drift: {d.signal} ({d.method} {d.statistic:.3g})"
            return [Reason(e, d.app_id, d.model, "drift", why, 1.0, d.ts) for e in d.examples]
    elif isinstance(message, LlmCall):
        c = message
        if audit_draw(c.event_id) < settings.review_audit_app_rates.for_app(c.app_id, settings.review_audit_rate):
            return [Reason(c.event_id, c.app_id, c.model, "audit", "random audit sample", 0.5, c.ts)]
    return []


class TaskBuilder:
    """The consumer handler: store the reasons of a batch; the ConsumerWorker commits after."""

    def __init__(self, settings: FeedbackSettings, session: Session, runtime: RuntimeSettings | None = None):
        self.settings = settings
        self.session = session
        self.runtime = runtime  # thresholds and audit rates an admin changed at run time

    async def handle(self, batch: Batch) -> None:
        rows = []
        current = self.settings if self.runtime is None else await asyncio.to_thread(self.runtime.current)
        for decoded in batch.messages:
            for reason in reasons_for(current, decoded.message):
                QUEUED.labels(reason.kind).inc()
                rows.append(reason.row())
        if rows:
            await self.session.ainsert("review_tasks", rows, COLUMNS)


# The topics the task builder reads (base names).
SIGNAL_TOPICS = (topics.FEEDBACK, topics.SCORES, topics.DRIFT, topics.EVENTS)


