"""The toxicity score stored for a call is the documented aggregation of the model's own
output on that call's text: calls go in through the ingest API, the judge scores them from
llm.events, the sink stores calls and scores in ClickHouse (chdb), and each stored value
is recomputed here from the stored text, with the real model and the rule written out
again (whole text when it fits, else the length-weighted mean over windows)."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch
from ingest_io import event, post, shared
from profanity_check import predict_prob

from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.testing.stack import IngestStack

CALM = ("The meeting covers the budget, the roadmap and the hiring plan for next quarter, and every team "
        "lead brings the numbers of their own group so we can compare them side by side. ")
SHORT = "What the fuck is this shit, you idiot? Answer me."
LONG = CALM * 14 + "Honestly this plan is total shit and whoever wrote it is a fucking moron. " + CALM * 6


async def stored(stack: IngestStack, event_ids: list[str], per_call: int, within: float = 90) -> dict:
    """{(event_id, score name): (value, evaluator_version, output, prompt)} once every call has its scores."""
    deadline = time.monotonic() + within
    while True:
        rows = (await asyncio.to_thread(stack.client.query,
            "SELECT toString(s.event_id), s.name, s.value, s.evaluator_version, c.output, c.input "
            "FROM scores AS s FINAL INNER JOIN llm_calls AS c FINAL ON s.event_id = c.event_id "
            "WHERE s.name LIKE 'toxicity.%' AND toString(s.event_id) IN {ids:Array(String)}",
            parameters={"ids": event_ids})).result_rows
        if len(rows) >= per_call * len(event_ids) or time.monotonic() > deadline:
            return {(e, n): (v, ver, out, inp) for e, n, v, ver, out, inp in rows}
        await asyncio.sleep(0.3)  # the judge runs in this loop


def user_text(stored_input: str) -> str:
    import json

    return [m["content"] for m in json.loads(stored_input) if m["role"] == "user"][-1]


def documented_profanity(text: str) -> float:
    """Whole text up to 256 words; beyond, the word-weighted mean of predict_prob over
    windows of 8 words starting every 4 words, the last one ending at the last word."""
    words = text.split()
    if len(words) <= 256:
        return float(predict_prob([text])[0])
    starts = [*range(0, len(words) - 8, 4), len(words) - 8]
    windows = [words[s : s + 8] for s in starts]
    probs = predict_prob([" ".join(w) for w in windows])
    return float(sum(p * len(w) for p, w in zip(probs, windows, strict=True)) / sum(len(w) for w in windows))


async def test_stored_profanity_score_is_the_documented_aggregation_of_the_models_output(stack):
    calls = [event(SHORT, "Why is my order late?"), event(LONG, SHORT)]
    assert len(LONG.split()) > 256  # the window path
    judge = JudgeService(JudgeSettings(**shared(stack),
                                       toxicity_backend="profanity", judge_batch_ms=20))
    await judge.start()
    try:
        await asyncio.to_thread(post, stack, calls)
        got = await stored(stack, [c["event_id"] for c in calls], per_call=2)
    finally:
        await judge.stop()

    assert len(got) == 4
    for (_, name), (value, version, output, stored_input) in got.items():
        text = output if name == "toxicity.profanity" else user_text(stored_input)
        assert value == pytest.approx(documented_profanity(text), abs=1e-12)
        assert version.endswith("/whole<=256w|wmean(8w/4w)")
    long_score = got[(calls[1]["event_id"], "toxicity.profanity")][0]
    assert long_score != pytest.approx(float(predict_prob([LONG])[0]), abs=1e-6)  # not the whole-text number


def documented_detoxify(model, tokenizer, text: str, max_tokens: int, stride: int) -> list[float]:
    """Whole text when it fits max_tokens; beyond, the token-weighted mean of the sigmoid
    outputs over the tokenizer's overflowing chunks; each chunk run alone, unpadded."""
    enc = tokenizer(text, truncation=True, max_length=max_tokens, stride=stride, return_overflowing_tokens=True)
    total, mass = None, 0
    with torch.inference_mode():
        for ids in enc["input_ids"]:
            probs = torch.sigmoid(model(input_ids=torch.tensor([ids]))[0])[0].double()
            total = probs * len(ids) if total is None else total + probs * len(ids)
            mass += len(ids)
    return (total / mass).tolist()


async def test_stored_detoxify_scores_are_the_documented_aggregation_over_chunks(stack, tiny_detoxify):
    checkpoint, hf = tiny_detoxify
    short = "you are a stupid idiot go away"
    long = " ".join(["have a nice day and thanks for help"] * 9 + ["you are a stupid idiot please go away"])
    settings = JudgeSettings(**shared(stack), judge_batch_ms=20,
                             detoxify_checkpoint=str(checkpoint), detoxify_hf_config=str(hf),
                             toxicity_max_tokens=24, toxicity_stride=4)
    calls = [event(short, "good"), event(long, "the weather today is sunny")]
    judge = JudgeService(settings)
    await judge.start()
    try:
        await asyncio.to_thread(post, stack, calls)
        got = await stored(stack, [c["event_id"] for c in calls], per_call=12)
    finally:
        await judge.stop()

    model = judge.scorer.toxicity
    assert len(model.tokenizer(long)["input_ids"]) > 24  # the chunked path
    labels = list(model.labels)
    assert len(got) == 2 * 2 * len(labels)
    for (_, name), (value, version, output, stored_input) in got.items():
        text = user_text(stored_input) if name.startswith("toxicity.prompt.") else output
        expected = documented_detoxify(model.model, model.tokenizer, text, 24, 4)
        assert value == pytest.approx(expected[labels.index(name.rsplit(".", 1)[1])], abs=1e-5)
        assert version.endswith("/whole<=24t|wmean(24t/4t)") and "ckpt-" in version
