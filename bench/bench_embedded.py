"""`lookout up` with Apache Kafka against `lookout up` with Tansu, in the same run:

- start-up: process start → /readyz 200, on a new data dir (first start: Kafka formats its
  log and writes its class archive) and again on the same one (a warm start);
- resident memory of the stack process and of its broker, idle after start and after load;
- emit → queryable at 1 000 calls/s (10 batches of 100 a second) through the stack's own
  HTTP API: a batch counts as queryable when GET /v1/calls/{id} finds its last call;
- the broker alone: Apache Kafka's start to listening with the JVM's default flags, with
  the launcher's flags (C1 only, serial GC), and with those plus the class archive.

Run: `.venv/bin/python -m bench.bench_embedded [--latency-seconds 30] [--jvm-runs 2]`.
Results print and go to bench/out/embedded.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.procs import children
from lookout.broker import KafkaBroker, free_port
from lookout.testing.brokers import kafka_libs
from lookout.testing.embedded import LookoutUp, start_lookout_up
from tests.events import llm_call

OUT = Path(__file__).parent / "out"


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def memory(proc: LookoutUp) -> dict:
    kids = children(proc.pid)
    return {"stack_mb": rss_mb(proc.pid), "broker_mb": sum(rss_mb(k) for k in kids)}


def start(data_dir: Path, port: int, broker: str, timeout: float = 600) -> tuple[LookoutUp, float]:
    began = time.perf_counter()
    proc = start_lookout_up(data_dir, port, "--broker", broker)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"lookout up exited: {proc.output()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, time.perf_counter() - began
        except httpx.HTTPError:
            pass
        if time.perf_counter() - began > timeout:
            raise TimeoutError("lookout up did not become ready")
        time.sleep(0.1)


def stop(proc: LookoutUp) -> None:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=180)


def latency(base: str, key: str, rate: int, seconds: int) -> dict:
    per = rate // 10
    sent: dict[int, float] = {}
    probes: dict[int, str] = {}
    seen: dict[int, float] = {}
    done = threading.Event()
    headers = {"Authorization": f"Bearer {key}"}

    def poll() -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
            while True:
                pending = sorted(b for b in sent if b not in seen)
                if not pending and done.is_set():
                    return
                if done.is_set() and time.perf_counter() - last_post[0] > 60:
                    return
                for batch in pending[:5]:  # stored about in order: the oldest few are due first
                    r = http.get(f"/v1/calls/{probes[batch]}", params={"app_id": "latency"})
                    if r.status_code == 200:
                        seen[batch] = time.perf_counter()
                time.sleep(0.02)

    last_post = [time.perf_counter()]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    refused = 0
    with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
        t0 = time.perf_counter()
        for tick in range(seconds * 10):
            events = [llm_call("latency", i=i) for i in range(per)]
            began = time.perf_counter()
            r = http.post("/v1/events", json={"events": events})
            if r.status_code != 200:
                refused += 1
                continue
            probes[tick] = events[-1]["event_id"]
            sent[tick] = began
            last_post[0] = time.perf_counter()
            delay = t0 + (tick + 1) / 10 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        achieved = len(sent) * per / (time.perf_counter() - t0)
    done.set()
    poller.join(90)
    lat = sorted(seen[b] - sent[b] for b in seen)
    q = statistics.quantiles(lat, n=100)
    return {"batches": len(sent), "refused": refused, "missing": len(sent) - len(seen), "calls_per_s": achieved,
            "p50_s": q[49], "p99_s": q[98], "max_s": lat[-1]}


def stack_figures(broker: str, latency_seconds: int) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix=f"lookout-bench-{broker}-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    progress(f"{broker}: first start on a new data dir...")
    proc, first = start(data_dir, port, broker)
    stop(proc)
    progress(f"{broker}: first start {first:.1f} s; warm start...")
    proc, warm = start(data_dir, port, broker)
    try:
        time.sleep(5)  # let the services settle (group joins, first polls)
        idle = memory(proc)
        progress(f"{broker}: warm start {warm:.1f} s; idle RSS stack {idle['stack_mb']:.0f} MB, "
                 f"broker {idle['broker_mb']:.0f} MB; emit -> queryable at 1000 calls/s for {latency_seconds} s...")
        key = (data_dir / "dev-api-key").read_text().strip()
        lat = latency(base, key, 1000, latency_seconds)
        loaded = memory(proc)
        progress(f"{broker}: p50 {lat['p50_s']:.3f} s, p99 {lat['p99_s']:.3f} s, max {lat['max_s']:.3f} s, "
                 f"{lat['missing']} batches not seen, {lat['refused']} refused; RSS after: stack "
                 f"{loaded['stack_mb']:.0f} MB, broker {loaded['broker_mb']:.0f} MB")
    finally:
        stop(proc)
    return {"first_start_s": first, "warm_start_s": warm, "idle": idle, "after_load": loaded, "latency": lat}


class DefaultJvm(KafkaBroker):
    """The JVM's own defaults (G1, tiered compilation) at the same heap: the flags' baseline."""

    def _jvm(self, heap_mb: int) -> list[str]:
        return [self.java, f"-Xms{min(heap_mb, 128)}m", f"-Xmx{heap_mb}m"]


def kafka_alone(runs: int) -> dict:
    """Start → listening of the broker alone, each variant on its own formatted folder."""
    libs = kafka_libs()
    out: dict[str, list[float]] = {}
    for name, cls, archive in (("jvm defaults", DefaultJvm, False), ("launcher flags", KafkaBroker, False),
                               ("launcher flags + class archive", KafkaBroker, True)):
        root = Path(tempfile.mkdtemp(prefix="lookout-bench-jvm-"))
        broker = cls(workdir=root / "kafka", libs=libs, archive_dir=root / "cds" if archive else None)
        broker.start().stop()  # formats the log (and writes the archive) outside the timings
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            broker.start()
            times.append(time.perf_counter() - began)
            broker.stop()
        out[name] = times
        progress(f"kafka alone, {name}: {', '.join(f'{t:.1f}' for t in times)} s to listening")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-seconds", type=int, default=30)
    parser.add_argument("--jvm-runs", type=int, default=2)
    args = parser.parse_args()
    results: dict = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}, "python": sys.version}
    if args.jvm_runs:
        results["kafka_alone"] = kafka_alone(args.jvm_runs)
    for broker in ("kafka", "tansu"):
        results[broker] = stack_figures(broker, args.latency_seconds)
    results["machine"]["load_after"] = os.getloadavg()
    k, t = results["kafka"], results["tansu"]
    results["ratios_kafka_over_tansu"] = {
        "warm_start": k["warm_start_s"] / t["warm_start_s"],
        "rss_total_after_load": (k["after_load"]["stack_mb"] + k["after_load"]["broker_mb"])
        / (t["after_load"]["stack_mb"] + t["after_load"]["broker_mb"]),
        "p99": k["latency"]["p99_s"] / t["latency"]["p99_s"],
    }
    progress(f"Kafka / Tansu: warm start {results['ratios_kafka_over_tansu']['warm_start']:.2f}, "
             f"RSS {results['ratios_kafka_over_tansu']['rss_total_after_load']:.2f}, "
             f"p99 {results['ratios_kafka_over_tansu']['p99']:.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "embedded.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
