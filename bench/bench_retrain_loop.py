"""How fast `lookout up --demo` closes the quality loop: from the quality drop (the first
call of the demo's thumbs-down phase) to the retrain run requested on llm.retrain, to the
fine-tuning run succeeded on llm.retrain.status, and to the first recovery call served on
the version that run registered. Target: requested and succeeded < 5 min after the drop.

The stack runs as a user starts it, `lookout up --demo --speed S` in a subprocess (its own
data dir and ports, the demo's traffic, reviewer and retrain policy). Every time is read
from the records themselves, consumed from the stack's embedded broker: the calls' ts on
llm.events, the runs' ts on llm.retrain and llm.retrain.status.

Baseline, in the same run: the theoretical earliest firing of the demo policy's thumbs-down
rule at this speed: the expected votes of the demo's rates (calls per second, vote and
down shares per phase) in the rule's sliding window, the first moment the window holds
min_samples votes with a down share above fire_above, plus the demo's vote delay. What the
stack adds on top is its pipeline (ingest, sink, the trigger's consumer) and the snapshot.

Run: `.venv/bin/python -m bench.bench_retrain_loop [--speed 4] [--timeout 900]`.
Results print and go to bench/out/retrain-loop-speed<S>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from lookout.core import kafka, topics
from lookout.core.events import TOPIC_SCHEMAS, LlmCall, Retrain
from lookout.core.settings import CommonSettings
from lookout.retrain_trigger import policies
from lookout.retrain_trigger.policies import ThumbsDownRule
from lookout.stack import demo
from lookout.stack.demo_retrain import POLICY_FILE
from lookout.testing.brokers import free_port
from lookout.testing.embedded import start_lookout_up, wait_ready

OUT = Path(__file__).parent / "out"
TARGET_S = 300.0


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def stream_rates(phase: demo.Phase) -> tuple[float, float]:
    """Expected (votes per wall second, share down) on the retrained stream in a phase."""
    calls = demo.EVENTS_PER_SECOND / sum(len(models) for models in demo.APPS.values())
    ok = 0.75 if phase.incident else 0.99
    surge = phase.surge_app == demo.RETRAIN_STREAM[0]
    votes = calls * ok * (0.5 if surge else phase.vote_share)
    if surge:
        down = 0.8
    elif phase.toxic:  # 30% of answers come from the toxic pool, voted down 85% of the time
        down = 0.3 * 0.85 + 0.7 * phase.down_share
    else:
        down = phase.down_share
    return votes, down


def theoretical_fire_s(rule: ThumbsDownRule, speed: float, step: float = 0.05) -> float | None:
    """Seconds after the surge began at which the rule's window first trips on expected
    votes (first cycle: no traffic before the first phase), plus the vote delay."""
    length = demo.PHASE_SECONDS / speed
    surge = next(i for i, p in enumerate(demo.PHASES) if p.surge_app)
    rates = [stream_rates(p) for p in demo.PHASES]

    def overlap(a: float, b: float, lo: float, hi: float) -> float:
        return max(0.0, min(b, hi) - max(a, lo))

    t = 0.0
    while t < length:
        now = surge * length + t  # since the first phase began
        lo = now - rule.window
        n = down = 0.0
        for i, (votes, share) in enumerate(rates[: surge + 1]):
            seconds = overlap(i * length, (i + 1) * length, lo, now)
            n += votes * seconds
            down += votes * share * seconds
        if n >= rule.min_samples and down / n > rule.fire_above:
            return round(t + demo.VOTE_DELAY_S, 2)
        t += step
    return None


def phase_of(call: LlmCall) -> str:
    return next((t.split(":", 1)[1] for t in call.tags if t.startswith("phase:")), "")


async def watch(bootstrap: str, deadline: float) -> dict:
    """Read llm.events, llm.retrain and llm.retrain.status from the start until the first
    recovery call on the version a run registered (or the deadline)."""
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    names = [topics.resolve(settings.topic_prefix, t) for t in (topics.EVENTS, topics.RETRAIN, topics.RETRAIN_STATUS)]
    consumer = kafka.make_consumer(settings, None, *names)
    await consumer.start()
    seen: dict = {"onset": None, "runs": {}, "switched": None, "phases": {}}
    try:
        while time.monotonic() < deadline and seen["switched"] is None:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    ev = TOPIC_SCHEMAS[topics.base_name(settings.topic_prefix, r.topic)].from_bytes(r.value)
                    if isinstance(ev, LlmCall):
                        phase = phase_of(ev)
                        if phase and phase not in seen["phases"]:
                            seen["phases"][phase] = ev.ts
                            progress(f"phase {phase} began {ev.ts.isoformat()}")
                        if phase == "thumbs_down" and seen["onset"] is None:
                            seen["onset"] = ev.ts
                        versions = {run.get("succeeded_version") for run in seen["runs"].values()}
                        if phase == "recovery" and ev.model_version in versions - {None}:
                            seen["switched"] = ev.ts
                            progress(f"recovery serves {ev.model_version} from {ev.ts.isoformat()}")
                    elif isinstance(ev, Retrain):
                        run = seen["runs"].setdefault(str(ev.run_id), {"rule": ev.rule})
                        if ev.status not in run:
                            run[ev.status] = ev.ts
                            progress(f"run {ev.run_id} {ev.status} {ev.ts.isoformat()}")
                        if ev.status == "requested":
                            run["evidence"] = ev.evidence.get("rules", [{}])[0]
                            run["dataset_counts"] = ev.dataset_counts
                        if ev.status == "succeeded":
                            run["succeeded_version"] = ev.model_version
    finally:
        await consumer.stop()
    return seen


def seconds(a: datetime | None, b: datetime | None) -> float | None:
    return round((b - a).total_seconds(), 2) if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=4.0,
                        help="demo speed (a phase lasts 120/speed s; default 4: the surge begins ~2 min in)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    args = parser.parse_args()
    # Stopped from outside (timeout, kill): still stop the stack it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    with tempfile.TemporaryDirectory(prefix="lookout-bench-loop-") as tmp:
        port, kafka_port = free_port(), free_port()
        progress(f"lookout up --demo --speed {args.speed:g} (data dir {tmp})")
        began = time.monotonic()
        proc = start_lookout_up(tmp, port, "--demo", "--speed", str(args.speed), "--kafka-port", str(kafka_port))
        try:
            wait_ready(proc, port)
            progress(f"ready in {time.monotonic() - began:.1f}s; watching the topics")
            policy = policies.load(Path(tmp) / POLICY_FILE)
            rule = next(r for p in policy.policies for r in p.rules if isinstance(r, ThumbsDownRule))
            seen = asyncio.run(watch(f"127.0.0.1:{kafka_port}", began + args.timeout))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
        loop_lines = [line.rstrip() for line in proc.lines
                      if "demo" in line and ("retrain" in line or "recovery" in line)]

    onset = seen["onset"]
    runs = sorted(seen["runs"].items(),
                  key=lambda kv: kv[1]["requested"].timestamp() if "requested" in kv[1] else float("inf"))
    run_id, run = runs[0] if runs else ("", {})
    theory = theoretical_fire_s(rule, args.speed)
    requested = seconds(onset, run.get("requested"))
    succeeded = seconds(onset, run.get("succeeded"))
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "speed": args.speed,
        "phase_s": demo.PHASE_SECONDS / args.speed,
        "rule": {"window_s": rule.window, "min_samples": rule.min_samples, "fire_above": rule.fire_above},
        "onset": onset.isoformat() if onset else None,
        "runs": len(runs),
        "run_id": run_id,
        "evidence": run.get("evidence"),
        "dataset_counts": run.get("dataset_counts"),
        "theoretical_fire_s": theory,
        "requested_s": requested,
        "pipeline_over_theory_s": round(requested - theory, 2) if requested is not None and theory else None,
        "launched_s": seconds(onset, run.get("launched")),
        "succeeded_s": succeeded,
        "job_s": seconds(run.get("launched"), run.get("succeeded")),
        "model_version": run.get("succeeded_version"),
        "recovery_serves_s": seconds(onset, seen["switched"]),
        "target_s": TARGET_S,
        "met": requested is not None and succeeded is not None and max(requested, succeeded) < TARGET_S,
        "demo_log": loop_lines[-6:],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / f"retrain-loop-speed{args.speed:g}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    progress(f"drop -> requested {requested}s (theory {theory}s), -> succeeded {succeeded}s, "
             f"-> recovery on it {results['recovery_serves_s']}s; target < {TARGET_S:.0f}s: "
             f"{'met' if results['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
