"""The embedded overview page renders real data, in Debian's chromium driven by Playwright.

The router runs under uvicorn on a free port over a chdb database seeded through the real
schema (lookout.testing.sample), beside the review UI's login (the feedback service's own
router and Accounts), as `lookout up` mounts them. The API half checks the JSON contract,
who may read it (a read key or a review session, each seeing only its apps), the Host
check and the bounds on the time range; the browser half signs in as a user would and
checks every panel draws and refreshes, and saves a screenshot to test-artifacts/overview.png.
The units half reads each panel's value axis (its range and tick labels, as drawn) and its
numbers on the sample and on a fresh install's first minutes, and the range the page fits
to the data.
"""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lookout.core.api_errors import install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.dashboards.panels import PANELS
from lookout.feedback import explorer, review
from lookout.feedback.accounts import Accounts
from lookout.feedback.settings import FeedbackSettings
from lookout.stack import overview
from lookout.stack.overview_access import REVIEW_COOKIE, OverviewSettings, host_name
from lookout.testing import sample

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
BASE = "http://127.0.0.1:8000"
PASSWORD = "a-long-reviewer-password"
PER_APP = [p.id for p in PANELS if p.per_app]


@pytest.fixture
def seeded(ch):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return ch, sample.seed(ch, now)


class Stack:
    """The overview and the review login on one app, with keys and reviewers to sign in as."""

    def __init__(self, client, access: OverviewSettings | None = None):
        self.keys = ApiKeyStore(client)
        accounts = Accounts(client, session_ttl_s=3600)
        self.every, self.all_key = self.keys.create("*", ["read"], name="on-call")
        self.bot, self.bot_key = self.keys.create("support-bot", ["read"], name="bot team")
        self.ingest, self.ingest_key = self.keys.create("*", ["ingest"], name="sdk")
        accounts.upsert("admin", password=PASSWORD, role="admin", apps=["*"])
        accounts.upsert("searcher", password=PASSWORD, role="viewer", apps=["search"])
        accounts.upsert("idle", password=PASSWORD, role="reviewer", apps=[])
        self.app = FastAPI()
        install_error_handlers(self.app)
        # Feedback's settings give their defaults positionally (Field(x, ...)), which pyright
        # does not read as defaults; every field has one.
        context = review.ReviewContext(FeedbackSettings(), Session.of(client), accounts)  # pyright: ignore[reportCallIssue]
        self.app.include_router(review.build_router(context))
        self.app.include_router(overview.router(lambda: client, keys=self.keys, sessions=accounts.session,
                                                bound_host="127.0.0.1", access=access))
        # The call explorer the panels link to, on the same sign-in.
        self.app.include_router(explorer.build_router(explorer.ExplorerContext(Session.of(client), accounts)))
        self.app.include_router(explorer.pages_router())

    def http(self, key: str | None = None, base_url: str = BASE) -> TestClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return TestClient(self.app, base_url=base_url, headers=headers)

    def signed_in(self, username: str) -> TestClient:
        http = self.http()
        assert http.post("/review/api/login", json={"username": username, "password": PASSWORD}).status_code == 200
        return http


@pytest.fixture
def stack(ch) -> Stack:
    """Tests that need rows ask for `seeded` too (the same database)."""
    return Stack(ch)


def rows(http: TestClient, panel_id: str, *params: tuple[str, str], s: sample.Sample | None = None) -> list:
    """A panel's rows over the last 6 h, or over the sample's fixed range (for comparing two
    answers: "now" moves between them)."""
    when = [("from", "now-6h")] if s is None else [("from", s.start.isoformat()), ("to", s.end.isoformat())]
    r = http.get(f"/overview/api/panels/{panel_id}", params=[*when, *params])
    assert r.status_code == 200, r.text
    return r.json()["rows"]


# ---- the JSON API ------------------------------------------------------------------------


def test_spec_lists_every_panel(stack):
    spec = stack.http(stack.all_key).get("/overview/api/panels").json()
    assert [p["id"] for p in spec["panels"]] == [p.id for p in PANELS]
    assert spec["refresh_s"] == 5
    assert {v["name"] for v in spec["variables"]} >= {"app", "model", "environment"}
    assert spec["viewer"] == {"name": f"key {stack.every.key_id} (on-call)", "via": "key", "apps": None}


