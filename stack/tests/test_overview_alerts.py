"""Firing alerts on the embedded overview: the real evaluator (lookout.alerts) fires on calls
seeded in chdb, and the overview lists them above the panels, to each viewer only the
alerts of the apps they may read (a read key bound to one app, a reviewer assigned one);
alerts that are no app's (the cost burn) only to viewers of every app. In chromium, the
list shows and the panel of a firing rule is marked."""

from __future__ import annotations

import asyncio
import re
import shutil
from datetime import UTC, datetime, timedelta

import pytest

from lookout.alerts.clock import ManualClock
from lookout.alerts.service import AlertService
from lookout.alerts.settings import AlertSettings
from lookout.core.session import Session
from lookout.dashboards import alerts
from lookout.testing import sample
from lookout.testing.http import serve
from stack.tests.test_overview_browser import CHROMIUM, PASSWORD, Stack, _wait_for_calls

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def seed_and_fire(ch, ch_settings) -> None:
    """support-bot and search fail 3 calls in 10 over the last 20 minutes, and search spends
    $1 a minute (on course for far more than the $100 daily budget); the evaluator runs the
    rules minute by minute over the last 10 minutes, the cost burn's `for`."""
    calls = []
    for k in range(20):
        for i in range(10):
            ts = NOW - timedelta(minutes=k, seconds=6 * i)
            for app in ("support-bot", "search"):
                calls.append(sample.call(ts, app, "gpt-4o-mini", status="error" if i < 3 else "ok",
                                         cost_usd=0.1 if app == "search" else 0.0))
    sample.insert_calls(ch, calls)
    settings = AlertSettings(clickhouse_dsn=ch_settings.clickhouse_dsn,
                             clickhouse_database=ch_settings.clickhouse_database)
    clock = ManualClock(NOW)

    async def run() -> None:
        service = AlertService(settings, Session.of(ch), clock=clock, run_loops=False)
        await service.start()
        try:
            for k in range(10, -1, -1):
                await service.evaluate(NOW - timedelta(minutes=k))
        finally:
            await service.stop()

    asyncio.run(run())


@pytest.fixture
def firing(ch, ch_settings) -> Stack:
    seed_and_fire(ch, ch_settings)
    stack = Stack(ch)
    return stack


def titles(body: dict) -> set[tuple[str, str | None]]:
    return {(a["labels"]["alertname"], a["app_id"] or None) for a in body["alerts"]}


def test_each_viewer_sees_the_alerts_of_its_own_apps(firing):
    every = firing.http(firing.all_key).get("/overview/api/alerts").json()
    assert every["available"] is True
    assert titles(every) == {("LLM error rate", "support-bot"), ("LLM error rate", "search"),
                             ("LLM cost burn", None)}
    assert all(a["state"] == "Alerting" and a["fired_at"] for a in every["alerts"])
    bot = firing.http(firing.bot_key).get("/overview/api/alerts").json()
    assert titles(bot) == {("LLM error rate", "support-bot")}
    searcher = firing.signed_in("searcher").get("/overview/api/alerts").json()
    assert titles(searcher) == {("LLM error rate", "search")}
    assert searcher["delivery_problems"] == []  # receivers are the business of viewers of every app
    # A filter narrows the list; it cannot widen a viewer's apps.
    chosen = firing.http(firing.all_key).get("/overview/api/alerts", params={"app": "search"}).json()
    assert titles(chosen) == {("LLM error rate", "search")}
    refused = firing.http(firing.bot_key).get("/overview/api/alerts", params={"app": "search"})
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "app"
    idle = firing.signed_in("idle").get("/overview/api/alerts")
    assert idle.status_code == 403


def test_the_spec_tells_the_page_which_panel_shows_each_rule(firing):
    spec = firing.http(firing.all_key).get("/overview/api/panels").json()
    assert {r["uid"]: r["panel"] for r in spec["alert_panels"]} == {r.uid: r.panel_id for r in alerts.RULES}


def test_firing_alerts_show_above_the_panels_in_chromium(firing):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (CI needs the Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    with serve(firing.app) as base_url, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(base_url + "/")
            page.fill("#login input[name=username]", "admin")
            page.fill("#login input[name=password]", PASSWORD)
            page.click("#login button[type=submit]")
            page.wait_for_function("document.getElementById('alerts').dataset.count === '3'", timeout=30_000)
            assert page.locator("#alerts").is_visible()
            assert page.get_attribute("#alerts", "data-state") == "firing"
            items = page.locator("#alerts li")
            texts = items.all_text_contents()
            assert sum("FIRING" in t for t in texts) == 3
            assert any(re.search(r"search/gpt-4o-mini: 3\d(\.\d+)?% of calls fail\.", t) for t in texts), texts
            assert any("Spend is on course to exceed the daily budget" in t for t in texts), texts
            # The panels that show the firing rules' data are marked.
            marked = page.eval_on_selector_all(".panel.alerting", "els => els.map((e) => e.dataset.panelId)")
            assert set(marked) == {"error_rate", "cost"}

            # A reviewer of one app sees that app's alert only.
            page.click("#sign-out")
            page.wait_for_function("document.body.dataset.auth === 'signed-out'", timeout=30_000)
            page.fill("#login input[name=username]", "searcher")
            page.fill("#login input[name=password]", PASSWORD)
            page.click("#login button[type=submit]")
            page.wait_for_function("document.getElementById('alerts').dataset.count === '1'", timeout=30_000)
            (only,) = page.locator("#alerts li").all_text_contents()
            assert "search/gpt-4o-mini" in only and "support-bot" not in only
            _wait_for_calls(page, 200)  # search's calls: 20 minutes of 10
        finally:
            browser.close()
