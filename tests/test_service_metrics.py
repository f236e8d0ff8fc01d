"""What an operator scrapes: every service, run for real on one Apache Kafka and chdb (each
in its own asyncio loop and HTTP port, served as run_service serves it), shows on its own
`/metrics`, after traffic, the HTTP latency histogram by route and status for the requests
it answered, and (for the consumers) the lag of its consumer group per topic and partition
with the records it handled.

Traffic: calls posted to ingest reach the sink, drift, judge (toxicity by the offline
profanity scorer) and the feedback task builder on llm.events; judge's scores reach the
sink, feedback and the retrain trigger on llm.scores. One setup for the module: a service
each, started once.

The services share this test process, so they share one Prometheus registry: each
service's checks look for its own series (its consumer group, its route templates), the
ones its own process would expose; run_service's multiprocess mode is core/tests' concern.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from lookout.core import topics
from lookout.core.service import Service
from lookout.core.serving import Lifecycle, service_app
from lookout.core.settings import CommonSettings
from lookout.testing.brokers import free_port
from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call

SECRETS = {"review_signing_secret": "review-signing-secret-0123", "pii_secret": "test-secret-0123456789"}


class Served:
    """One service as its process runs it: its own loop thread, Lifecycle, uvicorn server."""

    def __init__(self, service: Service, *, started: bool = False):
        self.service = service
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"served-{service.name}", daemon=True)
        self.thread.start()
        self.lifecycle = Lifecycle([service])
        if started:  # started by its owner (the IngestStack's sink): only served here
            self.lifecycle.running = True
        else:
            self.run(self.lifecycle.start())
        self.port = free_port()
        config = uvicorn.Config(service_app(service, lifecycle=self.lifecycle), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.task = asyncio.run_coroutine_threadsafe(self.server.serve(), self.loop)
        deadline = time.monotonic() + 30
        while not self.server.started:
            if self.task.done():
                self.task.result()
            assert time.monotonic() < deadline, f"{service.name}: HTTP server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def run(self, coro: Coroutine, timeout: float = 180) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self, stop_service: bool = True) -> None:
        self.server.should_exit = True
        self.task.result(30)
        if stop_service:
            self.run(self.lifecycle.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def scrape(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """sample name -> [(labels, value)] of this service's /metrics, over HTTP."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return out


def _settings(cls, common: CommonSettings, **extra):
    return cls(**{**{k: v for k, v in common.model_dump().items() if k in cls.model_fields},
                  **{k: v for k, v in SECRETS.items() if k in cls.model_fields}, **extra})


def _services(common: CommonSettings, tmp) -> dict[str, Service]:
    from lookout.alerts.service import AlertService
    from lookout.alerts.settings import AlertSettings
    from lookout.core.session import Session
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings
    from lookout.feedback.app import FeedbackService
    from lookout.feedback.settings import FeedbackSettings
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings
    from lookout.retrain_trigger.service import RetrainService
    from lookout.retrain_trigger.settings import RetrainSettings

    alerts = _settings(AlertSettings, common)
    return {
        "drift": DriftService(_settings(DriftSettings, common)),
        # Offline toxicity (profanity-check), no evaluator LLM: scores without a model download.
        "judge": JudgeService(_settings(JudgeSettings, common, toxicity_backend="profanity", judge_batch_ms=50)),
        "feedback": FeedbackService(_settings(FeedbackSettings, common, feedback_token_secret="token-secret-0123456789",
                                              review_admin_user="admin", review_admin_password="admin-password-1")),
        "retrain-trigger": RetrainService(_settings(RetrainSettings, common,
                                                    retrain_dataset_dir=str(tmp / "datasets"),
                                                    retrain_output_dir=str(tmp / "runs"))),
        "alerts": AlertService(alerts, Session.connect(alerts)),
    }


