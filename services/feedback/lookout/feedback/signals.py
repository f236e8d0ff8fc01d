"""Review tasks from signals on the topics: one row per (call, reason) in review_tasks.

- llm.feedback: an end user's thumbs down.
- llm.scores: toxicity.* above its threshold, judge.* below its threshold.
- llm.drift: the example calls of a drifted result.
- llm.events: a random audit sample per app. The draw is a hash of the event id, so every
  replay and every instance draws the same calls.
- Where reviews teach the most about the judge (its agreement with reviewers is measured
  on what they label):
  - judge_unsure: a judge.* score within LOOKOUT_REVIEW_JUDGE_UNSURE_MARGIN of the middle
    of its rubric's scale (0.5 on the normalised 0..1 score: above it a judgment passes,
    below it fails), where the verdict could go either way. The default 0.125 is half a
    step of a 1..5 scale: exactly its 3; on 1..10, its 5 and 6. A share of them
    (LOOKOUT_REVIEW_JUDGE_UNSURE_RATE, drawn from the event id) is queued, as the middle
    verdict is common. A judge error or an invalid reply never becomes a score, so it
    cannot be seen here: only verdicts the judge gave.
  - judge_vs_thumbs: the judge passes a call beyond that margin and an end user rated it
    down, or fails it and an end user rated it up. The two signals arrive on different
    topics (thumbs down first, usually: the judge judges every call rated down), so the
    task builder pairs them: within a batch, with the ones it saw lately
    (LOOKOUT_REVIEW_JUDGE_RECENT_CALLS calls), and with the stored ones for the rest (one
    read of scores and one of feedback per batch, for that batch's calls only).

Severity (higher first): judge_vs_thumbs 3.5, thumbs down 3, toxicity 2 + score, judge 2 +
shortfall, judge_unsure 1.5, drift 1, audit 0.5. The queue adds age on top (see queue.py).

Each record says which call it is about and that call's model (identity on the record), so
no signal reads a call back. A record that does not decode with its topic's schema is
dead-lettered by the ConsumerWorker (lookout.core.dead_letters), like everywhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
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


JUDGE_VS_THUMBS_SEVERITY = 3.5  # above a plain thumbs down: it teaches about the answer and the judge
JUDGE_UNSURE_SEVERITY = 1.5  # below a low judge score, above drift examples
MIDDLE = 0.5  # the middle of every rubric's scale on the normalised judge.* score


def audit_draw(event_id: uuid.UUID, salt: bytes = b"") -> float:
    """A uniform number in [0, 1) fixed by the event id (and the salt: independent draws
    for independent samples)."""
    return int.from_bytes(hashlib.sha256(salt + event_id.bytes).digest()[:8], "big") / 2**64


def judge_verdict(value: float, margin: float) -> str:
    """'unsure' within `margin` of the middle of the scale, else 'pass' above it, 'fail' below."""
    if abs(value - MIDDLE) < margin:
        return "unsure"
    return "pass" if value > MIDDLE else "fail"


def judge_unsure(settings: FeedbackSettings, s: Score) -> Reason | None:
    if judge_verdict(s.value, settings.review_judge_unsure_margin) != "unsure":
        return None
    if audit_draw(s.event_id, b"judge_unsure/") >= settings.review_judge_unsure_rate:
        return None
    return Reason(s.event_id, s.app_id, s.model, "judge_unsure", f"{s.name} = {s.value:.3f}, near the middle "
                  "of its scale", JUDGE_UNSURE_SEVERITY, s.ts)


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
        if s.name.startswith("judge."):
            found = [r for r in [judge_unsure(settings, s)] if r is not None]
            if s.value < settings.review_judge_threshold:
                shortfall = settings.review_judge_threshold - s.value
                found.append(Reason(s.event_id, s.app_id, s.model, "judge", f"{s.name} = {s.value:.3f}",
                                    2.0 + shortfall, s.ts))
            return found
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


# -- a judgment against the end users' thumbs on the same call --------------------------

Call = tuple[str, uuid.UUID]  # (app_id, event_id)


@dataclass
class CallSignals:
    """What is known of one call: its judge scores, and each end user's latest thumbs."""

    model: str = ""
    verdicts: dict[str, float] = field(default_factory=dict)  # score name -> value
    thumbs: dict[str, tuple[datetime, int]] = field(default_factory=dict)  # author -> (ts, thumbs)
    # The sides read from the store once: what comes later comes through the topics.
    stored: set[str] = field(default_factory=set)

    def vote(self, author: str, ts: datetime, thumbs: int) -> None:
        held = self.thumbs.get(author)
        if held is None or held[0] <= ts:
            self.thumbs[author] = (ts, thumbs)


class RecentSignals:
    """The judge scores and end-user thumbs of the calls seen lately, oldest dropped first
    beyond `max_calls` calls (the stored ones cover those)."""

    def __init__(self, max_calls: int):
        self.max_calls = max_calls
        self._calls: OrderedDict[Call, CallSignals] = OrderedDict()

    def __len__(self) -> int:
        return len(self._calls)

    def get(self, key: Call) -> CallSignals | None:
        return self._calls.get(key)

    def of(self, key: Call) -> CallSignals:
        found = self._calls.get(key)
        if found is None:
            found = self._calls[key] = CallSignals()
        self._calls.move_to_end(key)
        while len(self._calls) > max(self.max_calls, 1):
            self._calls.popitem(last=False)
        return found


