"""Delivery: every notification is stored before its first attempt and stored again after
each one, so nothing is lost to a crash or a receiver that is down; a restart resumes the
ones still pending (`Outbox.load`).

A failed attempt is tried again after a back-off (LOOKOUT_ALERT_RETRY_INITIAL_S, doubling,
with up to 20 % jitter, at most LOOKOUT_ALERT_RETRY_MAX_S; a Retry-After the receiver sends
is honoured). One receiver's notifications of one alert instance go in the order they were
made: a resolve never overtakes its trigger. Receivers are independent: a slow Slack does
not hold PagerDuty back. A notification is given up (failed) when the receiver rejects it
for good (a 4xx other than 408/425/429) or when it is still undelivered
LOOKOUT_ALERT_GIVE_UP_AFTER_S after it was made; either is logged as an error, counted
(lookout_alert_notifications_total{outcome="failed"}) and listed by the API, never dropped
silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import httpx

from . import metrics
from .receivers import AlertMessage, Receiver, read_answer

log = logging.getLogger(__name__)

Status = Literal["pending", "sent", "failed"]


@dataclass(frozen=True)
class Notification:
    notification_id: uuid.UUID
    receiver: str
    kind: str
    rule_uid: str
    fingerprint: str
    app_id: str
    payload: str  # AlertMessage.to_json()
    created_at: datetime
    status: Status = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    sent_at: datetime | None = None

    @property
    def message(self) -> AlertMessage:
        return AlertMessage.from_json(self.payload)

    def to_json(self) -> dict:
        return {
            "notification_id": str(self.notification_id), "receiver": self.receiver, "kind": self.kind,
            "rule_uid": self.rule_uid, "fingerprint": self.fingerprint, "app_id": self.app_id,
            "created_at": self.created_at.isoformat(), "status": self.status, "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "last_error": self.last_error, "sent_at": self.sent_at.isoformat() if self.sent_at else None,
        }


class Backoff:
    def __init__(self, initial_s: float, max_s: float, jitter: float = 0.2, rng: random.Random | None = None):
        self.initial_s, self.max_s, self.jitter = initial_s, max_s, jitter
        self.rng = rng or random.Random()

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """The wait after the `attempts`-th failed attempt."""
        base = min(self.max_s, self.initial_s * 2 ** max(0, attempts - 1))
        wait = base * (1 - self.jitter * self.rng.random())
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, 3600.0))
        return wait


Save = Callable[[list[Notification]], Awaitable[None]]


class Outbox:
    def __init__(self, receivers: dict[str, Receiver], save: Save, *, http: httpx.AsyncClient, backoff: Backoff,
                 give_up_after_s: float):
        self.receivers = receivers
        self._save = save
        self.http = http
        self.backoff = backoff
        self.give_up_after_s = give_up_after_s
        self.pending: dict[uuid.UUID, Notification] = {}
        self.wake = asyncio.Event()

    def load(self, notifications: list[Notification]) -> None:
        """Notifications a previous run left pending (from the store)."""
        for n in notifications:
            if n.status == "pending":
                self.pending[n.notification_id] = n
        self._gauge(None)

    async def enqueue(self, notifications: list[Notification]) -> None:
        """Store them, then queue them: a crash after this call still delivers them."""
        if not notifications:
            return
        await self._save(notifications)
        for n in notifications:
            self.pending[n.notification_id] = n
        self._gauge(None)
        self.wake.set()

    def next_due(self) -> datetime | None:
        times = [n.next_attempt_at or n.created_at for n in self.pending.values()]
        return min(times) if times else None

    async def deliver_due(self, now: datetime) -> int:
        """One pass over what is due at `now`, each receiver on its own; the attempts made."""
        by_receiver: dict[str, list[Notification]] = {}
        for n in sorted(self.pending.values(), key=lambda n: (n.created_at, n.notification_id.int)):
            by_receiver.setdefault(n.receiver, []).append(n)
        counts = await asyncio.gather(*(self._deliver(name, queue, now) for name, queue in by_receiver.items()))
        self._gauge(now)
        return sum(counts)

    async def _deliver(self, name: str, queue: list[Notification], now: datetime) -> int:
        receiver = self.receivers.get(name)
        blocked: set[str] = set()  # instances with an earlier notification still waiting
        attempts = 0
        for n in queue:
            if n.fingerprint in blocked:
                continue
            if receiver is None:
                # Configured when it was made, not any more: say so instead of waiting forever.
                await self._finish(replace(n, status="failed", last_error=f"receiver {name} is not configured"),
                                   "failed")
                continue
            if (n.next_attempt_at or n.created_at) > now:
                blocked.add(n.fingerprint)
                continue
            attempts += 1
            updated = await self._attempt(receiver, n, now)
            if updated.status == "pending":
                blocked.add(n.fingerprint)
        return attempts

    async def _attempt(self, receiver: Receiver, n: Notification, now: datetime) -> Notification:
        tries = n.attempts + 1
        try:
            req = receiver.request(n.message, n.notification_id, now)
            response = await self.http.post(req.url, content=req.body, headers=req.headers)
            answer = read_answer(response, now)
        except httpx.HTTPError as exc:
            answer_outcome, detail, retry_after = "retry", f"{type(exc).__name__}: {exc}"[:300], None
        else:
            answer_outcome, detail, retry_after = answer.outcome, answer.detail, answer.retry_after_s
        metrics.ATTEMPTS.labels(receiver.name, "ok" if answer_outcome == "sent" else answer_outcome).inc()
        if answer_outcome == "sent":
            return await self._finish(replace(n, status="sent", attempts=tries, sent_at=now, last_error=""), "sent")
        if answer_outcome == "rejected":
            log.error("alert notification %s to %s rejected for good (%s): %s %s", n.notification_id, receiver.name,
                      detail, n.kind, n.rule_uid)
            return await self._finish(replace(n, status="failed", attempts=tries, last_error=detail), "failed")
        if (now - n.created_at).total_seconds() >= self.give_up_after_s:
            log.error("alert notification %s to %s given up after %d attempts over %.0f s: %s", n.notification_id,
                      receiver.name, tries, (now - n.created_at).total_seconds(), detail)
            return await self._finish(replace(n, status="failed", attempts=tries,
                                              last_error=f"gave up after {tries} attempts: {detail}"), "failed")
        wait = self.backoff.delay_s(tries, retry_after)
        log.warning("alert notification %s to %s failed (attempt %d: %s); next try in %.1f s", n.notification_id,
                    receiver.name, tries, detail, wait)
        updated = replace(n, attempts=tries, last_error=detail, next_attempt_at=now + timedelta(seconds=wait))
        await self._save([updated])
        self.pending[n.notification_id] = updated
        return updated

    async def _finish(self, n: Notification, outcome: str) -> Notification:
        await self._save([n])
        self.pending.pop(n.notification_id, None)
        metrics.NOTIFICATIONS.labels(n.receiver, n.kind, outcome).inc()
        return n

    def _gauge(self, now: datetime | None) -> None:
        for name in {*self.receivers, *(n.receiver for n in self.pending.values())}:
            mine = [n for n in self.pending.values() if n.receiver == name]
            metrics.PENDING.labels(name).set(len(mine))
            if now is not None:
                oldest = min((n.created_at for n in mine), default=None)
                metrics.OLDEST_PENDING_SECONDS.labels(name).set((now - oldest).total_seconds() if oldest else 0)
