"""The evaluator's own loops on the wall clock (a 0.2 s interval instead of the spec's
minute): rules are evaluated on interval ticks, a firing alert is delivered without anyone
calling for it, readiness reports a stalled evaluator, and stop() ends both loops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from alert_formats import check_webhook
from alert_receivers import WEBHOOK_SECRET

from lookout.alerts.clock import ManualClock
from lookout.alerts.service import AlertService
from lookout.core.session import Session
from lookout.testing import sample


async def wait_for(condition) -> None:
    for _ in range(400):  # 20 s
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_the_loops_evaluate_on_ticks_and_deliver_what_fires(ch, alert_settings, webhook):
    # Three drifted windows in a row: the sustained-drift rule fires at once (its `for` is 0s).
    now = datetime.now(UTC)
    sample.insert_drift(ch, [sample.drift(now - timedelta(minutes=15 * k), "support-bot", "gpt-4o-mini", "embedding",
                                          True) for k in range(3)])
    service = AlertService(alert_settings, Session.of(ch), interval_s=0.2)
    await service.start()
    try:
        await wait_for(lambda: webhook.delivered)
        hook = webhook.delivered[0]
        check_webhook(hook.headers, hook.body, hook.json, secret=WEBHOOK_SECRET)
        assert hook.json["alert"]["rule_uid"] == "lookout-sustained-drift"
        ticks = [t.timestamp() for t in service.last_evaluation.values()]
        # On interval boundaries, to the microsecond a datetime keeps (t / 0.2 itself is off by ~1e-6).
        assert all(abs(t - round(t / 0.2) * 0.2) < 2e-6 for t in ticks), ticks
        assert service.evaluation_problem() is None
        first = dict(service.last_evaluation)
        await wait_for(lambda: all(service.last_evaluation[k] > first[k] for k in first))
    finally:
        await service.stop()
    assert service._tasks == []
    assert len(webhook.delivered) == 1  # still firing: told once


async def test_readiness_names_the_rules_that_have_not_been_evaluated_for_three_intervals(ch, alert_settings):
    clock = ManualClock(datetime.now(UTC))
    service = AlertService(alert_settings, Session.of(ch), clock=clock, interval_s=0.2)
    await service.start()
    try:
        service._stopping.set()  # the loops end: nothing is evaluated any more
        await asyncio.gather(*service._tasks, return_exceptions=True)
        clock.advance(60)
        problem = service.evaluation_problem()
        assert problem and "lookout-error-rate" in problem
    finally:
        await service.stop()
