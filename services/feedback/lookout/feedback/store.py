"""Reads the feedback service makes: the call a vote is for, and an author's latest vote.

One ClickHouse client is one session that refuses concurrent queries, so every read and
write of this service goes through one `Db` that takes a lock (callers run it in threads).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client


class Db:
    def __init__(self, client: Client):
        self.client = client
        self._lock = threading.Lock()

    def rows(self, sql: str, **params: Any) -> list[tuple]:
        with self._lock:
            return self.client.query(sql, parameters=params).result_rows

    def named(self, sql: str, **params: Any) -> list[dict]:
        with self._lock:
            result = self.client.query(sql, parameters=params)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`fn(client, ...)` under this Db's lock (helpers that take a raw client)."""
        with self._lock:
            return fn(self.client, *args, **kwargs)

    def insert(self, table: str, rows: Sequence[Sequence], columns: Sequence[str]) -> None:
        if rows:
            with self._lock:
                self.client.insert(table, [list(r) for r in rows], column_names=list(columns))


@dataclass(frozen=True)
class CallRef:
    """What a vote needs of its call: the app it belongs to, and what the vote copies so
    per-version views count it without a join (read in the same row as the app)."""

    app_id: str
    model: str
    model_version: str
    environment: str
    ts: datetime


def _ref(row: tuple) -> CallRef:
    app_id, model, version, environment, ts = row
    return CallRef(app_id, model, version, environment, ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts)


def call_ref(db: Db, app_id: str, event_id: uuid.UUID) -> CallRef | None:
    """The stored call of `app_id` with this id, None when there is none (yet). Always by
    app: another app may have stored a call with the same event id."""
    rows = db.rows(
        "SELECT app_id, model, model_version, environment, ts FROM llm_calls "
        "WHERE app_id = {app:String} AND event_id = {id:UUID} LIMIT 1",
        app=app_id, id=str(event_id),
    )
    return _ref(rows[0]) if rows else None


def call_refs(db: Db, event_id: uuid.UUID, limit: int = 10) -> list[CallRef]:
    """The stored calls with this id, one per app (for a caller allowed on every app that
    did not name one: more than one means the caller must)."""
    rows = db.rows(
        "SELECT app_id, any(model), any(model_version), any(environment), any(ts) FROM llm_calls "
        "WHERE event_id = {id:UUID} GROUP BY app_id ORDER BY app_id LIMIT {n:UInt32}",
        id=str(event_id), n=limit,
    )
    return [_ref(r) for r in rows]


@dataclass(frozen=True)
class Vote:
    feedback_id: uuid.UUID
    thumbs: int | None
    comment: str
    ts: datetime | None = None


def latest_vote(db: Db, app_id: str, event_id: uuid.UUID, source: str, author: str) -> Vote | None:
    rows = db.rows(
        "SELECT feedback_id, thumbs, comment, ts FROM feedback_latest WHERE event_id = {id:UUID} "
        "AND source = {source:String} AND author = {author:String} AND app_id = {app:String}",
        id=str(event_id),
        app=app_id,
        source=source,
        author=author,
    )
    if not rows:
        return None
    ts = rows[0][3]
    return Vote(rows[0][0], rows[0][1], rows[0][2], ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts)


def locked(db: Db, fn, *args):
    """Run fn(client, *args) holding the client's lock (for helpers that take a raw client)."""
    with db._lock:
        return fn(db.client, *args)
