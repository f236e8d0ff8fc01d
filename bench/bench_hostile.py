"""Adversarial soak: normal traffic's ingest latency with and without hostile load, same run.

Three processes, so no client steals the server's interpreter lock (or the other way round):

- server: a real ingest + sink (`IngestStack`: the service, uvicorn and the sink on one
  loop, as `lookout up` runs them) on a real broker and chdb;
- this process: normal traffic, one client posting 20 requests/s of 10 ~1 KB events with an
  ingest key of app `normal`, and a poller asking /healthz every 100 ms;
- hostile: `--concurrency` workers cycling through the hostile kinds below, with an ingest
  key of app `hostile` where a key is needed (a key holder attacking), for `--seconds`.

Hostile kinds: 1 MB answers made of addresses (`"a@b.cc " * 142000`), random `lk_` keys,
garbage Bearer values with non-ASCII bytes, non-ASCII Content-Type, bodies over the limit
(11 MiB, refused by length), a valid batch just under the limit (5 000 events with PII),
and OTLP span floods (`--flood-spans` GenAI spans in one protobuf export).

Phases: warm-up, quiet (`--quiet-seconds` of normal traffic alone), hostile (`--seconds`
with both), once per `--modes` (LOOKOUT_WORK_MODE: process, thread or both, each against a
server of its own, one after the other). Reported per mode: normal p50/p99 per phase and
their ratio, the slowest /healthz per phase, every 5xx (normal and hostile), what each
hostile kind was answered, the load average, and the server's CPU seconds during the
hostile phase by part (event loop, sink store threads, worker threads or processes); once:
what a 5 000-event batch costs to pickle as records vs as pydantic calls.
Targets: 0 x 5xx, slowest /healthz < 250 ms, hostile p99 <= 2 x quiet p99.

Run: `.venv/bin/python -m bench.bench_hostile [--broker kafka|tansu] [--seconds 60] [--modes thread,process]`.
Results print and go to bench/out/hostile.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import orjson

from bench.procs import cpu_seconds

OUT = Path(__file__).parent / "out"
ADDRESSES = "a@b.cc " * 142_000  # 994 KB: just under the 1 MB field limit, every word a finding
KINDS = ("pii_megabyte", "random_key", "garbage_key", "non_ascii_header", "oversized_body",
         "full_batch", "span_flood")  # fmt: skip


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --- server process ----------------------------------------------------------------------


def server_cpu(stack) -> dict[str, float]:
    """CPU seconds so far of the server's parts: the event loop's thread (ingest routes,
    uvicorn, the sink's consumer and aiokafka), the default executor's threads (the sink
    parsing and storing batches), other threads (key lookups, chdb's own), and the worker
    processes (ingest's request work in process mode)."""
    groups: dict[str, float] = defaultdict(float)
    seen = 0.0
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        spent = cpu_seconds(tid=thread.native_id)
        seen += spent
        name = thread.name
        group = ("loop" if name == "ingest-stack" else "sink_store_threads" if name.startswith("asyncio_")
                 else "work_threads" if name.startswith("ingest-work") else "other_python_threads")
        groups[group] += spent
    groups["native_threads"] = max(0.0, cpu_seconds() - seen)  # chdb's and other threads Python does not know
    pools = [stack.service.ctx.workers, stack.service.ctx.quick_workers]
    groups["work_processes"] = sum(cpu_seconds(pid) for pool in pools if pool is not None
                                   for pid in getattr(pool.runner, "pids", list)())
    return {k: round(v, 2) for k, v in groups.items()}


def serve(bootstrap: str, idempotence: bool, chdb: str, mode: str, conn, stop, sink_apart: bool = False) -> None:
    from lookout.core.settings import CommonSettings
    from lookout.testing.stack import IngestStack, ingest_settings_for

    common = CommonSettings(
        kafka_bootstrap=bootstrap, kafka_idempotence="on" if idempotence else "off", topic_prefix=f"hostile-{mode}.",
        clickhouse_dsn=f"chdb://{chdb}", clickhouse_database=f"hostile_{mode}",
    )
    if not sink_apart:
        # As `lookout up` runs its in-process sink (stack/components.py), unless set otherwise.
        os.environ.setdefault("LOOKOUT_SINK_INSERT_NICE", "10")
    stack = IngestStack(ingest_settings_for(common).model_copy(update={"work_mode": mode}))
    # --sink apart: the sink is a process of its own (compose's and Helm's shape), storing
    # into a chdb path of its own (one process per path): this one serves intake only.
    stack.start_intake() if sink_apart else stack.start()
    _, normal = stack.keys.create("normal", ["ingest"], name="bench-normal")
    _, hostile = stack.keys.create("hostile", ["ingest"], name="bench-hostile")
    conn.send({"url": stack.url, "normal": normal, "hostile": hostile, "settings": {
        k: v for k, v in stack.settings.model_dump().items()
        if k.startswith(("work_", "max_")) or k in ("http_workers", "pii_mode")
    } | {"sink_insert_nice": os.environ.get("LOOKOUT_SINK_INSERT_NICE", "0")}})
    while not stop.is_set():
        if conn.poll(0.1) and conn.recv() == "cpu":
            conn.send(server_cpu(stack))
    stats = ({"sink_stored": None, "hostile_stored": None} if sink_apart else
             {"sink_stored": stack.count_calls("normal"), "hostile_stored": stack.count_calls("hostile")})
    conn.send(stats)
    stack.close()


def sink_apart(bootstrap: str, idempotence: bool, chdb: str, mode: str, stop) -> None:
    """The sink alone, on the server's topics, storing into a chdb path of its own."""
    from lookout.sink.service import SinkService
    from lookout.sink.settings import SinkSettings

    settings = SinkSettings.model_validate({
        "kafka_bootstrap": bootstrap, "kafka_idempotence": "on" if idempotence else "off",
        "topic_prefix": f"hostile-{mode}.", "clickhouse_dsn": f"chdb://{chdb}-sink",
        "clickhouse_database": f"hostile_{mode}"})

    async def run() -> None:
        sink = SinkService(settings)
        await sink.start()
        await asyncio.to_thread(stop.wait)  # a multiprocessing Event: waited for off the loop
        await sink.stop()

    asyncio.run(run())


def crossing_costs() -> dict:
    """What a 5 000-event batch costs to send back from a worker process: its Kafka records
    (what ingest sends) against the pydantic calls they were made from (what it avoids)."""
    import pickle

    from lookout.core.events import LlmCall
    from tests.events import llm_call

    calls = [LlmCall.model_validate(llm_call("bench", i=i)) for i in range(5000)]
    records = [(b"key", call.to_bytes()) for call in calls]
    out = {}
    for name, value in (("records", records), ("pydantic_calls", calls)):
        start = time.perf_counter()
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        dumped = time.perf_counter()
        pickle.loads(data)
        out[name] = {"mb": round(len(data) / 1e6, 2), "dumps_ms": round((dumped - start) * 1000, 1),
                     "loads_ms": round((time.perf_counter() - dumped) * 1000, 1)}
    return out


# --- hostile process ---------------------------------------------------------------------


def span_flood(n: int) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "hostile"
    spans = resource_spans.scope_spans.add()
    start = time.time_ns()
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "mail me at x@example.com"}]}])
    for _ in range(n):
        span = spans.spans.add(trace_id=os.urandom(16), span_id=os.urandom(8), name="chat gpt-4o",
                               start_time_unix_nano=start, end_time_unix_nano=start + 1_000_000)
        for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o"),
                           ("gen_ai.input.messages", messages)):
            span.attributes.add(key=key).value.string_value = value
    return request.SerializeToString()


