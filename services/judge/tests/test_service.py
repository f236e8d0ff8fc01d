"""The judge service end to end: calls on llm.events in, Score records on llm.scores out, on
a real broker, with the evaluator LLM behind a local OpenAI-compatible server."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from calls import call
from kafka_io import ScoreReader, produce_calls
from served import app_of

from lookout.judge import metrics
from lookout.judge.rubrics import RubricSet
from lookout.judge.scores import score_id
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings

DETOXIFY = {"toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"}
RUBRIC_VERSION = RubricSet.load().by_name("relevance").judged_version


def judge_settings(settings, openai=None, **extra) -> JudgeSettings:
    values = settings.model_dump()
    values.update(judge_batch_ms=50, judge_input_per_mtok=1.0, judge_output_per_mtok=1.0, judge_model="judge-model",
                  judge_backoff_s=0.01, judge_backoff_max_s=0.05)
    if openai is not None:
        values["judge_base_url"] = openai.base_url
    values.update(extra)
    return JudgeSettings(**values)


def counter(c, *labels) -> float:
    return (c.labels(*labels) if labels else c)._value.get()


def names_of(scores: dict) -> set[str]:
    return set(scores)


async def test_events_in_scores_out(broker, settings, openai, tiny_detoxify):
    checkpoint, hf = tiny_detoxify
    plain = call()
    rich = call(output="The cat sat on the mat.", reference="The cat is on the mat.",
                context=["A cat is sitting on a mat."], logprobs=[math.log(0.5)] * 6)
    failed = call(output=None, status="error", error="upstream timeout")
    service = JudgeService(judge_settings(settings, openai, detoxify_checkpoint=str(checkpoint),
                                          detoxify_hf_config=str(hf)))
    await service.start()
    try:
        await produce_calls(settings, [plain, rich, failed])
        async with ScoreReader(settings) as reader:
            await reader.until(lambda r: len(r.by_event().get(rich.event_id, {})) >= 20
                               and len(r.by_event().get(plain.event_id, {})) >= 15
                               and len(r.by_event().get(failed.event_id, {})) >= 6)
            await reader.settle(0.5)
    finally:
        await service.stop()

    got = reader.by_event()
    tox = {f"toxicity.{label}" for label in DETOXIFY} | {f"toxicity.prompt.{label}" for label in DETOXIFY}
    judged = {"judge.relevance", "judge.coherence", "judge.fluency"}
    assert names_of(got[plain.event_id]) == tox | judged
    assert names_of(got[rich.event_id]) == tox | judged | {
        "judge.groundedness", "judge.factual_accuracy", "bleu", "rouge_l", "perplexity"}
    # A failed call has no response: only its prompt is scored.
    assert names_of(got[failed.event_id]) == {f"toxicity.prompt.{label}" for label in DETOXIFY}

    for key, score in reader.records:
        assert key == str(score.event_id).encode()
        assert score.score_id == score_id(score.event_id, score.name, score.evaluator, score.evaluator_version)
        assert score.ts == {c.event_id: c.ts for c in (plain, rich, failed)}[score.event_id]
    relevance = got[plain.event_id]["judge.relevance"]
    assert (relevance.source, relevance.evaluator, relevance.evaluator_version) == (
        "llm_judge", "judge-model", RUBRIC_VERSION)
    assert relevance.value == 0.75 and relevance.explanation and relevance.cost_usd > 0
    toxic = got[plain.event_id]["toxicity.insult"]
    assert (toxic.source, toxic.evaluator) == ("model", "detoxify") and "ckpt-" in toxic.evaluator_version
    assert got[rich.event_id]["perplexity"].value == pytest.approx(2.0)
    assert got[rich.event_id]["bleu"].evaluator == "sacrebleu"
    # The judge saw the retrieved context and the reference where its rubric needs them.
    assert openai.count("A cat is sitting on a mat.") == 1 and openai.count("The cat is on the mat.") == 1


async def test_invalid_judge_output_never_becomes_a_score(tansu_broker, settings_for, openai):
    settings = settings_for(tansu_broker)
    bad, good = call(output="Paris, I think. #bad"), call()
    openai.script(*["invalid"] * 6, marker="#bad")  # 3 rubrics x 2 attempts, all invalid
    errors = counter(metrics.ERRORS, "relevance", "invalid_output")
    service = JudgeService(judge_settings(settings, openai))
    await service.start()
    try:
        await produce_calls(settings, [bad, good])
        async with ScoreReader(settings) as reader:
            await reader.until(lambda r: "judge.relevance" in r.by_event().get(good.event_id, {})
                               and "toxicity.profanity" in r.by_event().get(bad.event_id, {}))
            await reader.settle(0.5)
    finally:
        await service.stop()

    got = reader.by_event()
    assert not any(n.startswith("judge.") for n in got[bad.event_id])
    assert {"toxicity.profanity", "toxicity.prompt.profanity"} <= set(got[bad.event_id])
    assert {"judge.relevance", "judge.coherence", "judge.fluency"} <= set(got[good.event_id])
    assert openai.count("#bad") == 6
    assert counter(metrics.ERRORS, "relevance", "invalid_output") == errors + 1


async def test_budget_pauses_judging_and_it_resumes_the_next_day(tansu_broker, settings_for, openai):
    settings = settings_for(tansu_broker)
    now = [datetime(2026, 3, 1, 22, 0, tzinfo=UTC)]
    service = JudgeService(judge_settings(settings, openai, judge_daily_budget_usd=1e-6),
                           budget_clock=lambda: now[0])
    first, second, third = call(output="Answer one."), call(output="Answer two."), call(output="Answer three.")
    await service.start()
    try:
        async with ScoreReader(settings) as reader:
            await produce_calls(settings, [first])
            await reader.until(lambda r: "judge.fluency" in r.by_event().get(first.event_id, {}))
            await produce_calls(settings, [second])
            await reader.until(lambda r: "toxicity.profanity" in r.by_event().get(second.event_id, {}))
            now[0] += timedelta(hours=3)  # the next UTC day: a fresh budget
            await produce_calls(settings, [third])
            await reader.until(lambda r: "judge.fluency" in r.by_event().get(third.event_id, {}))
            await reader.settle(0.3)
    finally:
        await service.stop()

    got = reader.by_event()
    assert not any(n.startswith("judge.") for n in got[second.event_id])  # paused: spent
    assert openai.count("Answer two.") == 0
    assert {"judge.relevance", "judge.coherence", "judge.fluency"} <= set(got[third.event_id])


async def test_an_endpoint_outage_delays_judging_but_loses_no_call(tansu_broker, settings_for, openai):
    settings = settings_for(tansu_broker)
    openai.default = "429"  # a 429 storm that outlasts the retries of a request
    service = JudgeService(judge_settings(settings, openai, judge_max_retries=2))
    calls = [call(output=f"Answer {i}.") for i in range(5)]
    await service.start()
    app = app_of(service)
    try:
        await produce_calls(settings, calls)
        async with ScoreReader(settings) as reader, httpx.AsyncClient(
                transport=httpx.ASGITransport(app), base_url="http://judge") as http:
            await reader.settle(1.5)
            assert reader.records == []  # the batch waits for the endpoint: nothing is committed
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and "429" in ready.json()["problems"]["judge"]
            openai.default = "valid"
            await reader.until(lambda r: all("judge.relevance" in r.by_event().get(c.event_id, {}) for c in calls))
            assert (await http.get("/readyz")).status_code == 200
    finally:
        await service.stop()


async def test_sampling_rates_per_app_but_toxic_calls_are_always_judged(tansu_broker, settings_for, openai):
    settings = settings_for(tansu_broker)
    quiet_clean = call(app_id="quiet", output="Thanks, glad to help with your order.")
    quiet_toxic = call(app_id="quiet", output="Shut the fuck up, you stupid idiot.")
    loud = call(app_id="loud", output="Your order ships tomorrow.")
    skipped = counter(metrics.SKIPPED, "sampled_out")
    service = JudgeService(judge_settings(settings, openai, judge_sample_rates="quiet=0"))
    await service.start()
    try:
        await produce_calls(settings, [quiet_clean, quiet_toxic, loud])
        async with ScoreReader(settings) as reader:
            await reader.until(lambda r: "judge.fluency" in r.by_event().get(quiet_toxic.event_id, {})
                               and "judge.fluency" in r.by_event().get(loud.event_id, {})
                               and "toxicity.profanity" in r.by_event().get(quiet_clean.event_id, {}))
            await reader.settle(0.3)
    finally:
        await service.stop()

    got = reader.by_event()
    assert not any(n.startswith("judge.") for n in got[quiet_clean.event_id])
    assert got[quiet_toxic.event_id]["toxicity.profanity"].value >= 0.5
    assert counter(metrics.SKIPPED, "sampled_out") == skipped + 1


async def test_readyz_says_when_no_toxicity_model_loads_and_none_is_invented(tansu_broker, settings_for, openai,
                                                                               tmp_path):
    settings = settings_for(tansu_broker)
    service = JudgeService(judge_settings(settings, openai, detoxify_checkpoint=str(tmp_path / "missing.ckpt")))
    only = call(output="Fine.", reference="Fine.")
    await service.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app_of(service)), base_url="http://j") as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "missing.ckpt" in ready.json()["problems"]["toxicity"]
            assert (await http.get("/healthz")).status_code == 200
            assert "lookout_judge_judged_total" in (await http.get("/metrics")).text
        await produce_calls(settings, [only])
        async with ScoreReader(settings) as reader:
            await reader.until(lambda r: {"judge.fluency", "bleu"} <= set(r.by_event().get(only.event_id, {})))
            await reader.settle(0.3)
    finally:
        await service.stop()
    assert not any(s.name.startswith("toxicity") for s in reader.scores)
