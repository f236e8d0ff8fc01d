"""Admins change the label set, the signal thresholds and the audit rates at run time
(session + CSRF); the review form, submissions and the task builder apply them, and they
are kept in ClickHouse, so another instance reads the same values."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from lookout.core import kafka, topics
from lookout.core.events import Score
from lookout.core.session import Session
from lookout.feedback.runtime import RuntimeSettings

from .conftest import ADMIN, FeedbackStack


@pytest.fixture
def stack(tansu_broker, settings_for):
    s = FeedbackStack(settings_for(tansu_broker, kafka_topic_partitions=1))
    yield s
    s.close()


def _produce_scores(stack: FeedbackStack, scores: list[Score]) -> None:
    async def go():
        producer = await kafka.start_producer(stack.settings)
        try:
            for m in scores:
                await producer.send_and_wait(topics.resolve(stack.settings.topic_prefix, topics.SCORES), m.to_bytes())
        finally:
            await producer.stop()

    asyncio.run(go())


def _score(event_id, name, value) -> Score:
    return Score(score_id=uuid.uuid4(), event_id=event_id, ts=datetime.now(UTC), app_id="shop", model="m1",
                 name=name, value=value, source="model", evaluator="t")


def test_only_admins_with_the_csrf_token_read_or_change_settings(stack):
    stack.add_reviewer("rev", ["shop"])
    with stack.login("rev", "password-123") as rev:
        assert rev.get("/review/api/admin/settings").status_code == 403
        assert rev.patch("/review/api/admin/settings", json={"audit_rate": 0.5}).status_code == 403
    with stack.login(*ADMIN) as admin:
        got = admin.get("/review/api/admin/settings")
        assert got.status_code == 200
        assert got.json()["labels"] == stack.settings.labels()
        del admin.headers["X-CSRF-Token"]
        assert admin.patch("/review/api/admin/settings", json={"audit_rate": 0.5}).status_code == 403
    assert httpx.patch(f"{stack.url}/review/api/admin/settings", json={"audit_rate": 0.5}).status_code == 401


def test_bad_settings_get_a_422(stack):
    with stack.login(*ADMIN) as admin:
        for body in ({"labels": []}, {"labels": ["a,b"]}, {"labels": ["a", "a"]}, {"labels": [" "]},
                     {"audit_rate": 1.5}, {"audit_app_rates": {"shop": -0.1}}, {"audit_app_rates": {"a=b": 0.1}},
                     {"toxicity_threshold": "high"}):
            r = admin.patch("/review/api/admin/settings", json=body)
            assert r.status_code == 422, (body, r.text)
        assert admin.get("/review/api/admin/settings").json()["labels"] == stack.settings.labels()


def test_a_new_label_set_applies_to_the_form_and_to_submissions(stack):
    [event_id] = stack.add_calls("shop", 1)
    stack.queue_tasks("shop", [event_id])
    with stack.login(*ADMIN) as admin:
        r = admin.patch("/review/api/admin/settings", json={"labels": ["good", "bad answer"]})
        assert r.status_code == 200, r.text
        assert r.json()["labels"] == ["good", "bad answer"]
        assert admin.get("/review/api/me").json()["labels"] == ["good", "bad answer"]
        # Another instance reads the same values from ClickHouse.
        other = RuntimeSettings(stack.settings, Session.of(stack.client))
        assert other.current().labels() == ["good", "bad answer"]
        task = admin.post("/review/api/next", json={}).json()["task"]
        assert task["event_id"] == str(event_id)
        old = admin.post(f"/review/api/tasks/{event_id}/submit", json={"labels": ["correct"]})
        assert old.status_code == 422 and "correct" in old.text
        ok = admin.post(f"/review/api/tasks/{event_id}/submit", json={"labels": ["bad answer"], "rating": 2})
        assert ok.status_code == 200, ok.text


def test_thresholds_and_audit_rates_change_what_gets_queued(stack):
    with stack.login(*ADMIN) as admin:
        r = admin.patch("/review/api/admin/settings",
                        json={"toxicity_threshold": 0.95, "audit_app_rates": {"shop": 1.0}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["toxicity_threshold"] == 0.95 and body["audit_app_rates"] == {"shop": 1.0}
        assert body["judge_threshold"] == stack.settings.review_judge_threshold  # untouched
    mild, toxic = stack.add_calls("shop", 2)
    # Both calls are audit samples now (rate 1 for shop; the stack's default is 0).
    stack.wait_rows("SELECT count() FROM review_tasks WHERE kind = 'audit'", 2)
    _produce_scores(stack, [_score(mild, "toxicity.insult", 0.9), _score(toxic, "toxicity.insult", 0.97)])
    # One partition: once the second score made its task, the first was handled too.
    stack.wait_rows("SELECT count() FROM review_tasks WHERE kind = 'toxicity'", 1)
    rows = stack.client.query("SELECT event_id FROM review_tasks WHERE kind = 'toxicity'").result_rows
    assert rows == [(toxic,)]
