"""The evaluator on the test's chdb database, with a clock the test sets and real local
receivers (alert_receivers.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # alert_receivers.py, alert_formats.py

from alert_receivers import ROUTING_KEY, T0, WEBHOOK_SECRET, Receiver

from lookout.alerts.clock import ManualClock
from lookout.alerts.service import AlertService
from lookout.alerts.settings import AlertSettings
from lookout.core.session import Session


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    r = Receiver("webhook").start()
    yield r
    r.close()


@pytest.fixture
def slack() -> Iterator[Receiver]:
    r = Receiver("slack").start()
    yield r
    r.close()


@pytest.fixture
def pagerduty() -> Iterator[Receiver]:
    r = Receiver("pagerduty", ok_status=202,
                 ok_body=b'{"status":"success","message":"Event processed","dedup_key":"x"}').start()
    yield r
    r.close()



@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def alert_settings(ch_settings, webhook, slack, pagerduty, monkeypatch) -> AlertSettings:
    for name in ("LOOKOUT_ALERT_ERROR_RATE", "LOOKOUT_ALERT_MIN_CALLS"):
        monkeypatch.delenv(name, raising=False)
    return AlertSettings(
        clickhouse_dsn=ch_settings.clickhouse_dsn, clickhouse_database=ch_settings.clickhouse_database,
        alert_webhook_url=webhook.url, alert_webhook_secret=WEBHOOK_SECRET, alert_slack_webhook_url=slack.url,
        alert_pagerduty_routing_key=ROUTING_KEY, alert_pagerduty_url=pagerduty.url,
        alert_public_url="http://127.0.0.1:8000", alert_retry_initial_s=2, alert_retry_max_s=60,
    )


@pytest.fixture
async def evaluator(ch, alert_settings, clock) -> AlertService:
    """The evaluator without its loops: the test evaluates and delivers at times it chooses."""
    service = AlertService(alert_settings, Session.of(ch), clock=clock, run_loops=False)
    await service.start()
    yield service
    await service.stop()
