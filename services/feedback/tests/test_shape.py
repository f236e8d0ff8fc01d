"""The feedback service in the one service shape: every HTTP error in the envelope, the
task builder queueing review tasks from records that name their call (it never reads a
call back), an unreadable signal dead-lettered while the rest of its batch is queued, and
a review that carries its call's identity on the record. Real broker, sink and chdb."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from lookout.core import clickhouse, kafka, topics
from lookout.core.events import DeadLetter, DriftResult, Feedback, LlmCall, Message, Score
from lookout.core.session import Session
from lookout.feedback import review
from lookout.testing.envelope import assert_error_envelopes
from lookout.testing.kafka_io import read_all
from lookout.testing.sessions import RecordingClient

from .conftest import ADMIN, FeedbackStack, Instance


@pytest.fixture
def stack(tansu_broker, settings_for, tmp_path):
    s = FeedbackStack(settings_for(tansu_broker, kafka_topic_partitions=1), dataset_dir=str(tmp_path / "datasets"))
    yield s
    s.close()


def _produce(stack: FeedbackStack, records: list[tuple[str, bytes]]) -> None:
    async def go() -> None:
        producer = await kafka.start_producer(stack.settings)
        try:
            for base, value in records:
                await producer.send_and_wait(topics.resolve(stack.settings.topic_prefix, base), value)
        finally:
            await producer.stop()

    asyncio.run(go())


def test_every_http_error_of_the_feedback_service_is_in_the_envelope(stack):
    _, weak = stack.ingest.keys.create("another-app", ["read"], name="weak")
    with httpx.Client(base_url=stack.url, timeout=30) as http:
        # The review API's and the explorer's credential is the session cookie, and their 401s say so.
        assert_error_envelopes(stack.instances[0].app, strong_key=stack.ingest.api_key, weak_key=weak, client=http,
                               challenges={"/review/api/": review.CHALLENGE["WWW-Authenticate"],
                                           "/calls/api/": review.CHALLENGE["WWW-Authenticate"]})


def test_the_task_builder_queues_from_what_records_say_and_never_reads_a_call(tansu_broker, settings_for):
    stack = FeedbackStack(settings_for(tansu_broker, kafka_topic_partitions=1), instances=0, review_audit_rate=1.0)
    recorder = RecordingClient(clickhouse.connect(stack.settings))
    try:
        stack.instances.append(Instance(stack.settings, build_tasks=True, session=Session(recorder)))
        recorder.clear()  # start-up (migrations) names every table
        now = datetime.now(UTC)
        voted, scored, drifted, audited = (uuid.uuid4() for _ in range(4))
        # None of these calls is stored: every record names its call's app and model itself.
        vote = Feedback(feedback_id=uuid.uuid4(), event_id=voted, ts=now, app_id="shop", source="end_user",
                        author="u1", thumbs=-1, model="m-vote", model_version="v3", environment="prod", call_ts=now)
        toxic = Score(score_id=uuid.uuid4(), event_id=scored, ts=now, app_id="shop", model="m-score",
                      name="toxicity.insult", value=0.99, source="model", evaluator="t")
        drift = DriftResult(result_id=uuid.uuid4(), ts=now, app_id="shop", model="m-drift", window_start=now,
                            window_end=now, signal="embedding", method="mmd", statistic=0.3, drifted=True,
                            reference_size=10, current_size=10, reference_id="r", examples=[drifted])
        call = LlmCall(event_id=audited, ts=now, app_id="shop", model="m-call",
                       input=[Message(role="user", content="q")], output="a")
        _produce(stack, [(topics.FEEDBACK, b"{not json"), (topics.FEEDBACK, vote.to_bytes()),
                         (topics.SCORES, toxic.to_bytes()), (topics.DRIFT, drift.to_bytes()),
                         (topics.EVENTS, call.to_bytes())])
        stack.wait_rows("SELECT count() FROM review_tasks WHERE app_id = 'shop'", 4)
        rows = stack.client.query("SELECT event_id, kind, model FROM review_tasks WHERE app_id = 'shop'").result_rows
        assert sorted(rows, key=lambda r: r[1]) == [(audited, "audit", "m-call"), (drifted, "drift", "m-drift"),
                                                    (voted, "thumbs_down", "m-vote"), (scored, "toxicity", "m-score")]
        assert recorder.touching("review_tasks")  # the seam saw the builder's writes...
        assert recorder.touching("llm_calls") == []  # ...and not one look at a call

        # The unreadable record went to llm.dlq with its error, from this service.
        dead = [DeadLetter.from_bytes(r.value) for r in asyncio.run(read_all(stack.settings, topics.DLQ))]
        mine = [d for d in dead if d.service == "feedback"]
        assert len(mine) == 1 and mine[0].source_topic.endswith(topics.FEEDBACK) and "JSON" in mine[0].error
    finally:
        stack.close()
        recorder.close()


def test_a_review_carries_its_calls_identity_on_the_record(stack):
    call = LlmCall(event_id=uuid.uuid4(), ts=datetime.now(UTC), app_id="shop", model="m1", model_version="v7",
                   environment="staging", input=[Message(role="user", content="a question")], output="an answer")
    with stack.ingest.http() as http:
        assert http.post("/v1/events", json={"events": [call.model_dump(mode="json", by_alias=True)]}).status_code \
            == 200
    assert stack.ingest.wait_for_calls("shop", 1) == 1
    stack.queue_tasks("shop", [call.event_id])
    with stack.login(*ADMIN) as admin:
        assert admin.post("/review/api/next", json={}).json()["task"]["event_id"] == str(call.event_id)
        r = admin.post(f"/review/api/tasks/{call.event_id}/submit", json={"thumbs": -1, "rating": 2})
        assert r.status_code == 200, r.text
    records = [Feedback.from_bytes(r.value) for r in asyncio.run(read_all(stack.settings, topics.FEEDBACK))]
    (review,) = [f for f in records if f.source == "reviewer"]
    assert (review.model, review.model_version, review.environment) == ("m1", "v7", "staging")
    assert review.call_ts is not None and abs((review.call_ts - call.ts).total_seconds()) < 0.001
