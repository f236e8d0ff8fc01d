"""`lookout up` on Apache Kafka loses nothing it accepted, whatever stops it.

One data dir lives through a user's bad day, in order (each phase is a module fixture, so
any test below runs the phases it needs):

1. a client posts 50-call batches at a steady rate while a reviewer holds a claimed task
   and a retrain run waits for approval; the whole stack is SIGKILLed under that load;
2. started again on the same data dir: every call answered `accepted` is there, the claim
   and the run are where they were; then the broker process alone is SIGKILLed: ingest
   answers 503 with Retry-After until the stack has restarted it, and still nothing is lost;
3. Ctrl-C, start again: each consumer group resumes at the offsets it had committed, and
   re-reads nothing; then the broker is left stopped (SIGSTOP) and the stack SIGKILLed,
   the orphan a kill leaves where the kernel cannot end it;
4. started again: that stale broker is ended, and at the end ClickHouse holds each
   accepted call, its scores and the drift results exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from lookout.broker.child import Recorded
from lookout.testing.brokers import free_port
from lookout.testing.embedded import LookoutUp, broker_of, start_lookout_up, wait_ready
from lookout.testing.waiting import wait_until
from tests.events import llm_call

APP, MODEL = "durable", "gpt-4o-mini"
LOAD_BATCH, LOAD_RATE = 50, 200  # calls per batch, calls per second

POLICY = f"""
version: 1
policies:
  - name: crash-test
    match: {{app: {APP}, model: {MODEL}}}
    cooldown: 1h
    require_approval: true
    rules:
      - name: thumbs-down
        kind: thumbs_down_rate
        window: 30m
        min_samples: 5
        fire_above: 0.5
        clear_below: 0.2
"""


class Webhook(ThreadingHTTPServer):
    """The CI endpoint the retrain trigger's webhook launcher posts a launched run to."""

    def __init__(self):
        self.launched: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.launched.append(self.headers["X-Lookout-Run-Id"])
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Load(threading.Thread):
    """A client posting LOAD_BATCH-call batches at LOAD_RATE calls/s. A batch answered 200
    with every call accepted goes to `accepted`; a 503 is kept and sent again, as the SDK
    does; a batch whose answer never came (the stack died under it) is in neither."""

    def __init__(self, base: str, key: str):
        super().__init__(daemon=True)
        self.base, self.key = base, key
        self.accepted: list[str] = []
        self.refused = 0
        self.stopped = threading.Event()

    def run(self):
        pending: list[dict] | None = None
        with httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30) as http:
            while not self.stopped.is_set():
                began = time.monotonic()
                batch = pending or [llm_call(APP, MODEL, i=i) for i in range(LOAD_BATCH)]
                pending = None
                try:
                    r = http.post("/v1/events", json={"events": batch})
                except httpx.HTTPError:
                    continue
                if r.status_code == 200 and r.json()["accepted"] == len(batch):
                    self.accepted += [e["event_id"] for e in batch]
                elif r.status_code == 503:
                    self.refused += 1
                    pending = batch
                time.sleep(max(0.0, LOAD_BATCH / LOAD_RATE - (time.monotonic() - began)))

    def stop(self):
        self.stopped.set()
        self.join(60)


@dataclass
class Stack:
    """One data dir and port, and the `lookout up` running on it (if any)."""

    data_dir: Path
    port: int
    env: dict[str, str]
    proc: LookoutUp | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key(self) -> str:
        return (self.data_dir / "dev-api-key").read_text().strip()

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)

    def start(self) -> None:
        self.proc = start_lookout_up(self.data_dir, self.port, env=self.env)
        wait_ready(self.proc, self.port)

    def broker(self) -> Recorded:
        found = broker_of(self.data_dir)
        assert found is not None and found.alive()
        return found

    def bootstrap(self) -> str:
        return httpx.get(f"{self.base}/readyz", timeout=30).json()["details"]["broker"]["bootstrap"]

    def sigkill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.outputs.append(self.proc.communicate(60)[0])
        self.proc = None

    def ctrl_c(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(90)
        self.outputs.append(out)
        assert self.proc.returncode == 0, out[-5000:]
        assert "Traceback" not in out, out[-5000:]
        self.proc = None

    def stored_ids(self) -> list[str]:
        """Every call of APP the read API returns, page by page."""
        ids: list[str] = []
        params: dict = {"app_id": APP, "limit": 1000}
        with self.http() as http:
            while True:
                r = http.get("/v1/calls", params=params)
                assert r.status_code == 200, r.text
                body = r.json()
                ids += [c["event_id"] for c in body["calls"]]
                if not body["next"]:
                    return ids
                params["cursor"] = body["next"]

    def metrics(self) -> dict[tuple[str, tuple], float]:
        text = httpx.get(f"{self.base}/metrics", timeout=30).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}


