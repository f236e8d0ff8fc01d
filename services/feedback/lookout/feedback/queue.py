"""The review queue: which open task a reviewer gets next, and what the form shows.

ClickHouse ranks open tasks (reasons grouped per call, minus completed ones: the
review_task_state view of migration 0015 says when a task was finished, for this queue and
the dashboards' queue panels alike); the claim log (claims.py) decides who gets one. A task
is a call, and a call is (app_id, event_id): two apps may store the same event id, so
every read and join here is by both. A reviewer tries a random one of the first few
available tasks rather than the very first, so many reviewers asking at once mostly claim
different tasks instead of all racing for one.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import orjson

from lookout.core.session import Session

from .claims import ClaimLog, ClaimTimeout

_ATTEMPTS = 50


def task_key(app_id: str, event_id: uuid.UUID | str) -> str:
    """The claim log's name of a task."""
    return f"{app_id}/{event_id}"


def reviews_needed(event_id: uuid.UUID, overlap: float) -> int:
    """2 for the overlap share of tasks (a draw fixed by the event id), else 1."""
    draw = int.from_bytes(hashlib.sha256(b"overlap/" + event_id.bytes).digest()[:8], "big") / 2**64
    return 2 if draw < overlap else 1


@dataclass(frozen=True)
class QueueFilter:
    apps: tuple[str, ...] | None  # None: every app
    app_id: str | None = None
    kind: str | None = None


@dataclass
class Candidate:
    event_id: uuid.UUID
    app_id: str
    priority: float
    reasons: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return task_key(self.app_id, self.event_id)


def _where(f: QueueFilter) -> tuple[str, dict]:
    clauses, params = [], {}
    if f.apps is not None:
        clauses.append("app_id IN {apps:Array(String)}")
        params["apps"] = list(f.apps)
    if f.app_id:
        clauses.append("app_id = {app_id:String}")
        params["app_id"] = f.app_id
    return (" AND ".join(clauses) or "1"), params


def candidates(session: Session, f: QueueFilter, age_weight: float, reviewer: str = "",
               limit: int = 200) -> list[Candidate]:
    where, params = _where(f)
    params["me"] = reviewer
    having = "has(kinds, {kind:String})" if f.kind else "1"
    if f.kind:
        params["kind"] = f.kind
    rows = session.rows(
        f"""
        SELECT event_id, app_id, groupUniqArray(reason) AS reasons, groupUniqArray(kind) AS kinds,
               max(severity) + {{w:Float64}} * dateDiff('second', min(created_at), now64(3)) / 3600 AS priority
        FROM review_task_state
        WHERE {where} AND done_at IS NULL
          AND (app_id, event_id) NOT IN (
              SELECT app_id, event_id FROM review_done WHERE {where} AND reviewer = {{me:String}})
        GROUP BY app_id, event_id
        HAVING {having}
        ORDER BY priority DESC, event_id, app_id
        LIMIT {{limit:UInt32}}
        """,
        w=age_weight,
        limit=limit,
        **params,
    )
    return [Candidate(r[0], r[1], float(r[4]), sorted(r[2]), sorted(r[3])) for r in rows]


def open_count(session: Session, f: QueueFilter) -> int:
    where, params = _where(f)
    kind = " AND kind = {kind:String}" if f.kind else ""
    if f.kind:
        params["kind"] = f.kind
    rows = session.rows(
        f"SELECT uniqExact(app_id, event_id) FROM review_task_state WHERE {where}{kind} AND done_at IS NULL",
        **params,
    )
    return int(rows[0][0])


def done_count(session: Session, reviewer: str) -> int:
    return int(session.rows("SELECT uniqExact(app_id, event_id) FROM review_done WHERE reviewer = {r:String}",
                       r=reviewer)[0][0])


