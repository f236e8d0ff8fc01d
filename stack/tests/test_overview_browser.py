"""The embedded overview page renders real data, in Debian's chromium driven by Playwright.

The router runs under uvicorn on a free port over a chdb database seeded through the real
schema (dashboards.sample). The API half checks the JSON contract and that request values
cannot reach SQL; the browser half checks every panel draws and refreshes, and saves a
screenshot to test-artifacts/overview.png.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dashboards import sample
from dashboards.panels import PANELS
from lookout.stack import overview

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def seeded(ch):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return ch, sample.seed(ch, now)


@pytest.fixture
def app(seeded) -> FastAPI:
    client, _ = seeded
    app = FastAPI()
    app.include_router(overview.router(lambda: client))
    return app


# ---- the JSON API ------------------------------------------------------------------------


def test_spec_lists_every_panel(app):
    spec = TestClient(app).get("/overview/api/panels").json()
    assert [p["id"] for p in spec["panels"]] == [p.id for p in PANELS]
    assert spec["refresh_s"] == 5
    assert {v["name"] for v in spec["variables"]} >= {"app", "model", "environment"}


def test_panel_data_is_columns_and_rows(app, seeded):
    _, s = seeded
    http = TestClient(app)
    body = http.get("/overview/api/panels/calls_total", params={"from": "now-6h"}).json()
    assert body["columns"] == [{"name": "calls", "type": "number", "unit": None}]
    assert body["rows"] == [[len(s.calls)]]
    body = http.get("/overview/api/panels/calls_total", params=[("from", "now-6h"), ("app", "search")]).json()
    assert body["rows"] == [[len(s.calls_where(app_id="search"))]]
    body = http.get(
        "/overview/api/panels/calls_total",
        params=[("from", "now-6h"), ("model", "gpt-4o"), ("model", "claude-3-5-haiku")],
    ).json()
    assert body["rows"] == [[len(s.calls_where(model="gpt-4o")) + len(s.calls_where(model="claude-3-5-haiku"))]]
    traffic = http.get("/overview/api/panels/traffic", params={"from": "now-6h"}).json()
    assert traffic["series_column"] == "series" and traffic["interval_s"] == 120
    assert all(isinstance(r[0], float) for r in traffic["rows"])  # epoch seconds for the chart


def test_time_range_accepts_epoch_ms_and_iso(app, seeded):
    _, s = seeded
    http = TestClient(app)
    params = {"from": str(int(s.start.timestamp() * 1000)), "to": s.end.isoformat()}
    body = http.get("/overview/api/panels/calls_total", params=params).json()
    assert body["from"] == s.start.timestamp() and body["to"] == s.end.timestamp()
    assert body["rows"] == [[len(s.calls)]]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"from": "now", "to": "now-1h"},
        {"from": "now-200d"},
        {"from": "2025-01-01T00:00:00"},  # no zone
        {"app": "a\x00b"},
        {"app": "x" * 300},
    ],
)
def test_bad_parameters_are_rejected(app, params):
    assert TestClient(app).get("/overview/api/panels/calls_total", params=params).status_code in (400, 422)


def test_unknown_panels_and_variables_are_404(app):
    http = TestClient(app)
    assert http.get("/overview/api/panels/nope").status_code == 404
    assert http.get("/overview/api/variables/daily_budget").status_code == 404
    assert http.get("/overview/static/../overview.py").status_code == 404
    assert http.get("/overview/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


def test_filter_values_never_become_sql(app, seeded):
    client, s = seeded
    http = TestClient(app)
    for hostile in ("x') OR 1=1 --", "support-bot'", "{v_app:String}", "$__timeFilter(ts)", "${model}"):
        body = http.get("/overview/api/panels/calls_total", params={"from": "now-6h", "app": hostile}).json()
        assert body["rows"] == [[0]], hostile
    assert client.query("SELECT count() FROM llm_calls").result_rows == [(len(s.calls),)]


def test_variable_options_follow_the_selection(app):
    http = TestClient(app)
    assert http.get("/overview/api/variables/app", params={"from": "now-6h"}).json()["options"] == [
        "search", "support-bot",
    ]
    models = http.get("/overview/api/variables/model", params={"from": "now-6h", "app": "search"}).json()
    assert models["options"] == ["gpt-4o"]


# ---- the page in chromium ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def base_url(app):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _wait_for_calls(page, calls: int) -> None:
    page.wait_for_function(
        f"document.querySelector('[data-panel-id=calls_total] .value')?.textContent === '{calls}'",
        timeout=30_000,
    )


def _wait_all_ok(page) -> None:
    """Every panel drew data (panels answer independently, so wait for the last one)."""
    page.wait_for_function(
        "[...document.querySelectorAll('[data-panel-id]')].every((p) => p.dataset.state === 'ok')",
        timeout=30_000,
    )


def test_overview_renders_live_data_in_chromium(base_url, seeded):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (CI needs the Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    _, s = seeded
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "/")
            page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=30_000)
            page.select_option("select[name=range]", "now-6h")
            _wait_for_calls(page, len(s.calls))
            _wait_all_ok(page)
            charts = page.locator('[data-panel-id="traffic"] .uplot canvas')
            assert charts.count() == 1
            # One legend entry per app/model stream, drawn from the long rows.
            legend = page.locator('[data-panel-id="traffic"] .u-legend .u-series').all_text_contents()
            assert sum("/" in label for label in legend) == 3
            drift_rows = page.locator('[data-panel-id="drift_state"] tbody tr')
            assert drift_rows.count() == 3
            assert "support-bot" in drift_rows.first.text_content()

            # It refreshes by itself (every 5 s), without a reload.
            seen = int(page.get_attribute("body", "data-refreshes"))
            page.wait_for_function(f"Number(document.body.dataset.refreshes) > {seen}", timeout=15_000)

            # Filters reach the panels: one app, its model only.
            page.select_option("select[name=app]", "search")
            _wait_for_calls(page, len(s.calls_where(app_id="search")))
            assert page.locator("select[name=model] option").all_text_contents() == ["All", "gpt-4o"]
            page.wait_for_function(  # no judge scores on search
                "document.querySelector('[data-panel-id=judge_scores]').dataset.state === 'empty'", timeout=30_000
            )

            page.select_option("select[name=app]", "")
            _wait_for_calls(page, len(s.calls))
            _wait_all_ok(page)
            # A count beside a rate gets its own axis: toxicity's scored calls are not a percentage.
            assert page.locator('[data-panel-id="toxicity_rate"] .u-axis').count() == 3
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
