"""The drift service: llm.events in, DriftResult records out on llm.drift, and its HTTP
API (api.py), in the one service shape (lookout.core.service):

    run_service(DriftService, DriftSettings)            # python -m lookout.drift
    service_app(DriftService(settings, session))        # tests, the embedded stack

One `Session` owns the ClickHouse client: the consumer's writes, the API's reads, the
report builder and the key store take turns under its lock. The consumer is a
ConsumerWorker on llm.events (group LOOKOUT_DRIFT_GROUP): unreadable records are
dead-lettered on llm.dlq with the error, and the rest of the batch goes on.

One batch of records goes through: decode (by the worker) → per-stream dedup (by Kafka offset and event id)
→ sampling by consumer lag (every event embedded while the lag is under its budget) →
tokens for every event, embeddings for the embedded ones → sequential evidence on every
signal and windows (reported when due or when evidence crosses) → results produced and
acknowledged → samples, evidence and window state stored → offsets committed (by
CommitAfterLoop, only after all of that returned). A crash anywhere replays the batch:
evidence, windows and result ids depend only on the events and their order, never on
batch boundaries or the clock, so the replay yields the same records, and events already
admitted are skipped.

Window state lives in ClickHouse (drift_stream_state naming events in drift_embeddings),
not in faust tables. faust-streaming 0.15.3 does import and start with aiokafka 0.14, but
(1) its tables are changelog topics that it commits on its own schedule, not after our
results are acked, which is the contract every Lookout consumer keeps; (2) a quick worker
against Tansu (the embedded broker) stalled in start-up; (3) the embeddings must be stored
in ClickHouse for drill-down anyway, so a window is a list of event ids into that table and
a restart reloads it, on Apache Kafka and Tansu alike, with the same ConsumerWorker as the
other services.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.partitioner import DefaultPartitioner
from fastapi import APIRouter

from lookout.core import kafka, migrations, topics
from lookout.core.auth import ApiKeyStore
from lookout.core.consumer import ConsumerWorker
from lookout.core.dead_letters import Batch
from lookout.core.events import DriftResult, LlmCall
from lookout.core.ops import ReadinessCheck
from lookout.core.session import Session

from . import metrics, results
from .detector import Detector, DetectorConfig
from .encoder import Encoder, build_encoder
from .evidence import EvidenceConfig, StreamEvidence
from .features import FeatureExtractor, Sample, texts_of
from .identity import IdentityWatch
from .report import ReportCache
from .sampling import LagSampler, uniform_subset
from .settings import DriftSettings
from .store import DriftStore, ResetRequest
from .tokenizer import Tokenizer
from .windows import Policy, StreamKey, StreamState, Window, WindowConfig

log = logging.getLogger(__name__)


def window_config(s: DriftSettings) -> WindowConfig:
    return WindowConfig(
        policy=s.drift_reference_policy, reference_size=s.drift_reference_size, window_size=s.drift_window_size,
        window_minutes=s.drift_window_minutes, test_every_events=s.drift_test_every_events,
        test_every_seconds=s.drift_test_every_seconds, min_window_events=s.drift_min_window_events,
    )


def evidence_config(s: DriftSettings) -> EvidenceConfig:
    return EvidenceConfig(alpha=s.drift_alpha, horizon=s.drift_horizon_events, examples=s.drift_examples,
                          seed=s.drift_seed)


def detector_config(s: DriftSettings) -> DetectorConfig:
    return DetectorConfig(
        embedding_method=s.drift_embedding_method, alpha=s.drift_alpha, permutations=s.drift_permutations,
        projection=s.drift_projection, projection_dims=s.drift_projection_dims, length_method=s.drift_length_method,
        wasserstein_threshold=s.drift_wasserstein_threshold, psi_threshold=s.drift_psi_threshold,
        token_method=s.drift_token_method, token_bins=s.drift_token_bins, examples=s.drift_examples,
        seed=s.drift_seed,
    )


# --- state <-> JSON (ids only; samples come back from drift_embeddings) ---------------
def dump_state(st: StreamState) -> dict[str, Any]:
    return {
        "policy": st.policy, "generation": st.generation, "reference_id": st.reference_id,
        "reference": [str(s.event_id) for s in st.reference], "reference_source": st.reference_source,
        "collecting": st.collecting, "current": [str(s.event_id) for s in st.current], "index": st.index,
        "new_since_test": st.new_since_test, "seen_since_test": st.seen_since_test,
        "embedded_since_test": st.embedded_since_test,
        "last_test_ts": st.last_test_ts.isoformat() if st.last_test_ts else None,
        "last_reset": st.last_reset, "peaks": st.peaks, "offsets": {str(k): v for k, v in st.offsets.items()},
        # The accumulated evidence: score pools, bets and statistics (a few kB); the score
        # functions are rebuilt from the reference.
        "evidence": st.evidence.dump() if st.evidence is not None else None,
    }


@dataclass
class _Batch:
    fresh: list[tuple[StreamKey, LlmCall]] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset) per fresh call
    touched: set[StreamKey] = field(default_factory=set)
    newest_ms: int = 0
    oldest_ms: int = 0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: DriftService):
        self.service = service

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        # Another worker may have moved our streams on while we did not own them.
        self.service._reload = True


class DriftService:
    """`session`: the Session of a client shared with other parts of one process; without
    one, start() connects its own (and stop() closes it). `encoder`, `tokenizer`: loaded
    once and handed to several services (tests); else start() loads them."""

    name = "drift"

    def __init__(
        self,
        settings: DriftSettings,
        session: Session | None = None,
        encoder: Encoder | None = None,
        tokenizer: Tokenizer | None = None,
    ):
        self.settings = settings
        self.session = session
        self._owns_session = False
        self._encoder = encoder
        self.tokenizer = tokenizer
        self._store: DriftStore | None = None
        self.keys: ApiKeyStore | None = None  # from start(), when LOOKOUT_DRIFT_AUTH is on
        self.window_config = window_config(settings)
        self.evidence_config = evidence_config(settings)
        self.sampler = LagSampler(settings.drift_lag_budget_s, settings.drift_encoder_texts_per_s)
        self.states: dict[StreamKey, StreamState] = {}
        self.events_topic = topics.resolve(settings.topic_prefix, topics.EVENTS)
        self.drift_topic = topics.resolve(settings.topic_prefix, topics.DRIFT)
        self._producer: AIOKafkaProducer | None = None
        self.worker = ConsumerWorker(
            settings, self.name, settings.drift_group, [topics.EVENTS], self.handle,
            max_records=settings.drift_batch_events, linger_ms=settings.drift_batch_ms, grace_s=60,
            listener=_Rebalance(self),
        )
        self.reports = ReportCache()  # built Evidently pages (GET /v1/drift/{id}/report)
        self._mutex = asyncio.Lock()
        self._last_reset_poll = 0.0
        self._reset_version = 0
        self._reload = False
        self.produced = 0
        self._per_app: Counter[str] = Counter()  # streams tracked per app
        self.over_limit: Counter[str] = Counter()  # events skipped per app, past a stream cap
        self._warned: set[str] = set()
        self.identity: IdentityWatch | None = None

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        if self.session is None:
            self.session = await asyncio.to_thread(Session.connect, s)
            self._owns_session = True
        # Drift's tables are core migration 0005. Applied here also when a session is handed
        # in (idempotent, a no-op once recorded): the service must not start on a database
        # without its tables.
        await self.session.arun(migrations.apply, s.retention_days)
        self._store = DriftStore(self.session)
        if s.drift_auth:
            # ApiKeyStore takes a raw client and its lock from Session.of(client): one lock.
            self.keys = self.session.run(ApiKeyStore)
        tokenizer = self.tokenizer or await asyncio.to_thread(Tokenizer)
        self.tokenizer = tokenizer
        # The windows' and evidence's matrix products are small: on a few shared cores
        # OpenBLAS's thread hand-off costs more than the product (15 ms against 0.3 ms
        # measured here), and the encoder wants the cores anyway.
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
        if self._encoder is None:
            self._encoder = await asyncio.to_thread(self._load_encoder)
        self.features = FeatureExtractor(tokenizer, s.drift_max_text_chars, s.drift_keep_token_ids,
                                         s.drift_refusal_pattern)
        self.detector = Detector(detector_config(s), token_name=tokenizer.token)
        await asyncio.to_thread(self._restore)
        await kafka.ensure_topics(s, [topics.DRIFT])  # the worker makes llm.events and llm.dlq
        self._producer = await kafka.start_producer(s)
        await self.worker.start(self._producer)
        if s.drift_identity_poll_s > 0:
            self.identity = IdentityWatch(self.session, self._producer, s.topic_prefix,
                                          poll_s=s.drift_identity_poll_s,
                                          lookback=timedelta(hours=s.drift_identity_lookback_h))
            self.identity.start()

    def _load_encoder(self) -> Encoder:
        s = self.settings
        try:
            # build_encoder hands each backend the options it takes (torch none, model2vec its cache).
            return build_encoder(s.drift_encoder_backend, s.drift_encoder_model, s.drift_encoder_device,
                                 s.drift_encoder_batch_size, cache_dir=s.drift_onnx_dir,
                                 threads=s.drift_encoder_threads, spinning=s.drift_encoder_spinning)
        except Exception:
            if s.drift_encoder_backend == "torch":
                raise
            # ONNX Runtime missing or the export failed: torch is the fallback, not an outage.
            log.exception("encoder backend %s failed; falling back to torch", s.drift_encoder_backend)
            return build_encoder("torch", s.drift_encoder_model, s.drift_encoder_device, s.drift_encoder_batch_size)

    async def stop(self) -> None:
        """Finish the batch in hand (results acked, state stored, offsets committed), then
        close the producer and the session this service opened. Safe after a partial start."""
        if self.identity is not None:
            await self.identity.stop()
            self.identity = None
        await self.worker.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self.session is not None and self._owns_session:
            self.session.close()
            self.session, self._owns_session = None, False

    @property
    def store(self) -> DriftStore:
        """The ClickHouse side (after start(); with a session handed in, at once)."""
        if self._store is None:
            if self.session is None:
                raise RuntimeError("the drift service has not started: no ClickHouse session")
            self._store = DriftStore(self.session)
        return self._store

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            raise RuntimeError("the drift service has not started: no encoder loaded")
        return self._encoder

    # --- the service shape -----------------------------------------------------------
    def routers(self) -> Sequence[APIRouter]:
        from .api import build_router

        return [build_router(self)]

    def checks(self) -> Mapping[str, ReadinessCheck]:
        return {"consumer": self.worker.ready, "clickhouse": self._clickhouse, "model_identity": self._identity}

    def _identity(self) -> str | None:
        return self.identity.problem() if self.identity is not None else None

    def _clickhouse(self) -> str | None:
        return self.session.problem() if self.session is not None else "ClickHouse not connected"

    @property
    def stats(self) -> kafka.ConsumerStats:
        return self.worker.stats

    # --- the batch -------------------------------------------------------------------
    async def handle(self, records: Batch) -> None:
        async with self._mutex:
            if self._reload:
                self._reload = False
                await asyncio.to_thread(self._restore)
            await self._poll_resets()
            batch = self._admit_candidates(records)
            try:
                await self._process(batch)
            except BaseException:
                # The loop will retry this batch from its offsets; put memory back to the last
                # stored state first, or the retry would skip the events as already seen.
                await asyncio.to_thread(self._restore, batch.touched)
                raise

    def _key(self, call: LlmCall) -> StreamKey:
        pv = (call.prompt_version or "") if self.settings.drift_per_prompt_version else ""
        return StreamKey(call.app_id, call.model, pv)

    def _state(self, key: StreamKey) -> StreamState | None:
        state = self.states.get(key)
        if state is None:
            app = key.app_id
            cap = self._cap_reached(app)
            if cap:
                # Per app, so one app sending random model names fills only its own share.
                self.over_limit[app] += 1
                metrics.OVER_STREAM_LIMIT.labels(app, cap).inc()
                if app not in self._warned:
                    self._warned.add(app)
                    log.warning("app %s: stream cap (%s) reached; events of its new streams are skipped", app, cap)
                return None
            state = self.states[key] = StreamState(key, self.window_config, policy=self._default_policy(),
                                                   evidence_config=self.evidence_config)
            self._per_app[app] += 1
            metrics.STREAMS.set(len(self.states))
        return state

    def _cap_reached(self, app_id: str) -> str | None:
        if self._per_app[app_id] >= self.settings.drift_max_streams_per_app:
            return "app"
        if len(self.states) >= self.settings.drift_max_streams:
            return "total"
        return None

    def _default_policy(self) -> Policy:
        # 'pinned' as the default means: collect the first N until a set is pinned by API.
        policy = self.settings.drift_reference_policy
        return "first_n" if policy == "pinned" else policy

    def _admit_candidates(self, records: Batch) -> _Batch:
        """The batch's calls that are new to their streams (unreadable records are the
        worker's: dead-lettered before this)."""
        batch = _Batch()
        seen: set[uuid.UUID] = set()
        known: dict[StreamKey, set[uuid.UUID]] = {}
        for decoded in records.messages:
            record, call = decoded.record, decoded.message
            if not isinstance(call, LlmCall):
                continue
            key = self._key(call)
            state = self._state(key)
            if state is None:
                metrics.EVENTS.labels("over_stream_limit").inc()
                continue
            ids = known.get(key)
            if ids is None:
                ids = known[key] = state.ids()
            if (record.offset <= state.offsets.get(record.partition, -1) or call.event_id in seen
                    or call.event_id in ids):
                metrics.EVENTS.labels("duplicate").inc()
                continue
            seen.add(call.event_id)
            batch.fresh.append((key, call))
            batch.positions.append((record.partition, record.offset))
            batch.touched.add(key)
            ts = int(record.timestamp or 0)
            batch.newest_ms = max(batch.newest_ms, ts)
            batch.oldest_ms = min(batch.oldest_ms, ts) if batch.oldest_ms else ts
        return batch

    async def _process(self, batch: _Batch) -> None:
        if not batch.fresh:
            return
        calls = [c for _, c in batch.fresh]
        # Consumer lag: how old the newest event of this batch is (its Kafka timestamp).
        lag_s = max(0.0, time.time() - batch.newest_ms / 1000) if batch.newest_ms else 0.0
        span_s = max(0.0, (batch.newest_ms - batch.oldest_ms) / 1000)
        texts_per_event = sum(bool(c.prompt_text().strip()) + bool((c.output or "").strip())
                              for c in calls) / len(calls)
        measured = getattr(getattr(self.encoder, "throughput", None), "texts_per_s", 0.0)
        embed = self.sampler.plan(len(calls), lag_s, span_s, texts_per_event, measured)
        keep = set(uniform_subset([c.event_id for c in calls], embed, self.settings.drift_seed))
        # A reference being collected is embedded whole, sampled or not: it is small, and
        # the embedding signals are only as good as their reference.
        wanted: dict[StreamKey, int] = {}
        for i, (key, _) in enumerate(batch.fresh):
            state = self.states[key]
            if state.collecting:
                wanted.setdefault(key, self.window_config.reference_size - len(state.reference))
                if wanted[key] > 0:
                    keep.add(i)
                    wanted[key] -= 1
        metrics.CONSUMER_LAG.set(lag_s)
        metrics.SAMPLE_RATE.set(len(keep) / len(calls))
        metrics.EVENTS.labels("sampled").inc(len(keep))
        metrics.EVENTS.labels("unsampled").inc(len(calls) - len(keep))
        samples = await asyncio.to_thread(self.featurize, calls, [i in keep for i in range(len(calls))])
        by_stream: dict[StreamKey, list[Sample]] = {}
        for (key, _), (partition, offset), sample in zip(batch.fresh, batch.positions, samples, strict=True):
            by_stream.setdefault(key, []).append(sample)
            state = self.states[key]
            state.offsets[partition] = max(offset, state.offsets.get(partition, -1))
        windows = await asyncio.to_thread(self._admit, by_stream)
        drift_results = await asyncio.to_thread(self._test, windows) if windows else []
        await self._produce(drift_results)
        await asyncio.to_thread(self._persist, [(k, s) for (k, _), s in zip(batch.fresh, samples, strict=True)],
                                batch.touched, windows)

    def _admit(self, by_stream: dict[StreamKey, list[Sample]]) -> list[Window]:
        windows: list[Window] = []
        for key, samples in by_stream.items():
            started = time.perf_counter()
            windows.extend(self.states[key].admit_many(samples))
            metrics.EVIDENCE_SECONDS.observe(time.perf_counter() - started)
        return windows

    def featurize(self, calls: Sequence[LlmCall], embed: Sequence[bool] | None = None) -> list[Sample]:
        """Samples of every call: lengths, tokens and the empty/refused flag always;
        embeddings for the calls `embed` marks (all when None). Blocking (the encoder):
        run it in a thread. The API makes an uploaded reference's samples with it."""
        max_chars = self.settings.drift_max_text_chars
        texts = [texts_of(c, max_chars) for c in calls]
        # One encoder call for the prompts and responses of every stream in the batch.
        flat: list[str] = []
        slots: list[tuple[int, int]] = []  # (event index, 0 prompt / 1 response)
        for i, t in enumerate(texts):
            if embed is not None and not embed[i]:
                continue
            for j, text in enumerate((t.prompt, t.response)):
                if text.strip():
                    flat.append(text)
                    slots.append((i, j))
        per_event: list[list] = [[None, None] for _ in calls]
        if flat:
            started = time.perf_counter()
            vectors = self.encoder.encode(flat)
            metrics.ENCODE_SECONDS.observe(time.perf_counter() - started)
            metrics.TEXTS_EMBEDDED.inc(len(flat))
            rate = getattr(getattr(self.encoder, "throughput", None), "texts_per_s", 0.0)
            if rate:
                metrics.ENCODER_RATE.set(rate)
            for (i, j), vec in zip(slots, vectors, strict=True):
                per_event[i][j] = vec
        return self.features.samples(calls, [p for p, _ in per_event], [r for _, r in per_event])

    def _test(self, windows: list[Window]) -> list[DriftResult]:
        out = []
        for window in windows:
            started = time.perf_counter()
            findings = self.detector.run(window)
            metrics.TEST_SECONDS.observe(time.perf_counter() - started)
            metrics.WINDOWS.inc()
            out.extend(results.build(window, finding, self.encoder.name) for finding in findings)
        return out

    async def _produce(self, drift_results: list[DriftResult]) -> None:
        if not drift_results:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("the drift service has not started: no producer")
        futures = [
            await producer.send(self.drift_topic, r.to_bytes(), key=f"{r.app_id}/{r.model}".encode())
            for r in drift_results
        ]
        # Acked by the broker before the batch's offsets can be committed.
        await asyncio.gather(*futures)
        for r in drift_results:
            metrics.RESULTS.labels(r.signal, str(r.drifted).lower()).inc()
        self.produced += len(drift_results)

    def _persist(
        self, samples: list[tuple[StreamKey, Sample]], touched: set[StreamKey], windows: Sequence[Window] = ()
    ) -> None:
        self.store.save_samples(samples, self.encoder.name)
        # Before the state: a state past a window implies its events are recorded (a crash
        # in between replays the batch, and the window writes the same row again).
        self.store.save_windows(windows)
        version = time.time_ns()
        self.store.save_states([(k, version, dump_state(self.states[k])) for k in touched if k in self.states])

    # --- restore ---------------------------------------------------------------------
    def _owned(self, key: StreamKey) -> bool:
        consumer = self.worker.consumer
        if consumer is None:
            return True
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == self.events_topic}
        partitions = consumer.partitions_for_topic(self.events_topic)
        if not assigned or not partitions:
            return True
        all_parts = sorted(partitions)
        return DefaultPartitioner()(key.kafka_key, all_parts, all_parts) in assigned

    def _restore(self, only: set[StreamKey] | None = None) -> None:
        stored = self.store.load_states()
        if only is not None:
            for key in only:
                self.states.pop(key, None)
        else:
            self.states.clear()
        self._per_app = Counter(k.app_id for k in self.states)
        past_cap = 0
        for key, data in stored:
            if (only is not None and key not in only) or not self._owned(key):
                continue
            if self._cap_reached(key.app_id):  # stored under a larger cap, or before caps were per app
                past_cap += 1
                continue
            self.states[key] = self._revive(key, data)
            self._per_app[key.app_id] += 1
            self._reset_version = max(self._reset_version, self.states[key].last_reset)
        if past_cap:
            log.warning("%d stored streams past the stream caps were not restored", past_cap)
        metrics.STREAMS.set(len(self.states))

    def _revive(self, key: StreamKey, data: dict[str, Any]) -> StreamState:
        st = StreamState(key, self.window_config, policy=data["policy"], generation=data["generation"],
                         reference_id=data["reference_id"], evidence_config=self.evidence_config)
        source = data.get("reference_source", "stream")
        ids = [uuid.UUID(i) for i in data["reference"]] + [uuid.UUID(i) for i in data["current"]]
        found = self.store.load_samples(key, ids)
        if source.startswith("upload:"):
            st.reference = self.store.load_upload(key, source.split(":", 1)[1])
        else:
            st.reference = [found[uuid.UUID(i)] for i in data["reference"] if uuid.UUID(i) in found]
        st.reference_source = source
        st.current.extend(found[uuid.UUID(i)] for i in data["current"] if uuid.UUID(i) in found)
        st.collecting = data["collecting"]
        st.index = data["index"]
        st.new_since_test = data["new_since_test"]
        st.seen_since_test = data["seen_since_test"]
        st.embedded_since_test = data.get("embedded_since_test", 0)
        st.last_test_ts = datetime.fromisoformat(data["last_test_ts"]) if data["last_test_ts"] else None
        st.last_reset = data.get("last_reset", 0)
        st.peaks = {k: float(v) for k, v in data.get("peaks", {}).items()}
        st.offsets = {int(k): int(v) for k, v in data.get("offsets", {}).items()}
        if not st.collecting:
            # Score functions from the reference; pools, bets and statistics as stored. A
            # state from before sequential evidence starts its evidence now.
            stored = data.get("evidence")
            st.evidence = (StreamEvidence.load(self.evidence_config, st.reference, stored) if stored
                           else StreamEvidence(self.evidence_config, st.reference))
        missing = len(ids) - len(found)
        if missing:
            log.warning("stream %s: %d window events missing from drift_embeddings (TTL?)", key, missing)
        return st

    # --- reference resets ------------------------------------------------------------
    async def request_reset(
        self, key: StreamKey, policy: Policy, ts_from: datetime | None = None, ts_to: datetime | None = None,
        samples: list[Sample] | None = None,
    ) -> ResetRequest:
        """Record a reset (any replica may receive the API call) and apply it here if this
        worker owns the stream. An uploaded set is stored first, under its own id."""
        version = time.time_ns()
        upload = ""
        if samples is not None:
            upload = f"upload-{version}"
            await asyncio.to_thread(self.store.save_samples, [(key, s) for s in samples], self.encoder.name,
                                    "upload", upload)
        request = ResetRequest(version, key, policy, ts_from, ts_to, upload)
        await asyncio.to_thread(self.store.add_reset, request)
        async with self._mutex:
            await self._poll_resets(force=True)
        return request

    async def _poll_resets(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_reset_poll < self.settings.drift_reset_poll_s:
            return
        self._last_reset_poll = now
        requests = await asyncio.to_thread(self.store.resets_since, self._reset_version)
        changed = set()
        for req in requests:
            self._reset_version = max(self._reset_version, req.version)
            if not self._owned(req.key):
                continue
            state = self._state(req.key)
            if state is None or state.last_reset >= req.version:
                continue
            await asyncio.to_thread(self._apply_reset, state, req)
            changed.add(req.key)
        if changed:
            await asyncio.to_thread(self._persist, [], changed)

    def _apply_reset(self, state: StreamState, req: ResetRequest) -> None:
        size = self.settings.drift_reference_size
        if req.upload_reference:
            state.reset("pinned", self.store.load_upload(req.key, req.upload_reference), req.version)
            state.reference_source = f"upload:{req.upload_reference}"
        elif req.policy == "pinned" and req.ts_from and req.ts_to:
            state.reset("pinned", self.store.load_range(req.key, req.ts_from, req.ts_to, size), req.version)
            state.reference_source = "stream"
        else:
            state.reset(req.policy if req.policy != "pinned" else "first_n", None, req.version)
            state.reference_source = "stream"
        log.info("stream %s: reference reset to %s (%s, %d events)", req.key, state.reference_id, state.policy,
                 len(state.reference))

    def stream_summaries(self) -> list[dict[str, Any]]:
        return [
            {"app_id": k.app_id, "model": k.model, "prompt_version": k.prompt_version or None,
             "policy": s.policy, "reference_id": s.reference_id, "reference_size": len(s.reference),
             "collecting_reference": s.collecting, "current_size": len(s.current), "windows_reported": s.index,
             "evidence": _evidence_summary(s), "updated": datetime.now(UTC).isoformat()}
            for k, s in sorted(self.states.items(), key=lambda kv: str(kv[0]))
        ]


def _evidence_summary(state: StreamState) -> dict[str, Any]:
    """Per signal: log10 of its evidence now, the threshold, and whether it is at or over."""
    if state.evidence is None:
        return {}
    out = {}
    for signal in state.evidence.signals:
        st = state.evidence.current(signal)
        if st is None:
            continue
        log10 = st.log_sr / math.log(10) if math.isfinite(st.log_sr) else None
        out[signal] = {"log10": None if log10 is None else round(log10, 3),
                       "log10_threshold": round(st.log_threshold / math.log(10), 3),
                       "p_value": st.p_value, "over_threshold": st.log_sr >= st.log_threshold,
                       "observed": st.observed}
    return out
