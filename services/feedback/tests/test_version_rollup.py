"""Scores and votes land in the per-version rollup (versions_1m) under their call's
model_version, through the real producers' records, the real broker and the real sink."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lookout.core import kafka, topics
from lookout.core.events import Feedback, LlmCall, Message, Score
from lookout.core.ids import uuid7
from lookout.dashboards import macros
from lookout.dashboards.macros import ALL, QueryContext
from lookout.dashboards.panels import panel
from lookout.judge.scores import Measurement, to_score

from .test_thumbs import pseudonym


def _call(version: str) -> LlmCall:
    return LlmCall(event_id=uuid7(), ts=datetime.now(UTC), app_id="shop", model="m1", model_version=version,
                   environment="prod", input=[Message(role="user", content=f"question for {version}")],
                   output="an answer")


def _post_calls(stack, calls: list[LlmCall]) -> None:
    with stack.ingest.http() as http:
        r = http.post("/v1/events", json={"events": [c.model_dump(mode="json", by_alias=True) for c in calls]})
        assert r.status_code == 200, r.text
    assert stack.ingest.wait_for_calls("shop", len(calls)) == len(calls)


def _produce(stack, records: list[tuple[str, Score | Feedback]]) -> None:
    settings = stack.ingest.settings

    async def send() -> None:
        producer = await kafka.start_producer(settings)
        try:
            for topic, record in records:
                await producer.send_and_wait(topics.resolve(settings.topic_prefix, topic), record.to_bytes(),
                                             key=str(record.event_id).encode())
        finally:
            await producer.stop()

    asyncio.run(send())


def _vote(stack, event_id: uuid.UUID, thumbs: int, user: str) -> None:
    with stack.key_http() as http:
        r = http.post("/v1/feedback", json={"event_id": str(event_id), "thumbs": thumbs, "user_id": user})
        assert r.status_code == 200, r.text


def _panel_rows(client) -> dict[str, dict]:
    now = datetime.now(UTC)
    context = QueryContext(now - timedelta(hours=1), now + timedelta(minutes=1),
                           variables={"app": ALL, "model": ALL, "environment": ALL, "daily_budget": 1.0})
    p = panel("model_versions")
    names = [c.name for c in p.columns]
    rows = [dict(zip(names, r, strict=True)) for r in client.query(macros.expand(p.sql, context)).result_rows]
    return {r["model_version"]: r for r in rows}


def test_scores_and_votes_on_a_call_land_in_the_rollup_under_its_model_version(feedback_stack):
    stack = feedback_stack
    old, new = _call("v1"), _call("v2")
    _post_calls(stack, [old, new])

    # End users vote through the thumbs API, which copies the call's version into the vote;
    # alice changes her mind on v1, and only her latest vote counts.
    _vote(stack, old.event_id, 1, "alice")
    stack.wait_rows("SELECT count() FROM feedback", 1)
    _vote(stack, old.event_id, -1, "alice")
    _vote(stack, new.event_id, 1, "bob")
    # The judge's records carry the version, and so does a reviewer's vote: the review UI
    # stamps its call's identity on the record (test_shape checks the UI's own record).
    judge = [
        to_score(old, Measurement("toxicity.insult", 0.9, "model", "detoxify", "1")),
        to_score(old, Measurement("toxicity.threat", 0.1, "model", "detoxify", "1")),
        to_score(new, Measurement("toxicity.insult", 0.1, "model", "detoxify", "1")),
        to_score(new, Measurement("judge.relevance", 0.75, "llm_judge", "judge", "1")),
    ]
    stored_ts = new.ts.replace(microsecond=new.ts.microsecond // 1000 * 1000)  # as llm_calls keeps it
    reviewer = Feedback(feedback_id=uuid.uuid4(), event_id=new.event_id, ts=datetime.now(UTC), app_id="shop",
                        source="reviewer", author="r1", thumbs=-1, model=new.model, model_version=new.model_version,
                        environment=new.environment, call_ts=stored_ts)
    _produce(stack, [(topics.SCORES, s) for s in judge] + [(topics.FEEDBACK, reviewer)])
    stack.wait_rows("SELECT count() FROM scores", 4)
    stack.wait_rows("SELECT count() FROM feedback", 4)

    assert sorted(stack.client.query("SELECT name, model_version, environment FROM scores").result_rows) == [
        ("judge.relevance", "v2", "prod"), ("toxicity.insult", "v1", "prod"), ("toxicity.insult", "v2", "prod"),
        ("toxicity.threat", "v1", "prod"),
    ]
    assert sorted(stack.client.query("SELECT author, model, model_version, environment, call_ts = "
                                     "{v2:DateTime64(3, 'UTC')} FROM feedback WHERE event_id = {e:UUID}",
                                     parameters={"e": str(new.event_id), "v2": new.ts}).result_rows) == [
        *sorted([(pseudonym("bob"), "m1", "v2", "prod", 1), ("r1", "m1", "v2", "prod", 1)]),
    ]

    rows = _panel_rows(stack.client)
    assert set(rows) == {"v1", "v2"}
    v1, v2 = rows["v1"], rows["v2"]
    assert (v1["calls"], v2["calls"]) == (1, 1)
    assert v1["thumbs_down_rate"] == 1.0  # alice's latest vote, not her first
    assert v2["thumbs_down_rate"] == pytest.approx(0.5)  # bob up, the reviewer down
    assert (v1["toxicity_rate"], v2["toxicity_rate"]) == (1.0, 0.0)  # per call: v1's two labels count once
    assert v1["judge_score"] is None and v2["judge_score"] == pytest.approx(0.75)
    (votes, down), = stack.client.query(
        "SELECT sumMerge(votes), sumMerge(thumbs_down) FROM versions_1m WHERE model_version = 'v1'").result_rows
    assert (votes, down) == (1, 1)  # the replaced up vote was taken back