def metric(values: dict, name: str, **labels) -> float:
    return sum(v for (n, lab), v in values.items() if n == name and all((k, labels[k]) in lab for k in labels))


async def group_positions(bootstrap: str) -> dict[str, dict[tuple[str, int], int]]:
    """Every Lookout consumer group's committed offsets, and the log end as group 'end'."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = sorted(g[0] for g in await admin.list_consumer_groups() if g[0].startswith("lookout-"))
        out = {}
        for group in groups:
            offsets = await admin.list_consumer_group_offsets(group)
            out[group] = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = {TopicPartition(t, p) for committed in out.values() for t, p in committed}
        await consumer.topics()  # fetches the cluster's metadata
        tps |= {TopicPartition("llm.events", p) for p in consumer.partitions_for_topic("llm.events") or ()}
        out["end"] = {(tp.topic, tp.partition): o for tp, o in (await consumer.end_offsets(list(tps))).items()}
    finally:
        await consumer.stop()
    return out


# The groups that read every call, and so must have committed each non-empty partition of llm.events.
CALL_READERS = ("lookout-sink", "lookout-judge", "lookout-drift", "lookout-feedback-signals")


def caught_up(stack: Stack) -> dict | None:
    """The groups' positions once every group has committed up to the log's end (and the
    readers of llm.events all of it: a group that committed nothing has not caught up)."""
    positions = asyncio.run(group_positions(stack.bootstrap()))
    end = positions["end"]
    groups = {g: c for g, c in positions.items() if g != "end"}
    if not all(offset == end[tp] for committed in groups.values() for tp, offset in committed.items()):
        return None
    calls = {tp: o for tp, o in end.items() if tp[0] == "llm.events" and o > 0}
    if not all(groups.get(g, {}).get(tp) == o for g in CALL_READERS for tp, o in calls.items()):
        return None
    return positions


def query_chdb(data_dir: Path, queries: dict[str, str]) -> dict[str, list]:
    """Run queries on the stopped stack's chdb in a child process (chdb serves one path per
    process, and this one may hold the test session's)."""
    code = (
        "import json, sys\n"
        "from lookout.core import clickhouse\n"
        "from lookout.core.settings import CommonSettings\n"
        "queries = json.loads(sys.argv[2])\n"
        "client = clickhouse.connect(CommonSettings(clickhouse_dsn='chdb://' + sys.argv[1]))\n"
        "print(json.dumps({k: [list(map(str, r)) for r in client.query(q).result_rows] for k, q in queries.items()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(data_dir / "chdb"), json.dumps(queries)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the phases --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook():
    server = Webhook()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, webhook):
    data_dir = tmp_path_factory.mktemp("durable")
    policies = data_dir.parent / "crash-policies.yaml"
    policies.write_text(POLICY)
    env = {
        "LOOKOUT_EMBEDDED_BROKER": "kafka",
        "LOOKOUT_PRODUCE_TIMEOUT_S": "2",  # a 503 soon while the broker is away
        "LOOKOUT_REVIEW_AUDIT_APP_RATES": f"{APP}=0.05",
        # Drift embeds a bounded sample (a laptop's budget; the test machine may be busier) and
        # tests small windows, so it keeps up with the load and produces results in seconds.
        "LOOKOUT_DRIFT_ENCODER_TEXTS_PER_S": "20",
        "LOOKOUT_DRIFT_REFERENCE_SIZE": "100",
        "LOOKOUT_DRIFT_WINDOW_SIZE": "100",
        "LOOKOUT_DRIFT_TEST_EVERY_EVENTS": "50",
        "LOOKOUT_RETRAIN_POLICIES": str(policies),
        "LOOKOUT_RETRAIN_LAUNCHER": "webhook",
        "LOOKOUT_RETRAIN_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/launch",
        "LOOKOUT_RETRAIN_WEBHOOK_SECRET": "crash-test-webhook-secret",
    }
    s = Stack(data_dir, free_port(), env)
    yield s
    if s.proc is not None:
        s.proc.kill()
        s.outputs.append(s.proc.communicate(60)[0])
    for n, out in enumerate(s.outputs):  # for a failure's post-mortem (pytest keeps the last runs' tmp dirs)
        (data_dir / f"lookout-up-{n}.log").write_text(out)
    found = broker_of(data_dir)
    if found is not None and found.alive():
        os.kill(found.pid, signal.SIGKILL)


