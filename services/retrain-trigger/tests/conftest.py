"""A retrain-trigger harness on a real broker and chdb: ingest + sink (IngestStack) in a
background loop, the RetrainService in the same loop (started and served as run_service
does: a Lifecycle, service_app), traffic produced to the real topics as the producers
make it (votes carry their call's identity, as the feedback service stamps it)."""

from __future__ import annotations

import asyncio
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn

from lookout.core import kafka, review_signing, topics
from lookout.core.events import Feedback, LlmCall, Message, Score
from lookout.core.ids import uuid7
from lookout.core.serving import Lifecycle, service_app
from lookout.retrain_trigger.service import RetrainService
from lookout.retrain_trigger.settings import RetrainSettings
from lookout.testing.brokers import free_port
from lookout.testing.stack import IngestStack, ingest_settings_for

SIGNING_SECRET = "review-signing-secret-0123"
QA = [("What is the capital of France?", "Lyon.", "Paris is the capital of France."),
      ("How many legs does a spider have?", "Six.", "A spider has eight legs."),
      ("Who wrote Hamlet?", "Dickens.", "William Shakespeare wrote Hamlet.")]


def identity(call: LlmCall) -> dict:
    """The call's identity a vote carries (lookout.feedback.store.identity)."""
    return {"model": call.model, "model_version": call.model_version, "environment": call.environment,
            "call_ts": call.ts}


@pytest.fixture(scope="session")
def tiny_base_model(tmp_path_factory) -> Path:
    from lookout.finetune.tiny import build_model

    texts = [" ".join(x) for x in QA] * 4
    return build_model(tmp_path_factory.mktemp("tiny") / "base", texts)


