"""The evaluator's tables (core migration 0016_alerts.sql), through one ClickHouse Session.

Each write is a new row with a higher version (ReplacingMergeTree), read back with FINAL;
the reads a viewer makes are scoped by app here, in SQL, so no caller can forget it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from lookout.core.ids import uuid7
from lookout.core.session import Session

from .engine import ACTIVE, Instance, State, Transition
from .outbox import Notification
from .silences import Silence

INSTANCE_COLUMNS = (
    "rule_uid", "fingerprint", "app_id", "labels", "state", "value", "error", "summary", "active_at", "fired_at",
    "resolved_at", "last_eval", "missing", "episode", "notified", "acked_by", "acked_at", "ack_comment", "version",
)
HISTORY_COLUMNS = (
    "history_id", "ts", "rule_uid", "fingerprint", "app_id", "labels", "event", "from_state", "to_state", "value",
    "reason", "actor", "episode",
)
NOTIFICATION_COLUMNS = (
    "notification_id", "receiver", "kind", "rule_uid", "fingerprint", "app_id", "payload", "created_at", "status",
    "attempts", "next_attempt_at", "last_error", "sent_at", "version",
)
SILENCE_COLUMNS = (
    "silence_id", "rule_uid", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at", "version",
)
MAX_LIST = 500

# Apps a viewer may read: None for every app; otherwise instances of those apps only
# (instances without an app, such as the cost burn or a failed query, are for viewers of all).
Apps = frozenset[str] | None


class _Versions:
    """Strictly increasing row versions within the process, close to the wall clock."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            return self._last


VERSIONS = _Versions()


def _utc(t: datetime | None) -> datetime | None:
    if t is None:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _iso(t: datetime | None) -> str | None:
    u = _utc(t)
    return u.isoformat() if u else None


def _scope(apps: Apps, column: str = "app_id") -> tuple[str, dict[str, Any]]:
    if apps is None:
        return "1", {}
    return f"has({{apps:Array(String)}}, {column})", {"apps": sorted(apps)}


