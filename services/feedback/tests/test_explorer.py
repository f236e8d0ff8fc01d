"""The call explorer's API (/calls/api/*): filters, cursor pages, a call with its scores,
votes and trace, sessions, coverage; scoped to the reviewer's apps. Data arrives through
the real path (OTLP spans from the OpenTelemetry SDK, events, thumbs) on Apache Kafka."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from .agent_traces import agent_turns
from .conftest import ADMIN, FeedbackStack


@pytest.fixture(scope="module")
def explorer_stack(kafka_broker, chdb_path):
    from lookout.core.settings import CommonSettings

    tag = uuid.uuid4().hex[:10]
    common = CommonSettings(kafka_bootstrap=kafka_broker.bootstrap, kafka_idempotence="on", topic_prefix=f"t{tag}.",
                            kafka_topic_partitions=3, kafka_session_timeout_ms=10_000,
                            clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database=f"t_{tag}")
    stack = FeedbackStack(common)
    stack.turns = agent_turns(stack.ingest.url, stack.ingest.api_key, "shop", "conv-42",
                              ["Umbrellas in Paris?", "And in Lyon?"])
    stack.bank_calls = stack.add_calls("bank", 3, model="m-bank", output="your balance is fine")
    stack.ingest.wait_for_calls("shop", 4)
    stack.wait_rows("SELECT count() FROM trace_spans WHERE app_id = 'shop'", 10)
    stack.wait_rows("SELECT count() FROM scores WHERE app_id = 'shop' AND source = 'client'", 2)
    stack.queue_tasks("shop", [uuid.UUID(stack.turns[0].call_ids[1])])
    stack.add_reviewer("kim", ["shop"])
    stack.add_reviewer("zed", ["bank"])
    yield stack
    stack.close()


def test_calls_are_listed_newest_first_and_filtered_by_app_model_text_and_status(explorer_stack):
    stack = explorer_stack
    with stack.login(*ADMIN) as http:
        everything = http.get("/calls/api/calls").json()["calls"]
        assert {c["app_id"] for c in everything} == {"shop", "bank"}
        assert [c["ts"] for c in everything] == sorted((c["ts"] for c in everything), reverse=True)
        shop = http.get("/calls/api/calls", params={"app_id": "shop", "model": "gpt-4o-mini"}).json()["calls"]
        assert len(shop) == 4
        found = http.get("/calls/api/calls", params={"q": "umbrellas in lyon"}).json()["calls"]
        assert [c["answer"] for c in found] == ["We have 3 umbrellas in Lyon."]
        assert found[0]["question"] == "And in Lyon?"
        assert http.get("/calls/api/calls", params={"status": "error"}).json()["calls"] == []


def test_score_and_feedback_filters_find_the_scored_and_the_voted_calls(explorer_stack):
    stack = explorer_stack
    with stack.login(*ADMIN) as http:
        scored = http.get("/calls/api/calls", params={"score_name": "relevance", "score_min": 0.5}).json()["calls"]
        assert sorted(c["event_id"] for c in scored) == sorted(t.call_ids[1] for t in stack.turns)
        assert http.get("/calls/api/calls", params={"score_name": "relevance", "score_min": 0.95}).json()["calls"] == []
        down = http.get("/calls/api/calls", params={"feedback": "down"}).json()["calls"]
        assert [c["event_id"] for c in down] == [stack.turns[0].call_ids[1]]
        unvoted = http.get("/calls/api/calls", params={"feedback": "none", "app_id": "shop"}).json()["calls"]
        assert len(unvoted) == 3


def test_pages_follow_the_cursor_without_repeating_or_losing_a_call(explorer_stack):
    stack = explorer_stack
    with stack.login(*ADMIN) as http:
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = http.get("/calls/api/calls", params=params).json()
            seen += [c["event_id"] for c in page["calls"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 7
        bad = http.get("/calls/api/calls", params={"cursor": "not-a-cursor"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "cursor"


def test_a_call_comes_with_its_client_score_and_evaluator_its_vote_its_task_and_its_trace(explorer_stack):
    stack = explorer_stack
    event_id = stack.turns[0].call_ids[1]
    with stack.login(*ADMIN) as http:
        call = http.get(f"/calls/api/calls/{event_id}").json()
        assert call["output"] == "We have 3 umbrellas in Paris." and call["app_id"] == "shop"
        (score,) = call["scores"]
        assert (score["name"], score["value"], score["label"], score["source"], score["evaluator"]) == (
            "relevance", 0.9, "relevant", "client", "shop.agent")
        assert [f["thumbs"] for f in call["feedback"]] == [-1]
        assert [t["kind"] for t in call["review_tasks"]] == ["thumbs_down"]
        tree = http.get(f"/calls/api/traces/{call['trace_id']}").json()
        assert [(s["kind"], s["depth"]) for s in tree["spans"]] == [
            ("agent", 0), ("llm", 1), ("tool", 1), ("retrieval", 1), ("llm", 1)]
        assert tree["spans"][4]["event_id"] == event_id and tree["spans"][0]["offset_ms"] == 0
        session = http.get(f"/calls/api/sessions/{call['session_id']}").json()
        assert [t["event_id"] for t in session["calls"]] == [i for t in stack.turns for i in t.call_ids]


def test_a_call_its_trace_and_its_session_open_by_id_alone_and_the_session_pages_on(explorer_stack):
    stack = explorer_stack
    event_id = stack.turns[1].call_ids[0]
    everyone = [i for t in stack.turns for i in t.call_ids]
    with stack.login(*ADMIN) as http:
        call = http.get(f"/calls/api/calls/{event_id}").json()
        # A link made when the pages passed a time hint still opens (the hint is not needed).
        old_link = http.get(f"/calls/api/calls/{event_id}", params={"app_id": "shop", "around": "2001-01-01T00:00:00Z"})
        assert old_link.json()["output"] == call["output"]
        spans = http.get(f"/calls/api/traces/{call['trace_id']}").json()["spans"]
        assert event_id in {s["event_id"] for s in spans}
        turns, cursor = [], None
        while True:
            page = http.get(f"/calls/api/sessions/{call['session_id']}",
                            params={"limit": 1, **({"cursor": cursor} if cursor else {})}).json()
            assert page["truncated"] is False
            turns += [t["event_id"] for t in page["calls"]]
            cursor = page["next"]
            if cursor is None:
                break
        assert turns == everyone
        assert http.get(f"/calls/api/calls/{event_id}", params={"app_id": "bank"}).status_code == 404


def test_a_reviewer_of_one_app_sees_nothing_of_another(explorer_stack):
    stack = explorer_stack
    shop_call = stack.turns[0].call_ids[1]
    with stack.login("zed", "password-123") as http:
        listed = http.get("/calls/api/calls").json()["calls"]
        assert {c["app_id"] for c in listed} == {"bank"}
        assert http.get("/calls/api/calls", params={"app_id": "shop"}).json()["calls"] == []
        assert http.get("/calls/api/calls", params={"q": "umbrellas"}).json()["calls"] == []
        assert http.get(f"/calls/api/calls/{shop_call}").status_code == 404
        assert http.get(f"/calls/api/traces/{stack.turns[0].trace_id}").status_code == 404
        call = http.get(f"/calls/api/calls/{stack.bank_calls[0]}").json()
        assert call["app_id"] == "bank"
        assert "shop" not in http.get("/calls/api/facets").json()["apps"]
        assert all(s["source"] != "shop.agent" for s in http.get("/calls/api/coverage").json()["sources"])
    with stack.login("kim", "password-123") as http:
        shop = http.get(f"/calls/api/calls/{shop_call}").json()
        assert http.get(f"/calls/api/sessions/{shop['session_id']}").status_code == 200
    with stack.login("zed", "password-123") as http:
        assert http.get(f"/calls/api/sessions/{shop['session_id']}").status_code == 404


def test_without_a_session_every_explorer_route_answers_401(explorer_stack):
    import httpx

    with httpx.Client(base_url=explorer_stack.url) as http:
        for path in ("/calls/api/calls", f"/calls/api/calls/{uuid.uuid4()}", "/calls/api/facets",
                     "/calls/api/coverage", f"/calls/api/traces/{'a' * 32}", "/calls/api/sessions/x"):
            reply = http.get(path)
            assert reply.status_code == 401 and "error" in reply.json(), path
        assert http.get("/calls").status_code == 200  # the page itself, which then asks to sign in


def test_coverage_shows_per_source_which_fields_were_filled(explorer_stack):
    with explorer_stack.login(*ADMIN) as http:
        coverage = http.get("/calls/api/coverage").json()
    (agent,) = [s for s in coverage["sources"] if s["source"] == "shop.agent"]
    assert (agent["version"], agent["calls"]) == ("1.2.0", 4)
    assert agent["fields"]["model"] == agent["fields"]["output"] == agent["fields"]["tokens_in"] == 4
    assert agent["fields"]["session_id"] == 4  # inherited from the agent run's conversation id
    assert agent["fields"]["tokens_cache_read"] == 0
    assert agent["steps"] == {"llm": 4, "agent": 2, "tool": 2, "retrieval": 2}


def test_bad_filters_are_a_4xx_naming_the_field(explorer_stack):
    with explorer_stack.login(*ADMIN) as http:
        for params, field in [({"since": "2026-01-01T00:00:00"}, "since"), ({"since": "1800-01-01T00:00:00Z"}, "since"),
                              ({"limit": 0}, "limit"), ({"trace_id": "xyz"}, "trace_id"),
                              ({"score_min": "nan"}, "score_min"), ({"feedback": "maybe"}, "feedback")]:
            reply = http.get("/calls/api/calls", params=params)
            assert reply.status_code == 422, (params, reply.text)
            assert field in reply.json()["error"].get("field", "") + reply.json()["error"]["message"], params


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")
def test_in_chromium_a_reviewer_filters_opens_a_call_and_sees_its_trace_tree_and_session_by_keyboard(
        explorer_stack):
    from playwright.sync_api import expect, sync_playwright

    stack = explorer_stack
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(f"{stack.url}/calls")
            page.locator("#username").wait_for()
            page.keyboard.type("kim")
            page.keyboard.press("Tab")
            page.keyboard.type("password-123")
            page.keyboard.press("Enter")
            rows = page.locator("#calls tbody tr")
            expect(rows).to_have_count(4)  # shop's calls only
            expect(page.locator("#calls")).not_to_contain_text("bank")

            page.keyboard.press("/")
            page.keyboard.type("umbrellas in lyon")
            page.keyboard.press("Enter")
            expect(rows).to_have_count(1)
            expect(page).to_have_url(f"{stack.url}/calls?q=umbrellas+in+lyon")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "explorer-list.png"), full_page=True)
            page.keyboard.press("Escape")
            page.keyboard.press("o")

            expect(page.locator("#c-output")).to_have_text("We have 3 umbrellas in Lyon.")
            expect(page.locator("#c-scores")).to_contain_text("relevance")
            expect(page.locator("#c-scores")).to_contain_text("shop.agent 1.2.0")
            steps = page.locator("#c-trace .step")
            expect(steps).to_have_count(5)
            expect(steps.nth(0)).to_contain_text("agent")
            expect(steps.nth(4)).to_have_class("step current")
            expect(page.locator("#c-trace")).to_contain_text("3 umbrellas in Lyon")  # the tool's result
            turns = page.locator("#c-session .turn")
            expect(turns).to_have_count(4)  # both agent turns' calls, one conversation
            expect(turns.nth(3)).to_have_class("turn current")
            page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

            page.keyboard.press("p")  # the previous turn of the session: the tool-calling call
            expect(page.locator("#c-output")).to_contain_text("tool_call")
            expect(turns.nth(2)).to_have_class("turn current")
            page.keyboard.press("u")
            expect(rows).to_have_count(1)

            other = browser.new_page()
            other.goto(f"{stack.url}/calls")
            other.locator("#username").wait_for()
            other.fill("#username", "zed")
            other.fill("#password", "password-123")
            other.keyboard.press("Enter")
            expect(other.locator("#calls tbody tr")).to_have_count(3)
            expect(other.locator("#calls")).not_to_contain_text("shop")
            other.goto(f"{stack.url}/calls/{stack.turns[0].call_ids[1]}")
            expect(other.locator("#call-error")).to_contain_text("no call with event_id")
            expect(other.locator("#call")).to_be_hidden()
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_fuzzing_the_explorer_api_from_its_openapi_gets_no_5xx_and_reaches_the_handlers(explorer_stack):
    import requests
    import schemathesis

    from lookout.testing.fuzz import fuzz_operations

    stack = explorer_stack
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    others = {op.ok().path for op in schema.get_all_operations() if not op.ok().path.startswith("/calls/api/")}
    callers = {"anonymous": requests.Session()}
    for name, (user, password) in {"admin": ADMIN, "kim": ("kim", "password-123")}.items():
        session = requests.Session()
        assert session.post(f"{stack.url}/review/api/login", json={"username": user, "password": password},
                            timeout=30).status_code == 200
        callers[name] = session
    seen: dict = {}
    try:
        failures = fuzz_operations(schema, stack.url, callers, skip=others, seen=seen)
    finally:
        for session in callers.values():
            session.close()
    assert not failures, "\n\n".join(failures[:5])
    for path in ("/calls/api/calls", "/calls/api/facets", "/calls/api/coverage"):
        assert seen[f"admin GET {path}"][200] > 0, (path, seen[f"admin GET {path}"])
    # Without a session nothing is read: 401 (or 422 where the query itself is bad).
    assert set(seen["anonymous GET /calls/api/calls"]) <= {401, 422}
    assert seen["kim GET /calls/api/calls/{event_id}"][404] > 0  # random ids: no such call for kim