@dataclass
class BeforeTheKill:
    accepted: set[str]
    held_task: str  # the review task the admin held when the stack died
    run_id: str  # the retrain run that waited for approval
    broker: Recorded
    broker_gone_s: float | None  # how long the broker outlived the stack


@contextlib.contextmanager
def reviewer_session(stack: Stack, username: str = "admin", password: str | None = None):
    password = password or (stack.data_dir / "review-admin-password").read_text().strip()
    with httpx.Client(base_url=stack.base, timeout=60) as http:
        r = http.post("/review/api/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        http.headers["X-CSRF-Token"] = r.json()["csrf"]
        yield http


def next_task(review: httpx.Client) -> str | None:
    r = review.post("/review/api/next", json={"app_id": APP})
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    return task["event_id"] if task else None


@pytest.fixture(scope="module")
def killed_under_load(stack: Stack) -> BeforeTheKill:
    stack.start()
    load = Load(stack.base, stack.key)
    load.start()
    began = time.monotonic()
    with stack.http() as http, reviewer_session(stack) as review:
        # A reviewer approves one task (training data for the run) and holds the next.
        done = wait_until("an audit task", lambda: next_task(review))
        r = review.post(f"/review/api/tasks/{done}/submit", json={"rating": 5})
        assert r.status_code == 200, r.text
        held = wait_until("a second audit task", lambda: next_task(review))
        assert held != done
        wait_until("the review stored", lambda: http.get(f"/v1/calls/{done}").json().get("feedback"))
        # Five end users vote thumbs-down on stored calls: the rule fires, the run waits.
        voted = load.accepted[:5]
        for event_id in voted:
            wait_until("a call stored", lambda e=event_id: http.get(f"/v1/calls/{e}").status_code == 200)
            r = http.post("/v1/feedback", json={"event_id": event_id, "thumbs": -1})
            assert r.status_code == 200, r.text
        # Awaiting approval as recorded in ClickHouse (the admin page's list), not only in memory.
        runs = wait_until("a retrain run awaiting approval", lambda: [
            r for r in review.get("/review/api/admin/retrain/runs").json()["runs"] if r["app_id"] == APP])
    time.sleep(max(0.0, 8 - (time.monotonic() - began)))  # at least 8 s of steady load
    assert load.is_alive()  # (a 503 under a busy machine is resent, as the SDK does)
    broker = stack.broker()
    stack.sigkill()  # mid-load: batches in flight, the sink's batch unstored, offsets uncommitted
    killed = time.monotonic()
    load.stop()
    gone = None
    while time.monotonic() - killed < 30:
        if not broker.alive():
            gone = time.monotonic() - killed
            break
        time.sleep(0.05)
    return BeforeTheKill(set(load.accepted), held, runs[0]["run_id"], broker, gone)


@pytest.fixture(scope="module")
def restarted(stack: Stack, killed_under_load: BeforeTheKill) -> BeforeTheKill:
    stack.start()
    return killed_under_load


def test_a_sigkilled_stack_leaves_no_broker_behind(killed_under_load):
    assert killed_under_load.broker_gone_s is not None, "the broker outlived the stack by 30 s"


def test_every_call_accepted_before_a_sigkill_under_load_is_there_after_a_restart(stack, restarted):
    accepted = restarted.accepted
    assert len(accepted) >= LOAD_RATE * 4  # the load ran
    stored = wait_until("every accepted call stored", lambda: (ids := stack.stored_ids()) and accepted <= set(ids)
                        and ids, timeout=180)
    assert len(stored) == len(set(stored))  # none twice


def test_a_review_claim_held_at_the_kill_is_still_the_reviewers_after_a_restart(stack, restarted):
    with reviewer_session(stack) as review:
        assert next_task(review) == restarted.held_task
        # Nobody else gets it while the lease runs.
        r = review.post("/review/api/admin/reviewers", json={"username": "bob", "password": "bob-password-123",
                                                             "role": "reviewer", "apps": [APP]})
        assert r.status_code in (201, 409), r.text
    with reviewer_session(stack, "bob", "bob-password-123") as bob:
        assert next_task(bob) != restarted.held_task


def test_a_retrain_run_awaiting_approval_at_the_kill_can_be_approved_and_launches_after_a_restart(
        stack, restarted, webhook):
    with stack.http() as http:
        (run,) = [r for r in http.get("/v1/retrain/runs").json() if r["run_id"] == restarted.run_id]
        assert run["status"] == "requested" and run["dataset_counts"]["sft"] >= 1
        r = http.post(f"/v1/retrain/{restarted.run_id}/approve", json={"note": "after the crash"})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "launched"
    assert webhook.launched == [restarted.run_id]


@dataclass
class BrokerOutage:
    statuses: list[int]
    retry_after: list[str]
    readiness: list[dict]
    accepted: set[str]
    restarts: int


@pytest.fixture(scope="module")
def broker_killed(stack: Stack, restarted: BeforeTheKill) -> BrokerOutage:
    before = stack.broker()
    os.kill(before.pid, signal.SIGKILL)
    statuses, retry_after, readiness, accepted = [], [], [], set()
    with stack.http() as http:
        # While the stack reports the broker down, every post is refused whole, or accepted.
        while not (ready := http.get("/readyz").json())["ready"] or not statuses:
            readiness.append(ready)
            batch = [llm_call(APP, MODEL, i=i) for i in range(20)]
            r = http.post("/v1/events", json={"events": batch})
            statuses.append(r.status_code)
            if r.status_code == 200:
                accepted |= {e["event_id"] for e in batch}
            else:
                retry_after.append(r.headers.get("Retry-After", ""))
        restarts = ready["details"]["broker"]["restarts"]
        # Back: the client's retries go through, as do new calls.
        batch = [llm_call(APP, MODEL, i=i) for i in range(100)]
        wait_until("ingest accepting again", lambda: http.post("/v1/events", json={"events": batch}).status_code == 200)
        accepted |= {e["event_id"] for e in batch}
    return BrokerOutage(statuses, retry_after, readiness, accepted, restarts)


def test_while_the_broker_is_down_ingest_answers_503_with_retry_after_and_the_stack_restarts_it(
        stack, broker_killed):
    refused = [s for s in broker_killed.statuses if s != 200]
    assert refused and set(refused) == {503}, broker_killed.statuses
    assert all(int(v) >= 1 for v in broker_killed.retry_after)
    assert any("broker" in r["problems"] for r in broker_killed.readiness)
    assert broker_killed.restarts == 1
    assert stack.broker().pid != 0


def test_no_call_accepted_around_a_broker_kill_is_lost(stack, restarted, broker_killed):
    everything = restarted.accepted | broker_killed.accepted
    stored = wait_until("every accepted call stored", lambda: (ids := stack.stored_ids()) and everything <= set(ids)
                        and ids, timeout=180)
    assert len(stored) == len(set(stored))


@dataclass
class CleanRestart:
    before: dict  # group positions at Ctrl-C
    after: dict  # right after the next start
    metrics: dict  # the new process's counters after NEW calls
    new: set[str]


NEW = 100


@pytest.fixture(scope="module")
def ctrl_c_and_start(stack: Stack, broker_killed: BrokerOutage) -> CleanRestart:
    before = wait_until("every consumer group at the end of the log", lambda: caught_up(stack), timeout=240,
                        every=2)
    stack.ctrl_c()
    assert broker_of(stack.data_dir) is None  # stopped cleanly: no pidfile, no broker
    stack.start()
    after = asyncio.run(group_positions(stack.bootstrap()))
    batch = [llm_call(APP, MODEL, i=i) for i in range(NEW)]
    with stack.http() as http:
        assert http.post("/v1/events", json={"events": batch}).status_code == 200
    wait_until("the new calls through every consumer", lambda: caught_up(stack), timeout=120, every=1)
    return CleanRestart(before, after, stack.metrics(), {e["event_id"] for e in batch})


def test_after_ctrl_c_and_a_start_every_consumer_group_resumes_where_it_was(ctrl_c_and_start):
    before, after = ctrl_c_and_start.before, ctrl_c_and_start.after
    groups = {"lookout-sink", "lookout-judge", "lookout-drift", "lookout-retrain", "lookout-feedback-signals"}
    assert groups <= set(before)
    for group in groups:
        assert after[group] == before[group], group
    assert after["end"] == before["end"]  # the topics and their records are all still there


def test_after_ctrl_c_and_a_start_the_consumers_read_only_what_is_new(ctrl_c_and_start):
    m = ctrl_c_and_start.metrics
    assert metric(m, "lookout_sink_rows_stored_total", table="llm_calls") == NEW
    assert metric(m, "lookout_sink_replays_skipped_total", table="llm_calls") == 0
    assert metric(m, "lookout_judge_events_total") == NEW
    assert metric(m, "lookout_drift_events_total") == NEW


@dataclass
class StaleStart:
    stale: Recorded
    stale_alive_after_kill: bool
    stale_gone_at_ready: bool
    new: Recorded


@pytest.fixture(scope="module")
def stale_broker_ended(stack: Stack, ctrl_c_and_start: CleanRestart) -> StaleStart:
    stale = stack.broker()
    os.kill(stale.pid, signal.SIGSTOP)  # hung: the death signal stays pending
    stack.sigkill()
    time.sleep(1)
    lingering = stale.alive()
    stack.start()
    return StaleStart(stale, lingering, not stale.alive(), stack.broker())


def test_a_start_ends_a_stale_broker_of_its_data_dir(stale_broker_ended):
    assert stale_broker_ended.stale_alive_after_kill  # the orphan was there...
    assert stale_broker_ended.stale_gone_at_ready  # ...and the next start ended it
    assert stale_broker_ended.new.pid != stale_broker_ended.stale.pid


def test_in_the_end_every_accepted_call_its_scores_and_drift_results_are_stored_exactly_once(
        stack, restarted, broker_killed, ctrl_c_and_start, stale_broker_ended):
    wait_until("every consumer group at the end of the log", lambda: caught_up(stack), timeout=240, every=2)
    stack.ctrl_c()
    accepted = restarted.accepted | broker_killed.accepted | ctrl_c_and_start.new
    app = f"app_id = '{APP}'"
    found = query_chdb(stack.data_dir, {
        "calls": f"SELECT count(), uniqExact(event_id) FROM llm_calls WHERE {app}",
        "call_ids": f"SELECT DISTINCT toString(event_id) FROM llm_calls WHERE {app}",
        "scores": f"SELECT name, count(), uniqExact(score_id) FROM scores WHERE {app} "
                  "GROUP BY name",
        "scored_ids": f"SELECT DISTINCT toString(event_id) FROM scores WHERE {app}",
        "drift": f"SELECT count(), uniqExact(result_id) FROM drift_results WHERE {app}",
        "votes": f"SELECT count(), uniqExact(feedback_id) FROM feedback WHERE {app}",
    })
    (rows, unique), = [list(map(int, r)) for r in found["calls"]]
    assert rows == unique  # no call stored twice
    assert accepted <= {r[0] for r in found["call_ids"]}  # every accepted call stored
    assert found["scores"]
    for name, rows, unique in found["scores"]:
        assert int(rows) == int(unique), f"score {name} stored twice"
    assert accepted <= {r[0] for r in found["scored_ids"]}  # every accepted call scored
    (rows, unique), = [list(map(int, r)) for r in found["drift"]]
    assert rows == unique > 0  # drift results were produced, each once
    (rows, unique), = [list(map(int, r)) for r in found["votes"]]
    assert rows == unique >= 6  # five thumbs and a review, once each
    for out in stack.outputs:
        assert "Traceback" not in out
