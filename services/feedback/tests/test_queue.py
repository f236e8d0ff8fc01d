"""The review queue: tasks from signals, claims with leases, exclusivity under load."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from lookout.core import kafka, topics
from lookout.core.events import DriftResult, Score
from lookout.core.settings import CommonSettings
from lookout.feedback.claims import ClaimLog, ClaimState

from .conftest import FeedbackStack


def _produce(stack: FeedbackStack, base: str, messages) -> None:
    async def go():
        producer = await kafka.start_producer(stack.settings)
        try:
            for m in messages:
                await producer.send_and_wait(topics.resolve(stack.settings.topic_prefix, base), m.to_bytes())
        finally:
            await producer.stop()

    asyncio.run(go())


def _score(event_id, name, value) -> Score:
    return Score(score_id=uuid.uuid4(), event_id=event_id, ts=datetime.now(UTC), app_id="shop", model="m1",
                 name=name, value=value, source="model", evaluator="t")


def test_signals_make_one_task_per_call_with_every_reason_and_severity_order(kafka_broker, settings_for):
    stack = FeedbackStack(settings_for(kafka_broker), review_audit_app_rates="shop=1")
    try:
        toxic, judged, drifted, audited = stack.add_calls("shop", 4)
        _produce(stack, topics.SCORES, [
            _score(toxic, "toxicity.insult", 0.97),  # over the default threshold (0.9)
            _score(toxic, "judge.relevance", 0.1),
            _score(judged, "judge.relevance", 0.3),
            _score(judged, "toxicity.insult", 0.1),  # below threshold: no reason
        ])
        now = datetime.now(UTC)
        _produce(stack, topics.DRIFT, [DriftResult(
            result_id=uuid.uuid4(), ts=now, app_id="shop", model="m1", window_start=now - timedelta(hours=1),
            window_end=now, signal="embedding", method="mmd", statistic=0.4, drifted=True, reference_size=10,
            current_size=10, reference_id="r", examples=[drifted])])
        stack.queue_tasks("shop", [toxic])  # + a thumbs down
        # Every call of the app is also an audit sample (rate 1 for shop).
        stack.wait_rows("SELECT count() FROM review_tasks", 4 + 5, timeout=60)
        rows = stack.client.query(
            "SELECT event_id, groupArray(kind) FROM review_tasks GROUP BY event_id").result_rows
        kinds = {e: sorted(k) for e, k in rows}
        assert kinds[toxic] == ["audit", "judge", "thumbs_down", "toxicity"]
        assert kinds[judged] == ["audit", "judge"]
        assert kinds[drifted] == ["audit", "drift"]
        assert kinds[audited] == ["audit"]

        stack.add_reviewer("rita", ["shop"])
        order = []
        with stack.login("rita", "password-123") as http:
            while (task := http.post("/review/api/next", json={}).json()["task"]) is not None:
                order.append(uuid.UUID(task["event_id"]))
                assert task["call"]["output"]
                r = http.post(f"/review/api/tasks/{task['event_id']}/submit", json={"rating": 3})
                assert r.status_code == 200, r.text
        assert order == [toxic, judged, drifted, audited]
    finally:
        stack.close()


def test_leases_expire_back_to_the_queue_skip_and_release(settings):
    stack = FeedbackStack(settings, review_lease_s=2)
    try:
        ids_ = stack.add_calls("shop", 2)
        stack.queue_tasks("shop", ids_)
        stack.add_reviewer("ann", ["shop"])
        stack.add_reviewer("ben", ["shop"])
        stack.add_reviewer("zed", ["bank"])
        with stack.login("ann", "password-123") as ann, stack.login("ben", "password-123") as ben, \
                stack.login("zed", "password-123") as zed:
            a = ann.post("/review/api/next", json={}).json()["task"]["event_id"]
            b = ben.post("/review/api/next", json={}).json()["task"]["event_id"]
            assert a != b
            # A reviewer without the app sees nothing of it.
            assert zed.post("/review/api/next", json={}).json()["task"] is None
            assert zed.post(f"/review/api/tasks/{a}/submit", json={"rating": 1}).status_code == 404
            # Asking again returns the task already held.
            assert ann.post("/review/api/next", json={}).json()["task"]["event_id"] == a
            # Release: ben's task goes back; ann can take it after her own is done.
            assert ben.post(f"/review/api/tasks/{b}/release").status_code == 200
            time.sleep(2.5)  # ann's lease expires
            assert ann.post(f"/review/api/tasks/{a}/submit", json={"rating": 2}).status_code == 409
            got = {ben.post("/review/api/next", json={}).json()["task"]["event_id"]}
            assert got <= {a, b}
            # Skip: hidden from the one who skipped, for good.
            taken = got.pop()
            assert ben.post(f"/review/api/tasks/{taken}/skip").status_code == 200
            nxt = ben.post("/review/api/next", json={}).json()["task"]
            assert nxt is not None and nxt["event_id"] != taken
            assert ben.post(f"/review/api/tasks/{nxt['event_id']}/submit", json={"thumbs": 1}).status_code == 200
            assert ben.post("/review/api/next", json={}).json()["task"] is None
            assert ann.post("/review/api/next", json={}).json()["task"]["event_id"] == taken
    finally:
        stack.close()


def test_claim_rules_are_exclusive_in_log_order():
    s = ClaimState()
    assert s.apply("claim", "t", "a", 1000, 500).won
    assert not s.apply("claim", "t", "b", 1200, 500).won
    assert not s.apply("done", "t", "b", 1300, 500).won
    assert s.apply("claim", "t", "b", 1600, 500).won  # a's lease ended at 1500
    assert not s.apply("done", "t", "a", 1700, 500).won
    assert s.apply("done", "t", "b", 1800, 500).won
    assert not s.apply("claim", "t", "c", 9000, 500).won


def test_a_claim_record_without_a_value_is_skipped_and_logged_and_later_claims_still_fold(caplog):
    log = ClaimLog(CommonSettings(), "review.claims", lease_s=30)
    log._fold(None)
    assert "unreadable claim record skipped: a record without a value" in caplog.text
    log._fold(b'{"req": "r1", "op": "claim", "task": "shop/t", "reviewer": "ann", "ts": 1000, "lease_ms": 500}')
    assert log.state.holding("ann", 1200) == "shop/t"


async def test_a_claim_requested_before_the_log_started_says_so():
    log = ClaimLog(CommonSettings(), "review.claims", lease_s=30)
    with pytest.raises(RuntimeError, match="the claim log has not started"):
        await log.request("claim", "shop/t", "ann")
    assert log._waiting == {}  # nothing left waiting for an answer that cannot come


@pytest.mark.serial
@pytest.mark.slow
def test_20_reviewers_on_two_instances_review_500_tasks_each_exactly_once(feedback_pair):
    stack = feedback_pair
    event_ids = stack.add_calls("shop", 500)
    stack.queue_tasks("shop", event_ids)
    names = [stack.add_reviewer(f"r{i:02d}", ["shop"]) for i in range(20)]
    handed: list[tuple[str, str]] = []
    submitted: list[tuple[str, str]] = []
    conflicts: list[str] = []
    lock = threading.Lock()

    def work(i: int, name: str, password: str) -> None:
        base = stack.instances[i % 2].url
        with stack.login(name, password, base_url=base) as http:
            while True:
                r = http.post("/review/api/next", json={})
                assert r.status_code == 200, r.text
                task = r.json()["task"]
                if task is None:
                    return
                with lock:
                    handed.append((task["event_id"], name))
                s = http.post(f"/review/api/tasks/{task['event_id']}/submit", json={"rating": 4})
                with lock:
                    (submitted if s.status_code == 200 else conflicts).append(task["event_id"])

    threads = [threading.Thread(target=work, args=(i, *n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not conflicts
    holders = Counter(e for e, _ in handed)
    assert len(holders) == 500 and max(holders.values()) == 1, "a task was handed to two reviewers"
    assert sorted(submitted) == sorted(str(e) for e in event_ids)
    stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 500, timeout=120)
    assert stack.client.query("SELECT uniqExact(event_id) FROM feedback WHERE source = 'reviewer'").result_rows[0][
        0] == 500
    assert len({n for _, n in handed}) > 10  # the work was spread, not done by one reviewer


def test_overlap_tasks_get_two_different_reviewers_and_admins_see_agreement(kafka_broker, settings_for):
    stack = FeedbackStack(settings_for(kafka_broker), review_overlap=1.0)
    try:
        calls = stack.add_calls("shop", 3)
        stack.queue_tasks("shop", calls)
        ratings = {"amy": [5, 4, 1], "bob": [5, 2, None]}
        for name, given in ratings.items():
            stack.add_reviewer(name, ["shop"])
            with stack.login(name, "password-123") as http:
                seen = []
                while (task := http.post("/review/api/next", json={}).json()["task"]) is not None:
                    e = uuid.UUID(task["event_id"])
                    assert e not in seen, "a reviewer got the same call twice"
                    seen.append(e)
                    rating = given[sorted(calls).index(e)]
                    body = {"rating": rating} if rating else {"thumbs": 1}
                    assert http.post(f"/review/api/tasks/{e}/submit", json=body).status_code == 200
                assert sorted(seen) == sorted(calls)
        stack.add_reviewer("cal", ["shop"])
        with stack.login("cal", "password-123") as http:
            assert http.post("/review/api/next", json={}).json()["task"] is None  # each call has its two reviews
            assert http.get("/review/api/admin/agreement").status_code == 403
        stack.wait_rows("SELECT count() FROM feedback WHERE source = 'reviewer'", 6)
        with stack.login("admin", "admin-password-1") as admin:
            got = admin.get("/review/api/admin/agreement").json()
        assert got == {"pairs": 3, "rating_exact": 0.5, "rating_within_1": 0.5, "thumbs": None,
                       "labels_jaccard": None}
    finally:
        stack.close()


def test_a_restarted_instance_rebuilds_every_claim_from_the_log(kafka_feedback_stack):
    from .conftest import Instance

    stack = kafka_feedback_stack
    calls = stack.add_calls("shop", 2)
    stack.queue_tasks("shop", calls)
    stack.add_reviewer("ann", ["shop"])
    stack.add_reviewer("ben", ["shop"])
    with stack.login("ann", "password-123") as ann:
        held = ann.post("/review/api/next", json={}).json()["task"]["event_id"]
    fresh = Instance(stack.settings, build_tasks=False)
    try:
        now_ms = time.time_ns() // 1_000_000
        # The claim log names a task by its call: app and event id.
        assert fresh.service.claims.state.holding("ann", now_ms) == f"shop/{held}"
        with stack.login("ben", "password-123", base_url=fresh.url) as ben:
            got = ben.post("/review/api/next", json={}).json()["task"]["event_id"]
            assert got != held
            assert ben.post(f"/review/api/tasks/{held}/submit", json={"rating": 3}).status_code == 409
        with stack.login("ann", "password-123", base_url=fresh.url) as ann:
            assert ann.post("/review/api/next", json={}).json()["task"]["event_id"] == held
    finally:
        fresh.close()
