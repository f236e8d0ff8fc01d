"""Reads the feedback service makes at its edge: the call a vote is for, and an author's
latest vote. Every read and write of the service goes through its one `Session`
(lookout.core.session), which owns the ClickHouse client and the lock its queries take
turns under (blocking: callers run these in threads).

The call is looked up here, where a vote arrives naming it, and only here: the vote then
carries its call's identity (app, model, model version, environment, ts) on the record,
so no consumer downstream reads the call back.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from lookout.core.session import Session


@dataclass(frozen=True)
class CallRef:
    """What a vote needs of its call: the app it belongs to, and the identity the vote
    carries so consumers and per-version views need no lookup (read in the same row as
    the app)."""

    app_id: str
    model: str
    model_version: str
    environment: str
    ts: datetime


def identity(call: CallRef) -> dict[str, Any]:
    """The Feedback fields that carry a vote's call."""
    return {"model": call.model, "model_version": call.model_version, "environment": call.environment,
            "call_ts": call.ts}


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _ref(row: tuple) -> CallRef:
    app_id, model, version, environment, ts = row
    return CallRef(app_id, model, version, environment, _utc(ts))


def call_ref(session: Session, app_id: str, event_id: uuid.UUID) -> CallRef | None:
    """The stored call of `app_id` with this id, None when there is none (yet). Always by
    app: another app may have stored a call with the same event id."""
    rows = session.rows(
        "SELECT app_id, model, model_version, environment, ts FROM llm_calls "
        "WHERE app_id = {app:String} AND event_id = {id:UUID} LIMIT 1",
        app=app_id, id=str(event_id),
    )
    return _ref(rows[0]) if rows else None


def call_refs(session: Session, event_id: uuid.UUID, limit: int = 10) -> list[CallRef]:
    """The stored calls with this id, one per app (for a caller allowed on every app that
    did not name one: more than one means the caller must)."""
    rows = session.rows(
        "SELECT app_id, any(model), any(model_version), any(environment), any(ts) FROM llm_calls "
        "WHERE event_id = {id:UUID} GROUP BY app_id ORDER BY app_id LIMIT {n:UInt32}",
        id=str(event_id), n=limit,
    )
    return [_ref(r) for r in rows]


@dataclass(frozen=True)
class Vote:
    feedback_id: uuid.UUID
    thumbs: Literal[-1, 1] | None  # as Feedback.thumbs: stored votes were validated as one
    comment: str
    ts: datetime | None = None


def latest_vote(session: Session, app_id: str, event_id: uuid.UUID, source: str, author: str) -> Vote | None:
    rows = session.rows(
        "SELECT feedback_id, thumbs, comment, ts FROM feedback_latest WHERE event_id = {id:UUID} "
        "AND source = {source:String} AND author = {author:String} AND app_id = {app:String}",
        id=str(event_id),
        app=app_id,
        source=source,
        author=author,
    )
    if not rows:
        return None
    return Vote(rows[0][0], rows[0][1], rows[0][2], _utc(rows[0][3]))
