"""The /review page in Debian's chromium, driven by Playwright, keyboard only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium is not installed")


def test_reviewer_logs_in_and_reviews_by_keyboard_and_an_unassigned_reviewer_sees_nothing(kafka_feedback_stack):
    from playwright.sync_api import expect, sync_playwright

    stack = kafka_feedback_stack
    first, second = stack.add_calls("shop", 2, output="the capital of France is Lyon")
    stack.queue_tasks("shop", [first, second])
    stack.add_reviewer("kim", ["shop"])
    stack.add_reviewer("zed", ["bank"])

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(f"{stack.url}/review")
            page.locator("#username").wait_for()
            page.keyboard.type("kim")
            page.keyboard.press("Tab")
            page.keyboard.type("password-123")
            page.keyboard.press("Enter")
            expect(page.locator("#task")).to_be_visible()
            expect(page.locator("#progress")).to_contain_text("0 reviewed · 2 open")
            shown = page.locator("#t-id").inner_text()
            assert shown in (str(first), str(second))
            expect(page.locator("#t-reasons")).to_contain_text("thumbs down")
            expect(page.locator("#t-output")).to_contain_text("Lyon")

            page.keyboard.press("2")
            page.keyboard.press("d")
            page.keyboard.press("Shift+Digit2")  # the second label: hallucination
            page.keyboard.press("c")
            page.keyboard.type("The capital of France is Paris.")
            page.keyboard.press("Escape")
            page.keyboard.press("o")
            page.keyboard.type("wrong city")
            page.keyboard.press("Escape")
            expect(page.locator("#rating .on")).to_have_text("2")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)
            page.keyboard.press("Enter")

            # The next task comes up by itself.
            expect(page.locator("#progress")).to_contain_text("1 reviewed · 1 open")
            expect(page.locator("#t-id")).not_to_have_text(shown)

            other = browser.new_page()
            other.goto(f"{stack.url}/review")
            other.locator("#username").wait_for()
            other.fill("#username", "zed")
            other.fill("#password", "password-123")
            other.keyboard.press("Enter")
            expect(other.locator("#empty")).to_be_visible()
            expect(other.locator("#task")).to_be_hidden()
            expect(other.locator("#progress")).to_contain_text("0 reviewed · 0 open")
            # Zed changes their password from the page; the session that did it stays.
            other.click("#account summary")
            other.fill("#current-password", "password-123")
            other.fill("#new-password", "zed-new-password")
            other.click("#password-form button")
            expect(other.locator("#password-note")).to_contain_text("other sessions were ended")
            stack.login("zed", "zed-new-password").close()
        finally:
            browser.close()

    stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 1)
    row = stack.client.query(
        "SELECT event_id, author, rating, thumbs, labels, corrected_output, comment FROM feedback "
        "WHERE source = 'reviewer'").result_rows[0]
    assert str(row[0]) == shown
    assert row[1:] == ("kim", 2, -1, ["hallucination"], "The capital of France is Paris.", "wrong city")


def test_an_admin_approves_a_retrain_run_from_the_retrain_panel(tansu_broker, settings_for):
    """A run waiting for approval (as the retrain-trigger records it) shows in the admin's
    panel; Approve produces the decision to llm.retrain.status (the sink stores it back)."""
    import uuid
    from datetime import UTC, datetime

    from playwright.sync_api import expect, sync_playwright

    from .conftest import ADMIN, FeedbackStack

    stack = FeedbackStack(settings_for(tansu_broker))
    try:
        run_id = uuid.uuid4()
        stack.client.insert("retrain_runs", [[run_id, datetime.now(UTC), "shop", "m1", "requested", "quality/thumbs",
                                              '{"require_approval": true, "dry_run": false}', "/d", {"sft": 4},
                                              "ab" * 32, "", "quality/thumbs fired awaiting approval"]],
                            column_names=["run_id", "ts", "app_id", "model", "status", "rule", "evidence",
                                          "dataset_uri", "dataset_counts", "dataset_hash", "model_version", "message"])
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 1000})
                page.on("dialog", lambda d: d.accept())
                page.goto(f"{stack.url}/review")
                page.locator("#username").wait_for()
                page.fill("#username", ADMIN[0])
                page.fill("#password", ADMIN[1])
                page.keyboard.press("Enter")
                expect(page.locator("#retrain")).to_be_visible()
                expect(page.locator("#retrain-runs")).to_contain_text("quality/thumbs fired awaiting approval")
                page.locator(f"button.retrain-approve[data-run='{run_id}']").click()
                expect(page.locator("#retrain")).to_be_hidden()
                expect(page.locator("#retrain-error")).to_have_text("")
            finally:
                browser.close()
        stack.wait_rows("SELECT argMax(message, ts) FROM retrain_runs WHERE run_id = {r:UUID} AND status = 'approved'",
                        f"approved by reviewer {ADMIN[0]} (review UI)", r=str(run_id))
    finally:
        stack.close()
