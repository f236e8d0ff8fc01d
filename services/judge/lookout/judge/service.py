"""The judge as a Service: consumes llm.events (group lookout-judge), produces Score
records to llm.scores keyed by event id, and commits a batch's offsets only after the
broker acknowledged all of its scores. A crash replays the batch; score ids are
deterministic, so stored scores collapse instead of doubling. With an evaluator LLM it also
consumes llm.feedback (group lookout-judge-feedback): calls rated down are judged whatever
the sampling rate, once each (rated_down.py); and it stores its agreement with reviewers
every LOOKOUT_JUDGE_AGREEMENT_INTERVAL_S (live_agreement.py).

Both consumers are ConsumerWorkers: a record that is not what its topic carries goes to
llm.dlq with the error, and the rest of the batch is scored. ClickHouse (one Session) is
opened in the background at start: the judge scores what it consumes without it, and the
agreement report, thumbs-down lookups and agreement rows wait for it.

`python -m lookout.judge` runs it with run_service; the embedded stack starts it beside
the other services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter

from lookout.core import kafka, topics
from lookout.core.auth import ApiKeyStore
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.events import LlmCall
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from . import metrics, tokens, toxicity
from .cache import JudgmentCache
from .chat import ChatClient, JudgeUnavailable
from .evaluator import LlmJudge
from .limits import DailyBudget, RateLimiter
from .live_agreement import AgreementWriter
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
_RETRY_S = (1, 2, 5, 10, 30)  # waits between attempts to open ClickHouse


class JudgeService:
    name = "judge"

    def __init__(
        self,
        settings: JudgeSettings,
        *,
        session: Session | None = None,
        toxicity_model: ToxicityModel | object | None = _LOAD,
        budget_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._toxicity_model = toxicity_model
        self._budget_clock = budget_clock
        self.scorer: Scorer | None = None
        self.judge: LlmJudge | None = None
        self.toxicity_problem: str | None = None
        self.judge_problem: str | None = None
        self.recent = RecentCalls(settings.judge_recent_calls, settings.judge_recent_chars)
        self._scores_topic = topics.resolve(settings.topic_prefix, topics.SCORES)
        self._producer: AIOKafkaProducer | None = None
        self._tasks: list[asyncio.Task] = []
        # ClickHouse: handed in (tests, the embedded stack) or opened at start.
        self.session: Session | None = None
        self.keys: ApiKeyStore | None = None
        self._own_session = False
        self._opening = asyncio.Lock()
        self.store_problem: str | None = "not connected to ClickHouse yet"
        if session is not None:
            self._use(session)
        max_poll = {"max_poll_interval_ms": settings.judge_max_poll_interval_s * 1000}
        # A batch waits on the evaluator LLM (rate limits, back-off): max_poll allows it time
        # before the group decides this member is gone. A loop that ends on an error (a
        # failed commit after a rebalance, the endpoint unusable) starts again; the
        # uncommitted batch is replayed, so that is safe.
        self.events = ConsumerWorker(
            settings, self.name, settings.judge_group, [topics.EVENTS], self.handle,
            max_records=settings.judge_batch_max, linger_ms=settings.judge_batch_ms, grace_s=60,
            restart_on_error=True, consumer_options=max_poll,
        )
        self.rated_down: RatedDownJudge | None = None
        self.feedback = ConsumerWorker(
            settings, self.name, settings.judge_feedback_group, [topics.FEEDBACK], self._rated_down,
            max_records=256, linger_ms=settings.judge_batch_ms, grace_s=60, restart_on_error=True,
            consumer_options=max_poll,
        )
        self._feedback_started = False
        self.writer: AgreementWriter | None = None

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
        await kafka.ensure_topics(settings, [topics.SCORES])
        self._producer = await kafka.start_producer(settings)
        if self.session is None:
            self._tasks.append(asyncio.create_task(self._open_store(), name="lookout-judge-clickhouse"))
        await self.events.start(self._producer)
        log.info("judge consuming %s as %s", self.events.names[0], settings.judge_group)
        if self.judge is not None and settings.judge_rated_down:
            self.rated_down = RatedDownJudge(sampler=sampler, recent=self.recent, judged=self.scorer.judged,
                                             judge_calls=self.scorer.judge_calls, send=self._send,
                                             session=self.store)
            await self.feedback.start(self._producer)
            self._feedback_started = True
            log.info("judge consuming %s as %s: calls rated down are judged", self.feedback.names[0],
                     settings.judge_feedback_group)
        if self.judge is not None and settings.judge_agreement_interval_s > 0:
            self._start_agreement()

    def _start_agreement(self) -> None:
        s = self.settings
        secret = self.signing_secret()
        if secret is None:
            log.warning("LOOKOUT_REVIEW_SIGNING_SECRET is not set: judge agreement counts every reviewer rating "
                        "on llm.feedback, signed by the feedback service or not")
        self.writer = AgreementWriter(self.store, interval_s=s.judge_agreement_interval_s,
                                      window=timedelta(days=s.judge_agreement_window_days), signing_secret=secret)
        self._tasks.append(asyncio.create_task(self.writer.run(), name="lookout-judge-agreement"))

    async def stop(self) -> None:
        """Finish the batches in hand (scores acked, offsets committed), then close. Safe
        after a partial start."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.feedback.stop()
        await self.events.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self.judge is not None:
            await self.judge.client.aclose()
        if self._own_session and self.session is not None:
            self.session.close()
            self.session, self.keys, self._own_session = None, None, False

    # -- ClickHouse --------------------------------------------------------------------

    def _use(self, session: Session) -> None:
        # ApiKeyStore takes a raw client and its lock from Session.of(client): one lock.
        self.keys = session.run(ApiKeyStore)
        self.session, self.store_problem = session, None

    async def store(self) -> Session:
        """The ClickHouse session; opened (and migrated) on first need, off the event loop."""
        if self.session is not None:
            return self.session
        async with self._opening:
            if self.session is None:
                session = await asyncio.to_thread(Session.connect, self.settings, migrate=True)
                self._own_session = True
                self._use(session)
        assert self.session is not None
        return self.session

    async def _open_store(self) -> None:
        attempt = 0
        while self.session is None:
            try:
                await self.store()
            except Exception as exc:
                self.store_problem = f"ClickHouse: {type(exc).__name__}: {exc}"
                wait = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                log.warning("%s; trying again in %d s", self.store_problem, wait)
                attempt += 1
                await asyncio.sleep(wait)

    def signing_secret(self) -> str | None:
        secret = self.settings.review_signing_secret
        return secret.get_secret_value() if secret is not None else None

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
        return Sampler(s.judge_sample_rate, s.judge_sample_rates.as_dict(), secret)

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

    async def handle(self, batch: Batch) -> None:
        calls = batch.of(LlmCall)
        metrics.EVENTS.inc(len(calls))
        self.recent.add(calls)  # for thumbs down on them, without a store read
        assert self.scorer is not None
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

    async def _rated_down(self, batch: Batch) -> None:
        assert self.rated_down is not None
        await self.rated_down.handle(batch)

    async def _send(self, scores: list) -> None:
        assert self._producer is not None
        send = self._producer.send
        acks = [await send(self._scores_topic, s.to_bytes(), key=str(s.event_id).encode()) for s in scores]
        await asyncio.gather(*acks)  # every score acknowledged by the broker before the commit
        for s in scores:
            metrics.SCORES.labels(s.source).inc()

    # -- the service's surface ---------------------------------------------------------

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {
            "consumer": self.events.ready,
            "rated_down": lambda: self.feedback.ready() if self._feedback_started else None,
            "toxicity": lambda: self.toxicity_problem,
            "judge": lambda: self.judge_problem,
            "clickhouse": lambda: self.store_problem,
            "agreement": lambda: self.writer.problem if self.writer is not None else None,
        }

    def routers(self) -> Sequence[APIRouter]:
        from .app import agreement_router  # the routes import this module

        return [agreement_router(self)]