_STORED_THUMBS = (
    "SELECT app_id, event_id, author, max(ts), argMax(thumbs, (ts, feedback_id)) FROM feedback "
    "WHERE source = 'end_user' AND thumbs IS NOT NULL AND app_id IN {apps:Array(String)} "
    "AND event_id IN {ids:Array(UUID)} GROUP BY app_id, event_id, author"
)
_STORED_VERDICTS = (
    "SELECT app_id, event_id, name, any(value) FROM scores WHERE startsWith(name, 'judge.') "
    "AND app_id IN {apps:Array(String)} AND event_id IN {ids:Array(UUID)} "
    "GROUP BY app_id, event_id, name, evaluator, evaluator_version"
)


def _params(keys: Iterable[Call]) -> dict:
    keys = list(keys)
    return {"apps": sorted({a for a, _ in keys}), "ids": sorted({str(e) for _, e in keys})}


def disagreements(settings: FeedbackSettings, key: Call, call: CallSignals) -> list[Reason]:
    """judge_vs_thumbs reasons of one call: a judgment clearly one way, a thumbs the other."""
    out = []
    for name, value in sorted(call.verdicts.items()):
        verdict = judge_verdict(value, settings.review_judge_unsure_margin)
        against = {"pass": -1, "fail": 1}.get(verdict)
        votes = [ts for ts, thumbs in call.thumbs.values() if thumbs == against]
        if against is None or not votes:
            continue
        way = "down" if against == -1 else "up"
        out.append(Reason(key[1], key[0], call.model, "judge_vs_thumbs",
                          f"{name} = {value:.3f} but an end user rated it {way}", JUDGE_VS_THUMBS_SEVERITY,
                          max(votes)))
    return out


class ThumbsVsJudge:
    """Pairs the judge scores and end-user thumbs of a batch with each other, with the
    recent ones and with the stored ones, into judge_vs_thumbs reasons."""

    def __init__(self, session: Session, max_calls: int):
        self.session = session
        self.recent = RecentSignals(max_calls)

    def add(self, message: object) -> Call | None:
        """Note a judge score or an end user's thumbs; the call it is about, else None."""
        if isinstance(message, Score) and message.name.startswith("judge."):
            key = (message.app_id, message.event_id)
            call = self.recent.of(key)
            call.verdicts[message.name] = message.value
            call.model = call.model or message.model
            return key
        if isinstance(message, Feedback) and message.source == "end_user" and message.thumbs is not None:
            key = (message.app_id, message.event_id)
            call = self.recent.of(key)
            call.vote(message.author, message.ts, message.thumbs)
            call.model = call.model or (message.model or "")
            return key
        return None

    def _complete(self, keys: set[Call]) -> None:
        """Fill in, from the store, the side each call of the batch lacks (blocking)."""
        no_votes = [k for k in keys if not self.recent.of(k).thumbs and "thumbs" not in self.recent.of(k).stored]
        no_verdicts = [k for k in keys if not self.recent.of(k).verdicts and "verdicts" not in self.recent.of(k).stored]
        for k in no_votes:
            self.recent.of(k).stored.add("thumbs")
        for k in no_verdicts:
            self.recent.of(k).stored.add("verdicts")
        if no_votes:
            for app_id, event_id, author, ts, thumbs in self.session.rows(_STORED_THUMBS, **_params(no_votes)):
                if (app_id, event_id) in keys and thumbs is not None:
                    self.recent.of((app_id, event_id)).vote(author, ts, int(thumbs))
        if no_verdicts:
            for app_id, event_id, name, value in self.session.rows(_STORED_VERDICTS, **_params(no_verdicts)):
                if (app_id, event_id) in keys:
                    self.recent.of((app_id, event_id)).verdicts.setdefault(name, float(value))

    async def reasons(self, settings: FeedbackSettings, keys: set[Call]) -> list[Reason]:
        if not keys:
            return []
        await asyncio.to_thread(self._complete, keys)
        return [r for key in sorted(keys, key=str) for r in disagreements(settings, key, self.recent.of(key))]


class TaskBuilder:
    """The consumer handler: store the reasons of a batch; the ConsumerWorker commits after."""

    def __init__(self, settings: FeedbackSettings, session: Session, runtime: RuntimeSettings | None = None):
        self.settings = settings
        self.session = session
        self.runtime = runtime  # thresholds and audit rates an admin changed at run time
        self.thumbs_vs_judge = ThumbsVsJudge(session, settings.review_judge_recent_calls)

    async def handle(self, batch: Batch) -> None:
        rows = []
        paired: set[Call] = set()
        current = self.settings if self.runtime is None else await asyncio.to_thread(self.runtime.current)
        for decoded in batch.messages:
            if (key := self.thumbs_vs_judge.add(decoded.message)) is not None:
                paired.add(key)
            for reason in reasons_for(current, decoded.message):
                QUEUED.labels(reason.kind).inc()
                rows.append(reason.row())
        for reason in await self.thumbs_vs_judge.reasons(current, paired):
            QUEUED.labels(reason.kind).inc()
            rows.append(reason.row())
        if rows:
            await self.session.ainsert("review_tasks", rows, COLUMNS)


# The topics the task builder reads (base names).
SIGNAL_TOPICS = (topics.FEEDBACK, topics.SCORES, topics.DRIFT, topics.EVENTS)


