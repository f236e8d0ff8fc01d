"""Benchmarks of the event pipeline, each against a baseline measured in the same run, each
measured process pinned to one core (taskset) and the load generator, the broker and the
baselines' helpers kept off that core where the machine has more than one:

- ingest: events/s through POST /v1/events into Kafka (1 KB events with e-mail addresses
  and numbers in them, PII redaction on, batches of 500, 4 concurrent clients) ÷ a raw
  aiokafka produce of the same events. Target >= 0.5.
- sink: rows/s llm.events -> ClickHouse ÷ a raw clickhouse-connect insert of the same rows
  (the rows of the records on the sink's input topic, built before the clock starts, into
  the same table with the same materialized views, in batches of the sink's size; in
  batches of 5 000 too), for the sink's two ways (ClickHouse
  parsing the batch, and validating it in Python), and the first without fetching ahead.
  Target >= 0.7.
- CPU seconds per 1 000 events, ingest + sink, each way.
- scale-out: 2 ingest processes ÷ 1, and 2 sink processes (one consumer group, 6
  partitions) ÷ 1, on the same broker in the same run. chdb opens a path in one process
  only, so each process has its own store here (see bench/RESULTS.md for what that shows).
- latency: emit -> queryable p50/p99 at 5 000 events/s for 60 s, ingest and the sink in
  their own processes (each on a core of its own where there are two). Target p99 < 1 s,
  0 lost.

Run: `make bench`, or `.venv/bin/python -m bench.bench_pipeline [--events 50000]
[--latency-rate 5000 --latency-seconds 60] [--skip latency,scale]`. Results print and go
to bench/out/pipeline.json; the load average at each step is in it too, since a shared
machine moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from bench.procs import cpu_seconds, tree_cpu_seconds
from lookout.sink.settings import SinkSettings
from lookout.testing.brokers import KafkaBroker, free_port
from tests.events import llm_call

OUT = Path(__file__).parent / "out"
ROOT = Path(__file__).resolve().parents[1]


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def load() -> float:
    return round(os.getloadavg()[0], 1)


def make_events(n: int, app: str, **extra) -> list[dict]:
    """~1 KB calls whose texts hold an e-mail address, a phone number and other numbers,
    so the redactor's detectors all run (and find something) on every event."""
    events = []
    for i in range(n):
        question = (f"Order {100_000 + i * 7919 % 900_000}: my e-mail is customer{i}@example.com and my number "
                    f"020 7946 {i % 10_000:04d}; which running shoes suit a marathon beginner?")
        events.append(llm_call(app, i=i, input=[
            {"role": "system", "content": "You are a helpful shopping assistant for an online store."},
            {"role": "user", "content": question}], **extra))
    size = len(orjson.dumps(events[0]))
    assert 900 <= size <= 1400, f"events should be about 1 KB, got {size} bytes"
    return events


class Cores:
    """Which cores the measured process gets and which the rest (client, broker) gets."""

    def __init__(self) -> None:
        cores = sorted(os.sched_getaffinity(0))
        self.service = [cores[0]]
        self.second = [cores[1]] if len(cores) > 1 else [cores[0]]
        self.rest = cores[1:] or cores
        self.pinned = len(cores) > 1

    @staticmethod
    def prefix(cores: list[int]) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, cores))]

    @staticmethod
    def pin(pid: int, cores: list[int]) -> None:
        subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, cores)), str(pid)],
                       check=True, capture_output=True)