class AlertStore:
    def __init__(self, session: Session):
        self.session = session

    # -- instances ------------------------------------------------------------------------

    def _instance_row(self, i: Instance) -> list:
        return [i.rule_uid, i.fingerprint, i.app_id, i.labels, str(i.state), i.value, i.error, i.summary, i.active_at,
                i.fired_at, i.resolved_at, i.last_eval, min(i.missing, 255), i.episode, list(i.notified), i.acked_by,
                i.acked_at, i.ack_comment, VERSIONS.next()]

    async def save_instances(self, instances: Iterable[Instance]) -> None:
        rows = [self._instance_row(i) for i in instances]
        await self.session.ainsert("alert_instances", rows, INSTANCE_COLUMNS)

    @staticmethod
    def _instance(row: dict) -> Instance:
        return Instance(
            rule_uid=row["rule_uid"], fingerprint=row["fingerprint"], labels=dict(row["labels"]), app_id=row["app_id"],
            state=State(row["state"]), value=row["value"], error=row["error"], summary=row["summary"],
            active_at=_utc(row["active_at"]), fired_at=_utc(row["fired_at"]), resolved_at=_utc(row["resolved_at"]),
            last_eval=_utc(row["last_eval"]) or datetime(1970, 1, 1, tzinfo=UTC), missing=row["missing"],
            episode=row["episode"], notified=tuple(row["notified"]), acked_by=row["acked_by"],
            acked_at=_utc(row["acked_at"]), ack_comment=row["ack_comment"],
        )

    async def active_instances(self, apps: Apps = None, *, rule_uid: str | None = None) -> list[Instance]:
        """Pending, Alerting and Error instances, the most urgent first."""
        where, params = _scope(apps)
        if rule_uid is not None:
            where += " AND rule_uid = {rule:String}"
            params["rule"] = rule_uid
        rows = await self.session.anamed(
            f"SELECT * EXCEPT version FROM alert_instances FINAL WHERE state IN {tuple(sorted(map(str, ACTIVE)))} "
            f"AND {where} ORDER BY state = 'Pending', fired_at, active_at LIMIT {MAX_LIST}", **params)
        return [self._instance(r) for r in rows]

    async def instance(self, fingerprint: str, apps: Apps = None) -> Instance | None:
        where, params = _scope(apps)
        rows = await self.session.anamed(
            f"SELECT * EXCEPT version FROM alert_instances FINAL WHERE fingerprint = {{fp:String}} AND {where} LIMIT 1",
            fp=fingerprint, **params)
        return self._instance(rows[0]) if rows else None

    # -- history ---------------------------------------------------------------------------

    async def add_history(self, rows: list[list]) -> None:
        await self.session.ainsert("alert_history", rows, HISTORY_COLUMNS)

    @staticmethod
    def transition_row(t: Transition) -> list:
        i = t.instance
        return [uuid7(int(t.at.timestamp() * 1000)), t.at, i.rule_uid, i.fingerprint, i.app_id, i.labels, "state",
                str(t.from_state), str(t.to_state), i.value, t.reason, "", i.episode]

    @staticmethod
    def event_row(inst: Instance, event: str, at: datetime, reason: str, actor: str = "") -> list:
        return [uuid7(int(at.timestamp() * 1000)), at, inst.rule_uid, inst.fingerprint, inst.app_id, inst.labels, event,
                str(inst.state), str(inst.state), inst.value, reason, actor, inst.episode]

    async def history(self, apps: Apps = None, *, rule_uid: str | None = None, fingerprint: str | None = None,
                      limit: int = 100) -> list[dict]:
        where, params = _scope(apps)
        for column, value in (("rule_uid", rule_uid), ("fingerprint", fingerprint)):
            if value is not None:
                where += f" AND {column} = {{{column}:String}}"
                params[column] = value
        rows = await self.session.anamed(
            f"SELECT ts, rule_uid, fingerprint, app_id, labels, event, from_state, to_state, value, reason, actor, "
            f"episode FROM alert_history FINAL WHERE {where} ORDER BY ts DESC, history_id DESC "
            f"LIMIT {min(int(limit), MAX_LIST)}", **params)
        for r in rows:
            r["ts"] = _iso(r["ts"])
            r["episode"] = str(r["episode"])
            r["labels"] = dict(r["labels"])
        return rows

    # -- notifications -----------------------------------------------------------------------

    async def save_notifications(self, notes: list[Notification]) -> None:
        rows = [[n.notification_id, n.receiver, n.kind, n.rule_uid, n.fingerprint, n.app_id, n.payload, n.created_at,
                 n.status, n.attempts, n.next_attempt_at or n.created_at, n.last_error, n.sent_at, VERSIONS.next()]
                for n in notes]
        await self.session.ainsert("alert_notifications", rows, NOTIFICATION_COLUMNS)

    @staticmethod
    def _notification(r: dict) -> Notification:
        return Notification(
            notification_id=r["notification_id"], receiver=r["receiver"], kind=r["kind"], rule_uid=r["rule_uid"],
            fingerprint=r["fingerprint"], app_id=r["app_id"], payload=r["payload"],
            created_at=_utc(r["created_at"]),  # type: ignore[arg-type]
            status=r["status"], attempts=r["attempts"], next_attempt_at=_utc(r["next_attempt_at"]),
            last_error=r["last_error"], sent_at=_utc(r["sent_at"]),
        )

    async def notifications(self, *, status: str | None = None, apps: Apps = None, fingerprint: str | None = None,
                            limit: int = MAX_LIST) -> list[Notification]:
        where, params = _scope(apps)
        if status is not None:
            where += " AND status = {status:String}"
            params["status"] = status
        if fingerprint is not None:
            where += " AND fingerprint = {fp:String}"
            params["fp"] = fingerprint
        # A pending one is never cut off the restart's list: only the others are capped.
        cap = "" if status == "pending" else f" LIMIT {min(int(limit), MAX_LIST)}"
        rows = await self.session.anamed(
            f"SELECT * EXCEPT version FROM alert_notifications FINAL WHERE {where} "
            f"ORDER BY created_at DESC, notification_id DESC{cap}", **params)
        return [self._notification(r) for r in rows]

    # -- silences -------------------------------------------------------------------------------

    async def save_silence(self, s: Silence) -> None:
        await self.session.ainsert("alert_silences", [[s.silence_id, s.rule_uid, s.matchers, s.starts_at, s.ends_at,
                                                       s.created_by, s.comment, s.created_at, VERSIONS.next()]],
                                   SILENCE_COLUMNS)

    async def silences(self, *, current_at: datetime | None = None, apps: Apps = None,
                       silence_id: uuid.UUID | None = None) -> list[Silence]:
        """Silences not yet ended at `current_at` (all when None), newest first."""
        where, params = _scope(apps, "matchers['app_id']")
        if current_at is not None:
            where += " AND ends_at > {at:DateTime64(3, 'UTC')}"
            params["at"] = current_at
        if silence_id is not None:
            where += " AND silence_id = {id:UUID}"
            params["id"] = silence_id
        rows = await self.session.anamed(
            f"SELECT * EXCEPT version FROM alert_silences FINAL WHERE {where} ORDER BY created_at DESC "
            f"LIMIT {MAX_LIST}", **params)
        return [Silence(r["silence_id"], r["rule_uid"], dict(r["matchers"]), _utc(r["starts_at"]),  # type: ignore
                        _utc(r["ends_at"]), r["created_by"], r["comment"], _utc(r["created_at"]))  # type: ignore
                for r in rows]


def active_alerts_sync(session: Session, apps: Apps, *, limit: int = 200) -> list[dict]:
    """Pending, Alerting and Error instances a viewer may see, for the embedded overview (a
    blocking call: the overview runs it on its request thread)."""
    where, params = _scope(apps)
    rows = session.named(
        "SELECT rule_uid, fingerprint, app_id, labels, state, value, summary, active_at, fired_at, acked_by, "
        f"acked_at, ack_comment FROM alert_instances FINAL WHERE state IN {tuple(sorted(map(str, ACTIVE)))} "
        f"AND {where} ORDER BY state = 'Pending', fired_at, active_at LIMIT {min(int(limit), MAX_LIST)}", **params)
    out = []
    for r in rows:
        out.append({**r, "labels": dict(r["labels"]), **{k: _iso(r[k]) for k in ("active_at", "fired_at", "acked_at")}})
    return out


def failed_notifications_sync(session: Session, *, limit: int = 20) -> list[dict]:
    """Notifications of the last day that could not be delivered, for the overview's banner."""
    rows = session.named(
        "SELECT receiver, kind, rule_uid, fingerprint, last_error, created_at FROM alert_notifications FINAL "
        "WHERE status = 'failed' AND created_at > now64(3) - INTERVAL 1 DAY ORDER BY created_at DESC "
        f"LIMIT {min(int(limit), MAX_LIST)}")
    return [{**r, "created_at": _iso(r["created_at"])} for r in rows]