def test_panel_data_is_columns_and_rows(stack, seeded):
    _, s = seeded
    http = stack.http(stack.all_key)
    body = http.get("/overview/api/panels/calls_total", params={"from": "now-6h"}).json()
    assert body["columns"] == [{"name": "calls", "type": "number", "unit": None, "axis": None}]
    assert body["unit"] == "short" and body["axis"] == {"min": 0.0, "max": None, "soft_max": None}
    assert body["rows"] == [[len(s.calls)]]
    assert rows(http, "calls_total", ("app", "search")) == [[len(s.calls_where(app_id="search"))]]
    assert rows(http, "calls_total", ("model", "gpt-4o"), ("model", "claude-3-5-haiku")) == [
        [len(s.calls_where(model="gpt-4o")) + len(s.calls_where(model="claude-3-5-haiku"))]]
    traffic = http.get("/overview/api/panels/traffic", params={"from": "now-6h"}).json()
    assert traffic["series_column"] == "series" and traffic["interval_s"] == 120
    assert all(isinstance(r[0], float) for r in traffic["rows"])  # epoch seconds for the chart


def test_time_range_accepts_epoch_ms_and_iso(stack, seeded):
    _, s = seeded
    params = {"from": str(int(s.start.timestamp() * 1000)), "to": s.end.isoformat()}
    body = stack.http(stack.all_key).get("/overview/api/panels/calls_total", params=params).json()
    assert body["from"] == s.start.timestamp() and body["to"] == s.end.timestamp()
    assert body["rows"] == [[len(s.calls)]]


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"from": "yesterday"}, "from", "bad time"),
        ({"from": "now", "to": "now-1h"}, "from", "before"),
        ({"from": "now-200d"}, "from", "at most 93 days"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}, "from", "at most 93 days"),
        ({"from": "2025-01-01T00:00:00"}, "from", "zone"),
        ({"from": "0224-01-01T00:00:00Z"}, "from", "outside 1970-2105"),
        ({"from": "now-999999d"}, "from", "bad time"),  # before year 1: an overflow, not a 500
        ({"from": "now-1h", "to": "999999999999999"}, "to", "bad time"),  # after year 9999
        ({"from": "now-1h", "to": "9999999999999"}, "to", "outside 1970-2105"),
        ({"app": "a\x00b"}, "app", "control characters"),
        ({"app": "x" * 300}, "app", "256"),
        ({"model": "a,b"}, "model", "list"),
        ({"environment": "{prod}"}, "environment", "list"),
    ],
)
def test_bad_parameters_are_a_422_naming_the_field(stack, params, field, says):
    r = stack.http(stack.all_key).get("/overview/api/panels/calls_total", params=params)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field and says in error["message"], error


def test_too_many_filter_values_are_a_422(stack):
    r = stack.http(stack.all_key).get("/overview/api/panels/calls_total", params=[("app", f"a{i}") for i in range(51)])
    assert r.status_code == 422


def test_unknown_panels_and_variables_are_404(stack):
    http = stack.http(stack.all_key)
    assert http.get("/overview/api/panels/nope").status_code == 404
    assert http.get("/overview/api/variables/daily_budget").status_code == 404
    assert http.get("/overview/static/../overview.py").status_code == 404
    assert http.get("/overview/static/vendor/uplot/uPlot.iife.min.js").status_code == 200


def test_filter_values_never_become_sql(stack, seeded):
    client, s = seeded
    http = stack.http(stack.all_key)
    for hostile in ("x') OR 1=1 --", "support-bot'", "x\\", "v_app:String}", "$__timeFilter(ts)", "${model}",
                    "%7Bsearch%7D", "search\\' OR 1=1 --", "é☃"):
        assert rows(http, "calls_total", ("app", hostile)) == [[0]], hostile
        assert rows(http, "calls_total", ("model", hostile)) == [[0]], hostile
    assert client.query("SELECT count() FROM llm_calls").result_rows == [(len(s.calls),)]


