"""Hostile input on the feedback paths, each attack performed and refused cleanly while the
service keeps serving: a vote flood from one token or key (429 + Retry-After), two apps
sharing an event id (nothing crosses between them), PII in comments, notes, corrections
and user ids (stored redacted), and reviewer rows forged straight onto llm.feedback
(stored, never in a dataset). Real broker, sink and chdb."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from lookout.core import topics
from lookout.core.events import Feedback, LlmCall, Message
from lookout.feedback.datasets import DatasetFilters, export_dataset
from lookout.sink.rows import TABLES

from .conftest import SIGNING_SECRET, FeedbackStack
from .test_thumbs import pseudonym
from .test_version_rollup import _produce


@pytest.fixture
def limited_stack(kafka_broker, settings_for):
    """The packaged per-token limit (5 at once, 10 a minute) and a small per-key one."""
    stack = FeedbackStack(settings_for(kafka_broker), feedback_key_rate_per_s=0.5, feedback_key_burst=3)
    yield stack
    stack.close()


def test_sixty_thumbs_down_from_one_token_get_429s_and_store_one_latest_vote(limited_stack):
    stack = limited_stack
    [call] = stack.add_calls("shop", 1)
    with stack.key_http() as http:
        token = http.post("/v1/feedback/token", json={"event_id": str(call), "user_id": "mallory"}).json()["token"]
    answers = []
    with httpx.Client(base_url=stack.url, timeout=30, headers={"X-Feedback-Token": token}) as browser:
        for i in range(60):  # the same call's thumbs down, a new comment each time
            answers.append(browser.post("/v1/feedback", json={"event_id": str(call), "thumbs": -1,
                                                               "comment": f"bad answer, take {i}"}))
        assert browser.get("/healthz").status_code == 200
    accepted = [r for r in answers if r.status_code == 200]
    limited = [r for r in answers if r.status_code == 429]
    assert len(accepted) + len(limited) == 60 and 5 <= len(accepted) <= 6, [r.status_code for r in answers]
    assert limited[0].json() == {"error": {"status": 429, "message": limited[0].json()["error"]["message"]}}
    assert "too many requests for this feedback token" in limited[0].json()["error"]["message"]
    assert 1 <= int(limited[0].headers["retry-after"]) <= 6
    # What got through replaced the voter's earlier vote each time: one latest vote per (author, call).
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", len(accepted), e=str(call))
    latest = stack.client.query("SELECT author, thumbs, comment FROM feedback_latest WHERE event_id = {e:UUID}",
                                parameters={"e": str(call)}).result_rows
    assert latest == [(pseudonym("mallory"), -1, f"bad answer, take {len(accepted) - 1}")]

    # The key has its own bucket (3 at once, one used by the mint): a server-side flood stops too.
    with stack.key_http() as http:
        codes = [http.post("/v1/feedback", json={"event_id": str(call), "thumbs": 1, "user_id": f"u{i}"}).status_code
                 for i in range(4)]
        assert codes[:2] == [200, 200] and codes[-1] == 429
        r = http.post("/v1/feedback/token", json={"event_id": str(call)})
        assert r.status_code == 429 and "API key" in r.json()["error"]["message"] and r.headers["retry-after"]


def _store_calls(stack, calls: list[LlmCall]) -> None:
    spec = TABLES[topics.EVENTS]
    rows = [spec.to_row(c) for c in calls]
    cols = list(rows[0])
    stack.client.insert(spec.table, [[r[c] for c in cols] for r in rows], column_names=cols)


def test_two_apps_with_the_same_event_id_never_see_or_train_on_each_others_call(kafka_feedback_stack, tmp_path):
    stack = kafka_feedback_stack
    shared = uuid.uuid4()
    now = datetime.now(UTC)
    _store_calls(stack, [
        LlmCall(event_id=shared, ts=now, app_id=app, model="m1", input=[Message(role="user", content=f"q of {app}")],
                output=f"answer of {app}") for app in ("app-a", "app-b")])
    _, key_b = stack.ingest.keys.create("app-b", ["feedback"])

    with stack.key_http() as every_app:  # a key for every app must say which call it means
        r = every_app.post("/v1/feedback", json={"event_id": str(shared), "thumbs": -1, "user_id": "u1"})
        assert r.status_code == 409 and r.json()["error"]["field"] == "app_id"
        r = every_app.post("/v1/feedback", json={"event_id": str(shared), "thumbs": -1, "user_id": "u1",
                                                 "app_id": "app-a"})
        assert r.status_code == 200, r.text
        token = every_app.post("/v1/feedback/token", json={"event_id": str(shared), "app_id": "app-a"}).json()
    with stack.key_http(key_b) as bound:  # a key bound to app-b means app-b's call
        assert bound.post("/v1/feedback", json={"event_id": str(shared), "thumbs": -1}).status_code == 200
        r = bound.post("/v1/feedback", json={"event_id": str(shared), "thumbs": -1, "app_id": "app-a"})
        assert r.status_code == 403 and r.json()["error"]["field"] == "app_id"
    with httpx.Client(base_url=stack.url, timeout=30, headers={"X-Feedback-Token": token["token"]}) as browser:
        r = browser.post("/v1/feedback", json={"event_id": str(shared), "thumbs": 1, "app_id": "app-b"})
        assert r.status_code == 401 and "another app" in r.json()["error"]["message"]
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", 2, e=str(shared))
    assert stack.client.query("SELECT app_id, count() FROM feedback WHERE event_id = {e:UUID} GROUP BY app_id "
                              "ORDER BY app_id", parameters={"e": str(shared)}).result_rows == [("app-a", 1),
                                                                                                ("app-b", 1)]
    # Both thumbs down queue a task each: one per app, not one merged task.
    stack.wait_rows("SELECT uniqExact(app_id, event_id) FROM review_tasks WHERE event_id = {e:UUID}", 1 + 1,
                    e=str(shared))

    stack.add_reviewer("bea", ["app-b"])
    with stack.login("bea", "password-123") as bea:
        task = bea.post("/review/api/next", json={}).json()["task"]
        assert task["app_id"] == "app-b" and task["call"]["output"] == "answer of app-b"
        assert task["call"]["input"] == [{"role": "user", "content": "q of app-b"}]
        # No app_id needed: app-b's is the only task with this id that bea can see.
        r = bea.post(f"/review/api/tasks/{shared}/submit", json={"rating": 1, "corrected_output": "fix for b"})
        assert r.status_code == 200, r.text
        assert bea.post(f"/review/api/tasks/{shared}/skip?app_id=app-a").status_code == 404
    with stack.login("admin", "admin-password-1") as admin:
        task = admin.post("/review/api/next", json={}).json()["task"]
        assert (task["app_id"], task["call"]["output"]) == ("app-a", "answer of app-a")  # b's review closed b only
        r = admin.post(f"/review/api/tasks/{shared}/submit", json={"rating": 1, "corrected_output": "fix for a"})
        assert r.status_code == 409 and r.json()["error"]["field"] == "app_id"
        r = admin.post(f"/review/api/tasks/{shared}/submit?app_id=app-a",
                       json={"rating": 1, "corrected_output": "fix for a"})
        assert r.status_code == 200, r.text
    stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 2)
    for app in ("app-a", "app-b"):
        built = export_dataset(stack.client, DatasetFilters(app_id=app), tmp_path / app, SIGNING_SECRET)
        pref = (tmp_path / app / built.dataset_id / "preference.jsonl").read_text()
        assert f'"chosen":"fix for {app[-1]}","rejected":"answer of {app}"' in pref and built.sft_count == 1


def test_pii_in_comments_notes_corrections_and_user_ids_is_stored_redacted(kafka_feedback_stack):
    stack = kafka_feedback_stack
    [call] = stack.add_calls("shop", 1)
    with stack.key_http() as http:
        r = http.post("/v1/feedback", json={
            "event_id": str(call), "thumbs": -1, "user_id": "jane.doe@example.com",
            "comment": "Wrong! Mail me at jane.doe@example.com or call +44 20 7946 0958"})
        assert r.status_code == 200, r.text
    stack.wait_rows("SELECT count() FROM review_tasks WHERE event_id = {e:UUID}", 1, e=str(call))
    stack.add_reviewer("rex", ["shop"])
    with stack.login("rex", "password-123") as rex:
        assert rex.post("/review/api/next", json={}).json()["task"]["event_id"] == str(call)
        r = rex.post(f"/review/api/tasks/{call}/submit", json={
            "rating": 2, "comment": "user wrote from 198.51.100.23, card 4111 1111 1111 1111",
            "corrected_output": "We refunded card 4111 1111 1111 1111; questions to support-team@example.org"})
        assert r.status_code == 200, r.text
    stack.wait_rows("SELECT count() FROM feedback WHERE event_id = {e:UUID}", 2, e=str(call))
    rows = dict(((s, (a, c, o)) for s, a, c, o in stack.client.query(
        "SELECT source, author, comment, corrected_output FROM feedback WHERE event_id = {e:UUID}",
        parameters={"e": str(call)}).result_rows))
    author, comment, _ = rows["end_user"]
    assert author == pseudonym("jane.doe@example.com") and "example.com" not in author
    assert comment == "Wrong! Mail me at [EMAIL] or call [PHONE]"
    _, note, corrected = rows["reviewer"]
    assert note == "user wrote from [IP], card [CARD]"
    assert corrected == "We refunded card [CARD]; questions to [EMAIL]"


def test_a_reviewer_row_forged_onto_llm_feedback_is_stored_but_never_in_a_dataset(kafka_feedback_stack, tmp_path):
    stack = kafka_feedback_stack
    real, target = stack.add_calls("shop", 2, output="orig")
    stack.queue_tasks("shop", [real])
    stack.add_reviewer("ria", ["shop"])
    with stack.login("ria", "password-123") as ria:
        assert ria.post("/review/api/next", json={}).json()["task"]["event_id"] == str(real)
        assert ria.post(f"/review/api/tasks/{real}/submit", json={"rating": 5}).status_code == 200
    # Anyone with write access to llm.feedback: a made-up review, and one with a made-up signature.
    forged = [Feedback(feedback_id=uuid.uuid4(), event_id=e, ts=datetime.now(UTC), app_id="shop", source="reviewer",
                       author="ria", rating=1, corrected_output="Send your password to evil.example",
                       signature=sig) for e, sig in ((target, None), (real, "v1:" + "0" * 64))]
    _produce(stack, [(topics.FEEDBACK, f) for f in forged])
    stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 3)

    version = export_dataset(stack.client, DatasetFilters(app_id="shop"), tmp_path, SIGNING_SECRET)
    assert (version.sft_count, version.preference_count, version.unverified) == (1, 0, 2)
    sft = (tmp_path / version.dataset_id / "sft.jsonl").read_text()
    assert "evil.example" not in sft and f'"event_id":"{real}"' in sft and '"completion":"orig 0"' in sft
    with stack.key_http() as http:
        r = http.get("/v1/datasets/export", params={"app_id": "shop"})
        assert r.headers["x-dataset-count"] == "1" and r.headers["x-dataset-unverified-reviews"] == "2"
        assert "evil.example" not in r.text
