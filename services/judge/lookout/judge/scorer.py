"""Scores for a batch of calls: toxicity of prompts and responses in one batched inference,
reference metrics, and the evaluator LLM's rubrics for the sampled calls. No Kafka here."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from lookout.core.events import LlmCall, Score

from . import metrics
from .evaluator import LlmJudge
from .prompt import CallText
from .rated_down import JudgedSet
from .reference import ReferenceMetrics
from .rubrics import Rubric, RubricSet
from .sampling import Sampler
from .scores import Measurement, to_score
from .toxicity import ToxicityModel

log = logging.getLogger(__name__)


def user_input(call: LlmCall) -> str:
    """What the user sent in this call: the explicit prompt, else the last user message.
    Not the system prompt or the earlier turns, which every call of a conversation repeats
    (scoring them again and again costs time and blames each call for old text)."""
    if call.prompt:
        return call.prompt
    for message in reversed(call.input):
        if message.role == "user" and message.content:
            return message.content
    return ""


@dataclass
class Scorer:
    toxicity: ToxicityModel | None = None
    judge: LlmJudge | None = None
    rubrics: RubricSet | None = None
    sampler: Sampler = field(default_factory=Sampler)
    reference: ReferenceMetrics = field(default_factory=ReferenceMetrics)
    toxic_threshold: float = 0.5
    judged: JudgedSet = field(default_factory=JudgedSet)  # calls sent to the evaluator by this process

    async def judge_calls(self, calls: list[LlmCall]) -> list[Score]:
        """Evaluator-LLM scores of these calls, sampled or not (calls rated down)."""
        results: list[list[Measurement]] = [[] for _ in calls]
        async with asyncio.TaskGroup() as group:
            for call, out in zip(calls, results, strict=True):
                if self._applicable(call):
                    self._start_judging(group, call, out)
        return [to_score(call, m) for call, ms in zip(calls, results, strict=True) for m in ms]

    async def score(self, calls: list[LlmCall]) -> list[Score]:
        results: list[list[Measurement]] = [[] for _ in calls]
        judged: set[int] = set()
        async with asyncio.TaskGroup() as group:
            # Sampled calls go to the judge while toxicity runs (in a thread, off the loop);
            # calls that turn out toxic join them afterwards, sampled or not.
            for i, call in enumerate(calls):
                if self._applicable(call) and self.sampler.wants(call.app_id, call.event_id):
                    self._start_judging(group, call, results[i])
                    judged.add(i)
            flagged = await self._toxicity(calls, results)
            for i in sorted(flagged - judged):
                if self._applicable(calls[i]):
                    self._start_judging(group, calls[i], results[i])
                    judged.add(i)
            for i, call in enumerate(calls):
                results[i].extend(self._reference(call))
                if i not in judged and self._applicable(call):
                    metrics.SKIPPED.labels("sampled_out").inc()
        return [to_score(call, m) for call, ms in zip(calls, results, strict=True) for m in ms]

    def _applicable(self, call: LlmCall) -> bool:
        if self.judge is None or self.rubrics is None:
            return False
        return any(r.applies_to(call) for r in self.rubrics.rubrics)

    def _start_judging(self, group: asyncio.TaskGroup, call: LlmCall, out: list[Measurement]) -> None:
        self.judged.add((call.app_id, call.event_id))
        group.create_task(self._judge_call(call, out))

    async def _judge_call(self, call: LlmCall, out: list[Measurement]) -> None:
        assert self.judge is not None and self.rubrics is not None  # _applicable() said so
        # The call's text is cut to the token budget once, for all of its rubrics.
        text = await self.judge.call_text(call)
        async with asyncio.TaskGroup() as group:
            for rubric in self.rubrics.rubrics:
                if rubric.applies_to(call):
                    group.create_task(self._judge_one(call, rubric, text, out))

    def _reference(self, call: LlmCall) -> list[Measurement]:
        try:
            return self.reference.measure(call)
        except Exception:  # one odd text must not hold back the batch's other scores
            metrics.ERRORS.labels("reference", "exception").inc()
            log.exception("reference metrics failed on call %s", call.event_id)
            return []

    async def _judge_one(self, call: LlmCall, rubric: Rubric, text: CallText, out: list[Measurement]) -> None:
        assert self.judge is not None
        m = await self.judge.judge(call, rubric, text)
        if m is not None:
            out.append(m)

    async def _toxicity(self, calls: list[LlmCall], results: list[list[Measurement]]) -> set[int]:
        """Toxicity scores into results; the indices of calls at or over the threshold."""
        if self.toxicity is None:
            return set()
        texts: list[str] = []
        where: list[tuple[int, str]] = []
        for i, call in enumerate(calls):
            prompt = user_input(call)
            if prompt.strip():
                texts.append(prompt)
                where.append((i, "toxicity.prompt."))
            if call.output and call.output.strip():
                texts.append(call.output)
                where.append((i, "toxicity."))
        if not texts:
            return set()
        model = self.toxicity
        try:
            predictions = await asyncio.to_thread(model.predict, texts)
        except Exception:
            # Find the text that breaks the batch instead of retrying the batch forever.
            log.exception("toxicity batch of %d texts failed; scoring them one by one", len(texts))
            predictions = await asyncio.to_thread(self._one_by_one, texts)
        metrics.TOXICITY_TEXTS.labels(model.evaluator).inc(len(texts))
        flagged: set[int] = set()
        for (i, prefix), labels in zip(where, predictions, strict=True):
            for label, value in (labels or {}).items():
                results[i].append(Measurement(prefix + label, value, "model", model.evaluator, model.version))
                if value >= self.toxic_threshold:
                    flagged.add(i)
        return flagged

    def _one_by_one(self, texts: list[str]) -> list[dict[str, float] | None]:
        assert self.toxicity is not None
        out: list[dict[str, float] | None] = []
        for text in texts:
            try:
                out.append(self.toxicity.predict([text])[0])
            except Exception:
                metrics.ERRORS.labels("toxicity", "exception").inc()
                log.exception("toxicity failed on a text of %d characters; no toxicity score for it", len(text))
                out.append(None)
        return out
