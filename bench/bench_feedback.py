"""Benchmarks of the feedback service, each against a baseline measured in the same run:

- thumbs: votes/s through POST /v1/feedback (auth, call lookup, duplicate check, produce,
  ack) with 8 client threads ÷ single-event POST /v1/events to ingest on the same broker
  and store with the same threads (auth, validation, produce, ack): the cost of the extra
  ClickHouse reads a vote makes.
- claims: the review loop (POST /review/api/next + submit) with 20 reviewers on two
  service instances: tasks/s and the p50/p99 of one claim, ÷ the claim log's floor, a
  produce + read-back round trip on the same single-partition topic.

Run: `.venv/bin/python -m bench.bench_feedback [--broker kafka|tansu] [--votes 2000]
[--tasks 500]`. Results print and go to bench/out/feedback-<broker>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from lookout.core import ids
from lookout.core.events import LlmCall, Message
from lookout.core.settings import CommonSettings
from lookout.testing.brokers import KafkaBroker, TansuBroker

OUT = Path(__file__).parent / "out"


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def _rate(n: int, fn, threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(n)))
    return n / (time.perf_counter() - start)


def bench_thumbs(stack, votes: int, threads: int = 8) -> dict:
    event_ids = stack.add_calls("bench", min(votes, 500))
    local = threading.local()

    def client(factory):
        if not hasattr(local, factory.__name__):
            setattr(local, factory.__name__, factory())
        return getattr(local, factory.__name__)

    def feedback_http():
        return stack.key_http()

    def ingest_http():
        return stack.ingest.http()

    def vote(i: int) -> None:
        r = client(feedback_http).post("/v1/feedback", json={
            "event_id": str(event_ids[i % len(event_ids)]), "thumbs": 1 if i % 2 else -1, "user_id": f"u{i}"})
        assert r.status_code == 200, r.text

    def event(i: int) -> None:
        call = LlmCall(event_id=ids.uuid7(), ts=datetime.now(UTC), app_id="bench-base", model="m",
                       input=[Message(role="user", content="q")], output="a")
        r = client(ingest_http).post("/v1/events", json={"events": [call.model_dump(mode="json", by_alias=True)]})
        assert r.status_code == 200, r.text

    base = _rate(votes, event, threads)
    got = _rate(votes, vote, threads)
    return {"votes_per_s": round(got, 1), "baseline_events_per_s": round(base, 1), "ratio": round(got / base, 3)}


def bench_claims(stack, tasks: int, reviewers: int = 20) -> dict:
    event_ids = stack.add_calls("bench-q", tasks)
    stack.queue_tasks("bench-q", event_ids)
    names = [stack.add_reviewer(f"b{i:02d}", ["bench-q"]) for i in range(reviewers)]
    claim_ms: list[float] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        name, password = names[i]
        with stack.login(name, password, base_url=stack.instances[i % len(stack.instances)].url) as http:
            while True:
                t0 = time.perf_counter()
                task = http.post("/review/api/next", json={}).json()["task"]
                with lock:
                    claim_ms.append((time.perf_counter() - t0) * 1000)
                if task is None:
                    return
                assert http.post(f"/review/api/tasks/{task['event_id']}/submit", json={"rating": 4}).status_code == 200

    start = time.perf_counter()
    with ThreadPoolExecutor(reviewers) as pool:
        list(pool.map(work, range(reviewers)))
    elapsed = time.perf_counter() - start
    floor = stack.instances[0].run(_log_round_trip(stack.instances[0].service.claims, 200))
    q = statistics.quantiles(claim_ms, n=100)
    return {"tasks_per_s": round(tasks / elapsed, 1), "claim_p50_ms": round(q[49], 1), "claim_p99_ms": round(q[98], 1),
            "log_round_trip_p50_ms": round(floor, 1), "claim_p50_over_floor": round(q[49] / floor, 2)}


async def _log_round_trip(log, n: int) -> float:
    """p50 of produce + fold of a no-op record: the least a claim can cost."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await log.request("release", uuid.uuid4(), "bench-floor")
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="tansu")
    parser.add_argument("--votes", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=500)
    args = parser.parse_args()
    from services.feedback.tests.conftest import FeedbackStack

    broker = (KafkaBroker() if args.broker == "kafka" else TansuBroker()).start()
    chdb = tempfile.mkdtemp(prefix="lookout-bench-feedback-")
    try:
        common = CommonSettings(kafka_bootstrap=broker.bootstrap,
                                kafka_idempotence="on" if broker.supports_idempotence else "off",
                                topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", kafka_topic_partitions=3,
                                clickhouse_dsn=f"chdb://{chdb}", clickhouse_database="bench_feedback")
        stack = FeedbackStack(common, instances=2)
        try:
            progress("thumbs")
            results = {"broker": args.broker, "thumbs": bench_thumbs(stack, args.votes)}
            progress(json.dumps(results["thumbs"]))
            progress("claims")
            results["claims"] = bench_claims(stack, args.tasks)
            progress(json.dumps(results["claims"]))
        finally:
            stack.close()
    finally:
        broker.close()
    OUT.mkdir(exist_ok=True)
    (OUT / f"feedback-{args.broker}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
