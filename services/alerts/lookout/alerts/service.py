"""The alert evaluator as a Service: every GROUP_INTERVAL (1 minute) it runs each rule of
lookout.dashboards.alerts against ClickHouse over the rule's window, steps the rule's alert
instances (engine.py), stores what changed and every transition, and queues the
notifications (outbox.py) the transitions call for:

- an instance fires (Alerting, or Error for a failed query): `firing` to each receiver,
  unless a silence matches (held back, recorded; sent when the silence ends while it still
  fires);
- it resolves: `resolved` to the receivers that were told it fired;
- someone acknowledges it (API): `acknowledged` to those receivers that take it (the
  webhook, PagerDuty's acknowledge).

`lookout up` runs it beside the other services. `python -m lookout.alerts` runs it alone
against a ClickHouse server; where Grafana evaluates the same rules and notifies, either
leave this one out or set LOOKOUT_ALERT_EVALUATE=false, else on-call is paged twice. Run
one replica: two would each notify.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import httpx
from fastapi import APIRouter

from lookout.core.auth import ApiKeyStore
from lookout.core.ids import uuid7
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session
from lookout.dashboards import alerts, macros
from lookout.dashboards.alerts import AlertRule

from . import engine, metrics
from .clock import Clock, SystemClock
from .engine import Instance, State
from .outbox import Backoff, Notification, Outbox
from .receivers import AlertMessage, Kind, Receiver, build
from .settings import AlertSettings
from .silences import Silence, silenced_by
from .store import AlertStore

log = logging.getLogger(__name__)

QUERY_TIMEOUT_S = 30  # Grafana's evaluation_timeout
MAX_SERIES = 5000  # rows one rule's query may return; more is an evaluation error, not a flood of pages


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


class AlertService:
    name = "alerts"

    def __init__(self, settings: AlertSettings, session: Session | None = None, *, clock: Clock | None = None,
                 receivers: dict[str, Receiver] | None = None, transport: httpx.AsyncBaseTransport | None = None,
                 run_loops: bool = True, rules: Sequence[AlertRule] = alerts.RULES,
                 interval_s: float = alerts.INTERVAL_S):
        self.settings = settings
        self.interval_s = interval_s  # the spec's group interval; tests run the loops faster
        self.session = session
        self.clock = clock or SystemClock()
        self.rules = list(rules)
        self.receivers = build(settings) if receivers is None else receivers
        self.run_loops = run_loops
        self.keys: ApiKeyStore | None = None
        self.store: AlertStore | None = None
        self.instances: dict[str, dict[str, Instance]] = {r.uid: {} for r in self.rules}
        self.last_evaluation: dict[str, datetime] = {}
        self.last_error: dict[str, str] = {}
        self._http = httpx.AsyncClient(timeout=settings.alert_send_timeout_s, transport=transport)
        self.outbox: Outbox | None = None
        self._lock = asyncio.Lock()  # a rule's step, an ack and a silence's effect take turns
        self._tasks: list[asyncio.Task] = []
        self._stopping = asyncio.Event()
        self._started = False
        self._started_at: datetime | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        if self.session is None:
            self.session = Session.connect(self.settings, migrate=True)
        self.keys = self.session.run(lambda client: ApiKeyStore(client))
        self.store = AlertStore(self.session)
        self.outbox = Outbox(self.receivers, self.store.save_notifications, http=self._http,
                             backoff=Backoff(self.settings.alert_retry_initial_s, self.settings.alert_retry_max_s),
                             give_up_after_s=self.settings.alert_give_up_after_s)
        for inst in await self.store.active_instances():
            if inst.rule_uid in self.instances:
                self.instances[inst.rule_uid][inst.fingerprint] = inst
        self.outbox.load(await self.store.notifications(status="pending"))
        self._gauges()
        restored = sum(len(v) for v in self.instances.values())
        log.info("alerts: %d rules, receivers: %s; %d active instances and %d pending notifications restored",
                 len(self.rules), ", ".join(self.receivers) or "none (set LOOKOUT_ALERT_*_URL / ROUTING_KEY)",
                 restored, len(self.outbox.pending))
        if self.run_loops:
            if self.settings.alert_evaluate:
                self._tasks.append(asyncio.create_task(self._evaluate_loop(), name="alerts-evaluate"))
            self._tasks.append(asyncio.create_task(self._deliver_loop(), name="alerts-deliver"))
        self._started, self._started_at = True, self.clock.now()

    async def stop(self) -> None:
        self._stopping.set()
        if self.outbox is not None:
            self.outbox.wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._http.aclose()
        if self.session is not None:
            self.session.close()
        self._started = False

    # -- evaluation ------------------------------------------------------------------------

    async def _evaluate_loop(self) -> None:
        interval = self.interval_s
        last: float | None = None
        while not self._stopping.is_set():
            now = self.clock.now().timestamp()
            tick = (now // interval + 1) * interval  # Grafana evaluates a group on interval boundaries
            if last is not None and tick <= last:
                tick = last + interval
            if await self._sleep(tick - now):
                return
            last = tick
            try:
                await self.evaluate(datetime.fromtimestamp(tick, tz=self.clock.now().tzinfo))
            except Exception:
                log.exception("alert evaluation failed")

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or return True at once when the service is stopping."""
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, seconds))
            return True
        except TimeoutError:
            return False

    async def evaluate(self, at: datetime) -> None:
        """Evaluate every rule at `at` (a failing rule does not stop the others)."""
        for rule in self.rules:
            await self.evaluate_rule(rule, at)
        await self._notify_unsilenced(at)
        self._gauges()

    async def _query(self, rule: AlertRule, at: datetime) -> engine.Result:
        assert self.session is not None
        context = macros.QueryContext(at - timedelta(seconds=rule.window_s), at, interval_s=alerts.INTERVAL_S)
        try:
            sql = macros.expand(rule.render_sql(self.settings), context)
            result = await self.session.aquery(sql, settings={
                "max_execution_time": QUERY_TIMEOUT_S, "max_result_rows": MAX_SERIES,
                "result_overflow_mode": "throw"})
            return engine.Rows(alerts.series(rule, self.settings, result.column_names, result.result_rows))
        except Exception as exc:  # any failure is the rule's Error state, with the reason
            log.warning("alert rule %s could not be evaluated: %s", rule.uid, exc)
            return engine.Failed(f"{type(exc).__name__}: {exc}")

    async def evaluate_rule(self, rule: AlertRule, at: datetime) -> engine.Outcome:
        assert self.store is not None
        began = time.monotonic()
        result = await self._query(rule, at)
        async with self._lock:
            outcome = engine.step(rule, self.instances[rule.uid], result, at)
            notes = await self._notifications_for(rule, outcome, at)
            # Notifications first: once they are stored, a crash before the state is stored
            # re-evaluates to the same transition, and delivery dedups by dedup key / id.
            assert self.outbox is not None
            await self.outbox.enqueue(notes)
            await self.store.save_instances(outcome.changed)
            await self.store.add_history([AlertStore.transition_row(t) for t in outcome.transitions])
            self.instances[rule.uid] = outcome.instances
        failed = isinstance(result, engine.Failed)
        metrics.EVALUATIONS.labels(rule.uid, "error" if failed else "ok").inc()
        metrics.EVALUATION_SECONDS.labels(rule.uid).observe(time.monotonic() - began)
        for t in outcome.transitions:
            metrics.TRANSITIONS.labels(rule.uid, str(t.to_state)).inc()
            log.info("alert %s %s: %s -> %s (%s)", rule.uid, t.instance.labels, t.from_state, t.to_state, t.reason)
        self.last_evaluation[rule.uid] = at
        if isinstance(result, engine.Failed):
            self.last_error[rule.uid] = result.error
        else:
            self.last_error.pop(rule.uid, None)
        return outcome

    # -- what to send ----------------------------------------------------------------------

    def message(self, rule: AlertRule, inst: Instance, kind: Kind) -> AlertMessage:
        base = self.settings.alert_public_url.rstrip("/")
        return AlertMessage(
            kind=kind, rule_uid=rule.uid, title=rule.title if inst.labels.get("alertname") != engine.ERROR_ALERTNAME
            else f"{rule.title}: {engine.ERROR_ALERTNAME}", fingerprint=inst.fingerprint, dedup_key=inst.dedup_key,
            state=str(inst.state), labels=dict(inst.labels), summary=inst.summary, runbook=rule.runbook,
            panel=rule.panel_id, value=inst.value, starts_at=_iso(inst.fired_at), ends_at=_iso(inst.resolved_at),
            episode=str(inst.episode), app_id=inst.app_id, acked_by=inst.acked_by, ack_comment=inst.ack_comment,
            url=f"{base}/#panel={rule.panel_id}" if base else "",
        )

    def _notification(self, rule: AlertRule, inst: Instance, receiver: str, kind: Kind, at: datetime) -> Notification:
        return Notification(uuid7(int(at.timestamp() * 1000)), receiver, kind, rule.uid, inst.fingerprint,
                            inst.app_id, self.message(rule, inst, kind).to_json(), at)

    async def _notifications_for(self, rule: AlertRule, outcome: engine.Outcome, at: datetime) -> list[Notification]:
        """The notifications of one step's transitions; firing ones honour silences."""
        assert self.store is not None
        notes: list[Notification] = []
        silences = await self.store.silences(current_at=at) if any(t.fired for t in outcome.transitions) else []
        events: list[list] = []
        for t in outcome.transitions:
            inst = outcome.instances.get(t.instance.fingerprint) or next(
                (i for i in outcome.changed if i.fingerprint == t.instance.fingerprint), t.instance)
            if t.fired:
                silence = silenced_by(silences, inst, at)
                if silence is not None:
                    events.append(AlertStore.event_row(inst, "silenced", at, f"held back by silence "
                                                       f"{silence.silence_id} until {silence.ends_at.isoformat()}"))
                    for name, r in self.receivers.items():
                        if "firing" in r.kinds:
                            metrics.NOTIFICATIONS.labels(name, "firing", "silenced").inc()
                    continue
                for name, r in self.receivers.items():
                    if "firing" in r.kinds:
                        notes.append(self._notification(rule, inst, name, "firing", at))
                inst.notified = tuple(n.receiver for n in notes if n.fingerprint == inst.fingerprint)
            elif t.resolved:
                for name in inst.notified:
                    r = self.receivers.get(name)
                    if r is not None and "resolved" in r.kinds:
                        notes.append(self._notification(rule, inst, name, "resolved", at))
        if events:
            await self.store.add_history(events)
        return notes

    async def _notify_unsilenced(self, at: datetime) -> None:
        """Firing instances some receiver has not been told about (a silence ended, a receiver
        was added): tell them now, unless a silence still matches."""
        assert self.store is not None and self.outbox is not None
        waiting = [(rule, inst) for rule in self.rules for inst in self.instances[rule.uid].values()
                   if inst.firing and any(n not in inst.notified and "firing" in r.kinds
                                          for n, r in self.receivers.items())]
        if not waiting:
            return
        silences = await self.store.silences(current_at=at)
        async with self._lock:
            notes: list[Notification] = []
            changed: list[Instance] = []
            for rule, inst in waiting:
                current = self.instances[rule.uid].get(inst.fingerprint)
                if current is None or not current.firing or silenced_by(silences, current, at):
                    continue
                new = [self._notification(rule, current, name, "firing", at) for name, r in self.receivers.items()
                       if name not in current.notified and "firing" in r.kinds]
                if new:
                    current.notified = (*current.notified, *(n.receiver for n in new))
                    notes += new
                    changed.append(current)
            await self.outbox.enqueue(notes)
            await self.store.save_instances(changed)

    # -- acknowledgements and silences (the API calls these) ------------------------------

    def rule(self, uid: str) -> AlertRule | None:
        return next((r for r in self.rules if r.uid == uid), None)

    def find(self, fingerprint: str) -> tuple[AlertRule, Instance] | None:
        for rule in self.rules:
            inst = self.instances[rule.uid].get(fingerprint)
            if inst is not None:
                return rule, inst
        return None

    async def acknowledge(self, fingerprint: str, by: str, comment: str) -> Instance | None:
        """Record who is on it; tell the receivers that take acknowledgements. None when no
        instance with that fingerprint fires now."""
        assert self.store is not None and self.outbox is not None
        at = self.clock.now()
        async with self._lock:
            found = self.find(fingerprint)
            if found is None or not found[1].firing:
                return None
            rule, inst = found
            acked = engine.with_ack(inst, by, comment, at)
            notes = [self._notification(rule, acked, name, "acknowledged", at) for name in acked.notified
                     if name in self.receivers and "acknowledged" in self.receivers[name].kinds]
            await self.outbox.enqueue(notes)
            await self.store.save_instances([acked])
            await self.store.add_history([AlertStore.event_row(acked, "ack", at, comment or "acknowledged", by)])
            self.instances[rule.uid][fingerprint] = acked
        log.info("alert %s %s acknowledged by %s", rule.uid, acked.labels, by)
        return acked

    async def add_silence(self, silence: Silence) -> None:
        assert self.store is not None
        await self.store.save_silence(silence)
        log.info("silence %s on %s %s until %s by %s", silence.silence_id, silence.rule_uid, silence.matchers,
                 silence.ends_at.isoformat(), silence.created_by)

    async def expire_silence(self, silence: Silence) -> Silence:
        assert self.store is not None
        now = self.clock.now()
        ended = Silence(silence.silence_id, silence.rule_uid, silence.matchers, min(silence.starts_at, now),
                        min(silence.ends_at, now), silence.created_by, silence.comment, silence.created_at)
        await self.store.save_silence(ended)
        # What it held back is sent now, not at the next evaluation.
        await self._notify_unsilenced(now)
        return ended

    # -- delivery ---------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        assert self.outbox is not None
        while not self._stopping.is_set():
            self.outbox.wake.clear()
            try:
                await self.outbox.deliver_due(self.clock.now())
            except Exception:
                log.exception("alert delivery pass failed; trying again shortly")
                if await self._sleep(1.0):
                    return
                continue
            due = self.outbox.next_due()
            wait = 5.0 if due is None else min(5.0, max(0.05, (due - self.clock.now()).total_seconds()))
            try:
                await asyncio.wait_for(self.outbox.wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    # -- the shape -------------------------------------------------------------------------

    def _gauges(self) -> None:
        for rule in self.rules:
            counts = {s: 0 for s in engine.ACTIVE}
            for inst in self.instances[rule.uid].values():
                counts[inst.state] = counts.get(inst.state, 0) + 1
            for state, n in counts.items():
                metrics.INSTANCES.labels(rule.uid, str(state)).set(n)

    def evaluation_problem(self) -> str | None:
        if not self._started:
            return "not started"
        if not self.settings.alert_evaluate or not self.run_loops:
            return None
        now = self.clock.now()
        since = self._started_at or now
        late = [uid for uid in self.instances if (now - self.last_evaluation.get(uid, since)).total_seconds()
                > 3 * self.interval_s + QUERY_TIMEOUT_S]
        return f"rules not evaluated for over 3 intervals: {', '.join(late)}" if late else None

    def routers(self) -> Sequence[APIRouter]:
        from .api import build_router  # the routes import this module

        return [build_router(self)]

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {"evaluator": self.evaluation_problem,
                "clickhouse": lambda: self.session.problem() if self.session else "not connected"}

    def state_counts(self) -> dict[str, int]:
        out = {str(s): 0 for s in (State.PENDING, State.ALERTING, State.ERROR)}
        for by_fp in self.instances.values():
            for inst in by_fp.values():
                out[str(inst.state)] += 1
        return out
