"""Benchmarks of the event pipeline, each against a baseline measured in the same run:

- ingest: events/s through POST /v1/events into Kafka (1 KB events, batches of 500)
  ÷ raw aiokafka produce of the same events. Target >= 0.5.
- sink: rows/s Kafka -> ClickHouse ÷ raw clickhouse-connect insert of the same rows.
  Target >= 0.7.
- latency: emit -> queryable p50/p99 at 1 000 events/s for 60 s. Target p99 < 2 s.

Run: `make bench` (or `.venv/bin/python -m bench.bench_pipeline [--broker kafka|tansu]
[--latency-seconds 60]`). Results print and go to bench/out/pipeline.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

from lookout.core import kafka, topics
from lookout.core.events import LlmCall
from lookout.core.ids import uuid7
from lookout.core.settings import CommonSettings
from lookout.sink.rows import TABLES
from lookout.testing.brokers import KafkaBroker, TansuBroker
from lookout.testing.stack import IngestStack, ingest_settings_for
from tests.events import llm_call

OUT = Path(__file__).parent / "out"


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def make_events(n: int, app: str) -> list[dict]:
    events = [llm_call(app, i=i) for i in range(n)]
    size = len(orjson.dumps(events[0]))
    assert 900 <= size <= 1400, f"events should be about 1 KB, got {size} bytes"
    return events


async def raw_produce_rate(settings: CommonSettings, events: list[dict]) -> float:
    """Baseline: the same events, already serialised, produced with aiokafka acks=all."""
    await kafka.ensure_topics(settings, [topics.EVENTS])
    producer = await kafka.start_producer(settings)
    name = topics.resolve(settings.topic_prefix, topics.EVENTS)
    payloads = [(orjson.dumps(e), f"{e['app_id']}/{e['model']}".encode()) for e in events]
    try:
        start = time.perf_counter()
        for i in range(0, len(payloads), 500):
            futures = [await producer.send(name, value, key=key) for value, key in payloads[i : i + 500]]
            await asyncio.gather(*futures)
        return len(payloads) / (time.perf_counter() - start)
    finally:
        await producer.stop()


def ingest_rate(stack: IngestStack, events: list[dict], concurrency: int = 4) -> float:
    bodies = [gzip.compress(orjson.dumps({"events": events[i : i + 500]}), 1) for i in range(0, len(events), 500)]
    headers = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/json",
               "Content-Encoding": "gzip"}

    async def run() -> None:
        async with httpx.AsyncClient(base_url=stack.url, headers=headers, timeout=60) as client:
            queue = list(bodies)

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    r = await client.post("/v1/events", content=body)
                    assert r.status_code == 200, r.text

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    start = time.perf_counter()
    asyncio.run(run())
    return len(events) / (time.perf_counter() - start)


def raw_insert_rate(stack: IngestStack, events: list[dict]) -> float:
    """Baseline: the same rows inserted straight with clickhouse-connect, batches of 5000."""
    spec = TABLES[topics.EVENTS]
    # Fresh ids: the sink skips ids already stored, so reusing the bench's ids would hide its work.
    rows = [spec.to_row(LlmCall.model_validate({**e, "app_id": "raw-insert", "event_id": str(uuid7())}))
            for e in events]
    columns = list(rows[0])
    data = [[r[c] for c in columns] for r in rows]
    start = time.perf_counter()
    for i in range(0, len(data), 5000):
        stack.client.insert(spec.table, data[i : i + 5000], column_names=columns)
    return len(data) / (time.perf_counter() - start)


def sink_rate(stack: IngestStack, app: str, n: int) -> float:
    """Events are already in Kafka. The clock starts at the sink's first stored batch, so
    the one-off start (chdb, group join) does not count as throughput."""
    stack.start_sink()
    while stack.sink.stats.consumed == 0:
        time.sleep(0.005)
    start, first = time.perf_counter(), stack.count_calls(app)
    stack.wait_for_calls(app, n, timeout=600)
    return (n - first) / (time.perf_counter() - start)


def latency(stack: IngestStack, rate: int, seconds: int) -> dict:
    """Post `rate` events/s in 10 batches a second; a poller records when each batch is
    fully queryable. Latency = queryable time - post start time, per batch."""
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or len(seen) < len(sent):
            rows = stack.client.query(
                "SELECT metadata['batch'] AS b, count() FROM llm_calls WHERE app_id = 'latency' GROUP BY b"
            ).result_rows
            now = time.perf_counter()
            per = rate // 10
            for batch, count in rows:
                if count >= per and batch not in seen:
                    seen[batch] = now
            if done.is_set() and time.perf_counter() - last_post[0] > 30:
                break
            time.sleep(0.02)

    last_post = [time.perf_counter()]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    with stack.http() as http:
        per = rate // 10
        t0 = time.perf_counter()
        for tick in range(seconds * 10):
            batch_id = str(tick)
            events = [llm_call("latency", i=i, metadata={"batch": batch_id}) for i in range(per)]
            sent[batch_id] = time.perf_counter()
            r = http.post("/v1/events", json={"events": events})
            assert r.status_code == 200, r.text
            last_post[0] = time.perf_counter()
            if tick % 50 == 0:
                progress(f"latency: {tick / 10:.0f}/{seconds} s posted")
            delay = t0 + (tick + 1) / 10 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    done.set()
    poller.join(60)
    lat = sorted(seen[b] - sent[b] for b in seen)
    missing = len(sent) - len(seen)
    q = statistics.quantiles(lat, n=100)
    return {"batches": len(sent), "missing": missing, "p50_s": q[49], "p99_s": q[98], "max_s": lat[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-seconds", type=int, default=60)
    args = parser.parse_args()

    broker = (KafkaBroker() if args.broker == "kafka" else TansuBroker()).start()
    chdb = tempfile.mkdtemp(prefix="lookout-bench-")
    results: dict = {"broker": args.broker, "events": args.events}
    try:
        common = CommonSettings(
            kafka_bootstrap=broker.bootstrap, kafka_idempotence="on" if broker.supports_idempotence else "off",
            topic_prefix="bench.", clickhouse_dsn=f"chdb://{chdb}", clickhouse_database="bench",
        )
        events = make_events(args.events, "bench")
        progress(f"raw aiokafka produce of {len(events)} events...")
        raw = asyncio.run(raw_produce_rate(common.model_copy(update={"topic_prefix": "raw."}), events))
        stack = IngestStack(ingest_settings_for(common))
        stack.start_intake()  # no sink yet: the ingest figure is intake -> Kafka only
        progress("POST /v1/events...")
        rate = ingest_rate(stack, events)
        results["ingest"] = {"events_per_s": rate, "raw_produce_per_s": raw, "ratio": rate / raw}
        progress(f"ingest {rate:,.0f}/s vs raw produce {raw:,.0f}/s: ratio {rate / raw:.2f} (target >= 0.5)")

        progress("raw clickhouse-connect insert...")
        base = raw_insert_rate(stack, events)
        progress("sink draining llm.events...")
        sink = sink_rate(stack, "bench", len(events))
        results["sink"] = {"rows_per_s": sink, "raw_insert_per_s": base, "ratio": sink / base}
        progress(f"sink {sink:,.0f} rows/s vs raw insert {base:,.0f}/s: ratio {sink / base:.2f} (target >= 0.7)")

        if args.latency_seconds:
            progress(f"emit -> queryable at 1000 events/s for {args.latency_seconds} s...")
            lat = latency(stack, 1000, args.latency_seconds)
            results["latency"] = lat
            progress(f"latency p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max {lat['max_s']:.3f} s, "
                     f"{lat['missing']} batches not seen (target p99 < 2 s)")
        stack.close()
    finally:
        broker.close()
    OUT.mkdir(exist_ok=True)
    (OUT / f"pipeline-{args.broker}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