def event(app: str, **fields) -> dict:
    from tests.events import llm_call

    return llm_call(app, **fields)


def attack(
    url: str, key: str, seconds: float, concurrency: int, flood_spans: int, kinds: tuple[str, ...], conn
) -> None:
    bodies = {"oversized_body": b"[" + b"1," * (11 << 19) + b"1]"}  # 11.5 MB, over the 10 MiB limit
    # 5 000 events with a phone number and an address each, as close under the limit as they fit.
    reps = 40
    while True:
        text = "call +44 20 7946 0958 or write to x@example.com " * reps
        full = orjson.dumps({"events": [event("hostile", output=text) for _ in range(5000)]})
        if len(full) < (10 << 20) - 4096:
            break
        reps -= 2
    bodies["full_batch"] = full
    answers: dict[str, Counter] = defaultdict(Counter)
    took: dict[str, list[float]] = defaultdict(list)

    def request(kind: str) -> tuple[str, str, dict, bytes]:
        json_type = {"Content-Type": "application/json"}
        auth = {"Authorization": f"Bearer {key}"}
        if kind == "pii_megabyte":
            return "POST", "/v1/events", {**auth, **json_type}, orjson.dumps(
                {"events": [event("hostile", output=ADDRESSES)]})
        if kind == "random_key":
            return "POST", "/v1/events", {"Authorization": f"Bearer lk_{secrets.token_hex(6)}_{secrets.token_hex(16)}",
                                          **json_type}, b'{"events": []}'
        if kind == "garbage_key":
            garbage = "Bearer " + "".join(chr(random.randint(0x80, 0xFF)) for _ in range(40))
            return "POST", "/v1/events", {"Authorization": garbage.encode("latin-1"), **json_type}, b'{"events": []}'
        if kind == "non_ascii_header":
            return "POST", "/v1/events", {**auth, "Content-Type": "application/jsön".encode("latin-1")}, b"{}"
        if kind == "oversized_body":
            return "POST", "/v1/events", {**auth, **json_type}, bodies["oversized_body"]
        if kind == "full_batch":
            return "POST", "/v1/events", {**auth, **json_type}, bodies["full_batch"]
        return "POST", "/v1/traces", {**auth, "Content-Type": "application/x-protobuf"}, b""

    async def worker(n: int, client: httpx.AsyncClient, deadline: float) -> None:
        turn = n
        while time.monotonic() < deadline:
            kind = kinds[turn % len(kinds)]
            turn += 1
            method, path, headers, body = request(kind)
            if kind == "span_flood":  # fresh span ids each time, so the sink stores every flood
                body = await asyncio.to_thread(span_flood, flood_spans)
            start = time.perf_counter()
            try:
                r = await client.request(method, path, headers=headers, content=body)
                answers[kind][str(r.status_code)] += 1
                if r.status_code == 429:
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")) / 4)
            except httpx.HTTPError as exc:
                answers[kind][type(exc).__name__] += 1
            took[kind].append(time.perf_counter() - start)

    async def run() -> None:
        limits = httpx.Limits(max_connections=concurrency * 2)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(worker(n, client, deadline) for n in range(concurrency)))

    progress(f"hostile bodies built: full batch {len(bodies['full_batch']) / 1e6:.1f} MB")
    conn.send("ready")
    asyncio.run(run())
    conn.send({"answers": {k: dict(v) for k, v in answers.items()},
               "median_s": {k: round(statistics.median(v), 3) for k, v in took.items() if v}})


