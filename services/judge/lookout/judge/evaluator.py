"""The evaluator LLM: one rubric applied to one call, within the concurrency limit, the
rate limits and the daily budget, through the cache. The call reaches the model as fenced
data within a token budget (prompt.py). A reply that is not the rubric's JSON is asked
again, then recorded as a judge error (metric + log), never as a score."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from lookout.core.events import LlmCall

from . import metrics
from .cache import CachedJudgment, JudgmentCache, cache_key
from .chat import ChatClient, Completion, JudgeRejected
from .limits import DailyBudget, RateLimiter
from .pricing import JudgePricer
from .prompt import CallText, Prompter
from .rubrics import InvalidVerdict, Rubric, Verdict
from .scores import Measurement
from .tokens import BpeCounter

log = logging.getLogger(__name__)


def _estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    # ~4 characters a token for English; settled to the reported usage after the reply.
    return sum(len(m["content"]) for m in messages) // 4 + max_tokens


@dataclass
class LlmJudge:
    client: ChatClient
    pricer: JudgePricer
    budget: DailyBudget = field(default_factory=DailyBudget)
    limiter: RateLimiter = field(default_factory=RateLimiter)
    cache: JudgmentCache = field(default_factory=JudgmentCache)
    concurrency: int = 16
    invalid_retries: int = 1
    prompter: Prompter = field(default_factory=lambda: Prompter(BpeCounter()))

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.concurrency)

    @property
    def model(self) -> str:
        return self.client.model

    async def call_text(self, call: LlmCall) -> CallText:
        """The call's text within the token budget, cut in a thread (tokenizing is CPU)."""
        text = await asyncio.to_thread(self.prompter.call_text, call)
        for name in text.truncated:
            metrics.TRUNCATED.labels(name).inc()
        return text

    async def judge(self, call: LlmCall, rubric: Rubric, text: CallText | None = None) -> Measurement | None:
        """The rubric's score for the call, or None (paused by the budget, or a judge error).
        `text` is the call's call_text(), shared by the rubrics of one call. Raises
        JudgeUnavailable when the endpoint cannot be used at all: the caller retries the
        whole batch later rather than lose the judgment."""
        if text is None:
            text = await self.call_text(call)
        data = self.prompter.data(rubric, text)
        key = cache_key(rubric, self.model, data)
        hit = self.cache.get(key)
        if hit is not None:
            metrics.CACHE_HITS.labels(rubric.name).inc()
            cost = hit.cost_usd if hit.paid_by == call.event_id else 0.0
            return self._measurement(rubric, hit.score, hit.explanation, cost)
        if self.budget.exhausted():
            metrics.SKIPPED.labels("budget").inc()
            return None
        async with self._slots:
            return await self._ask(call, rubric, data, key)

    async def _ask(self, call: LlmCall, rubric: Rubric, data: str, key: bytes):
        cost = 0.0
        problem = ""
        for _ in range(self.invalid_retries + 1):
            try:
                # A fresh fence nonce on every request, re-asks included.
                completion = await self._request(self.prompter.messages(rubric, data))
            except JudgeRejected as exc:
                metrics.ERRORS.labels(rubric.name, "rejected").inc()
                log.warning("judge error: %s on call %s refused by the endpoint: %s", rubric.name, call.event_id, exc)
                return None
            cost += self._charge(completion)
            try:
                verdict: Verdict = rubric.parse(completion.content)
            except InvalidVerdict as exc:
                problem = f"{exc}; reply: {completion.content[:200]!r}"
                continue
            self.cache.put(key, CachedJudgment(verdict.score, verdict.explanation, cost, call.event_id))
            return self._measurement(rubric, verdict.score, verdict.explanation, cost)
        metrics.ERRORS.labels(rubric.name, "invalid_output").inc()
        log.warning("judge error: %s on call %s: invalid output %d times: %s",
                    rubric.name, call.event_id, self.invalid_retries + 1, problem)
        return None

    async def _request(self, messages: list[dict[str, str]]) -> Completion:
        slot = await self.limiter.acquire(_estimate_tokens(messages, self.client.max_tokens))
        completion = await self.client.complete(messages)
        metrics.REQUESTS.inc()
        if completion.tokens_in is not None and completion.tokens_out is not None:
            self.limiter.settle(slot, completion.tokens_in + completion.tokens_out)
        return completion

    def _charge(self, completion: Completion) -> float:
        metrics.TOKENS.labels("in").inc(completion.tokens_in or 0)
        metrics.TOKENS.labels("out").inc(completion.tokens_out or 0)
        cost = self.pricer.cost(completion.tokens_in, completion.tokens_out)
        if cost is None:
            metrics.UNPRICED.inc()
            return 0.0
        self.budget.add(cost)
        metrics.SPEND.inc(cost)
        return cost

    def _measurement(self, rubric: Rubric, score: int, explanation: str, cost: float) -> Measurement:
        metrics.JUDGED.labels(rubric.name).inc()
        return Measurement(
            name=rubric.score_name,
            value=rubric.normalise(score),
            label=f"{score}/{rubric.high}",
            source="llm_judge",
            evaluator=self.model,
            version=rubric.judged_version,
            explanation=explanation,
            cost_usd=cost,
        )
