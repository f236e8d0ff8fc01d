"""Drift benchmark on real text: detection delay, false alarms, shift share, examples, speed.

Streams are built from the real corpora in bench/corpora (Debian package descriptions by
Section, WordNet noun glosses by lexicographer file; see bench/corpora/build.py for where
each text came from). A call is (prompt, response) of one corpus item. Each run picks 4
base topics and 1 new topic at random; calls are drawn i.i.d. (with replacement) from the
base topics: the first 500 are the reference, calls 500-2000 are unshifted, and from call
2000 on each call is from the new topic with probability `share`. Delay = calls after the
onset until the method says drifted (capped at --max-after; a run not flagged by then
counts as a miss). Control streams have no onset: every alarm on them is false.

Methods, on exactly the same streams:
- `sequential` (the service's default): conformal p-values + Shiryaev-Roberts evidence on
  all nine signals, one false-alarm budget for the stream (lookout.drift.evidence).
- `fixed_window` (the service before this): every 250 calls, the last 500 against the
  reference with the per-window tests on all signals at alpha 0.01 (MMD for embeddings, KS
  for lengths, chi-square by permutation for tokens, Fisher for empty/refused); drifted
  when one signal crossed in 2 consecutive windows.
- `evidently`: Evidently's default embedding drift method (its classifier) on tumbling
  windows of 500 calls, prompt and response embeddings; drifted when either says so.

Also: at the sequential alarm, the shift-share estimate and the precision of its 5
examples (share of them from the new topic); and throughput, torch vs ONNX Runtime int8,
through the service, torch against the faster encoders (onnx-int8, model2vec), alternating
(see `throughput`).

Run: `.venv/bin/python -m bench.bench_drift [--runs 20] [--encoder torch|onnx-int8|model2vec]
[--encoders torch,onnx-int8,model2vec] [--skip-throughput] [--skip-detection]`. Embeddings come from
.cache/drift-corpora (computed once per encoder). Results print and go to bench/out/drift.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out"
REFERENCE, ONSET, WINDOW, EVERY = 500, 2000, 500, 250
SHARES = (0.1, 0.2, 0.5)
BASE_TOPICS = 4
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


# --- corpora as calls ---------------------------------------------------------------------
@dataclass
class Features:
    name: str
    topics: np.ndarray  # topic of item i
    prompt_emb: np.ndarray
    response_emb: np.ndarray
    prompt_ids: list
    response_ids: list
    prompt_chars: np.ndarray
    response_chars: np.ndarray


def corpus_features(name: str, encoder_kind: str) -> Features:
    from bench.corpora import load
    from bench.corpora.embeddings import embeddings
    from lookout.drift.tokenizer import Tokenizer

    corpus = load(name)
    pe, re_ = embeddings(name, encoder_kind)
    tok = Tokenizer()
    return Features(
        name, np.array([i.topic for i in corpus.items]), pe, re_,
        tok.encode([i.prompt for i in corpus.items]), tok.encode([i.response for i in corpus.items]),
        np.array([len(i.prompt) for i in corpus.items]), np.array([len(i.response) for i in corpus.items]),
    )


def make_sample(f: Features, item: int, n: int, rng: np.random.Generator, keep_ids: int = 512):
    from lookout.drift.features import Sample

    return Sample(
        event_id=uuid.UUID(int=(int(rng.integers(1 << 62)) << 64) | n), ts=T0 + timedelta(seconds=n),
        prompt_chars=int(f.prompt_chars[item]), response_chars=int(f.response_chars[item]),
        prompt_tokens=len(f.prompt_ids[item]), response_tokens=len(f.response_ids[item]),
        empty_or_refused=f.response_chars[item] == 0,
        prompt_token_ids=f.prompt_ids[item][:keep_ids], response_token_ids=f.response_ids[item][:keep_ids],
        prompt_embedding=f.prompt_emb[item], response_embedding=f.response_emb[item],
    )


@dataclass
class Stream:
    corpus: str
    base: list[str]
    new: str | None
    share: float
    samples: list
    is_new: np.ndarray  # per call: drawn from the new topic


def build_stream(f: Features, seed: int, share: float, length: int) -> Stream:
    """Calls 0..length-1; the new topic from ONSET on with probability `share` (0: control)."""
    rng = np.random.default_rng(seed)
    topics = sorted(set(f.topics))
    chosen = rng.choice(len(topics), BASE_TOPICS + 1, replace=False)
    base = [topics[i] for i in chosen[:BASE_TOPICS]]
    new = topics[chosen[-1]] if share else None
    base_items = np.flatnonzero(np.isin(f.topics, base))
    new_items = np.flatnonzero(f.topics == new) if new else base_items
    is_new = (np.arange(length) >= ONSET) & (rng.random(length) < share)
    items = np.where(is_new, rng.choice(new_items, length), rng.choice(base_items, length))
    return Stream(f.name, base, new, share, [make_sample(f, int(i), n, rng) for n, i in enumerate(items)], is_new)


# --- methods ------------------------------------------------------------------------------
@dataclass
class Outcome:
    alarms: list[int]  # call indices at which the method raised an alarm (not drifted -> drifted)
    extra: dict


def run_sequential(stream: Stream, batch: int = 25, explain: bool = True, stop_after_onset: bool = True) -> Outcome:
    """The service's evidence over the stream, fed in batches of `batch` calls (its results
    do not depend on the batching); an alarm when some signal reached its threshold."""
    from lookout.drift.evidence import EMBEDDING_SIGNALS, EvidenceConfig, StreamEvidence

    ev = StreamEvidence(EvidenceConfig(), stream.samples[:REFERENCE])
    alarms, extra = [], {}
    drifted = False
    for start in range(REFERENCE, len(stream.samples), batch):
        part = stream.samples[start: start + batch]
        path = ev.observe(part)
        over = [s for s, v in path.log_sr.items() if v.max() >= ev.budget.log_threshold(s)]
        if over and not drifted:
            at = start + len(part)
            alarms.append(at)
            if explain and not extra and at > ONSET:
                statuses = [ev.current(s) for s in EMBEDDING_SIGNALS if s in ev.signals]
                extra = _explain(ev, stream, at, statuses, over)
            if stop_after_onset and at > ONSET:
                break
        drifted = bool(over)
    return Outcome(alarms, extra)


def _explain(ev, stream: Stream, at: int, embedding_statuses, signals: list[str]) -> dict:
    """Share estimate and examples at the alarm, from the embedding signal with the most
    evidence, on the last WINDOW calls since its change-point estimate (as the service
    reports them); scored against the truth of exactly those calls."""
    best = max(embedding_statuses, key=lambda st: st.log_sr)
    first = at - min(WINDOW, at - REFERENCE)
    window = stream.samples[first:at]
    seq0 = first - REFERENCE  # the evidence numbers events from the first after the reference
    x = ev.explain(best.signal, window, seq0, best.change_seq)
    ids = {s.event_id: i for i, s in enumerate(stream.samples)}
    used = np.arange(x.since_seq + REFERENCE, at)
    truth = float(stream.is_new[used].mean()) if len(used) else 0.0
    precision = float(np.mean([stream.is_new[ids[e]] for e in x.examples])) if x.examples else None
    return {"signals": signals, "share_signal": best.signal, "share": x.share.share if x.share else None,
            "share_low": x.share.low if x.share else None, "share_high": x.share.high if x.share else None,
            "share_truth_in_window": truth, "events_used": len(used), "example_precision": precision}


def window_tests(reference, current, rng) -> dict[str, bool]:
    """The per-window tests the service ran before sequential evidence, at alpha 0.01."""
    from lookout.drift.stats.frequency import token_frequency_test
    from lookout.drift.stats.mmd import mmd_test
    from lookout.drift.stats.proportion import share_test
    from lookout.drift.stats.univariate import length_test

    out = {}
    for attr in ("prompt_embedding", "response_embedding"):
        out[attr] = mmd_test(np.stack([getattr(s, attr) for s in reference]),
                             np.stack([getattr(s, attr) for s in current]), alpha=0.01, rng=rng).crossed
    for attr in ("prompt_tokens", "response_tokens", "prompt_chars", "response_chars"):
        out[attr] = length_test(np.array([getattr(s, attr) for s in reference]),
                                np.array([getattr(s, attr) for s in current]), alpha=0.01).crossed
    for attr in ("prompt_token_ids", "response_token_ids"):
        out[attr] = token_frequency_test([getattr(s, attr) for s in reference], [getattr(s, attr) for s in current],
                                         alpha=0.01, rng=rng).crossed
    out["empty"] = share_test(np.array([s.empty_or_refused for s in reference]),
                              np.array([s.empty_or_refused for s in current]), alpha=0.01).crossed
    return out


def run_fixed_window(stream: Stream, seed: int, stop_after_onset: bool = True) -> Outcome:
    rng = np.random.default_rng(seed)
    reference = stream.samples[:REFERENCE]
    streaks: dict[str, int] = {}
    alarms, drifted = [], False
    for end in range(REFERENCE + WINDOW, len(stream.samples) + 1, EVERY):
        crossed = window_tests(reference, stream.samples[end - WINDOW: end], rng)
        for signal, c in crossed.items():
            streaks[signal] = streaks.get(signal, 0) + 1 if c else 0
        now = any(v >= 2 for v in streaks.values())
        if now and not drifted:
            alarms.append(end)
            if end > ONSET and stop_after_onset:
                break
        drifted = now
    return Outcome(alarms, {})


def run_evidently(stream: Stream, stop_after_onset: bool = True) -> Outcome:
    from lookout.drift.stats.evidently_methods import evidently_default_test

    reference = stream.samples[:REFERENCE]
    refs = {a: np.stack([getattr(s, a) for s in reference]) for a in ("prompt_embedding", "response_embedding")}
    alarms, drifted = [], False
    for end in range(REFERENCE + WINDOW, len(stream.samples) + 1, WINDOW):
        current = stream.samples[end - WINDOW: end]
        now = any(evidently_default_test(refs[a], np.stack([getattr(s, a) for s in current])).crossed
                  for a in refs)
        if now and not drifted:
            alarms.append(end)
            if end > ONSET and stop_after_onset:
                break
        drifted = now
    return Outcome(alarms, {})


# --- detection ----------------------------------------------------------------------------
def delay_of(outcome: Outcome) -> float:
    """Calls after the onset until the first alarm at or after it (inf: missed)."""
    after = [a - ONSET for a in outcome.alarms if a > ONSET]
    return float(after[0]) if after else math.inf


def summarise(delays: list[float]) -> dict:
    d = np.array(delays)
    hit = d[np.isfinite(d)]
    return {"runs": len(d), "median": _q(d, 0.5), "p90": _q(d, 0.9), "missed": int((~np.isfinite(d)).sum()),
            "median_of_detected": float(np.median(hit)) if len(hit) else None}


def _q(d: np.ndarray, q: float):
    v = float(np.quantile(np.sort(d), q, method="inverted_cdf"))
    return None if math.isinf(v) else v


def explain_summary(ex: list[dict], share: float) -> dict:
    est = [e for e in ex if e["share"] is not None]
    err = np.array([abs(e["share"] - share) for e in est])
    err_w = np.array([abs(e["share"] - e["share_truth_in_window"]) for e in est])
    prec = [e["example_precision"] for e in ex if e["example_precision"] is not None]
    return {"runs": len(ex), "share_median": float(np.median([e["share"] for e in est])) if est else None,
            "abs_error_vs_nominal_median": float(np.median(err)) if est else None,
            "within_0.1_of_nominal": float(np.mean(err <= 0.1)) if est else None,
            "abs_error_vs_window_truth_median": float(np.median(err_w)) if est else None,
            "within_0.1_of_window_truth": float(np.mean(err_w <= 0.1)) if est else None,
            "example_precision_mean": float(np.mean(prec)) if prec else None}


def detection(args, features: dict[str, Features]) -> dict:
    methods = ["sequential", *([] if args.skip_baselines else ["fixed_window", "evidently"])]
    report: dict = {"setup": {"reference": REFERENCE, "onset": ONSET, "max_after_onset": args.max_after,
                              "base_topics": BASE_TOPICS, "runs_per_cell": args.runs,
                              "control_calls": args.control_streams * args.control_length}}
    for name, f in features.items():
        cells: dict = {}
        for share in args.shares:
            delays = {m: [] for m in methods}
            explain: list[dict] = []
            t = time.perf_counter()
            for run in range(args.runs):
                stream = build_stream(f, 1000 * run + int(share * 100), share, ONSET + args.max_after)
                seq = run_sequential(stream)
                delays["sequential"].append(delay_of(seq))
                if seq.extra:
                    explain.append({**seq.extra, "new": stream.new})
                if "fixed_window" in methods:
                    delays["fixed_window"].append(delay_of(run_fixed_window(stream, run)))
                    delays["evidently"].append(delay_of(run_evidently(stream)))
            cells[f"{int(share * 100)}%"] = {"delay": {m: summarise(v) for m, v in delays.items()},
                                             "explanations": explain, "raw": delays}
            progress(f"{name} {int(share * 100)}%: {json.dumps({m: summarise(v) for m, v in delays.items()})} "
                     f"({time.perf_counter() - t:.0f}s)")
        # Control: unshifted streams, every alarm is false.
        false = {m: 0 for m in methods}
        calls = 0
        t = time.perf_counter()
        for run in range(args.control_streams):
            stream = build_stream(f, 777_000 + run, 0.0, REFERENCE + args.control_length)
            calls += args.control_length
            false["sequential"] += len(run_sequential(stream, explain=False, stop_after_onset=False).alarms)
            if "fixed_window" in methods:
                false["fixed_window"] += len(run_fixed_window(stream, run, stop_after_onset=False).alarms)
                false["evidently"] += len(run_evidently(stream, stop_after_onset=False).alarms)
        cells["control"] = {"calls": calls, "false_alarms": false,
                            "per_100k": {m: round(v * 100_000 / calls, 1) for m, v in false.items()}}
        progress(f"{name} control: {json.dumps(cells['control'])} ({time.perf_counter() - t:.0f}s)")
        for share in args.shares:
            cell = cells[f"{int(share * 100)}%"]
            if cell["explanations"]:
                cell["explain_summary"] = explain_summary(cell["explanations"], share)
                progress(f"{name} {int(share * 100)}% explanation: {json.dumps(cell['explain_summary'])}")
        report[name] = cells
    return report


# --- throughput ---------------------------------------------------------------------------
def bench_calls(n: int):
    """LlmCalls from the Debian corpus (prompt = synopsis, response = description), two streams."""
    from bench.corpora import load
    from lookout.core.events import LlmCall

    items = load("debian").items
    rng = np.random.default_rng(5)
    now = datetime.now(UTC) - timedelta(hours=1)
    return [LlmCall(event_id=uuid.uuid4(), ts=now + timedelta(milliseconds=10 * i), app_id="bench",
                    model=f"m{i % 2}", prompt=items[j].prompt, output=items[j].response)
            for i, j in enumerate(rng.choice(len(items), n))]


_CHDB = tempfile.mkdtemp(prefix="drift-bench-")  # chdb opens one path per process
_RUNS = iter(range(1_000_000))


async def e2e_rate(encoder, calls) -> float:
    """Calls/s through a Tansu broker, the drift worker (all signals, evidence, windows) and
    chdb, from the first committed batch to the last."""
    from lookout.core import kafka, topics
    from lookout.core.settings import CommonSettings
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings
    from lookout.testing.brokers import TansuBroker

    broker = TansuBroker().start()
    try:
        run = next(_RUNS)
        base = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence="off", topic_prefix=f"bench{run}.",
                              clickhouse_dsn=f"chdb://{_CHDB}", clickhouse_database=f"bench{run}",
                              kafka_topic_partitions=2)
        # Sampling off (a lag budget no burst reaches): every call is embedded. Batches of
        # 200, so the timing (from the first committed batch) covers most of the calls.
        settings = DriftSettings(**base.model_dump(), drift_lag_budget_s=1e9, drift_batch_events=200)
        await kafka.ensure_topics(settings, [topics.EVENTS, topics.DRIFT])
        producer = await kafka.start_producer(settings)
        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        for c in calls:
            await producer.send(name, c.to_bytes(), key=topics.event_key(c.app_id, c.model))
        await producer.flush()
        await producer.stop()
        service = DriftService(settings, encoder=encoder)
        await service.start()
        await _wait(lambda: service.stats.consumed > 0)
        t, first = time.perf_counter(), service.stats.consumed
        await _wait(lambda: service.stats.consumed >= len(calls))
        elapsed = time.perf_counter() - t
        await service.stop()
        return (len(calls) - first) / elapsed
    finally:
        broker.close()


async def _wait(condition, limit_s: float = 1200) -> None:
    for _ in range(int(limit_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the drift service did not keep up")


def throughput(args) -> dict:
    """torch (the service's path before) against the faster encoders, alternating in every
    round, same run; the load average is recorded beside every figure (a shared machine)."""
    from lookout.drift.encoder import build_encoder

    kinds = ["torch", *(k for k in args.encoders if k != "torch")]
    encoders = {kind: build_encoder(kind, device="cpu") for kind in kinds}
    calls = bench_calls(args.events)
    texts = [c.prompt for c in calls[:400]] + [c.output for c in calls[:400]]
    out: dict = {"events": len(calls), "encoders": kinds, "load_average_1m_start": round(os.getloadavg()[0], 2)}
    for enc in encoders.values():
        enc.encode(texts[:64])  # warm-up
    for r in range(args.rounds):
        for kind, enc in encoders.items():
            t = time.perf_counter()
            enc.encode(texts)
            out.setdefault(f"{kind}_raw_texts_per_s", []).append(round(len(texts) / (time.perf_counter() - t), 1))
            out.setdefault(f"{kind}_e2e_calls_per_s", []).append(round(asyncio.run(e2e_rate(enc, calls)), 1))
            out.setdefault(f"{kind}_load_average_1m", []).append(round(os.getloadavg()[0], 2))
            progress(f"throughput round {r}: {kind} raw {out[f'{kind}_raw_texts_per_s'][-1]} texts/s, "
                     f"e2e {out[f'{kind}_e2e_calls_per_s'][-1]} calls/s (load {os.getloadavg()[0]:.1f})")
    for kind in kinds[1:]:
        # Per round, then the median: each round's pair ran under about the same load.
        for what in ("raw_texts_per_s", "e2e_calls_per_s"):
            ratios = [a / b for a, b in zip(out[f"{kind}_{what}"], out[f"torch_{what}"], strict=True)]
            out[f"{kind}_vs_torch_{what.split('_')[0]}_ratios"] = [round(x, 3) for x in ratios]
            out[f"{kind}_vs_torch_{what.split('_')[0]}_median"] = round(float(np.median(ratios)), 3)
    out["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="runs per corpus and shift")
    parser.add_argument("--max-after", type=int, default=4000, help="calls after the onset before a run is a miss")
    parser.add_argument("--control-streams", type=int, default=10, help="unshifted streams per corpus")
    parser.add_argument("--control-length", type=int, default=5000, help="calls after the reference per control")
    parser.add_argument("--shares", type=lambda v: [float(x) for x in v.split(",")], default=list(SHARES))
    parser.add_argument("--encoder", default="torch",
                        help="embeddings the detection runs on: torch, onnx, onnx-int8, model2vec")
    parser.add_argument("--corpus", action="append", choices=("debian", "wordnet"))
    parser.add_argument("--events", type=int, default=1200, help="calls for each throughput run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--encoders", type=lambda v: v.split(","), default=["torch", "onnx-int8"],
                        help="throughput: encoders alternated with torch, e.g. torch,onnx-int8,model2vec")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=str(OUT / "drift.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from threadpoolctl import threadpool_limits

    # Small matrix products on a shared 2-core machine: OpenBLAS's thread hand-off costs
    # more than the product (the service sets the same).
    threadpool_limits(1, user_api="blas")
    report: dict = {"cpu_count": os.cpu_count(), "encoder": args.encoder, "started": datetime.now(UTC).isoformat(),
                    "load_average_1m": round(os.getloadavg()[0], 2)}
    if not args.skip_detection:
        features = {name: corpus_features(name, args.encoder) for name in (args.corpus or ("debian", "wordnet"))}
        report["detection"] = detection(args, features)
    if not args.skip_throughput:
        report["throughput"] = throughput(args)
        progress(f"throughput: {json.dumps(report['throughput'])}")
    path = Path(args.out)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float))
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
