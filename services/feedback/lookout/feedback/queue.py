"""The review queue: which open task a reviewer gets next, and what the form shows.

ClickHouse ranks open tasks (reasons grouped per call, minus completed ones); the claim
log (claims.py) decides who gets one. A reviewer tries a random one of the first few
available tasks rather than the very first, so many reviewers asking at once mostly
claim different tasks instead of all racing for one.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field

import orjson

from .claims import ClaimLog
from .store import Db

_SPREAD = 8
_ATTEMPTS = 12


@dataclass(frozen=True)
class QueueFilter:
    apps: list[str] | None  # None: every app
    app_id: str | None = None
    kind: str | None = None


@dataclass
class Candidate:
    event_id: uuid.UUID
    app_id: str
    priority: float
    reasons: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def _where(f: QueueFilter) -> tuple[str, dict]:
    clauses, params = [], {}
    if f.apps is not None:
        clauses.append("app_id IN {apps:Array(String)}")
        params["apps"] = f.apps
    if f.app_id:
        clauses.append("app_id = {app_id:String}")
        params["app_id"] = f.app_id
    return (" AND ".join(clauses) or "1"), params


def candidates(db: Db, f: QueueFilter, age_weight: float, limit: int = 200) -> list[Candidate]:
    where, params = _where(f)
    having = "has(kinds, {kind:String})" if f.kind else "1"
    if f.kind:
        params["kind"] = f.kind
    rows = db.rows(
        f"""
        SELECT event_id, any(app_id) AS app, groupUniqArray(reason) AS reasons, groupUniqArray(kind) AS kinds,
               max(severity) + {{w:Float64}} * dateDiff('second', min(created_at), now64(3)) / 3600 AS priority
        FROM review_tasks
        WHERE {where} AND event_id NOT IN (SELECT event_id FROM review_done WHERE {where})
        GROUP BY event_id
        HAVING {having}
        ORDER BY priority DESC, event_id
        LIMIT {{limit:UInt32}}
        """,
        w=age_weight,
        limit=limit,
        **params,
    )
    return [Candidate(r[0], r[1], float(r[4]), sorted(r[2]), sorted(r[3])) for r in rows]


def open_count(db: Db, f: QueueFilter) -> int:
    where, params = _where(f)
    kind = " AND kind = {kind:String}" if f.kind else ""
    if f.kind:
        params["kind"] = f.kind
    rows = db.rows(
        f"SELECT uniqExact(event_id) FROM review_tasks WHERE {where}{kind} "
        f"AND event_id NOT IN (SELECT event_id FROM review_done WHERE {where})",
        **params,
    )
    return int(rows[0][0])


def done_count(db: Db, reviewer: str) -> int:
    return int(db.rows("SELECT uniqExact(event_id) FROM review_done WHERE reviewer = {r:String}", r=reviewer)[0][0])


def task_app(db: Db, event_id: uuid.UUID) -> str | None:
    rows = db.rows("SELECT any(app_id) FROM review_tasks WHERE event_id = {id:UUID} HAVING count() > 0",
                   id=str(event_id))
    return rows[0][0] if rows else None


async def claim_next(
    log: ClaimLog, reviewer: str, f: QueueFilter, fetch, rng: random.Random | None = None
) -> tuple[Candidate, int] | None:
    """Claim the next task for `reviewer`: (task, lease expiry ms), or None when the queue
    is empty for them. `fetch(f)` returns the ranked candidates (run in a thread)."""
    rng = rng or random.Random()
    for _ in range(_ATTEMPTS):
        ranked = await fetch(f)
        now_ms = time.time_ns() // 1_000_000
        held = log.state.holding(reviewer, now_ms)
        if held is not None:
            mine = [c for c in ranked if str(c.event_id) == held]
            if mine:
                return mine[0], log.state.tasks[held].expires_ms
        open_ = [c for c in ranked if log.state.available(str(c.event_id), reviewer, now_ms)]
        if not open_:
            return None
        pick = rng.choice(open_[:_SPREAD])
        verdict = await log.request("claim", pick.event_id, reviewer)
        if verdict.won:
            return pick, verdict.expires_ms
    return None


def call_detail(db: Db, event_id: uuid.UUID) -> dict | None:
    """What the review form shows (PII was redacted by ingest before storage)."""
    rows = db.named(
        "SELECT event_id, ts, app_id, model, prompt_version, input, prompt, output, context, reference, status, "
        "error, latency_ms, tokens_in, tokens_out FROM llm_calls WHERE event_id = {id:UUID} LIMIT 1",
        id=str(event_id),
    )
    if not rows:
        return None
    call = rows[0]
    call["event_id"] = str(call["event_id"])
    call["ts"] = call["ts"].isoformat()
    call["input"] = orjson.loads(call["input"]) if call["input"] else []
    call["scores"] = [
        {"name": r[0], "value": r[1], "label": r[2], "explanation": r[3]}
        for r in db.rows(
            "SELECT name, value, label, explanation FROM scores WHERE event_id = {id:UUID} ORDER BY name",
            id=str(event_id),
        )
    ]
    return call