def agreement(session: Session, apps: list[str] | None) -> dict:
    """Inter-annotator agreement on the calls two reviewers labelled (the overlap share):
    the first two reviews of each such call, compared on rating, thumbs and labels."""
    where = "source = 'reviewer'" + (" AND app_id IN {apps:Array(String)}" if apps is not None else "")
    rows = session.rows(
        f"SELECT app_id, event_id, groupArray(2)((rating, thumbs, labels)) FROM "
        f"(SELECT * FROM feedback_latest WHERE {where} ORDER BY ts, author) "
        f"GROUP BY app_id, event_id HAVING count() >= 2",
        **({"apps": apps} if apps is not None else {}),
    )
    pairs = [(a, b) for _, _, (a, b) in rows]
    ratings = [(a[0], b[0]) for a, b in pairs if a[0] is not None and b[0] is not None]
    thumbs = [(a[1], b[1]) for a, b in pairs if a[1] is not None and b[1] is not None]
    jaccard = [len(set(a[2]) & set(b[2])) / len(set(a[2]) | set(b[2])) for a, b in pairs if a[2] or b[2]]

    def share(items, same) -> float | None:
        return round(sum(1 for x in items if same(*x)) / len(items), 4) if items else None

    return {
        "pairs": len(pairs),
        "rating_exact": share(ratings, lambda x, y: x == y),
        "rating_within_1": share(ratings, lambda x, y: abs(x - y) <= 1),
        "thumbs": share(thumbs, lambda x, y: x == y),
        "labels_jaccard": round(sum(jaccard) / len(jaccard), 4) if jaccard else None,
    }


def task_apps(session: Session, event_id: uuid.UUID) -> list[str]:
    """The apps that have a review task for this event id (usually one)."""
    rows = session.rows("SELECT DISTINCT app_id FROM review_tasks WHERE event_id = {id:UUID} ORDER BY app_id LIMIT 100",
                   id=str(event_id))
    return [r[0] for r in rows]


class RankCache:
    """The ranked candidates per filter, shared by the requests of one instance for
    `ttl_s` (one query in flight per filter). A stale ranking is harmless: the claim log's
    fold says which of them are still open, and the log decides each claim."""

    def __init__(self, ttl_s: float = 0.5):
        self.ttl_s = ttl_s
        self._entries: dict[Hashable, tuple[float, asyncio.Future]] = {}

    async def get(self, key: Hashable, load: Callable[[], Awaitable[list[Candidate]]]) -> list[Candidate]:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now and not (hit[1].done() and hit[1].exception()):
            return await asyncio.shield(hit[1])
        future = asyncio.ensure_future(load())
        self._entries[key] = (now + self.ttl_s, future)
        if len(self._entries) > 1000:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        return await asyncio.shield(future)


async def claim_next(
    log: ClaimLog, reviewer: str, f: QueueFilter, fetch, overlap: float = 0.0, rng: random.Random | None = None
) -> tuple[Candidate, int] | None:
    """Claim the next task for `reviewer`: (task, lease expiry ms), or None when the queue
    is empty for them. `fetch(f)` returns the ranked candidates (run in a thread)."""
    rng = rng or random.Random()
    for attempt in range(_ATTEMPTS):
        ranked = await fetch(f)
        now_ms = time.time_ns() // 1_000_000
        held = log.state.holding(reviewer, now_ms)
        if held is not None:
            mine = [c for c in ranked if c.key == held]
            if mine:
                return mine[0], log.state.tasks[held].expires_ms
        open_ = [c for c in ranked if log.state.available(c.key, reviewer, now_ms)]
        if not open_:
            return None
        pick = open_[0] if attempt == 0 else rng.choice(open_[: 2 ** min(attempt, 6)])
        verdict = await log.request("claim", pick.key, reviewer, reviews_needed(pick.event_id, overlap))
        if verdict.won:
            return pick, verdict.expires_ms
    raise ClaimTimeout(f"no claim won in {_ATTEMPTS} tries; retry")


def call_detail(session: Session, app_id: str, event_id: uuid.UUID) -> dict | None:
    """What the review form shows (PII was redacted by ingest before storage): the call of
    this app only, never another app's call with the same id."""
    rows = session.named(
        "SELECT event_id, ts, app_id, model, prompt_version, input, prompt, output, context, reference, status, "
        "error, latency_ms, tokens_in, tokens_out FROM llm_calls WHERE app_id = {app:String} AND event_id = {id:UUID} "
        "LIMIT 1",
        app=app_id, id=str(event_id),
    )
    if not rows:
        return None
    call = rows[0]
    call["event_id"] = str(call["event_id"])
    call["ts"] = call["ts"].isoformat()
    call["input"] = orjson.loads(call["input"]) if call["input"] else []
    call["scores"] = [
        {"name": r[0], "value": r[1], "label": r[2], "explanation": r[3]}
        for r in session.rows(
            "SELECT name, value, label, explanation FROM scores WHERE app_id = {app:String} AND event_id = {id:UUID} "
            "ORDER BY name",
            app=app_id, id=str(event_id),
        )
    ]
    return call
