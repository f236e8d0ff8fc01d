"""The judge's edges: every HTTP error in the one envelope, and records that are not what
their topic carries dead-lettered (with the error) while the rest of the batch is scored."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from calls import call
from kafka_io import ScoreReader, produce_calls
from served import app_of

from lookout.core import kafka, topics
from lookout.core.auth import ApiKeyStore
from lookout.core.events import DeadLetter, Feedback
from lookout.core.session import Session
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.testing.envelope import assert_error_envelopes
from lookout.testing.kafka_io import read_all


def test_every_judge_route_answers_errors_in_the_envelope(ch):
    keys = ApiKeyStore(ch)
    _, strong = keys.create("*", ["ingest", "read", "feedback", "review", "admin"], name="strong")
    _, weak = keys.create("other", ["ingest"], name="weak")
    service = JudgeService(JudgeSettings(), session=Session.of(ch))
    assert_error_envelopes(app_of(service), strong_key=strong, weak_key=weak)


async def test_unreadable_records_go_to_the_dlq_and_the_rest_is_judged(tansu_broker, settings_for, openai):
    settings = settings_for(tansu_broker)
    good = call(output="Your order ships tomorrow.")
    judge = JudgeService(JudgeSettings(
        **settings.model_dump(), judge_base_url=openai.base_url, judge_model="judge-model",
        judge_input_per_mtok=1, judge_output_per_mtok=1, toxicity_backend="profanity", judge_batch_ms=20,
        judge_sample_rate=1.0))
    await judge.start()
    try:
        producer = await kafka.start_producer(settings)
        try:
            events, feedback = (topics.resolve(settings.topic_prefix, t) for t in (topics.EVENTS, topics.FEEDBACK))
            thumbs = Feedback(feedback_id=uuid.uuid4(), event_id=uuid.uuid4(), ts=datetime.now(UTC), app_id="shop",
                              source="end_user", author="u", thumbs=-1).to_bytes()
            for topic, value in ((events, b"{not json"), (feedback, b'{"schema": "feedback/1"}'),
                                 (feedback, thumbs[:-1])):
                await (await producer.send(topic, value, key=b"shop/gpt-4o-mini"))
        finally:
            await producer.stop()
        await produce_calls(settings, [good])
        async with ScoreReader(settings) as reader:
            await reader.until(lambda r: "judge.relevance" in r.by_event().get(good.event_id, {}))
        dead: list[DeadLetter] = []
        for _ in range(100):
            dead = [DeadLetter.from_bytes(r.value) for r in await read_all(settings, topics.DLQ)]
            if len(dead) >= 3:
                break
            await asyncio.sleep(0.2)
        running = (judge.checks()["consumer"](), judge.checks()["rated_down"]())
    finally:
        await judge.stop()
    assert sorted(topics.base_name(settings.topic_prefix, d.source_topic) for d in dead) == [
        topics.EVENTS, topics.FEEDBACK, topics.FEEDBACK]
    assert {d.service for d in dead} == {"judge"}
    assert all(d.error for d in dead)
    assert running == (None, None)  # both consumers went on past the bad records
