"""The judge as a startable unit: consumes llm.events (group lookout-judge), produces Score
records to llm.scores keyed by event id, and commits a batch's offsets only after the
broker acknowledged all of its scores. A crash replays the batch; score ids are
deterministic, so stored scores collapse instead of doubling. With an evaluator LLM it also
consumes llm.feedback (group lookout-judge-feedback): calls rated down are judged whatever
the sampling rate, once each (rated_down.py).

`python -m lookout.judge` runs it with its HTTP server; the embedded stack awaits
start()/stop() inside its own loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from clickhouse_connect.driver.client import Client

from lookout.core import clickhouse, kafka, topics
from lookout.core.events import LlmCall

from . import metrics, tokens, toxicity
from .cache import JudgmentCache
from .chat import ChatClient, JudgeUnavailable
from .evaluator import LlmJudge
from .limits import DailyBudget, RateLimiter
from .pricing import JudgePricer
from .prompt import Prompter
from .rated_down import JudgedSet, RatedDownJudge, RecentCalls
from .rubrics import RubricSet
from .sampling import Sampler
from .scorer import Scorer
from .settings import JudgeSettings
from .toxicity import ToxicityModel, ToxicityUnavailable

log = logging.getLogger(__name__)

_LOAD = object()  # default for toxicity_model: load what the settings say


class JudgeService:
    name = "judge"

    def __init__(
        self,
        settings: JudgeSettings,
        *,
        client: Client | None = None,
        toxicity_model: ToxicityModel | object | None = _LOAD,
        budget_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._clickhouse = client
        self._toxicity_model = toxicity_model
        self._budget_clock = budget_clock
        self.scorer: Scorer | None = None
        self.judge: LlmJudge | None = None
        self.toxicity_problem: str | None = None
        self.judge_problem: str | None = None
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._loop: kafka.CommitAfterLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopping = False
        self.recent = RecentCalls(settings.judge_recent_calls, settings.judge_recent_chars)
        self._feedback_consumer: AIOKafkaConsumer | None = None
        self._feedback_loop: kafka.CommitAfterLoop | None = None
        self._feedback_task: asyncio.Task | None = None
        self._scores_topic = topics.resolve(settings.topic_prefix, topics.SCORES)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        settings = self.settings
        rubrics = RubricSet.load(settings.judge_rubrics_path, settings.rubric_names() or None)
        # Before anything is opened: a sampling setup without its secret stops the start.
        sampler = self._sampler() if settings.judge_base_url else Sampler()
        model = await self._load_toxicity()
        self.judge = self._make_judge()
        if self.judge is None:
            log.info("LOOKOUT_JUDGE_BASE_URL is not set: evaluator-LLM judging is off")
        self.scorer = Scorer(
            toxicity=model, judge=self.judge, rubrics=rubrics, sampler=sampler,
            toxic_threshold=settings.toxic_threshold, judged=JudgedSet(),
        )
        rated_down = self.judge is not None and settings.judge_rated_down
        await kafka.ensure_topics(settings, [topics.EVENTS, topics.SCORES, *([topics.FEEDBACK] if rated_down else [])])
        self._producer = await kafka.start_producer(settings)
        self._consumer = kafka.make_consumer(
            settings, settings.judge_group, topics.resolve(settings.topic_prefix, topics.EVENTS),
            # A batch waits on the evaluator LLM (rate limits, back-off): allow it time
            # before the group decides this member is gone.
            max_poll_interval_ms=settings.judge_max_poll_interval_s * 1000,
        )
        await self._consumer.start()
        self._loop = kafka.CommitAfterLoop(
            self._consumer, self.handle, max_records=settings.judge_batch_max, linger_ms=settings.judge_batch_ms
        )
        self._task = asyncio.create_task(self._run(self._loop), name="lookout-judge")
        log.info("judge consuming %s as %s", topics.resolve(settings.topic_prefix, topics.EVENTS), settings.judge_group)
        if rated_down:
            await self._start_rated_down(sampler)

    async def _start_rated_down(self, sampler: Sampler) -> None:
        settings = self.settings
        handler = RatedDownJudge(sampler=sampler, recent=self.recent, judged=self.scorer.judged,
                                 judge_calls=self.scorer.judge_calls, send=self._send,
                                 client=self.clickhouse_client)
        name = topics.resolve(settings.topic_prefix, topics.FEEDBACK)
        self._feedback_consumer = kafka.make_consumer(settings, settings.judge_feedback_group, name,
                                                      max_poll_interval_ms=settings.judge_max_poll_interval_s * 1000)
        await self._feedback_consumer.start()
        self._feedback_loop = kafka.CommitAfterLoop(self._feedback_consumer, handler.handle, max_records=256,
                                                    linger_ms=settings.judge_batch_ms)
        self._feedback_task = asyncio.create_task(self._run(self._feedback_loop), name="lookout-judge-rated-down")
        log.info("judge consuming %s as %s: calls rated down are judged", name, settings.judge_feedback_group)

    async def stop(self, *, graceful: bool = True) -> None:
        """Finish (graceful) or abandon the batch in hand, then close. Abandoned batches are
        not committed and are scored again by whoever consumes the partition next."""
        self._stopping = True
        for task in (self._task, self._feedback_task):
            if task and not graceful:
                task.cancel()
        await kafka.finish(self._loop, self._task, 60)
        await kafka.finish(self._feedback_loop, self._feedback_task, 60)
        for consumer in (self._consumer, self._feedback_consumer):
            if consumer:
                await consumer.stop()
        if self._producer:
            await self._producer.stop()
        if self.judge:
            await self.judge.client.aclose()

    async def _run(self, loop: kafka.CommitAfterLoop) -> None:
        # CommitAfterLoop ends on a failed commit (the group rebalanced while a long batch was
        # judged); the uncommitted batch is replayed, so starting over is safe.
        while not self._stopping:
            try:
                await loop.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("judge consumer loop failed; restarting it")
                await asyncio.sleep(1)

    async def _load_toxicity(self) -> ToxicityModel | None:
        if self._toxicity_model is not _LOAD:
            return self._toxicity_model  # type: ignore[return-value]
        try:
            return await asyncio.to_thread(toxicity.load, self.settings)
        except ToxicityUnavailable as exc:
            self.toxicity_problem = f"no toxicity model: {exc}"
            log.error("%s; toxicity is not scored (no stand-in scores are emitted)", self.toxicity_problem)
            return None

    def _sampler(self) -> Sampler:
        s = self.settings
        secret = s.judge_sampling_secret.get_secret_value().encode() if s.judge_sampling_secret else b""
        return Sampler(s.judge_sample_rate, s.app_sample_rates(), secret)

    def _make_judge(self) -> LlmJudge | None:
        s = self.settings
        if not s.judge_base_url:
            return None
        client = ChatClient(
            base_url=s.judge_base_url, model=s.judge_model,
            api_key=s.judge_api_key.get_secret_value() if s.judge_api_key else None,
            timeout_s=s.judge_timeout_s, max_retries=s.judge_max_retries, backoff_s=s.judge_backoff_s,
            backoff_max_s=s.judge_backoff_max_s, json_mode=s.judge_json_mode, max_tokens=s.judge_max_tokens,
        )
        budget = DailyBudget(s.judge_daily_budget_usd)
        if self._budget_clock is not None:
            budget.clock = self._budget_clock
        return LlmJudge(
            client=client, pricer=JudgePricer.from_settings(s), budget=budget,
            limiter=RateLimiter(s.judge_rpm, s.judge_tpm), cache=JudgmentCache(s.judge_cache_size),
            concurrency=s.judge_concurrency, invalid_retries=s.judge_invalid_retries,
            prompter=Prompter(tokens.counter(s.judge_tokenizer), s.judge_field_max_tokens),
        )

    # -- the batch ---------------------------------------------------------------------

    async def handle(self, records: list[ConsumerRecord]) -> None:
        calls: list[LlmCall] = []
        for record in records:
            try:
                calls.append(LlmCall.from_bytes(record.value))
            except Exception as exc:  # the sink dead-letters it; here it only has nothing to score
                metrics.UNREADABLE.inc()
                log.warning("unreadable record %s[%d]@%d skipped: %s",
                            record.topic, record.partition, record.offset, exc)
        metrics.EVENTS.inc(len(calls))
        self.recent.add(calls)  # for thumbs down on them, without a store read
        try:
            scores = await self.scorer.score(calls)
        except* JudgeUnavailable as group:
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):  # task groups nest: one per call, in one per batch
                first = first.exceptions[0]
            self.judge_problem = str(first)
            raise JudgeUnavailable(f"batch not judged, will be retried: {self.judge_problem}") from None
        self.judge_problem = None
        await self._send(scores)

    async def _send(self, scores: list) -> None:
        send = self._producer.send
        acks = [await send(self._scores_topic, s.to_bytes(), key=str(s.event_id).encode()) for s in scores]
        await asyncio.gather(*acks)  # every score acknowledged by the broker before the commit
        for s in scores:
            metrics.SCORES.labels(s.source).inc()

    # -- readiness and stores ----------------------------------------------------------

    def consumer_ready(self) -> str | None:
        return kafka.loop_problem(self._task)

    def rated_down_ready(self) -> str | None:
        return kafka.loop_problem(self._feedback_task) if self._feedback_task is not None else None

    def toxicity_ready(self) -> str | None:
        return self.toxicity_problem

    def judge_ready(self) -> str | None:
        return self.judge_problem

    def checks(self) -> dict[str, Callable[[], str | None]]:
        return {"consumer": self.consumer_ready, "rated_down": self.rated_down_ready, "toxicity": self.toxicity_ready,
                "judge": self.judge_ready}

    def routers(self) -> list:
        from .app import agreement_router  # the routes import this module

        return [agreement_router(self)]

    def clickhouse_client(self) -> Client:
        """For the agreement report and calls rated down; opened on first use (the judge
        needs no store to score what it consumes)."""
        if self._clickhouse is None:
            self._clickhouse = clickhouse.connect(self.settings)
        return self._clickhouse