class Harness:
    def __init__(self, stack: IngestStack, tmp: Path, base_model: Path):
        self.stack = stack
        self.tmp = tmp
        self.base_model = base_model
        self.producer = stack._run(kafka.start_producer(stack.settings))
        self.services: dict[RetrainService, Lifecycle] = {}
        self.servers: list[uvicorn.Server] = []
        self.t0 = datetime.now(UTC) - timedelta(minutes=30)

    # -- the service ---------------------------------------------------------------------
    def settings(self, policy_yaml: str, **extra) -> RetrainSettings:
        path = self.tmp / f"policies-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(textwrap.dedent(policy_yaml))
        common = self.stack.settings.model_dump(include=set(RetrainSettings.model_fields) - {"http_port", "http_host"})
        values = dict(common, retrain_policies=str(path), retrain_dataset_dir=str(self.tmp / "datasets"),
                      retrain_output_dir=str(self.tmp / "runs"), retrain_base_model=str(self.base_model),
                      retrain_job_args="--max-steps 3 --batch-size 4 --device cpu", retrain_watchdog_s=0.5,
                      review_signing_secret=SIGNING_SECRET)
        values.update(extra)
        return RetrainSettings(**values)

    def start(self, settings: RetrainSettings) -> RetrainService:
        service = RetrainService(settings)  # its own Session, like a process
        life = Lifecycle([service])
        self.stack._run(life.start())
        self.services[service] = life
        return service

    def stop(self, service: RetrainService) -> None:
        self.stack._run(self.services.pop(service).stop())

    def serve(self, service: RetrainService) -> str:
        port = free_port()
        app = service_app(service, lifecycle=self.services[service])
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        asyncio.run_coroutine_threadsafe(server.serve(), self.stack._loop)
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.servers.append(server)
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        for server in self.servers:
            server.should_exit = True
        for service in list(self.services):
            self.stop(service)
        self.stack._run(self.producer.stop())

    # -- traffic -------------------------------------------------------------------------
    def produce(self, base: str, events: list) -> None:
        topic = topics.resolve(self.stack.settings.topic_prefix, base)

        async def send():
            for ev in events:
                await self.producer.send(topic, ev.to_bytes(), key=ev.app_id.encode())
            await self.producer.flush()

        self.stack._run(send())

    def calls(self, n: int, app: str = "shop", model: str = "m1", version: str = "v1") -> list[LlmCall]:
        before = self.stack.count_calls(app)
        out = []
        for i in range(n):
            q, bad, _ = QA[i % len(QA)]
            out.append(LlmCall(event_id=uuid7(), ts=self.t0 + timedelta(seconds=i), app_id=app, model=model,
                               model_version=version, input=[Message(role="user", content=q)], output=bad))
        self.produce(topics.EVENTS, out)
        assert self.stack.wait_for_calls(app, before + n, timeout=60) >= before + n
        return out

    def reviews(self, calls: list[LlmCall]) -> None:
        """Reviewer corrections, waited for until stored: the snapshot reads them from the store."""
        fixes = {q: good for q, _, good in QA}
        sql = "SELECT count() FROM feedback WHERE source = 'reviewer' AND app_id = {a:String}"
        before = self.stack.client.query(sql, parameters={"a": calls[0].app_id}).result_rows[0][0]
        self._produce_reviews(calls, fixes)
        assert self.stack.wait_for(sql, before + len(calls), a=calls[0].app_id) == before + len(calls)

    def _produce_reviews(self, calls: list[LlmCall], fixes: dict[str, str]) -> None:
        """Reviews as the feedback service produces them: signed with the shared secret."""
        self.produce(topics.FEEDBACK, [review_signing.signed(SIGNING_SECRET, Feedback(
            feedback_id=uuid7(), event_id=c.event_id, ts=c.ts + timedelta(seconds=1), app_id=c.app_id,
            source="reviewer", author="rev", rating=2, corrected_output=fixes[c.input[0].content])) for c in calls])

    def thumbs(self, calls: list[LlmCall], down: list[bool], at: float = 60.0) -> None:
        """End-user votes as the feedback service produces them: with their call's identity."""
        self.produce(topics.FEEDBACK, [
            Feedback(feedback_id=uuid7(), event_id=c.event_id, ts=self.t0 + timedelta(seconds=at + i),
                     app_id=c.app_id, source="end_user", author="u", thumbs=-1 if d else 1, **identity(c))
            for i, (c, d) in enumerate(zip(calls, down, strict=True))])

    def judge(self, calls: list[LlmCall], value: float, name: str = "judge.relevance") -> None:
        self.produce(topics.SCORES, [
            Score(score_id=uuid7(), event_id=c.event_id, ts=c.ts + timedelta(seconds=2), app_id=c.app_id,
                  model=c.model, name=name, value=value, source="llm_judge", evaluator="test") for c in calls])

    # -- reading back --------------------------------------------------------------------
    def statuses(self, app: str = "shop") -> dict[uuid.UUID, list[str]]:
        rows = self.stack.client.query(
            "SELECT run_id, status FROM retrain_runs FINAL WHERE app_id = {a:String} ORDER BY run_id, ts",
            parameters={"a": app}).result_rows
        out: dict[uuid.UUID, list[str]] = {}
        for run_id, status in rows:
            if status not in out.setdefault(run_id, []):
                out[run_id].append(status)
        return out

    def wait_status(self, status: str, app: str = "shop", timeout: float = 90) -> dict[uuid.UUID, list[str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.statuses(app)
            if any(status in s for s in runs.values()):
                return runs
            time.sleep(0.25)
        raise AssertionError(f"no run reached {status} in {timeout}s: {self.statuses(app)}")


@pytest.fixture
def tansu_stack(tansu_broker, settings_for):
    stack = IngestStack(ingest_settings_for(settings_for(tansu_broker))).start()
    yield stack
    stack.close()


@pytest.fixture
def harness(tansu_stack, tmp_path, tiny_base_model):
    h = Harness(tansu_stack, tmp_path, tiny_base_model)
    yield h
    h.close()


@pytest.fixture
def harness_any(ingest_stack, tmp_path, tiny_base_model):
    """The harness on both brokers (Apache Kafka and Tansu)."""
    h = Harness(ingest_stack, tmp_path, tiny_base_model)
    yield h
    h.close()


def serve_feedback(harness, **overrides):
    """A feedback service (no task builder) on the harness's broker, store and loop, served
    over HTTP; yields its base URL. `overrides` are FeedbackSettings fields."""
    from lookout.feedback.app import FeedbackService  # only the tests that serve it load it
    from lookout.feedback.settings import FeedbackSettings

    s = harness.stack.settings
    settings = FeedbackSettings(**s.model_dump(include=set(FeedbackSettings.model_fields) - {"http_port", "http_host"}),
                                review_signing_secret=SIGNING_SECRET, **overrides)
    service = FeedbackService(settings, build_tasks=False)
    life = Lifecycle([service])
    harness.stack._run(life.start())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(service_app(service, lifecycle=life), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    asyncio.run_coroutine_threadsafe(server.serve(), harness.stack._loop)
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    time.sleep(0.5)
    harness.stack._run(life.stop())