# --- this process: normal traffic and /healthz ---------------------------------------------


class Phase:
    def __init__(self, name: str) -> None:
        self.name = name
        self.latencies: list[float] = []
        self.health: list[float] = []
        self.statuses: Counter = Counter()
        self.health_statuses: Counter = Counter()


def normal_traffic(url: str, key: str, phase_of, stop: threading.Event, rate: float = 20.0) -> None:
    from tests.events import llm_call

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        tick = 0
        t0 = time.perf_counter()
        while not stop.is_set():
            phase = phase_of()
            events = [llm_call("normal", i=tick * 10 + i) for i in range(10)]
            start = time.perf_counter()
            try:
                r = client.post("/v1/events", json={"events": events})
                status = str(r.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            phase.latencies.append(time.perf_counter() - start)
            phase.statuses[status] += 1
            tick += 1
            delay = t0 + tick / rate - time.perf_counter()
            if delay > 0:
                stop.wait(delay)


def health_poller(url: str, phase_of, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            phase = phase_of()
            start = time.perf_counter()
            try:
                phase.health_statuses[str(client.get("/healthz").status_code)] += 1
            except httpx.HTTPError as exc:
                phase.health_statuses[type(exc).__name__] += 1
            took = time.perf_counter() - start
            phase.health.append(took)
            stop.wait(max(0.0, 0.1 - took))


def summary(phase: Phase) -> dict:
    lat = sorted(phase.latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {
        "requests": len(lat), "p50_ms": round(q[49] * 1000, 1), "p99_ms": round(q[98] * 1000, 1),
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "statuses": dict(phase.statuses), "healthz_polls": len(phase.health),
        "healthz_max_ms": round(max(phase.health) * 1000, 1) if phase.health else None,
        "healthz_statuses": dict(phase.health_statuses),
        "server_5xx": sum(n for s, n in phase.statuses.items() if s.startswith("5"))
        + sum(n for s, n in phase.health_statuses.items() if s.startswith("5")),
    }


def run_mode(mode: str, args, kinds: tuple[str, ...], broker, ctx) -> dict:
    """Warm-up, quiet and hostile phases against a server whose request work runs in `mode`."""
    chdb = tempfile.mkdtemp(prefix=f"lookout-bench-hostile-{mode}-")
    server_end, here = ctx.Pipe()
    stop_server = ctx.Event()
    # Not daemonic: a daemonic process may not start ingest's worker processes.
    server = ctx.Process(target=serve, args=(broker.bootstrap, broker.supports_idempotence, chdb, mode, server_end,
                                             stop_server, args.sink == "apart"))
    sink = (ctx.Process(target=sink_apart, args=(broker.bootstrap, broker.supports_idempotence, chdb, mode,
                                                 stop_server)) if args.sink == "apart" else None)
    results: dict = {"work_mode": mode, "sink": args.sink, "load_before": os.getloadavg()}
    try:
        server.start()
        if sink is not None:
            sink.start()
        info = here.recv()
        results["server_settings"] = info["settings"]
        url = info["url"]
        progress(f"[{mode}] ingest + sink ({args.sink}) at {url}")

        warmup, quiet, hostile = Phase("warmup"), Phase("quiet"), Phase("hostile")
        current = [warmup]
        stop = threading.Event()
        threads = [threading.Thread(target=normal_traffic, args=(url, info["normal"], lambda: current[0], stop)),
                   threading.Thread(target=health_poller, args=(url, lambda: current[0], stop))]
        for t in threads:
            t.start()
        time.sleep(5)
        current[0] = quiet
        progress(f"[{mode}] quiet: normal traffic alone for {args.quiet_seconds:.0f} s")
        time.sleep(args.quiet_seconds)

        attacker_end, attacker_here = ctx.Pipe()
        attacker = ctx.Process(target=attack, args=(url, info["hostile"], args.seconds, args.concurrency,
                                                    args.flood_spans, kinds, attacker_end), daemon=True)
        attacker.start()
        assert attacker_here.recv() == "ready"
        here.send("cpu")
        cpu_before = here.recv()
        current[0] = hostile
        results["load_hostile_start"] = os.getloadavg()
        progress(f"[{mode}] hostile: {args.concurrency} hostile workers beside normal traffic for {args.seconds:.0f} s")
        hostile_report = attacker_here.recv()
        here.send("cpu")
        cpu_after = here.recv()
        results["load_hostile_end"] = os.getloadavg()
        stop.set()
        for t in threads:
            t.join(120)
        attacker.join(30)
        # What the server spent during the hostile phase, by part (item: does the sink compete?).
        results["server_cpu_s_hostile"] = {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after}

        stop_server.set()
        results["stored"] = here.recv()
        server.join(120)
        results["load_after"] = os.getloadavg()
        results["quiet"] = summary(quiet)
        results["hostile"] = summary(hostile)
        results["hostile_requests"] = hostile_report
        hostile_5xx = sum(n for per_kind in hostile_report["answers"].values()
                          for s, n in per_kind.items() if s.startswith("5"))
        q, h = results["quiet"], results["hostile"]
        results["verdict"] = {
            "5xx": q["server_5xx"] + h["server_5xx"] + hostile_5xx,
            "slowest_healthz_ms": max(q["healthz_max_ms"], h["healthz_max_ms"]),
            "p99_ratio_hostile_vs_quiet": round(h["p99_ms"] / q["p99_ms"], 2),
        }
    finally:
        for proc in (server, sink):
            if proc is not None and proc.is_alive():
                stop_server.set()
                proc.join(60)
                if proc.is_alive():
                    proc.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka")
    parser.add_argument("--seconds", type=float, default=60, help="hostile phase")
    parser.add_argument("--quiet-seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=7, help="hostile workers")
    parser.add_argument("--flood-spans", type=int, default=20_000)
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"hostile kinds, comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--modes", default="process",
                        help="LOOKOUT_WORK_MODE of the server, comma-separated to compare in one run "
                             "(e.g. thread,process: each mode gets its own server, quiet and hostile phases)")
    parser.add_argument("--sink", choices=["embedded", "apart"], default="embedded",
                        help="the sink on the server's loop (as `lookout up` runs it) or a process of its own")
    args = parser.parse_args()
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds takes some of {', '.join(KINDS)}")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - {"process", "thread"}:
        parser.error("--modes takes process and/or thread")

    from lookout.testing.brokers import KafkaBroker, TansuBroker

    results: dict = {"broker": args.broker, "cpus": os.cpu_count(), "load_before": os.getloadavg(),
                     "hostile_kinds": kinds, "concurrency": args.concurrency, "flood_spans": args.flood_spans,
                     "crossing_5000_events": crossing_costs(), "modes": {}}
    broker = (KafkaBroker() if args.broker == "kafka" else TansuBroker()).start()
    try:
        ctx = mp.get_context("spawn")
        for mode in modes:
            results["modes"][mode] = run_mode(mode, args, kinds, broker, ctx)
    finally:
        broker.close()
    results["load_after"] = os.getloadavg()
    OUT.mkdir(exist_ok=True)
    (OUT / "hostile.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    for mode, r in results["modes"].items():
        v = r["verdict"]
        progress(f"[{mode}] 5xx: {v['5xx']} (target 0); slowest /healthz {v['slowest_healthz_ms']} ms (target < 250); "
                 f"normal p99 {r['hostile']['p99_ms']} ms under hostile load vs {r['quiet']['p99_ms']} ms "
                 f"quiet: x{v['p99_ratio_hostile_vs_quiet']} (target <= 2); load {r['load_before'][0]:.1f} -> "
                 f"{r['load_after'][0]:.1f}")


if __name__ == "__main__":
    main()