def test_variable_options_follow_the_selection(stack, seeded):
    http = stack.http(stack.all_key)
    assert http.get("/overview/api/variables/app", params={"from": "now-6h"}).json()["options"] == [
        "search", "support-bot",
    ]
    models = http.get("/overview/api/variables/model", params={"from": "now-6h", "app": "search"}).json()
    assert models["options"] == ["gpt-4o"]


# ---- who may read it ---------------------------------------------------------------------

ROUTES = ["/overview/api/me", "/overview/api/panels", "/overview/api/panels/calls_total",
          "/overview/api/variables/app", "/overview/api/range", "/overview/api/alerts"]


@pytest.mark.parametrize("route", ROUTES)
def test_the_data_needs_a_read_key_or_a_review_session(stack, route):
    anonymous = stack.http().get(route)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert "sign in to the review UI" in anonymous.json()["error"]["message"]
    for authorization in ("Bearer lk_nope", "Basic YWRtaW46YWRtaW4=", "Bearer ", f"Token {stack.all_key}",
                          "Bearer lk_é".encode()):  # a non-ASCII header: 401, not 500
        # httpx sends a bytes header value as it is (its stubs name str only).
        r = TestClient(stack.app, base_url=BASE).get(route, headers={"Authorization": authorization})  # pyright: ignore[reportArgumentType]
        assert r.status_code == 401, (authorization, r.text)
    no_read = stack.http(stack.ingest_key).get(route)
    assert no_read.status_code == 403 and "'read' scope" in no_read.json()["error"]["message"]
    assert stack.http(stack.all_key).get(route).status_code == 200


