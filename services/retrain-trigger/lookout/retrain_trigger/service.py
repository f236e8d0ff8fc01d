"""The retrain-trigger service: consumes llm.scores, llm.drift, llm.feedback and
llm.retrain.status (group `lookout-retrain`), evaluates the policies, and runs the life of
each retrain run:

    requested --(policy needs no approval, or POST .../approve)--> approved? -> launched
    launched -> running -> succeeded | failed          (reported by the job)
    launched/running --(silent past the run timeout)--> timed_out
    launched/running --(local job exited non-zero)---> failed
    requested --(POST .../reject)--> rejected;  dry-run policy: requested -> rejected

Offsets are committed after the observations are stored and the firings recorded and
produced (see state.py), so a restart neither loses nor double-counts evidence. Each record
names its stream (app, model): a vote carries its call's identity, stamped by the feedback
service where the call is known, so the trigger never reads a call back and never waits
for the sink. A record it cannot read, or a vote without its call's model, goes to llm.dlq
(lookout.core.dead_letters); the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter
from prometheus_client import Counter

from lookout.core import kafka, migrations, review_signing, topics
from lookout.core.auth import ApiKeyStore
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.events import DriftResult, Feedback, Retrain, RetrainState, Score
from lookout.core.ids import uuid7
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from . import api
from . import policies as policy_file
from .dataset import ClickHouseSnapshot, DatasetFilters, DatasetSource
from .errors import RunError
from .launchers import Launcher, LaunchRequest, make_launcher
from .rules import Firing, Observation, RuleEngine, Stream
from .settings import RetrainSettings
from .state import TERMINAL, Run, Store, rank
from .versions import register_candidate

log = logging.getLogger(__name__)

FIRINGS = Counter("lookout_retrain_firings_total", "Policy firings.", ["policy", "dry_run"])
TRANSITIONS = Counter("lookout_retrain_transitions_total", "Retrain run transitions emitted.", ["status"])

# The record types that are evidence or run state; reviews without thumbs are training
# data only (the snapshot reads them from the store).
INPUTS = (topics.SCORES, topics.DRIFT, topics.FEEDBACK, topics.RETRAIN_STATUS)
NO_MODEL = ("a thumbs vote without its call's model: a vote is counted in its call's (app, model) stream, "
            "and producers stamp the call's identity on every Feedback (the feedback service does)")


class RetrainService:
    """`session`: the Session of a client shared with other services in one process (the
    embedded stack); without one, start() connects its own. `policies`, `launcher`,
    `dataset`: seams for tests (default: from the settings)."""

    name = "retrain-trigger"

    def __init__(self, settings: RetrainSettings, session: Session | None = None,
                 policies: policy_file.PolicyFile | None = None, launcher: Launcher | None = None,
                 dataset: DatasetSource | None = None):
        self.settings = settings
        self.session = session
        self._owns_session = session is None
        self.policies = policies
        self.launcher = launcher
        self.dataset = dataset
        # Absolute, so a job started from another working directory writes where we look.
        self._output_root = Path(settings.retrain_output_dir).resolve()
        self._dataset_root = Path(settings.retrain_dataset_dir).resolve()
        self.engine: RuleEngine | None = None
        self.store: Store | None = None
        self.keys: ApiKeyStore | None = None
        self.producer: AIOKafkaProducer | None = None
        self.worker = ConsumerWorker(settings, self.name, settings.retrain_group, INPUTS, self._handle,
                                     max_records=1000, linger_ms=100)
        self.runs: dict[uuid.UUID, Run] = {}
        self.registered: set[uuid.UUID] = set()
        self._watchdog_task: asyncio.Task | None = None
        self._lock = asyncio.Lock()  # one transition at a time: consumer, API and watchdog

    # -- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        if self.dataset is None:
            review_signing.check_secret(s.review_signing_secret)  # before anything starts
        if self.policies is None:
            self.policies = policy_file.load(s.retrain_policies)  # a bad file stops the start here
        self.engine = RuleEngine(self.policies)
        if self.engine.horizon > s.retention_days * 86400:
            log.warning("the longest policy window (%.0f s) is longer than LOOKOUT_RETENTION_DAYS=%d: evidence older "
                        "than the retention is not restored after a restart", self.engine.horizon, s.retention_days)
        if self.session is None:
            self.session = await asyncio.to_thread(Session.connect, s)
        session = self.session
        # Idempotent; also brings the service's tables to a shared client migrated earlier.
        await session.arun(migrations.apply, s.retention_days)
        # ApiKeyStore takes a raw client and its lock from Session.of(client): the same lock.
        self.keys = session.run(ApiKeyStore)
        self.store = Store(session, self.engine.horizon)
        if self.dataset is None:
            self.dataset = ClickHouseSnapshot(session, s.review_signing_secret)
        if self.launcher is None:
            self.launcher = make_launcher(s, on_exit=self._on_job_exit)
        await kafka.ensure_topics(s)
        self.producer = await kafka.start_producer(s)
        await self._restore()
        await self.worker.start(self.producer)
        self._watchdog_task = asyncio.create_task(self._watchdog(), name="retrain-watchdog")

    async def stop(self) -> None:
        """Finish the batch in hand (offsets committed), then the watchdog, the launcher,
        the producer and the client (safe after a partial start)."""
        await self.worker.stop()
        if self._watchdog_task is not None:
            self._watchdog_task.cancel()
            await asyncio.gather(self._watchdog_task, return_exceptions=True)
            self._watchdog_task = None
        if self.launcher is not None:
            await self.launcher.close()
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None
        if self.session is not None and self._owns_session:
            self.session.close()
            self.session = None

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {
            "kafka": lambda: None if self.producer is not None else "Kafka producer not started",
            "consumer": self.worker.ready,
            "watchdog": lambda: kafka.loop_problem(self._watchdog_task) if self._watchdog_task else "not started",
            "clickhouse": lambda: self.session.problem() if self.session is not None else "ClickHouse not connected",
        }

    def routers(self) -> Sequence[APIRouter]:
        return [api.build_router(self)]

    async def _restore(self) -> None:
        assert self.store is not None and self.engine is not None
        observed = await asyncio.to_thread(self.store.load_observations)
        for (app, model), obs in observed.items():
            self.engine.observe(app, model, obs)
        for run, requested_at in await asyncio.to_thread(self.store.load_runs):
            if requested_at is not None and "/" in run.rule:
                self.engine.restore(run.policy, run.rule, run.app_id, run.model, requested_at)
            if run.status not in TERMINAL:
                self.runs[run.run_id] = run
        # Evidence stored before a crash may have tripped a rule whose firing never happened.
        for app, model in list(self.engine.windows):
            for firing in self.engine.evaluate(app, model):
                await self._fire(firing)
        log.info("restored %d streams and %d open runs", len(observed), len(self.runs))

    # -- consuming -----------------------------------------------------------------------

    async def _handle(self, batch: Batch) -> None:
        """One batch: its evidence stored, the rules evaluated and their firings made, the
        run states applied; the worker commits after. Every record names its stream
        (app, model) itself, so nothing is read back from the calls."""
        assert self.engine is not None and self.store is not None
        rows: list[tuple[Stream, Observation]] = []
        statuses: list[Retrain] = []
        for decoded in batch.messages:
            ev = decoded.message
            if isinstance(ev, Score):
                rows.append(((ev.app_id, ev.model), Observation(ev.ts.timestamp(), str(ev.score_id), "score",
                                                                ev.name, ev.value, str(ev.event_id))))
            elif isinstance(ev, DriftResult):
                rows.append(((ev.app_id, ev.model), Observation(ev.ts.timestamp(), str(ev.result_id), "drift",
                                                                ev.signal, 1.0 if ev.drifted else 0.0)))
            elif isinstance(ev, Feedback):
                if ev.thumbs is None:  # a review without thumbs is training data, not rate evidence
                    continue
                if not ev.model:
                    batch.dead_letter(decoded.record, NO_MODEL)
                    continue
                # The voter makes the rules count one vote per (author, call): the latest.
                rows.append(((ev.app_id, ev.model), Observation(ev.ts.timestamp(), str(ev.feedback_id), "thumbs",
                                                                "thumbs", 1.0 if ev.thumbs == -1 else 0.0,
                                                                str(ev.event_id), ev.author)))
            elif isinstance(ev, Retrain):
                statuses.append(ev)
        await asyncio.to_thread(self.store.add_observations, rows)
        touched: dict[Stream, list[Observation]] = {}
        for stream, obs in rows:
            touched.setdefault(stream, []).append(obs)
        for (app, model), obs in touched.items():
            self.engine.observe(app, model, obs)
            for firing in self.engine.evaluate(app, model):
                await self._fire(firing)
        for ev in statuses:
            await self._on_status(ev)

    # -- runs ----------------------------------------------------------------------------

    async def _emit(self, run: Run, status: RetrainState, message: str = "", *, model_version: str | None = None,
                    evidence: dict[str, Any] | None = None) -> Retrain:
        assert self.producer is not None and self.store is not None
        ev = Retrain(run_id=run.run_id, ts=datetime.now(UTC), app_id=run.app_id, model=run.model, status=status,
                     rule=run.rule, evidence=run.evidence if evidence is None else evidence,
                     dataset_uri=run.dataset_uri or None, dataset_counts=run.dataset_counts,
                     dataset_hash=run.dataset_hash or None, model_version=model_version, message=message or None)
        await asyncio.to_thread(self.store.record, ev)
        base = topics.RETRAIN if status == "requested" else topics.RETRAIN_STATUS
        await self.producer.send_and_wait(topics.resolve(self.settings.topic_prefix, base), ev.to_bytes(),
                                          key=str(run.run_id).encode())
        run.status, run.updated = status, time.time()
        TRANSITIONS.labels(status).inc()
        log.info("run %s %s/%s: %s %s", run.run_id, run.app_id, run.model, status, message)
        return ev

    async def _fire(self, f: Firing) -> None:
        p = f.policy
        FIRINGS.labels(p.name, str(p.dry_run).lower()).inc()
        run_id = uuid7()
        evidence = {**f.evidence, "policy": p.name, "window_end": datetime.fromtimestamp(f.at, UTC).isoformat(),
                    "require_approval": p.require_approval, "dry_run": p.dry_run}
        run = Run(run_id, f.app_id, f.model, f.rule, "requested", time.time(), evidence=evidence)
        async with self._lock:
            if p.dry_run:
                await self._emit(run, "requested", "dry run: not snapshotted, not launched")
                await self._emit(run, "rejected", f"dry run of policy {p.name}")
                return
            if self.dataset is None:
                raise RuntimeError("the retrain trigger has not started: no dataset source to snapshot")
            version = await asyncio.to_thread(self.dataset.snapshot, DatasetFilters(f.app_id, f.model),
                                              self._dataset_root / str(run_id))
            run.dataset_uri, run.dataset_hash, run.dataset_counts = version.uri, version.sha256, version.counts
            self.runs[run_id] = run
            wait = " awaiting approval" if p.require_approval else ""
            await self._emit(run, "requested", f"{f.rule} fired{wait}")
            if not version.counts.get("sft"):
                await self._emit(run, "failed", "no reviewed feedback to train on (0 SFT examples)")
                return
            if not p.require_approval:
                await self._launch(run)

    def _started_launcher(self) -> Launcher:
        if self.launcher is None:
            raise RuntimeError("the retrain trigger has not started: no launcher")
        return self.launcher

    def _policy(self, run: Run) -> policy_file.Policy | None:
        assert self.policies is not None
        return next((p for p in self.policies.policies if p.name == run.policy), None)

    async def _launch(self, run: Run) -> None:
        assert self.launcher is not None
        policy = self._policy(run)
        s = self.settings
        req = LaunchRequest(
            run_id=run.run_id, app_id=run.app_id, model=run.model, rule=run.rule, dataset_uri=run.dataset_uri,
            dataset_hash=run.dataset_hash, base_model=(policy and policy.base_model) or s.retrain_base_model,
            output_dir=str(self._output_root / str(run.run_id)), timeout_s=s.retrain_run_timeout_s,
            job_args=[*shlex.split(s.retrain_job_args), *(policy.job_args if policy else [])],
        )
        try:
            where = await self.launcher.launch(req)
        except Exception as exc:
            log.exception("launch of run %s failed", run.run_id)
            await self._emit(run, "failed", f"launch failed: {type(exc).__name__}: {exc}")
            return
        await self._emit(run, "launched", where)

    async def decide(self, run_id: uuid.UUID, approve: bool, who: str) -> Run:
        """An admin's approval or rejection of a run that waits for one."""
        async with self._lock:
            run = self.runs.get(run_id)
            if run is None:
                raise RunError(404, f"no open retrain run {run_id}")
            if run.status != "requested":
                raise RunError(409, f"run {run_id} is {run.status}; only a requested run can be approved or rejected")
            await self._apply_decision(run, approve, f"{'approved' if approve else 'rejected'} by {who}")
            return run

    async def _apply_decision(self, run: Run, approve: bool, message: str, recorded: Retrain | None = None) -> None:
        """The one path of an approval or rejection, whether it came through this service's API
        (`recorded` None: the decision is emitted here) or as a record on llm.retrain.status
        (the reviewer UI's admin decision, produced by the feedback service: stored here so a
        restart sees it, not produced again). Caller holds self._lock."""
        status: RetrainState = "approved" if approve else "rejected"
        if recorded is None:
            await self._emit(run, status, message)
        else:
            assert self.store is not None
            await asyncio.to_thread(self.store.record, recorded)
            run.status, run.updated = status, time.time()
            TRANSITIONS.labels(status).inc()
            log.info("run %s %s/%s: %s (from %s)", run.run_id, run.app_id, run.model, status, topics.RETRAIN_STATUS)
        if approve:
            await self._launch(run)
        else:
            self.runs.pop(run.run_id, None)

    async def _on_status(self, ev: Retrain) -> None:
        async with self._lock:
            run = self.runs.get(ev.run_id)
            if run is None:
                return  # finished already, or not ours
            if ev.status in ("approved", "rejected"):
                # A decision made elsewhere (the reviewer UI) for a run that waits for one. Our own
                # decisions read back find the run past "requested" already. A run restored as
                # "approved" (the decision stored, the launch not yet made) launches now.
                if run.status == "requested" or (run.status == "approved" and ev.status == "approved"):
                    await self._apply_decision(run, ev.status == "approved", ev.message or ev.status, recorded=ev)
                return
            if rank(ev.status) < rank(run.status):
                return  # our own earlier transition read back after the job's later one
            run.status, run.updated = ev.status, time.time()
            if ev.status == "succeeded" and ev.model_version and ev.run_id not in self.registered:
                artifact = str((ev.evidence.get("metrics") or {}).get("output", ""))
                assert self.session is not None
                await asyncio.to_thread(
                    register_candidate, self.session, app_id=run.app_id, model=run.model,
                    model_version=ev.model_version, run_id=run.run_id, dataset_hash=run.dataset_hash,
                    rule=run.rule, artifact=artifact)
                self.registered.add(ev.run_id)
            if ev.status in TERMINAL:
                self.runs.pop(ev.run_id, None)

    async def _on_job_exit(self, run_id: uuid.UUID, code: int, tail: str) -> None:
        if code == 0:
            return  # its succeeded event is on the way; the watchdog covers one that never comes
        async with self._lock:
            run = self.runs.get(run_id)
            if run is None or run.status in TERMINAL:
                return
            await self._emit(run, "failed", f"job exited with status {code}: {tail[-1000:]}")
            self.runs.pop(run_id, None)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retrain_watchdog_s)
            try:
                await self.check_timeouts()
            except Exception:
                log.exception("timeout check failed")

    async def check_timeouts(self, now: float | None = None) -> list[uuid.UUID]:
        now = now or time.time()
        late = []
        async with self._lock:
            for run in list(self.runs.values()):
                if run.status in ("launched", "running") and now - run.updated > self.settings.retrain_run_timeout_s:
                    await self._emit(run, "timed_out",
                                     f"no report for {self.settings.retrain_run_timeout_s:.0f}s; job cancelled")
                    self.runs.pop(run.run_id, None)
                    late.append(run.run_id)
        for run_id in late:
            try:
                await self._started_launcher().cancel(run_id)
            except Exception:
                log.exception("could not cancel run %s", run_id)
        return late
