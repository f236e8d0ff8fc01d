"""The review queue asks reviewers where their labels teach the most about the judge:
calls the judge is unsure about (judge_unsure) and calls where it contradicts an end
user's thumbs (judge_vs_thumbs). The real task builder on the real schema (chdb), fed the
records its consumer would get; then the whole path on a real broker."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import ConsumerRecord

from lookout.core import topics
from lookout.core.dead_letters import RecordDecoder
from lookout.core.events import Feedback, Score
from lookout.core.session import Session
from lookout.feedback import queue
from lookout.feedback.settings import FeedbackSettings
from lookout.feedback.signals import TaskBuilder, judge_verdict

from .conftest import FeedbackStack
from .test_queue import _produce

_offsets = itertools.count()


def record(message: Score | Feedback) -> ConsumerRecord:
    base = topics.SCORES if isinstance(message, Score) else topics.FEEDBACK
    value = message.to_bytes()
    return ConsumerRecord(base, 0, next(_offsets), 0, 0, str(message.event_id).encode(), value, None, 36, len(value),
                          [])


def judged(event_id: uuid.UUID, value: float, *, app_id: str = "shop", name: str = "judge.relevance") -> Score:
    return Score(score_id=uuid.uuid4(), event_id=event_id, ts=datetime.now(UTC), app_id=app_id, model="m1",
                 name=name, value=value, source="llm_judge", evaluator="judge-model", evaluator_version="1+p2")


def thumbs(event_id: uuid.UUID, value: int, *, app_id: str = "shop", author: str = "u1",
           ts: datetime | None = None) -> Feedback:
    return Feedback(feedback_id=uuid.uuid4(), event_id=event_id, ts=ts or datetime.now(UTC), app_id=app_id,
                    source="end_user", author=author, thumbs=value, model="m1")


@pytest.fixture
def builder(ch, ch_settings):
    def make(**extra) -> TaskBuilder:
        settings = FeedbackSettings(**{**ch_settings.model_dump(), "review_audit_rate": 0.0, **extra})
        return TaskBuilder(settings, Session.of(ch))
    return make


def tasks(ch, kind: str | None = None) -> dict[tuple[str, uuid.UUID], list[tuple[str, str, float]]]:
    where = "WHERE kind = {kind:String}" if kind else ""
    rows = ch.query(f"SELECT app_id, event_id, kind, reason, severity FROM review_tasks FINAL {where} "
                    "ORDER BY kind, reason", parameters={"kind": kind} if kind else {}).result_rows
    out: dict = {}
    for app_id, event_id, k, reason, severity in rows:
        out.setdefault((app_id, event_id), []).append((k, reason, severity))
    return out


def handle(builder: TaskBuilder, *messages) -> None:
    asyncio.run(builder.handle(RecordDecoder("feedback").decode([record(m) for m in messages])))


def test_the_judge_is_unsure_less_than_the_margin_from_the_middle_of_its_scale():
    one_to_five = [(r - 1) / 4 for r in range(1, 6)]
    one_to_ten = [(r - 1) / 9 for r in range(1, 11)]
    assert [judge_verdict(v, 0.125) for v in one_to_five] == ["fail", "fail", "unsure", "pass", "pass"]
    assert [judge_verdict(v, 0.125) for v in one_to_ten] == ["fail"] * 4 + ["unsure"] * 2 + ["pass"] * 4
    assert judge_verdict(0.5, 0.0) == "fail"  # margin 0: never unsure (the middle itself does not pass)


def test_unsure_judgments_are_queued_at_the_configured_share_the_same_on_every_replay(ch, builder):
    calls = [uuid.uuid4() for _ in range(2000)]
    handle(builder(review_judge_unsure_rate=0.2), *[judged(e, 0.5) for e in calls])
    first = set(tasks(ch, "judge_unsure"))
    assert 0.17 < len(first) / len(calls) < 0.23
    handle(builder(review_judge_unsure_rate=0.2), *[judged(e, 0.5) for e in calls])  # a replay, a restart
    assert set(tasks(ch, "judge_unsure")) == first


def test_only_middle_verdicts_are_unsure_and_a_low_score_still_queues_as_judge(ch, builder):
    middle, low, high, near = (uuid.uuid4() for _ in range(4))
    handle(builder(review_judge_unsure_rate=1.0), judged(middle, 0.5), judged(low, 0.25), judged(high, 0.75),
           judged(near, 5 / 9))
    got = tasks(ch)
    assert [k for k, _, _ in got[("shop", middle)]] == ["judge_unsure"]
    assert [k for k, _, _ in got[("shop", near)]] == ["judge_unsure"]
    assert [k for k, _, _ in got[("shop", low)]] == ["judge"]
    assert ("shop", high) not in got
    (_, reason, severity), = got[("shop", middle)]
    assert reason == "judge.relevance = 0.500, near the middle of its scale" and severity == 1.5


def test_a_judgment_contradicted_by_an_end_users_thumbs_is_queued_whichever_comes_first(ch, builder):
    passed_down, failed_up, passed_up, unsure_down, later = (uuid.uuid4() for _ in range(5))
    b = builder()
    handle(b, judged(passed_down, 0.75), thumbs(passed_down, -1),  # one batch
           judged(failed_up, 0.0), thumbs(failed_up, 1),
           judged(passed_up, 1.0), thumbs(passed_up, 1),  # they agree
           judged(unsure_down, 0.5), thumbs(unsure_down, -1),  # the judge was not sure: no contradiction
           thumbs(later, -1))
    handle(b, judged(later, 0.75))  # the judge's verdict in a later batch (it judges calls rated down)
    got = tasks(ch, "judge_vs_thumbs")
    assert set(got) == {("shop", passed_down), ("shop", failed_up), ("shop", later)}
    assert got[("shop", passed_down)] == [("judge_vs_thumbs", "judge.relevance = 0.750 but an end user rated it down",
                                            3.5)]
    assert got[("shop", failed_up)][0][1] == "judge.relevance = 0.000 but an end user rated it up"


def test_after_a_restart_the_other_side_is_read_from_the_store(ch, builder):
    voted, scored = uuid.uuid4(), uuid.uuid4()
    # What the sink stored before this task builder started: a thumbs down, a judge score.
    ch.insert("feedback", [[uuid.uuid4(), voted, datetime.now(UTC), "shop", "end_user", "u1", -1, None, [], "", ""]],
              column_names=["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs", "rating",
                            "labels", "corrected_output", "comment"])
    s = judged(scored, 0.0)
    ch.insert("scores", [[s.score_id, s.event_id, s.ts, "shop", "m1", s.name, s.value, "", "llm_judge", s.evaluator,
                          s.evaluator_version, "", 0.0]],
              column_names=["score_id", "event_id", "ts", "app_id", "model", "name", "value", "label", "source",
                            "evaluator", "evaluator_version", "explanation", "cost_usd"])
    handle(builder(), judged(voted, 0.75), thumbs(scored, 1))
    assert set(tasks(ch, "judge_vs_thumbs")) == {("shop", voted), ("shop", scored)}


def test_another_apps_thumbs_on_the_same_event_id_contradict_nothing(ch, builder):
    shared = uuid.uuid4()
    b = builder()
    handle(b, thumbs(shared, -1, app_id="twin"))
    ch.insert("feedback", [[uuid.uuid4(), shared, datetime.now(UTC), "twin", "end_user", "u1", -1, None, [], "", ""]],
              column_names=["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs", "rating",
                            "labels", "corrected_output", "comment"])
    handle(b, judged(shared, 0.9, app_id="shop"))
    handle(builder(), judged(shared, 0.9, app_id="shop"))  # a fresh builder reads the store: still nothing
    assert tasks(ch, "judge_vs_thumbs") == {}


def test_an_end_users_changed_vote_counts_as_their_latest(ch, builder):
    changed = uuid.uuid4()
    now = datetime.now(UTC)
    handle(builder(), thumbs(changed, -1, ts=now - timedelta(seconds=30)), thumbs(changed, 1, ts=now),
           judged(changed, 0.75))
    assert tasks(ch, "judge_vs_thumbs") == {}


def test_contradictions_come_first_and_unsure_calls_after_low_scores(ch, builder):
    contradicted, rated_down, low, unsure = (uuid.uuid4() for _ in range(4))
    handle(builder(review_judge_unsure_rate=1.0), judged(contradicted, 0.75), thumbs(contradicted, -1),
           thumbs(rated_down, -1), judged(low, 0.25), judged(unsure, 0.5))
    ranked = queue.candidates(Session.of(ch), queue.QueueFilter(None), age_weight=0.0)
    assert [c.event_id for c in ranked] == [contradicted, rated_down, low, unsure]


def test_on_the_broker_reviewers_get_the_contradicted_call_first(tansu_broker, settings_for):
    stack = FeedbackStack(settings_for(tansu_broker), review_judge_unsure_rate=1.0)
    try:
        contradicted, unsure, agreed = stack.add_calls("shop", 3)
        stack.queue_tasks("shop", [contradicted, unsure, agreed])  # end users' thumbs down, through the API
        _produce(stack, topics.SCORES, [judged(contradicted, 1.0), judged(unsure, 0.5), judged(agreed, 0.0)])
        stack.wait_rows(
            "SELECT count() FROM review_tasks WHERE kind IN ('judge_vs_thumbs', 'judge_unsure', 'judge')", 3)
        kinds = {e: sorted(k) for e, k in stack.client.query(
            "SELECT event_id, groupUniqArray(kind) FROM review_tasks GROUP BY event_id").result_rows}
        assert kinds == {contradicted: ["judge_vs_thumbs", "thumbs_down"], unsure: ["judge_unsure", "thumbs_down"],
                         agreed: ["judge", "thumbs_down"]}
        stack.add_reviewer("rita", ["shop"])
        with stack.login("rita", "password-123") as http:
            task = http.post("/review/api/next", json={}).json()["task"]
        assert uuid.UUID(task["event_id"]) == contradicted
    finally:
        stack.close()