def test_a_revoked_key_and_an_ended_session_are_refused(stack):
    http = stack.signed_in("admin")
    assert http.get("/overview/api/me").json() == {"name": "admin", "via": "session", "apps": None}
    cookie = http.cookies[REVIEW_COOKIE]
    csrf = http.get("/review/api/me").json()["csrf"]
    assert http.post("/review/api/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    copied = stack.http()
    copied.cookies.set(REVIEW_COOKIE, cookie)  # the cookie as it was before the logout
    assert copied.get("/overview/api/me").status_code == 401
    keys = stack.keys
    created, key = keys.create("*", ["read"])
    assert stack.http(key).get("/overview/api/me").status_code == 200
    keys.revoke(created.key_id)
    assert stack.http(key).get("/overview/api/me").status_code == 401


def test_a_bad_key_is_not_rescued_by_a_good_session(stack):
    http = stack.signed_in("admin")
    assert http.get("/overview/api/me", headers={"Authorization": "Bearer lk_nope"}).status_code == 401


def test_a_forged_session_cookie_is_refused(stack):
    http = stack.http()
    http.cookies.set(REVIEW_COOKIE, "forged")
    r = http.get("/overview/api/panels")
    assert r.status_code == 401 and "session has ended" in r.json()["error"]["message"]


def test_the_cookie_is_the_review_uis():
    assert REVIEW_COOKIE == review.COOKIE


def test_a_key_bound_to_one_app_sees_only_that_app(stack, seeded):
    _, s = seeded
    mine, every = stack.http(stack.bot_key), stack.http(stack.all_key)
    assert mine.get("/overview/api/me").json()["apps"] == ["support-bot"]
    assert rows(mine, "calls_total") == [[len(s.calls_where(app_id="support-bot"))]]
    for panel_id in PER_APP:  # All, for this key, is its one app in every panel
        assert sample.rounded(rows(mine, panel_id, s=s)) == sample.rounded(
            rows(every, panel_id, ("app", "support-bot"), s=s)), panel_id
    refused = mine.get("/overview/api/panels/calls_total", params=[("app", "support-bot"), ("app", "search")])
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "app"
    assert "'search'" in refused.json()["error"]["message"]
    options = mine.get("/overview/api/variables/app", params={"from": "now-6h"}).json()["options"]
    assert options == ["support-bot"]
    # Dead letters are not kept per app: not in its spec, and refused when asked for.
    assert [p["id"] for p in mine.get("/overview/api/panels").json()["panels"]] == PER_APP
    assert mine.get("/overview/api/panels/dead_letters").status_code == 403


def test_a_reviewer_sees_only_the_apps_assigned_to_them(stack, seeded):
    _, s = seeded
    searcher, every = stack.signed_in("searcher"), stack.http(stack.all_key)
    assert searcher.get("/overview/api/me").json() == {"name": "searcher", "via": "session", "apps": ["search"]}
    assert rows(searcher, "calls_total") == [[len(s.calls_where(app_id="search"))]]
    for panel_id in ("drift_state", "retrain_runs", "review_queue_depth", "thumbs_down", "model_versions"):
        assert sample.rounded(rows(searcher, panel_id, s=s)) == sample.rounded(
            rows(every, panel_id, ("app", "search"), s=s)), panel_id
    assert {r[0] for r in rows(searcher, "drift_state")} == {"search"}
    assert searcher.get("/overview/api/panels/calls_total", params={"app": "support-bot"}).status_code == 403
    idle = stack.signed_in("idle").get("/overview/api/panels/calls_total")
    assert idle.status_code == 403 and "may read no app" in idle.json()["error"]["message"]


# ---- which Host names it answers to ------------------------------------------------------


def test_a_rebound_host_name_is_refused_even_with_a_key(stack):
    http = stack.http(stack.all_key)
    for route in ("/", "/overview/static/overview.js", "/overview/api/auth", *ROUTES):
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io", "localhost.evil.example"):
            r = http.get(route, headers={"Host": host})
            assert r.status_code == 421, (route, host, r.status_code)
            assert r.json()["error"]["field"] == "host"
        for host in ("", "a b", "evil.example:port", "[::1", "x" * 301):
            assert http.get(route, headers={"Host": host}).status_code == 400, (route, host)


def test_localhost_names_ip_addresses_the_bound_host_and_configured_names_are_served(ch):
    stack = Stack(ch, OverviewSettings(overview_allowed_hosts="Lookout.Example.com, ops.internal"))
    for host in ("localhost", "localhost:8000", "LOCALHOST.", "app.localhost", "127.0.0.1:8000", "10.1.2.3",
                 "[::1]:8000", "lookout.example.com", "ops.internal:443"):
        assert stack.http(stack.all_key).get("/overview/api/me", headers={"Host": host}).status_code == 200, host
    assert stack.http(stack.all_key).get("/overview/api/me", headers={"Host": "other.example.com"}).status_code == 421


def test_host_names_parse_like_browsers_send_them():
    assert host_name("Example.COM:8080") == "example.com"
    assert host_name("[::1]:80") == "::1"
    assert host_name("[not-an-ip]") is None
    assert host_name("a.b.:1") == "a.b"
    assert host_name(None) is None and host_name("h:1:2") is None


def test_the_sign_in_options_are_public_and_the_page_holds_no_data(stack):
    http = stack.http()
    assert http.get("/overview/api/auth").json() == {"review_login": True, "key": True}
    page = http.get("/")
    assert page.status_code == 200 and 'id="sign-in"' in page.text


# ---- the time range that fits the data ------------------------------------------------------


def fitted(http: TestClient, *params: tuple[str, str]) -> tuple[float, float, dict]:
    r = http.get("/overview/api/range", params=list(params))
    assert r.status_code == 200, r.text
    body = r.json()
    return body["from"], body["to"], body


def test_the_fitted_range_starts_a_minute_before_the_data_and_ends_now(stack, seeded):
    _, s = seeded
    start, end, body = fitted(stack.http(stack.all_key))
    assert body["first"] == s.start.timestamp()
    assert start == (s.start - timedelta(minutes=1)).timestamp()
    assert abs(end - time.time()) < 30


def test_a_fresh_install_gets_a_few_minutes_not_an_hour(stack, ch):
    now = datetime.now(UTC)
    sample.insert_calls(ch, [sample.call(now - timedelta(seconds=5 * i), "support-bot", "gpt-4o-mini")
                             for i in range(30)])  # two and a half minutes of traffic
    start, end, _ = fitted(stack.http(stack.all_key))
    assert end - start == pytest.approx(overview.FIT_MIN.total_seconds(), abs=1)
    assert end - start < 3600 / 4


def test_an_empty_store_gets_the_last_hour_and_old_data_its_last_six_hours(stack, ch):
    start, end, body = fitted(stack.http(stack.all_key))
    assert end - start == pytest.approx(3600, abs=1) and body["first"] is None
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    days_ago = now - timedelta(days=2)
    sample.insert_calls(ch, [sample.call(days_ago - timedelta(hours=h), "search", "gpt-4o") for h in range(12)])
    start, end, body = fitted(stack.http(stack.all_key))
    assert start == (days_ago - overview.FIT_MAX - timedelta(minutes=1)).timestamp()  # the data is on the left


def test_the_fitted_range_follows_the_viewer_and_the_filters(stack, ch):
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sample.insert_calls(ch, [sample.call(now - timedelta(hours=3), "search", "gpt-4o"),
                             sample.call(now - timedelta(minutes=30), "support-bot", "gpt-4o-mini")])
    every, bot = stack.http(stack.all_key), stack.http(stack.bot_key)
    assert fitted(every)[0] == (now - timedelta(hours=3, minutes=1)).timestamp()
    assert fitted(bot)[0] == (now - timedelta(minutes=31)).timestamp()  # search's calls are not its data
    assert fitted(every, ("app", "support-bot"))[0] == fitted(bot)[0]
    assert fitted(every, ("model", "gpt-4o"))[0] == fitted(every)[0]
    assert bot.get("/overview/api/range", params={"app": "search"}).status_code == 403


def test_fit_range_bounds():
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert overview.fit_range(None, None, now) == (now - timedelta(hours=1), now)
    first = now - timedelta(minutes=40, seconds=20)
    assert overview.fit_range(first, now, now) == (now - timedelta(minutes=42), now)
    assert overview.fit_range(now - timedelta(days=3), now, now) == (now - timedelta(hours=6, minutes=1), now)
    assert overview.fit_range(now - timedelta(days=30), now - timedelta(days=20), now) == (
        now - overview.FIT_LOOKBACK, now)


# ---- the page in chromium ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def base_url(stack):
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(stack.app, host="127.0.0.1", port=port, log_level="warning"))
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


