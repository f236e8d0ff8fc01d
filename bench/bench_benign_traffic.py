"""The shipped defaults on benign real traffic: N benign calls (default 10 000) through the
whole embedded stack (`lookout up`, default settings and the packaged retrain policy:
ingest -> judge (toxicity) -> sink, drift, the feedback service's review-task builder,
the retrain trigger), then the rule firings and review tasks counted by reason.

A call is one Debian package of the held-out split of bench/toxicity_corpus.py: its
synopsis as the user's message, its long description as the answer (both written by
people, both benign). No evaluator LLM is configured (the default) and no thumbs are sent,
so the rules that can fire are toxic-answers and embedding-drift, and the review reasons
that can appear are toxicity, drift and the random audit sample. Drift embeds the calls its
encoder keeps up with (uniform sampling beyond): the figures say how many it tested.
Target: 0 retrain firings; review tasks only from the audit sample (about 1 % of calls).

Run: `.venv/bin/python -m bench.bench_benign_traffic [--calls 10000] [--rate 100]`
(the stack runs under nice). Results print and go to bench/out/benign_traffic.json.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out"
sys.path.insert(0, str(ROOT))

from bench import toxicity_corpus  # noqa: E402


def progress(msg: str) -> None:
    print(msg, flush=True)


def benign_calls(n: int) -> list[dict]:
    rows = [r for r in toxicity_corpus.load() if r.split == "test"]
    prompts = {r.source.rsplit(":", 2)[0]: r.text for r in rows if r.corpus == "debian_synopsis"}
    answers = [(r.source.rsplit(":", 1)[0], r.text) for r in rows if r.corpus == "debian"]
    pairs = [(prompts[k], text) for k, text in answers if k in prompts][:n]
    if len(pairs) < n:
        raise SystemExit(f"only {len(pairs)} benign calls in the held-out split")
    return [{"event_id": str(uuid.uuid4()), "app_id": "benign-app", "model": "gpt-4o-mini", "provider": "openai",
             "input": [{"role": "user", "content": prompt}], "output": answer} for prompt, answer in pairs]


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()) and re.match(rf"^{name}(\{{|$)", head):
            total += float(value)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second posted")
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    from lookout.core import clickhouse
    from lookout.core.settings import CommonSettings
    from lookout.testing.brokers import free_port
    from lookout.testing.embedded import LookoutUp, wait_ready

    calls = benign_calls(args.calls)
    data = Path(tempfile.mkdtemp(prefix="lookout-benign-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = LookoutUp(["nice", "-n", "10", sys.executable, "-m", "lookout.stack.cli", "up", "--data-dir", str(data),
                      "--port", str(port)])
    result: dict = {"calls": len(calls), "data_dir": str(data)}
    try:
        wait_ready(proc, port, timeout=180)
        key = (data / "dev-api-key").read_text().strip()
        headers = {"Authorization": f"Bearer {key}"}
        began = time.monotonic()
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            for i in range(0, len(calls), args.batch):
                batch = calls[i : i + args.batch]
                now = datetime.now(UTC).isoformat()
                for c in batch:
                    c["ts"] = now
                r = http.post("/v1/events", json={"events": batch})
                assert r.status_code == 200 and r.json()["accepted"] == len(batch), r.text
                wait = began + (i + len(batch)) / args.rate - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            result["post_s"] = time.monotonic() - began
            progress(f"posted {len(calls)} calls in {result['post_s']:.0f}s")
            # Done when the judge scored every call, drift read every call, and the sink's,
            # drift's and the task builder's counts stood still for 30 s. (Drift embeds what
            # its encoder keeps up with and samples the rest uniformly: on 2 shared cores,
            # few of them.)
            deadline, still, last = time.monotonic() + 1800, 0.0, None
            while time.monotonic() < deadline:
                text = http.get("/metrics").text
                judged = metric(text, "lookout_judge_events_total")
                drifted = metric(text, "lookout_drift_events_total")
                stored = metric(text, "lookout_sink_rows_stored_total")
                windows = metric(text, "lookout_drift_windows_tested_total")
                now_state = (judged, drifted, stored, windows, metric(text, "lookout_drift_texts_embedded_total"),
                             metric(text, "lookout_review_reasons_total"))
                if judged >= len(calls) and drifted >= len(calls) and now_state == last:
                    still += 5
                    if still >= 30:
                        break
                else:
                    still = 0
                last = now_state
                time.sleep(5)
            result["settled_s"] = time.monotonic() - began
            result["metrics"] = {"judge_events": judged, "drift_events": drifted, "sink_rows": stored,
                                 "drift_windows_tested": windows,
                                 "drift_embedded": metric(text, "lookout_drift_texts_embedded_total"),
                                 "drift_sampled_events": metric(text, "lookout_drift_events_total", outcome="sampled"),
                                 "drift_results": metric(text, "lookout_drift_results_total"),
                                 "review_reasons": metric(text, "lookout_review_reasons_total"),
                                 "retrain_firings": metric(text, "lookout_retrain_firings_total")}
            progress(f"settled after {result['settled_s']:.0f}s: {result['metrics']}")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise SystemExit(f"lookout up exited {proc.returncode}:\n{out[-3000:]}")

    client = clickhouse.connect(CommonSettings(clickhouse_dsn=f"chdb://{data / 'chdb'}"))

    def rows(sql: str) -> list:
        return [list(r) for r in client.query(sql).result_rows]

    result["stored_calls"] = rows("SELECT count() FROM llm_calls FINAL")[0][0]
    result["scores"] = dict(rows("SELECT name, count() FROM scores FINAL GROUP BY name ORDER BY name"))
    result["toxicity_max"] = dict(rows("SELECT name, max(value) FROM scores FINAL WHERE name LIKE 'toxicity.%' "
                                       "GROUP BY name"))
    result["review_tasks"] = dict(rows("SELECT kind, count(DISTINCT event_id) FROM review_tasks GROUP BY kind"))
    result["review_reasons"] = rows("SELECT kind, reason FROM review_tasks WHERE kind != 'audit' LIMIT 20")
    result["retrain_requested"] = dict(rows("SELECT rule, count(DISTINCT run_id) FROM retrain_runs "
                                            "WHERE status = 'requested' GROUP BY rule"))
    result["drift_results"] = dict(rows("SELECT concat(signal, if(drifted, ' drifted', ' ok')), count() "
                                        "FROM drift_results GROUP BY signal, drifted"))
    OUT.mkdir(exist_ok=True)
    (OUT / "benign_traffic.json").write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    firings = sum(result["retrain_requested"].values())
    other = {k: v for k, v in result["review_tasks"].items() if k != "audit"}
    print(f"target: 0 retrain firings ({firings}); review tasks only from the audit sample (others: {other}): "
          f"{'met' if not firings and not other else 'NOT met'}")


if __name__ == "__main__":
    main()
