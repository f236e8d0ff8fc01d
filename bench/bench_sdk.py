"""Benchmarks of lookout-sdk, each against a baseline measured in the same run:

- overhead: caller-side cost of one `log_call` (µs, p50/p99/max), with the sender thread
  running against a live ingest, compared with an empty function call taking the same
  arguments, with building the same event dict by hand, and with OpenTelemetry's
  BatchSpanProcessor span start/end (no-op exporter). Targets: p50 <= 5 µs, p99 <= 50 µs.
- throughput: events/s from the first log_call to flush() returning (the SDK encodes,
  gzips and posts in the background) ÷ posting the same events with raw httpx in
  batches of the same size (json + gzip + POST, one connection, one thread), against the
  same ingest.

The ingest service (HTTP intake -> broker) runs in a child process, so the measured
process holds only the "application" and the SDK, as in production.

Run: `.venv/bin/python -m bench.bench_sdk [--broker kafka|tansu|none] [--calls 200000]
[--events 50000]`. `--broker none` posts to a minimal local HTTP sink instead (no Kafka,
quick; client-side costs only). Results print and go to bench/out/sdk-<broker>.json.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from lookout_sdk import Lookout

OUT = Path(__file__).parent / "out"
APP = "bench-sdk"


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# ---------------------------------------------------------------------- targets


def _serve_stack(conn: Any, broker: str) -> None:
    """Child process: a broker, ingest's HTTP intake on it, until told to stop."""
    from lookout.core.settings import CommonSettings
    from lookout.testing.brokers import KafkaBroker, TansuBroker
    from lookout.testing.stack import IngestStack, ingest_settings_for

    running = (KafkaBroker() if broker == "kafka" else TansuBroker()).start()
    chdb = tempfile.mkdtemp(prefix="lookout-bench-sdk-")
    try:
        common = CommonSettings(
            kafka_bootstrap=running.bootstrap,
            kafka_idempotence="on" if running.supports_idempotence else "off",
            topic_prefix="bench-sdk.",
            clickhouse_dsn=f"chdb://{chdb}",
            clickhouse_database="bench_sdk",
        )
        stack = IngestStack(ingest_settings_for(common))
        stack.start_intake()  # intake -> Kafka; no sink, so ClickHouse does not compete for CPU
        conn.send((stack.url, stack.api_key))
        conn.recv()  # "stop"
        stack.stop_http()
        stack._run(stack.service.stop())
    finally:
        running.close()


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        n = len(json.loads(body)["events"])
        data = json.dumps({"accepted": n, "rejected": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


# ---------------------------------------------------------------------- workloads

MESSAGES = [
    {"role": "system", "content": "You are a helpful shopping assistant for an online store."},
    {"role": "user", "content": "Which of your running shoes suit a marathon beginner? " * 3},
]
OUTPUT = "For a first marathon, pick a cushioned, stable trainer and break it in for 50 km. " * 4
TAGS = ["bench"]
META = {"request": "42"}


def _percentiles(ns: list[int]) -> dict[str, float]:
    q = statistics.quantiles(ns, n=100)
    mean = statistics.fmean(ns)
    return {"p50_us": q[49] / 1e3, "p99_us": q[98] / 1e3, "max_us": max(ns) / 1e3, "mean_us": mean / 1e3}


def overhead(client: Lookout, n: int) -> dict[str, dict[str, float]]:
    pc = time.perf_counter_ns
    results: dict[str, dict[str, float]] = {}

    def noop(*, model, provider, input, output, tokens_in, tokens_out, latency_ms, ttft_ms, user_id, tags, metadata):
        pass

    # Each loop is written out, so every variant pays the same timing and loop costs.
    out = [0] * n
    for i in range(n):
        t0 = pc()
        out[i] = pc() - t0
    results["timer_floor"] = _percentiles(out)

    for i in range(n):
        t0 = pc()
        noop(model="gpt-4o-mini", provider="openai", input=MESSAGES, output=OUTPUT, tokens_in=180, tokens_out=90,
             latency_ms=812.5, ttft_ms=140.0, user_id="u-1", tags=TAGS, metadata=META)
        out[i] = pc() - t0
    results["empty_call"] = _percentiles(out)

    for i in range(n):
        t0 = pc()
        _ = {"model": "gpt-4o-mini", "provider": "openai", "input": MESSAGES, "output": OUTPUT, "tokens_in": 180,
             "tokens_out": 90, "latency_ms": 812.5, "ttft_ms": 140.0, "user_id": "u-1", "tags": TAGS,
             "metadata": META}
        out[i] = pc() - t0
    results["build_dict"] = _percentiles(out)

    log_call = client.log_call
    for i in range(n):
        t0 = pc()
        log_call(model="gpt-4o-mini", provider="openai", input=MESSAGES, output=OUTPUT, tokens_in=180, tokens_out=90,
                 latency_ms=812.5, ttft_ms=140.0, user_id="u-1", tags=TAGS, metadata=META)
        out[i] = pc() - t0
    results["log_call"] = _percentiles(out)

    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        progress("opentelemetry-sdk not installed: skipping the BatchSpanProcessor comparison")
        return results

    class _Discard(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard(), max_queue_size=n))
    tracer = provider.get_tracer("bench")
    attrs = {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 180,
             "gen_ai.usage.output_tokens": 90, "user.id": "u-1", "lookout.latency_ms": 812.5,
             "lookout.ttft_ms": 140.0, "lookout.tags": TAGS}
    for i in range(n):
        t0 = pc()
        span = tracer.start_span("chat gpt-4o-mini", attributes=attrs)
        span.end()
        out[i] = pc() - t0
    results["otel_bsp_span"] = _percentiles(out)
    provider.shutdown()
    return results


def sdk_rate(url: str, api_key: str, n: int, batch: int) -> tuple[float, Any]:
    client = Lookout(endpoint=url, api_key=api_key, app_id=APP, batch_size=batch, max_queue_size=n)
    start = time.perf_counter()
    for i in range(n):
        client.log_call(model="gpt-4o-mini", provider="openai", input=MESSAGES, output=OUTPUT, tokens_in=180,
                        tokens_out=90, latency_ms=812.5, ttft_ms=140.0, user_id="u-1", tags=TAGS,
                        metadata={"request": str(i)})
    assert client.flush(timeout=600), "flush timed out"
    elapsed = time.perf_counter() - start
    stats = client.stats
    client.close()
    return n / elapsed, stats


def raw_rate(url: str, api_key: str, n: int, batch: int) -> float:
    """Baseline: the same events posted straight with httpx (json + gzip + POST)."""
    ts = "2026-01-01T00:00:00+00:00"
    events = [
        {"schema": "llm_call/1", "event_id": str(uuid.uuid4()), "ts": ts, "app_id": APP, "environment": "production",
         "model": "gpt-4o-mini", "provider": "openai", "input": MESSAGES, "output": OUTPUT, "tokens_in": 180,
         "tokens_out": 90, "latency_ms": 812.5, "ttft_ms": 140.0, "status": "ok", "user_id": "u-1", "tags": TAGS,
         "metadata": {"request": str(i)}}
        for i in range(n)
    ]
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Content-Encoding": "gzip"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        start = time.perf_counter()
        for i in range(0, n, batch):
            body = json.dumps({"events": events[i : i + batch]}, separators=(",", ":")).encode()
            r = http.post("/v1/events", content=gzip.compress(body, compresslevel=1, mtime=0))
            assert r.status_code == 200, r.text
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=["kafka", "tansu", "none"], default="kafka")
    parser.add_argument("--calls", type=int, default=200_000, help="log_call()s timed one by one")
    parser.add_argument("--events", type=int, default=50_000, help="events for the throughput comparison")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    child = conn = server = None
    if args.broker == "none":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url, api_key = f"http://127.0.0.1:{server.server_address[1]}", "none"
    else:
        progress(f"starting {args.broker} and ingest in a child process...")
        ctx = multiprocessing.get_context("spawn")
        conn, child_conn = ctx.Pipe()
        child = ctx.Process(target=_serve_stack, args=(child_conn, args.broker), daemon=True)
        child.start()
        url, api_key = conn.recv()

    results: dict[str, Any] = {"broker": args.broker, "calls": args.calls, "events": args.events}
    try:
        progress("warming up (connection, first batches)...")
        sdk_rate(url, api_key, 2_000, args.batch)
        raw_rate(url, api_key, 2_000, args.batch)

        progress(f"timing {args.calls:,} log_call()s with the sender posting to ingest...")
        client = Lookout(endpoint=url, api_key=api_key, app_id=APP, max_queue_size=args.calls + 1)
        gc.collect()
        over = overhead(client, args.calls)
        assert client.flush(timeout=600)
        over_stats = client.stats
        client.close()
        results["overhead"] = over
        results["overhead_delivery"] = {"sent": over_stats.sent, "dropped": over_stats.dropped,
                                        "failed": over_stats.failed}
        log = over["log_call"]
        for name, base in over.items():
            progress(f"{name:14s} p50 {base['p50_us']:6.2f} µs  p99 {base['p99_us']:7.2f} µs  "
                     f"max {base['max_us']:9.1f} µs  mean {base['mean_us']:6.2f} µs")
        results["overhead_ratios"] = {
            f"log_call/{name}": {"p50": log["p50_us"] / base["p50_us"], "p99": log["p99_us"] / base["p99_us"]}
            for name, base in over.items()
            if name not in ("log_call", "timer_floor")
        }
        for name, ratio in results["overhead_ratios"].items():
            progress(f"{name}: p50 x{ratio['p50']:.2f}, p99 x{ratio['p99']:.2f}")
        progress(f"log_call p50 {log['p50_us']:.2f} µs (target <= 5), p99 {log['p99_us']:.2f} µs (target <= 50); "
                 f"delivered {over_stats.sent:,}/{args.calls:,}, dropped {over_stats.dropped}")

        progress(f"throughput: {args.events:,} events through the SDK vs raw httpx...")
        raw = raw_rate(url, api_key, args.events, args.batch)
        sdk, stats = sdk_rate(url, api_key, args.events, args.batch)
        results["throughput"] = {"sdk_events_per_s": sdk, "raw_httpx_events_per_s": raw, "ratio": sdk / raw,
                                 "sent": stats.sent, "dropped": stats.dropped, "failed": stats.failed}
        progress(f"SDK {sdk:,.0f} events/s vs raw httpx {raw:,.0f} events/s: ratio {sdk / raw:.2f} "
                 f"(sent {stats.sent:,}, dropped {stats.dropped}, failed {stats.failed})")
    finally:
        if conn is not None:
            conn.send("stop")
            child.join(60)
        if server is not None:
            server.shutdown()
    OUT.mkdir(exist_ok=True)
    (OUT / f"sdk-{args.broker}.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