class Running:
    def __init__(self, stack: IngestStack, served: dict[str, Served]):
        self.stack, self.served = stack, served
        self.prefix = stack.settings.topic_prefix

    def group(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def topic(self, name: str) -> str:
        return topics.resolve(self.prefix, name)


@pytest.fixture(scope="module")
def running(kafka_broker, chdb_path, tmp_path_factory) -> Iterator[Running]:
    common = CommonSettings(
        kafka_bootstrap=kafka_broker.bootstrap, kafka_idempotence="on", topic_prefix=f"m{uuid.uuid4().hex[:8]}.",
        kafka_topic_partitions=3, kafka_session_timeout_ms=10_000, clickhouse_dsn=f"chdb://{chdb_path}",
        clickhouse_database=f"m_{uuid.uuid4().hex[:10]}",
    )
    stack = IngestStack(ingest_settings_for(common)).start()
    served: dict[str, Served] = {}
    try:
        served["ingest"] = Served(stack.service, started=True)
        served["sink"] = Served(stack.sink, started=True)
        for name, service in _services(stack.settings, tmp_path_factory.mktemp("metrics")).items():
            served[name] = Served(service)
        yield Running(stack, served)
    finally:
        for name, one in reversed(served.items()):
            one.close(stop_service=name not in ("ingest", "sink"))
        stack.close()


def _traffic(running: Running) -> dict[str, tuple[str, str, str]]:
    """Calls through ingest, and one request of each service's own; service -> the
    (method, route template, status) its request is timed under."""
    stack = running.stack
    events = [llm_call("metrics-app", i=i) for i in range(30)]
    with stack.http() as http:
        r = http.post("/v1/events", json={"events": events})
        assert r.status_code == 200 and r.json()["accepted"] == 30, r.text
    assert stack.wait_for_calls("metrics-app", 30) == 30
    key = {"Authorization": f"Bearer {stack.api_key}"}
    asks = {
        "ingest": ("GET", f"/v1/calls/{events[0]['event_id']}", "/v1/calls/{event_id}"),
        "sink": ("GET", "/readyz", "/readyz"),
        "drift": ("GET", "/v1/drift?app_id=metrics-app", "/v1/drift"),
        "judge": ("GET", "/v1/judge/agreement/relevance?app_id=metrics-app", "/v1/judge/agreement/{rubric}"),
        "feedback": ("GET", "/review", "/review"),
        "retrain-trigger": ("GET", "/v1/retrain/runs", "/v1/retrain/runs"),
        "alerts": ("GET", "/v1/alerts", "/v1/alerts"),
    }
    timed = {}
    for service, (method, path, route) in asks.items():
        r = httpx.request(method, running.served[service].url + path, headers=key, timeout=60)
        assert r.status_code < 500, (service, r.status_code, r.text[:300])
        timed[service] = (method, route, str(r.status_code))
    return timed


# service -> (consumer group setting's default name, topics whose lag it must show)
CONSUMERS = {
    "sink": ("lookout-sink", [topics.EVENTS, topics.SCORES]),
    "drift": ("lookout-drift", [topics.EVENTS]),
    "judge": ("lookout-judge", [topics.EVENTS]),
    "feedback": ("lookout-feedback-signals", [topics.EVENTS, topics.SCORES]),
    "retrain-trigger": ("lookout-retrain", [topics.SCORES]),
}


@pytest.fixture(scope="module")
def after_traffic(running) -> tuple[Running, dict[str, tuple[str, str, str]]]:
    timed = _traffic(running)
    # Each consumer has handled records of every topic it must show (judge's scores follow the calls).
    deadline = time.monotonic() + 120
    for service, (group, wanted) in CONSUMERS.items():
        while True:
            samples = running.served[service].scrape()
            lag_topics = {labels["topic"] for labels, _ in samples.get("lookout_consumer_lag_records", [])
                          if labels["group"] == running.group(group)}
            handled = sum(v for labels, v in samples.get("lookout_consumer_records_total", [])
                          if labels["group"] == running.group(group))
            if handled > 0 and {running.topic(t) for t in wanted} <= lag_topics:
                break
            assert time.monotonic() < deadline, f"{service}: no lag series for {wanted} (saw {lag_topics})"
            time.sleep(0.5)
    return running, timed


@pytest.mark.parametrize("service", ["ingest", "sink", "drift", "judge", "feedback", "retrain-trigger", "alerts"])
def test_metrics_show_the_request_latency_histogram_by_route_and_status(after_traffic, service):
    running, timed = after_traffic
    method, route, status = timed[service]
    samples = running.served[service].scrape()
    labels = {"method": method, "route": route, "status": status}
    counts = [v for lab, v in samples["lookout_http_request_duration_seconds_count"] if lab == labels]
    assert counts and counts[0] >= 1, f"{service}: no latency series {labels}"
    buckets = {lab["le"]: v for lab, v in samples["lookout_http_request_duration_seconds_bucket"]
               if {k: lab[k] for k in labels} == labels}
    assert buckets["+Inf"] == counts[0] and len(buckets) > 5  # a histogram, not a bare counter
    assert next(v for lab, v in samples["lookout_http_request_duration_seconds_sum"] if lab == labels) > 0


@pytest.mark.parametrize("service", list(CONSUMERS))
def test_metrics_show_the_consumer_lag_per_group_topic_and_partition(after_traffic, service):
    running, _ = after_traffic
    group, wanted = CONSUMERS[service]
    samples = running.served[service].scrape()
    lag = {(lab["topic"], lab["partition"]): v for lab, v in samples["lookout_consumer_lag_records"]
           if lab["group"] == running.group(group)}
    for topic in wanted:
        partitions = {p for t, p in lag if t == running.topic(topic)}
        assert partitions and partitions <= {"0", "1", "2"}, f"{service}: lag partitions of {topic}: {partitions}"
        assert all(v >= 0 for (t, _), v in lag.items() if t == running.topic(topic))
    records = [v for lab, v in samples["lookout_consumer_records_total"] if lab["group"] == running.group(group)]
    batches = [v for lab, v in samples["lookout_consumer_batch_seconds_count"] if lab["group"] == running.group(group)]
    assert records and records[0] > 0 and batches and batches[0] > 0