class Node:
    """A pipeline_node process with its own store, pinned to `cores`."""

    def __init__(self, what: str, env: dict[str, str], cores: list[int], *args: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "LOOKOUT_HTTP_HOST": "127.0.0.1", "LOOKOUT_HTTP_PORT": str(self.port),
                    "LOOKOUT_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-{what}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([*Cores.prefix(cores), sys.executable, "-m", "bench.pipeline_node", what, *args],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 180) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {Path(self.log.name).read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"node not ready: {Path(self.log.name).read_text()[-3000:]}")

    def stored(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        metric = 'lookout_sink_rows_stored_total{table="llm_calls"}'
        return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith(metric))

    def cpu(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def env_for(bootstrap: str, prefix: str, store: str, **extra: str) -> dict[str, str]:
    return {"LOOKOUT_KAFKA_BOOTSTRAP": bootstrap, "LOOKOUT_TOPIC_PREFIX": prefix,
            "LOOKOUT_CLICKHOUSE_DSN": f"chdb://{store}", "LOOKOUT_CLICKHOUSE_DATABASE": "bench",
            "LOOKOUT_KAFKA_TOPIC_PARTITIONS": "6", "LOOKOUT_PII_SECRET": "bench-pii-secret-0123456789",
            "LOOKOUT_PII_MODE": "mask", **extra}


def new_key(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "bench.pipeline_node", "key"], env={**os.environ, **env,
                         "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def helper(what: str, env: dict[str, str], cores: list[int], path: Path | str, *args: str) -> dict:
    out = subprocess.run([*Cores.prefix(cores), sys.executable, "-m", "bench.pipeline_node", what, str(path), *args],
                         env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def post_all(targets: list[tuple[str, str]], events: list[dict], concurrency: int = 4) -> float:
    """POST the events in gzip batches of 500 to the targets (url, key) in turn; events/s."""
    bodies = [gzip.compress(orjson.dumps({"events": events[i : i + 500]}), 1) for i in range(0, len(events), 500)]

    async def run() -> None:
        clients = [httpx.AsyncClient(base_url=url, timeout=120, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json", "Content-Encoding": "gzip"})
            for url, key in targets]
        queue = list(enumerate(bodies))

        async def worker(n: int) -> None:
            client = clients[n % len(clients)]
            while queue:
                _, body = queue.pop()
                r = await client.post("/v1/events", content=body)
                assert r.status_code == 200, r.text

        try:
            await asyncio.gather(*(worker(n) for n in range(concurrency * len(targets))))
        finally:
            for c in clients:
                await c.aclose()

    start = time.perf_counter()
    asyncio.run(run())
    return len(events) / (time.perf_counter() - start)


def drain(sinks: list[Node], n: int, timeout: float = 900) -> tuple[float, float]:
    """Rows/s of the sinks from their first stored batch until n rows are stored, and their
    CPU seconds per 1 000 of those rows (the one-off start, chdb and the group join, does not
    count)."""
    deadline = time.monotonic() + timeout
    while (first := sum(s.stored() for s in sinks)) == 0:
        assert time.monotonic() < deadline, "the sink stored nothing"
        time.sleep(0.01)
    start, cpu0 = time.perf_counter(), sum(s.cpu() for s in sinks)
    assert first < n, f"{first} of {n} rows were stored in the first batch: measure more events"
    while (done := sum(s.stored() for s in sinks)) < n:
        assert time.monotonic() < deadline, f"the sink stored {done} of {n}"
        time.sleep(0.05)
    wall, counted = time.perf_counter() - start, done - first
    return counted / wall, (sum(s.cpu() for s in sinks) - cpu0) / counted * 1000


def latency(node: Node, key: str, out: Path, rate: int, seconds: int, others: dict[str, int]) -> dict:
    """POST `rate` events/s in 10 batches a second, each batch sent at its time whether or not
    the ones before were answered (an open loop, as independent clients post); the node's
    poller notes when each batch is all stored. Latency = stored - posted, per batch. The
    bodies are built before the clock starts: built in the loop, on the core the sink shares
    with the broker and this process, they made a closed loop of one client fall 16-54 s
    behind 5 000/s, so the sink saw a third of the rate."""
    per = rate // 10
    out.with_suffix(".per").write_text(str(per))
    bodies = [gzip.compress(orjson.dumps({"events": make_events(per, "latency", session_id=f"latency-{tick}")}), 1)
              for tick in range(seconds * 10)]
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    refused = 0

    async def post_all_on_time() -> float:
        async with httpx.AsyncClient(base_url=node.url, timeout=60, limits=httpx.Limits(max_connections=64),
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                                              "Content-Encoding": "gzip"}) as http:
            async def post(tick: int) -> None:
                nonlocal refused
                sent[str(tick)] = time.time()
                # Ingest answers 429 past 32 requests of a key in flight (it fell behind): a
                # client retries, and the batch's latency counts from its first try.
                while (r := await http.post("/v1/events", content=bodies[tick])).status_code == 429:
                    refused += 1
                    await asyncio.sleep(0.05)
                assert r.status_code == 200, r.text
                answered[str(tick)] = time.time()

            t0, late = time.perf_counter(), 0.0
            tasks = []
            for tick in range(len(bodies)):
                delay = t0 + tick / 10 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                late = max(late, -delay)
                tasks.append(asyncio.create_task(post(tick)))
                if tick % 100 == 0:
                    progress(f"latency: {tick / 10:.0f}/{seconds} s posted (load {load()})")
            await asyncio.gather(*tasks)
            return late

    # Where the cores went while posting: each process's CPU seconds per wall second.
    # (The load generator is this process alone: the nodes and the broker are its children.)
    pids = {"ingest": node.proc.pid, **others}

    def used() -> dict[str, float]:
        poller = out.with_suffix(".cpu")
        return {**{name: tree_cpu_seconds(pid) for name, pid in pids.items()}, "load generator": cpu_seconds(),
                "poller (in the sink)": float(poller.read_text() or 0) if poller.exists() else 0.0}

    cpu0, wall0 = used(), time.perf_counter()
    late = asyncio.run(post_all_on_time())
    wall = time.perf_counter() - wall0
    cores_used = {name: round((cpu - cpu0[name]) / wall, 3) for name, cpu in used().items()}
    deadline = time.monotonic() + 60
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = json.loads(out.read_text()) if out.exists() else {}
        if len(seen) >= len(sent):
            break
        time.sleep(0.5)
    lat = sorted(seen[b] - sent[b] for b in seen if b in sent)
    q = statistics.quantiles(lat, n=100)
    post = sorted(answered[b] - sent[b] for b in answered)
    # When in the run the slowest batches were posted (a warm-up tail reads differently from a steady one).
    worst = sorted(((seen[b] - sent[b], int(b) / 10) for b in seen if b in sent), reverse=True)[:5]
    return {"slowest_batches_s_at_s": [[round(lt, 3), at] for lt, at in worst],
            "rate": rate, "seconds": seconds, "batches": len(sent), "lost_batches": len(sent) - len(seen),
            "p50_s": q[49], "p99_s": q[98], "max_s": lat[-1],
            # how late the latest POST was sent (the loop's own delay), and how long ingest took to answer
            "posting_fell_behind_s": round(late, 3), "post_p50_s": statistics.median(post), "post_max_s": post[-1],
            "posts_refused_429": refused, "cores_used_while_posting": cores_used}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--latency-rate", type=int, default=5000)
    parser.add_argument("--latency-seconds", type=int, default=60)
    parser.add_argument("--skip", default="", help="comma-separated: ingest, sink, scale, latency")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cores = Cores()
    os.sched_setaffinity(0, cores.rest)  # the load generator stays off the measured core
    work = Path(tempfile.mkdtemp(prefix="lookout-bench-"))
    results: dict = {"events": args.events, "cpus": os.cpu_count(), "pinned": cores.pinned,
                     "service_core": cores.service, "other_cores": cores.rest, "load_at_start": load()}
    broker = KafkaBroker().start()
    nodes: list[Node] = []
    try:
        Cores.pin(broker.proc.pid, cores.rest)
        bootstrap = broker.bootstrap
        events = make_events(args.events, "bench")
        warm = make_events(2000, "warm")
        lines = work / "events.jsonl"
        lines.write_bytes(b"\n".join(orjson.dumps(e) for e in events))

        if "ingest" not in skip:
            progress(f"raw aiokafka produce of {len(events)} events (load {load()})...")
            raw = helper("raw-produce", env_for(bootstrap, "raw.", str(work / "raw-produce")), cores.service, lines)
            env = env_for(bootstrap, "bench.", str(work / "ingest"))
            key = new_key(env)
            ingest = Node("ingest", env, cores.service).wait_ready()
            nodes.append(ingest)
            post_all([(ingest.url, key)], warm)  # connections, first imports; other ids, so all are stored
            progress(f"POST /v1/events (load {load()})...")
            cpu0, server0 = ingest.cpu(), cpu_seconds(ingest.proc.pid)
            rate = post_all([(ingest.url, key)], events)
            ingest_cpu, server_cpu = ingest.cpu() - cpu0, cpu_seconds(ingest.proc.pid) - server0
            ingest.stop()
            cpu_1000 = ingest_cpu / len(events) * 1000
            # The serving process alone (HTTP, the hop to a worker and back, producing) and
            # its worker processes (decoding, validation, redaction, serialisation).
            server_1000 = server_cpu / len(events) * 1000
            results["ingest"] = {"events_per_s": rate, "raw_produce_per_s": raw["per_s"], "ratio": rate / raw["per_s"],
                                 "cpu_s_per_1000": cpu_1000, "server_cpu_s_per_1000": server_1000,
                                 "workers_cpu_s_per_1000": cpu_1000 - server_1000,
                                 "raw_cpu_s_per_1000": raw["cpu_s_per_1000"],
                                 "ratio_per_cpu_s": raw["cpu_s_per_1000"] / cpu_1000, "load": load()}
            progress(f"ingest {rate:,.0f}/s vs raw produce {raw['per_s']:,.0f}/s: ratio {rate / raw['per_s']:.2f} "
                     f"(target >= 0.5); CPU s per 1000 events {cpu_1000:.3f} (server {server_1000:.3f}, workers "
                     f"{cpu_1000 - server_1000:.3f}) vs raw {raw['cpu_s_per_1000']:.3f}: "
                     f"per CPU second {raw['cpu_s_per_1000'] / cpu_1000:.2f}")

        if "sink" not in skip and "ingest" not in skip:
            total = args.events + 2000  # the warm-up events are on the topic too
            progress(f"raw clickhouse-connect insert (load {load()})...")
            # The rows of the very records the sink will store (as ingest wrote them: redacted,
            # priced, warm-up ones too), into the same table and materialized views.
            # In batches of the sink's size (the ratio's baseline), and of 5 000 (earlier runs' one).
            batch = SinkSettings().sink_batch_rows
            base = helper("raw-insert", env_for(bootstrap, "bench.", str(work / "raw-insert")), cores.service,
                          f"topic:{total}", str(batch))
            assert base["rows"] == total, base
            results["raw_insert"] = base | {"batch_rows": batch, "load": load()}
            small = helper("raw-insert", env_for(bootstrap, "bench.", str(work / "raw-insert-5000")), cores.service,
                           f"topic:{total}", "5000")
            results["raw_insert_5000"] = small | {"batch_rows": 5000, "load": load()}
            progress(f"raw insert {base['per_s']:,.0f} rows/s in batches of {batch}, {small['per_s']:,.0f} in 5 000")
            # sql_serial: the sink before it fetched ahead (LOOKOUT_SINK_PREFETCH=false), same run.
            # sql_batch_5000: the sink's batch before it was 20 000 rows, same run.
            for way, sql, prefetch, rows_a_batch in (
                ("validating", "false", "true", batch), ("sql_serial", "true", "false", batch),
                ("sql_batch_5000", "true", "true", 5000), ("sql", "true", "true", batch),
            ):
                progress(f"sink ({way}) draining llm.events (load {load()})...")
                env = env_for(bootstrap, "bench.", str(work / f"sink-{way}"), LOOKOUT_SINK_GROUP=f"s-{way}",
                              LOOKOUT_SINK_SQL_ROWS=sql, LOOKOUT_SINK_PREFETCH=prefetch,
                              LOOKOUT_SINK_BATCH_ROWS=str(rows_a_batch))
                sink = Node("sink", env, cores.service).wait_ready()
                nodes.append(sink)
                rows, cpu_1000 = drain([sink], total)
                sink.stop()
                results[f"sink_{way}"] = {"rows_per_s": rows, "ratio": rows / base["per_s"],
                                          "cpu_s_per_1000": cpu_1000,
                                          "ratio_per_cpu_s": base["cpu_s_per_1000"] / cpu_1000, "load": load()}
                progress(f"sink ({way}) {rows:,.0f} rows/s vs raw insert {base['per_s']:,.0f}/s: ratio "
                         f"{rows / base['per_s']:.2f} (target >= 0.7); CPU s per 1000 rows {cpu_1000:.3f} vs raw "
                         f"{base['cpu_s_per_1000']:.3f}: per CPU second {base['cpu_s_per_1000'] / cpu_1000:.2f}")
            ingest_cpu = results["ingest"]["cpu_s_per_1000"]
            results["cpu_s_per_1000_events"] = {
                way: ingest_cpu + results[f"sink_{way}"]["cpu_s_per_1000"] for way in ("validating", "sql")}

            if "scale" not in skip:
                progress(f"scale-out: 2 sinks, one group, 6 partitions (load {load()})...")
                # Both start at once, so neither drains the topic alone while the other loads chdb.
                two = [Node("sink", env_for(bootstrap, "bench.", str(work / f"sink-two-{i}"),
                                            LOOKOUT_SINK_GROUP="s-two"), core)
                       for i, core in enumerate((cores.service, cores.second))]
                nodes.extend(two)
                for s in two:
                    s.wait_ready()
                rows2, _ = drain(two, total)
                for s in two:
                    s.stop()
                one = results["sink_sql"]["rows_per_s"]
                results["scale_sink"] = {"two_rows_per_s": rows2, "one_rows_per_s": one, "ratio": rows2 / one,
                                         "load": load()}
                progress(f"2 sinks {rows2:,.0f} rows/s vs 1: {one:,.0f}/s: x{rows2 / one:.2f}")

        if "scale" not in skip and "ingest" not in skip:
            progress(f"scale-out: 2 ingest processes (load {load()})...")
            targets, pair = [], []
            for i, core in enumerate((cores.service, cores.second)):
                env = env_for(bootstrap, "scale.", str(work / f"ingest-two-{i}"))
                k = new_key(env)
                pair.append(Node("ingest", env, core).wait_ready())
                targets.append((pair[-1].url, k))
            nodes.extend(pair)
            post_all(targets, warm)
            rate2 = post_all(targets, events)
            for n in pair:
                n.stop()
            one = results["ingest"]["events_per_s"]
            results["scale_ingest"] = {"two_events_per_s": rate2, "one_events_per_s": one, "ratio": rate2 / one,
                                       "load": load()}
            progress(f"2 ingest {rate2:,.0f} events/s vs 1: {one:,.0f}/s: x{rate2 / one:.2f}")

        if "latency" not in skip and args.latency_seconds:
            progress(f"emit -> queryable at {args.latency_rate} events/s for {args.latency_seconds} s "
                     f"(load {load()})...")
            # As in production: ingest and the sink in their own processes, on cores of their own.
            env = env_for(bootstrap, "lat.", str(work / "latency-ingest"))
            key = new_key(env)
            out = work / "latency-seen.json"
            front = Node("ingest", env, cores.service).wait_ready()
            back = Node("sink", env_for(bootstrap, "lat.", str(work / "latency-sink")), cores.second,
                        str(out)).wait_ready()
            nodes.extend([front, back])
            lat = latency(front, key, out, args.latency_rate, args.latency_seconds,
                          {"sink": back.proc.pid, "broker": broker.proc.pid})
            front.stop()
            back.stop()
            results["latency"] = lat | {"load": load()}
            progress(f"latency p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max {lat['max_s']:.3f} s, "
                     f"{lat['lost_batches']} batches not seen (target p99 < 1 s, 0 lost)")
    finally:
        for n in nodes:
            n.stop()
        broker.close()
    results["load_at_end"] = load()
    OUT.mkdir(exist_ok=True)
    (OUT / "pipeline.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
