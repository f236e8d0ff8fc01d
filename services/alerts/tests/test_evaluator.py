"""Seeded calls cross the error-rate rule of lookout.dashboards.alerts on real ClickHouse (chdb):
the alert goes Pending, fires after its `for` (5 minutes, on a clock the test sets),
notifies a local signed webhook, a Slack-format and a PagerDuty-format receiver (each
payload checked against its format), and resolves when the calls recover. Also: a
receiver that fails 3 times still gets the notification once; a restart resumes the
state and the pending notifications; a failed query is an Error that pages and resolves."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from alert_formats import check_pagerduty, check_slack, check_webhook
from alert_receivers import ROUTING_KEY, T0, WEBHOOK_SECRET

from lookout.alerts import metrics
from lookout.alerts.engine import State
from lookout.alerts.service import AlertService
from lookout.core.session import Session
from lookout.dashboards import alerts
from lookout.testing import sample

RULE = alerts.rule("lookout-error-rate")
BOT = ("support-bot", "gpt-4o-mini")


def minute(k: int) -> datetime:
    return T0 + timedelta(minutes=k)


def seed_incident(ch, *, bad_from: int = -10, good_from: int = 6, until: int = 20) -> None:
    """10 calls a minute on two streams; the bot fails 2 in 10 from `bad_from` until
    `good_from` (minutes after T0), then none; search never fails."""
    calls = []
    for k in range(bad_from, until):
        for i in range(10):
            ts = minute(k) + timedelta(seconds=6 * i)
            failing = bad_from <= k < good_from and i < 2
            calls.append(sample.call(ts, *BOT, status="error" if failing else "ok"))
            calls.append(sample.call(ts, "search", "gpt-4o"))
    sample.insert_calls(ch, calls)


def state_of(service: AlertService, app_id: str = BOT[0]) -> State | None:
    found = [i for i in service.instances[RULE.uid].values() if i.labels.get("app_id") == app_id]
    return found[0].state if found else None


async def evaluate_minutes(service: AlertService, ks) -> list[State | None]:
    states = []
    for k in ks:
        await service.evaluate_rule(RULE, minute(k))
        states.append(state_of(service))
    return states


def sent_value(name: str, kind: str, outcome: str) -> float:
    return metrics.NOTIFICATIONS.labels(name, kind, outcome)._value.get()


async def test_an_incident_goes_pending_fires_after_its_for_notifies_every_receiver_and_resolves(
        ch, evaluator, webhook, slack, pagerduty):
    seed_incident(ch)
    sent_before = {n: sent_value(n, "firing", "sent") for n in ("webhook", "slack", "pagerduty")}
    # Pending from the first evaluation over the failing calls, for 5 minutes.
    assert await evaluate_minutes(evaluator, range(5)) == [State.PENDING] * 5
    assert not evaluator.outbox.pending and not webhook.requests
    assert state_of(evaluator, "search") is None  # the healthy stream never leaves Normal
    # 5 minutes after it began (Grafana: at - active_at >= for) it fires.
    assert await evaluate_minutes(evaluator, [5]) == [State.ALERTING]
    assert {n.receiver for n in evaluator.outbox.pending.values()} == {"webhook", "slack", "pagerduty"}
    assert await evaluator.outbox.deliver_due(minute(5)) == 3

    (hook,) = webhook.delivered
    check_webhook(hook.headers, hook.body, hook.json, secret=WEBHOOK_SECRET)
    alert = hook.json["alert"]
    assert hook.json["status"] == "firing" and alert["state"] == "Alerting"
    assert alert["labels"] == {"alertname": "LLM error rate", "grafana_folder": "Lookout", "team": "lookout",
                               "severity": "page", "app_id": "support-bot", "model": "gpt-4o-mini"}
    assert alert["value"] == pytest.approx(0.2)
    assert alert["annotations"]["summary"] == "support-bot/gpt-4o-mini: 20% of calls fail."
    assert alert["annotations"]["runbook"] == RULE.runbook and alert["annotations"]["panel"] == "error_rate"
    assert alert["starts_at"] == minute(5).isoformat() and alert["ends_at"] is None
    assert alert["url"] == "http://127.0.0.1:8000/#panel=error_rate"

    (message,) = slack.delivered
    check_slack(message.json)
    assert "FIRING" in message.json["text"] and "20% of calls fail" in message.json["text"]
    assert "<http://127.0.0.1:8000/#panel=error_rate|LLM error rate>" in message.json["blocks"][0]["text"]["text"]

    (trigger,) = pagerduty.delivered
    event = trigger.json
    check_pagerduty(event, routing_key=ROUTING_KEY)
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == "LLM error rate: support-bot/gpt-4o-mini: 20% of calls fail."
    assert event["payload"]["group"] == "support-bot" and event["payload"]["component"] == "gpt-4o-mini"
    dedup_key = event["dedup_key"]

    # Still failing (the window slides over good minutes): it stays firing, nothing new is sent.
    assert await evaluate_minutes(evaluator, range(6, 10)) == [State.ALERTING] * 4
    await evaluator.outbox.deliver_due(minute(9))
    assert len(webhook.requests) == len(slack.requests) == len(pagerduty.requests) == 1
    # Minute 10: the last failing minute leaves the 5-minute window's share under 5 %: resolved.
    assert await evaluate_minutes(evaluator, [10]) == [None]
    assert await evaluator.outbox.deliver_due(minute(10)) == 3
    resolved = webhook.delivered[-1]
    check_webhook(resolved.headers, resolved.body, resolved.json, secret=WEBHOOK_SECRET)
    assert resolved.json["status"] == "resolved" and resolved.json["alert"]["ends_at"] == minute(10).isoformat()
    check_slack(slack.delivered[-1].json)
    assert "RESOLVED" in slack.delivered[-1].json["text"]
    resolve = pagerduty.delivered[-1].json
    check_pagerduty(resolve, routing_key=ROUTING_KEY)
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": dedup_key}
    for name in ("webhook", "slack", "pagerduty"):
        assert sent_value(name, "firing", "sent") == sent_before[name] + 1

    # State and history are in ClickHouse.
    rows = ch.query("SELECT state, resolved_at FROM alert_instances FINAL WHERE rule_uid = {r:String} "
                    "AND labels['app_id'] = 'support-bot'", parameters={"r": RULE.uid}).result_rows
    assert [(s, r.replace(tzinfo=None)) for s, r in rows] == [("Normal", minute(10).replace(tzinfo=None))]
    history = ch.query("SELECT from_state, to_state FROM alert_history FINAL WHERE rule_uid = {r:String} "
                       "ORDER BY ts", parameters={"r": RULE.uid}).result_rows
    assert history == [("Normal", "Pending"), ("Pending", "Alerting"), ("Alerting", "Normal")]
    sent = ch.query("SELECT receiver, kind, status, attempts FROM alert_notifications FINAL ORDER BY receiver, "
                    "kind").result_rows
    assert sent == [(r, k, "sent", 1) for r in ("pagerduty", "slack", "webhook") for k in ("firing", "resolved")]


async def test_a_condition_that_stops_holding_before_its_for_sends_nothing(ch, evaluator, webhook):
    # Failures in minutes -3..-1 only: the 5-minute window's share falls under 5 % at minute 4,
    # one evaluation before the `for` would have elapsed.
    seed_incident(ch, bad_from=-3, good_from=0)
    assert await evaluate_minutes(evaluator, range(0, 6)) == [State.PENDING] * 4 + [None] * 2
    await evaluator.outbox.deliver_due(minute(6))
    assert webhook.requests == [] and not evaluator.outbox.pending


async def test_a_receiver_that_fails_three_times_then_recovers_gets_the_notification_once(
        ch, evaluator, webhook, slack, pagerduty):
    webhook.fail_times, pagerduty.fail_times, pagerduty.fail_status = 3, 1, 429
    pagerduty.retry_after = "30"
    seed_incident(ch)
    retries_before = metrics.ATTEMPTS.labels("webhook", "retry")._value.get()
    await evaluate_minutes(evaluator, range(6))
    (note,) = [n for n in evaluator.outbox.pending.values() if n.receiver == "webhook"]
    now = minute(5)
    waits = []
    await evaluator.outbox.deliver_due(now)
    for _ in range(3):
        pending = evaluator.outbox.pending[note.notification_id]
        waits.append((pending.next_attempt_at - now).total_seconds())
        # Not before its back-off: a pass in between sends nothing to this receiver.
        await evaluator.outbox.deliver_due(now + timedelta(seconds=waits[-1] / 2))
        now = pending.next_attempt_at
        await evaluator.outbox.deliver_due(now)
    assert [r.status for r in webhook.requests] == [503, 503, 503, 200]
    assert len(webhook.delivered) == 1
    # The same notification each time: one id, so a receiver can drop a repeat.
    assert {r.headers["x-lookout-notification-id"] for r in webhook.requests} == {str(note.notification_id)}
    # 2 s doubling, minus up to 20 % jitter, from each failed attempt.
    assert 1.6 <= waits[0] <= 2 and 3.2 <= waits[1] <= 4 and 6.4 <= waits[2] <= 8, waits
    assert metrics.ATTEMPTS.labels("webhook", "retry")._value.get() == retries_before + 3
    assert note.notification_id not in evaluator.outbox.pending
    row = ch.query("SELECT status, attempts FROM alert_notifications FINAL WHERE notification_id = {id:UUID}",
                   parameters={"id": note.notification_id}).result_rows
    assert row == [("sent", 4)]
    # PagerDuty said 429 with Retry-After: 30 s, which outranks the 2 s back-off.
    assert [r.status for r in pagerduty.requests] == [429] and now < minute(5) + timedelta(seconds=30)
    await evaluator.outbox.deliver_due(minute(5) + timedelta(seconds=31))
    assert len(pagerduty.delivered) == 1 and len(slack.delivered) == 1


async def test_a_receiver_that_rejects_a_notification_for_good_is_not_retried_but_listed_and_counted(
        ch, evaluator, slack):
    slack.fail_times, slack.fail_status = 10, 404  # Slack's answer for a deleted webhook: no_service
    seed_incident(ch)
    failed_before = sent_value("slack", "firing", "failed")
    await evaluate_minutes(evaluator, range(6))
    await evaluator.outbox.deliver_due(minute(5))
    await evaluator.outbox.deliver_due(minute(6))
    assert [r.status for r in slack.requests] == [404]
    assert sent_value("slack", "firing", "failed") == failed_before + 1
    (failed,) = await evaluator.store.notifications(status="failed")
    assert failed.receiver == "slack" and failed.last_error.startswith("404")


async def test_a_notification_still_undelivered_after_the_give_up_time_is_marked_failed(ch, alert_settings, clock,
                                                                                        webhook):
    webhook.fail_times = 1000
    settings = alert_settings.model_copy(update={"alert_give_up_after_s": 60.0, "alert_slack_webhook_url": "",
                                                 "alert_pagerduty_routing_key": ""})
    service = AlertService(settings, Session.of(ch), clock=clock, run_loops=False)
    await service.start()
    try:
        seed_incident(ch)
        for k in range(6):
            await service.evaluate_rule(RULE, minute(k))
        at = minute(5)
        while service.outbox.pending:
            await service.outbox.deliver_due(at)
            at += timedelta(seconds=30)
        (failed,) = await service.store.notifications(status="failed")
        assert failed.last_error.startswith("gave up after") and failed.attempts >= 3
    finally:
        await service.stop()


async def test_a_restart_keeps_firing_state_and_resumes_pending_notifications(ch, alert_settings, clock, webhook,
                                                                              slack, pagerduty):
    webhook.fail_times = 1000
    seed_incident(ch)
    first = AlertService(alert_settings, Session.of(ch), clock=clock, run_loops=False)
    await first.start()
    for k in range(6):
        await first.evaluate_rule(RULE, minute(k))
    await first.outbox.deliver_due(minute(5))
    assert len(slack.delivered) == 1 and webhook.delivered == []
    await first.stop()

    webhook.fail_times = 0
    second = AlertService(alert_settings, Session.of(ch), clock=clock, run_loops=False)
    await second.start()
    try:
        assert state_of(second) == State.ALERTING  # restored, not Pending again
        assert [n.receiver for n in second.outbox.pending.values()] == ["webhook"]
        await second.outbox.deliver_due(minute(6))
        assert len(webhook.delivered) == 1 and webhook.delivered[0].json["status"] == "firing"
        # Still firing on the next evaluation: nobody is paged a second time.
        await second.evaluate_rule(RULE, minute(6))
        await second.outbox.deliver_due(minute(6))
        assert len(slack.delivered) == len(pagerduty.delivered) == len(webhook.delivered) == 1
        # And it resolves to the receivers the first process told.
        await second.evaluate_rule(RULE, minute(10))
        await second.outbox.deliver_due(minute(10))
        assert [r.json["status"] for r in webhook.delivered] == ["firing", "resolved"]
        assert pagerduty.delivered[-1].json["event_action"] == "resolve"
    finally:
        await second.stop()


async def test_a_failing_query_is_an_error_that_pages_and_resolves_when_the_query_works_again(ch, evaluator,
                                                                                             pagerduty):
    seed_incident(ch)
    series_before = await evaluate_minutes(evaluator, [0])
    assert series_before == [State.PENDING]
    ch.command("RENAME TABLE calls_1m TO calls_1m_away")
    try:
        await evaluator.evaluate_rule(RULE, minute(1))
    finally:
        ch.command("RENAME TABLE calls_1m_away TO calls_1m")
    errors = [i for i in evaluator.instances[RULE.uid].values() if i.state == State.ERROR]
    (error,) = errors
    assert error.labels["alertname"] == "DatasourceError" and error.labels["rulename"] == RULE.title
    assert "calls_1m" in error.error and error.app_id == ""
    assert state_of(evaluator) == State.PENDING  # the series keeps its state through the failure
    await evaluator.outbox.deliver_due(minute(1))
    trigger = pagerduty.delivered[-1].json
    check_pagerduty(trigger, routing_key=ROUTING_KEY)
    assert trigger["payload"]["summary"].startswith("LLM error rate: DatasourceError: LLM error rate could not be "
                                                    "evaluated")
    await evaluator.evaluate_rule(RULE, minute(2))
    assert not [i for i in evaluator.instances[RULE.uid].values() if i.state == State.ERROR]
    await evaluator.outbox.deliver_due(minute(2))
    assert pagerduty.delivered[-1].json == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                                            "dedup_key": trigger["dedup_key"]}


async def test_a_stream_that_leaves_the_rows_is_resolved_on_its_second_missing_evaluation(ch, evaluator, webhook):
    # The bot fails, then stops calling: its rows fall under min_calls and leave the result.
    seed_incident(ch, bad_from=-10, good_from=30, until=6)
    assert await evaluate_minutes(evaluator, range(6)) == [State.PENDING] * 5 + [State.ALERTING]
    # Window [6, 11]: no calls at all for anyone (no data: OK), the series is missing.
    assert await evaluate_minutes(evaluator, [11, 12]) == [State.ALERTING, None]
    await evaluator.outbox.deliver_due(minute(12))
    assert [r.json["status"] for r in webhook.delivered] == ["firing", "resolved"]
    (reason,) = ch.query("SELECT reason FROM alert_history FINAL WHERE to_state = 'Normal'").result_rows[0]
    assert reason.startswith("MissingSeries")


async def test_every_rule_evaluates_on_an_empty_store_without_firing(evaluator):
    await evaluator.evaluate(T0)
    assert all(not v for v in evaluator.instances.values())
    assert set(evaluator.last_evaluation) == {r.uid for r in alerts.RULES}
    assert evaluator.last_error == {}
