"""Calls rated down are judged whatever the sampling rate, once each: calls go in through the
ingest API and the sink stores calls and scores in ClickHouse; the judge samples nothing
(rate 0); thumbs on llm.feedback bring rated-down calls to the evaluator (a local
OpenAI-compatible server that counts what it is asked), and neither a second thumbs down,
a restart nor a full replay of llm.feedback asks again."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from ingest_io import event, post, shared

from lookout.core import kafka, topics
from lookout.core.events import Feedback
from lookout.judge import metrics
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.testing.stack import IngestStack

RUBRICS = 3  # relevance, coherence, fluency apply to a plain call


def judge_for(stack: IngestStack, openai, **extra) -> JudgeService:
    values = dict(judge_base_url=openai.base_url, judge_model="judge-model", judge_sample_rate=0.0,
                  judge_input_per_mtok=1, judge_output_per_mtok=1, toxicity_backend="profanity", judge_batch_ms=20)
    return JudgeService(JudgeSettings(**shared(stack), **{**values, **extra}))


async def thumbs(stack: IngestStack, call: dict, value: int, author: str) -> None:
    record = Feedback(feedback_id=uuid.uuid4(), event_id=call["event_id"], ts=datetime.now(UTC),
                      app_id=call["app_id"], source="end_user", author=author, thumbs=value)
    producer = await kafka.start_producer(stack.settings)
    try:
        name = topics.resolve(stack.settings.topic_prefix, topics.FEEDBACK)
        await (await producer.send(name, record.to_bytes(), key=str(record.event_id).encode()))
    finally:
        await producer.stop()


async def until(stack: IngestStack, sql: str, expected, within: float = 60, **params):
    deadline = time.monotonic() + within
    while True:
        value = (await asyncio.to_thread(stack.client.query, sql, parameters=params)).result_rows[0][0]
        if value == expected or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.3)  # the judge runs in this loop


def rated_down(outcome: str) -> float:
    return metrics.RATED_DOWN.labels(outcome)._value.get()


async def test_a_thumbs_down_gets_a_skipped_call_judged_exactly_once_also_after_restart_and_replay(stack, openai):
    down, unrated, up, older = (event(f"Answer {name} #{name}", "How do I reset my password?")
                                for name in ("down", "unrated", "up", "older"))
    await asyncio.to_thread(post, stack, [down, unrated, up, older])
    ids = [c["event_id"] for c in (down, unrated, up, older)]
    judge = judge_for(stack, openai)
    await judge.start()
    try:
        # Toxicity for all four (the judge saw them), judging for none: the rate is 0.
        assert await until(stack, "SELECT count(DISTINCT event_id) FROM scores WHERE event_id IN {ids:Array(UUID)}",
                           4, ids=ids) == 4
        assert openai.count() == 0
        await thumbs(stack, down, -1, "u1")
        await thumbs(stack, down, -1, "u2")  # a second user: still judged once
        await thumbs(stack, up, 1, "u3")
        sql = "SELECT count(DISTINCT name) FROM scores WHERE source = 'llm_judge' AND event_id = {id:UUID}"
        assert await until(stack, sql, RUBRICS, id=down["event_id"]) == RUBRICS
        await asyncio.sleep(1.5)
    finally:
        await judge.stop()
    assert openai.count("#down") == RUBRICS
    assert openai.count("#unrated") == openai.count("#up") == 0

    # A restart (same groups: committed offsets) and a full replay of llm.feedback (a new
    # group reads it from the start): the stored scores say the call was judged. A thumbs
    # down on a call the new judge never saw on llm.events is judged from the store.
    before = rated_down("already_judged")
    judge = judge_for(stack, openai, judge_feedback_group="replayed-feedback")
    await judge.start()
    try:
        assert len(judge.recent) == 0
        await thumbs(stack, older, -1, "u4")
        await thumbs(stack, down, -1, "u5")
        sql = "SELECT count(DISTINCT name) FROM scores WHERE source = 'llm_judge' AND event_id = {id:UUID}"
        assert await until(stack, sql, RUBRICS, id=older["event_id"]) == RUBRICS
        await asyncio.sleep(1.5)
    finally:
        await judge.stop()
    assert openai.count("#older") == RUBRICS
    assert openai.count("#down") == RUBRICS  # replayed twice and rated again: never asked again
    assert rated_down("already_judged") >= before + 1
    stored = stack.client.query(
        "SELECT count(), uniqExact(score_id) FROM scores FINAL WHERE source = 'llm_judge'").result_rows[0]
    assert stored == (2 * RUBRICS, 2 * RUBRICS)


async def test_a_thumbs_down_on_a_sampled_call_costs_nothing_more(stack, openai):
    call = event("Answer sampled #sampled", "What is the capital of France?")
    await asyncio.to_thread(post, stack, [call])
    judge = judge_for(stack, openai, judge_sample_rate=1.0)
    await judge.start()
    try:
        sql = "SELECT count(DISTINCT name) FROM scores WHERE source = 'llm_judge' AND event_id = {id:UUID}"
        assert await until(stack, sql, RUBRICS, id=call["event_id"]) == RUBRICS
        await thumbs(stack, call, -1, "u1")
        await asyncio.sleep(2.0)
    finally:
        await judge.stop()
    assert openai.count("#sampled") == RUBRICS