def _wait_settled(page) -> None:
    """Every panel answered, with data or without."""
    page.wait_for_function(
        "[...document.querySelectorAll('[data-panel-id]')].every((p) => ['ok', 'empty'].includes(p.dataset.state))",
        timeout=30_000,
    )


def _signed_out(page) -> None:
    page.wait_for_function("document.body.dataset.auth === 'signed-out'", timeout=30_000)
    assert page.locator("#sign-in").is_visible() and not page.locator("#panels").is_visible()


def _sign_in(page, username: str) -> None:
    page.fill("#login input[name=username]", username)
    page.fill("#login input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_function("document.body.dataset.auth === 'signed-in'", timeout=30_000)


def test_overview_renders_live_data_in_chromium(base_url, stack, seeded):
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
            # A first visit asks who you are before it shows anything.
            page.goto(base_url + "/")
            _signed_out(page)
            page.fill("#login input[name=username]", "admin")
            page.fill("#login input[name=password]", "wrong")
            page.click("#login button[type=submit]")
            page.wait_for_function("document.getElementById('sign-in-error').textContent.includes('wrong')",
                                   timeout=30_000)
            _sign_in(page, "admin")
            assert page.text_content("#viewer-name") == "admin · all apps"
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
            # Every panel and every stream row opens its calls in the call explorer.
            row_link = drift_rows.first.locator("a.explore").get_attribute("href")
            assert row_link.startswith("/calls?") and "app_id=support-bot" in row_link and "since=" in row_link
            errors_link = page.locator('[data-panel-id="error_rate"] h2 a.explore').get_attribute("href")
            assert "status=error" in errors_link

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
            # The stream's link opens its calls in the explorer, on the same sign-in.
            page.goto(base_url + row_link)
            page.wait_for_function("document.querySelectorAll('#calls tbody tr').length > 0", timeout=30_000)
            assert set(page.locator("#calls tbody tr td:nth-child(2)").all_text_contents()) == {"support-bot"}
            page.goto(base_url + "/")
            page.wait_for_function("Number(document.body.dataset.refreshes) >= 1", timeout=30_000)

            # Signing out ends the review session, here and for the API.
            page.click("#sign-out")
            _signed_out(page)
            assert page.request.get(base_url + "/overview/api/me").status == 401
            page.reload()
            _signed_out(page)

            # A read key bound to one app, pasted into the prompt: that app only, no dead letters.
            page.fill("#key-login input[name=key]", stack.bot_key)
            page.click("#key-login button[type=submit]")
            page.wait_for_function("document.body.dataset.auth === 'signed-in'", timeout=30_000)
            page.select_option("select[name=range]", "now-6h")
            _wait_for_calls(page, len(s.calls_where(app_id="support-bot")))
            assert page.locator("select[name=app] option").all_text_contents() == ["All", "support-bot"]
            assert page.locator('[data-panel-id="dead_letters"]').count() == 0
            page.click("#sign-out")
            _signed_out(page)

            # A key that cannot read is refused with the reason, and not kept.
            page.fill("#key-login input[name=key]", stack.ingest_key)
            page.click("#key-login button[type=submit]")
            page.wait_for_function("document.getElementById('sign-in-error').textContent.includes('read')",
                                   timeout=30_000)
            assert page.evaluate("sessionStorage.getItem('lookout.overview.key')") is None

            # A reviewer assigned one app sees that app.
            _sign_in(page, "searcher")
            page.select_option("select[name=range]", "now-6h")
            _wait_for_calls(page, len(s.calls_where(app_id="search")))
            assert page.text_content("#viewer-name") == "searcher · search"
        finally:
            browser.close()
    assert errors == []


# ---- units and axes, as drawn --------------------------------------------------------------

# What a number in each unit the spec uses looks like on the page (and in Grafana).
UNIT_TEXT = {
    "percentunit": re.compile(r"^-?\d+(\.\d+)?%$"),
    "ms": re.compile(r"^\d+(\.\d+)? (ms|s|min)$"),
    "s": re.compile(r"^\d+(\.\d+)? (s|min|hour|day)$"),
    "currencyUSD": re.compile(r"^\$\d+(\.\d+)?$"),
    "reqpm": re.compile(r"^\d+(\.\d+)?[kMB]?/min$"),
    "short": re.compile(r"^\d+(\.\d+)?[kMB]?$"),
}


def _browser(sync_api, pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=[
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])


def _drawn(page) -> dict[str, dict]:
    return {p["id"]: p for p in page.evaluate("""[...document.querySelectorAll('[data-panel-id]')].map((e) => ({
        id: e.dataset.panelId, state: e.dataset.state, unit: e.dataset.unit || null,
        y: e.dataset.yRange ? JSON.parse(e.dataset.yRange) : null,
        y2: e.dataset.y2Range ? JSON.parse(e.dataset.y2Range) : null,
        x: e.dataset.xRange ? JSON.parse(e.dataset.xRange) : null,
        ticks: e.dataset.yTicks ? JSON.parse(e.dataset.yTicks) : [],
        ticks2: e.dataset.y2Ticks ? JSON.parse(e.dataset.y2Ticks) : [],
        value: e.querySelector('.value')?.textContent ?? null,
        head: [...e.querySelectorAll('th')].map((th) => th.textContent),
        cells: [...e.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)),
    }))""")}


def check_axes_and_units(drawn: dict[str, dict]) -> None:
    """Every panel of the spec: its axis within its bounds and every number in its unit."""
    for p in PANELS:
        d = drawn[p.id]
        if d["state"] != "ok":
            continue
        axis = p.y_axis
        if p.kind == "timeseries":
            lo, hi = d["y"]
            assert d["unit"] == p.unit and hi > lo, (p.id, d)
            assert axis.min is None or lo >= axis.min, (p.id, d["y"])
            assert axis.max is None or hi <= axis.max, (p.id, d["y"])  # percent: never past 100 %
            assert d["ticks"] and all(UNIT_TEXT[p.unit].match(tick) for tick in d["ticks"]), (p.id, d["ticks"])
            second = next((c for c in p.columns if c.unit and c.unit != p.unit), None)
            if second is not None and second.unit:
                assert d["ticks2"] and all(UNIT_TEXT[second.unit].match(x) for x in d["ticks2"]), (p.id, d["ticks2"])
                assert d["y2"][0] >= 0
        elif p.kind == "stat":
            assert UNIT_TEXT[p.unit].match(d["value"]), (p.id, d["value"])
        else:
            for i, col in enumerate(p.columns):
                if col.unit:
                    values = [row[i] for row in d["cells"] if row[i] != "–"]
                    assert all(UNIT_TEXT[col.unit].match(v) for v in values), (p.id, col.name, values)


def test_every_panel_draws_its_unit_and_an_axis_within_its_bounds_in_chromium(base_url, stack, seeded):
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (CI needs the Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    _, s = seeded
    with sync_api.sync_playwright() as pw:
        browser = _browser(sync_api, pw)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(base_url + "/")
            _sign_in(page, "admin")
            _wait_for_calls(page, len(s.calls))  # the fitted range holds the whole sample
            _wait_all_ok(page)
            drawn = _drawn(page)
            check_axes_and_units(drawn)
            # Percent panels on a 0-100 % axis that fits their data: the sample's error rate is
            # 10 % (support-bot) and 25 % (search), so the axis ends above 25 % and at most 100 %.
            lo, hi = drawn["error_rate"]["y"]
            assert lo == 0 and 0.25 <= hi <= 1 and drawn["error_rate"]["ticks"][-1].endswith("%")
            assert drawn["toxicity_rate"]["ticks2"] and drawn["toxicity_rate"]["y"][1] <= 1
            # Ages in units: the oldest open task is 50 minutes old at the end of the sample.
            assert drawn["review_oldest_age"]["value"].endswith(" min")
            assert drawn["latency_p99_total"]["value"].endswith((" ms", " s"))
            # The versions table writes its shares as percentages.
            versions = drawn["model_versions"]
            at = versions["head"].index("toxicity rate")
            assert any(row[at].endswith("%") for row in versions["cells"])
            # The x axis is the fitted range: a minute before the first call to now.
            x0, x1 = drawn["traffic"]["x"]
            assert x0 == pytest.approx((s.start - timedelta(minutes=1)).timestamp(), abs=1)
            assert abs(x1 - time.time()) < 60
        finally:
            browser.close()


def test_a_fresh_install_fills_its_charts_and_keeps_flat_rates_on_a_small_percent_axis_in_chromium(
        base_url, stack, ch):
    """The first minutes of `lookout up --demo`: no error and no toxic answer yet. uPlot alone
    drew those flat zeros on an axis to 100, which the percent unit wrote as 10 000 %."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (CI needs the Debian package)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    now = datetime.now(UTC).replace(microsecond=0)
    calls = [sample.call(now - timedelta(seconds=i), "support-bot", "gpt-4o-mini") for i in range(0, 180, 2)]
    sample.insert_calls(ch, calls)
    sample.insert_scores(ch, [sample.score(c, "toxicity.toxicity", 0.01, delay_s=0) for c in calls])
    sample.insert_review_tasks(ch, [sample.review_task(calls[-1], "toxicity", now - timedelta(seconds=46))])
    with sync_api.sync_playwright() as pw:
        browser = _browser(sync_api, pw)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(base_url + "/")
            _sign_in(page, "admin")
            _wait_for_calls(page, len(calls))
            _wait_settled(page)
            drawn = _drawn(page)
            check_axes_and_units(drawn)
            for panel_id in ("error_rate", "toxicity_rate"):
                assert drawn[panel_id]["y"] == [0, 0.1], (panel_id, drawn[panel_id])
                assert drawn[panel_id]["ticks"][-1] == "10.0%"
            age = drawn["review_oldest_age"]["value"]  # 46 s old when seeded, at the end of "now"
            assert re.fullmatch(r"\d+ s", age) and 46 <= int(age.split()[0]) < 120, age
            # Three minutes of data on a five-minute range, not dots at the edge of an hour.
            x0, x1 = drawn["traffic"]["x"]
            assert x1 - x0 == pytest.approx(overview.FIT_MIN.total_seconds(), abs=2)
            assert page.text_content("select[name=range] option[value=fit]") == "Fit data (5 min)"
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "overview-fresh.png"), full_page=True)
        finally:
            browser.close()
