"""Benchmarks of the drift service, each against a baseline measured in the same run:

- detection: power and false-positive rate of each embedding test on windows drawn from a
  labelled corpus (services/drift/tests/corpus.py: three base topics; the shift is a share
  of tax questions), windows of 200 and 500, side by side with Evidently's default
  embedding drift method on exactly the same windows, and the time per test. Target:
  power >= 0.9 at a 20 % shift with n=500 at FPR <= 0.05, at least Evidently's power, faster.
- throughput: texts embedded/s through the service (its batching and feature path, and
  end to end through a Tansu broker) ÷ raw `model.encode` on the same texts. Target >= 0.9.

Run: `.venv/bin/python -m bench.bench_drift [--trials 40] [--skip-e2e]
[--evidently-python /path/to/venv/bin/python]`. Evidently runs in this environment (a drift
dependency since the report endpoint); --evidently-python points at another one, to which the
windows are handed as index arrays into the same vectors.
Results print and go to bench/out/drift.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "drift" / "tests"))  # corpus.py

from corpus import answer, questions  # noqa: E402

from lookout.drift.stats.classifier import classifier_test  # noqa: E402
from lookout.drift.stats.mmd import mmd_test  # noqa: E402
from lookout.drift.stats.projection import projection_ks_test  # noqa: E402

OUT = Path(__file__).parent / "out"
BASE_TOPICS = ("cooking", "travel", "programming")
NEW_TOPIC = "tax"
SHARES = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5)
SIZES = (200, 500)

METHODS = {
    "mmd": lambda r, c, rng: mmd_test(r, c, permutations=200, rng=rng),
    "classifier": lambda r, c, rng: classifier_test(r, c, permutations=200, rng=rng),
    "ks_pca10": lambda r, c, rng: projection_ks_test(r, c, dims=10, kind="pca"),
    "ks_random10": lambda r, c, rng: projection_ks_test(r, c, dims=10, kind="random"),
}

# Runs in the evidently environment with services/drift on PYTHONPATH: the service's own
# adapter (lookout.drift.stats.evidently_methods), which calls Evidently's default method.
EVIDENTLY_SCRIPT = r"""
import json, sys, time
import numpy as np
from lookout.drift.stats.evidently_methods import evidently_default_test
data = np.load(sys.argv[1], allow_pickle=True)
vectors = data["vectors"]
evidently_default_test(vectors[:50], vectors[50:100])  # warm-up: imports
out = []
for ref_idx, cur_idx in zip(data["refs"], data["curs"]):
    t = time.perf_counter()
    o = evidently_default_test(vectors[ref_idx], vectors[cur_idx])
    out.append([o.statistic, o.crossed, time.perf_counter() - t])
json.dump(out, open(sys.argv[2], "w"))
"""


def progress(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def load_encoder():
    from lookout.drift.encoder import SentenceEncoder

    return SentenceEncoder(device="cpu")


# --- detection ---------------------------------------------------------------------------
def embed_pools(encoder, per_topic: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    texts, spans, start = [], {}, 0
    for topic in (*BASE_TOPICS, NEW_TOPIC):
        qs = questions(topic, per_topic, seed=7)
        texts.extend(qs)
        spans[topic] = np.arange(start, start + len(qs))
        start += len(qs)
    t = time.perf_counter()
    vectors = encoder.encode(texts)
    progress(f"embedded {len(texts)} corpus questions in {time.perf_counter() - t:.1f}s")
    return vectors, spans


def draw_window(rng, spans, n: int, share: float, used: set[int]) -> np.ndarray:
    """n items: each is the new topic with probability `share`, else a uniform base topic;
    drawn without replacement and never reusing an item of the other window."""
    new = rng.binomial(n, share)
    picks = []
    for topic, count in [(NEW_TOPIC, new), *zip(BASE_TOPICS, np.bincount(rng.integers(0, 3, n - new), minlength=3),
                                                   strict=True)]:
        free = np.setdiff1d(spans[topic], np.fromiter(used, int, len(used)), assume_unique=False)
        chosen = rng.choice(free, int(count), replace=False)
        used.update(int(i) for i in chosen)
        picks.append(chosen)
    return np.concatenate(picks)


def detection(vectors, spans, trials: int, null_trials: int, evidently_python: str | None) -> dict:
    rng = np.random.default_rng(2026)
    windows = []  # (n, share, ref_idx, cur_idx)
    for n in SIZES:
        for share in SHARES:
            for _ in range(null_trials if share == 0 else trials):
                used: set[int] = set()
                ref = draw_window(rng, spans, n, 0.0, used)
                cur = draw_window(rng, spans, n, share, used)
                windows.append((n, share, ref, cur))
    progress(f"detection: {len(windows)} window pairs")
    rows = {name: [] for name in METHODS}
    for name, test in METHODS.items():
        t0 = time.perf_counter()
        for i, (_, _, ref, cur) in enumerate(windows):
            t = time.perf_counter()
            o = test(vectors[ref], vectors[cur], np.random.default_rng(i))
            rows[name].append((o.p_value, time.perf_counter() - t))
        progress(f"  {name}: {time.perf_counter() - t0:.0f}s")
    evid = run_evidently(vectors, windows, evidently_python)

    summary: dict = {}
    for n in SIZES:
        for share in SHARES:
            idx = [i for i, w in enumerate(windows) if w[0] == n and w[1] == share]
            cell = {}
            for name in METHODS:
                ps = np.array([rows[name][i][0] for i in idx])
                secs = np.array([rows[name][i][1] for i in idx])
                cell[name] = {"rate_alpha_0.05": float((ps < 0.05).mean()),
                              "rate_alpha_0.01": float((ps < 0.01).mean()),
                              "ms_per_test": round(float(np.median(secs)) * 1000, 1)}
            if evid is not None:
                cell["evidently_model"] = {"rate": float(np.mean([evid[i][1] for i in idx])),
                                           "ms_per_test": round(float(np.median([evid[i][2] for i in idx])) * 1000, 1)}
            summary[f"n={n} shift={int(share * 100)}%"] = {"trials": len(idx), **cell}
    return summary


def run_evidently(vectors, windows, python: str | None):
    cmd = python or (sys.executable if _has_evidently() else None)
    if cmd is None:
        progress("evidently: not installed here and no --evidently-python given; skipped")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        data, script, out = Path(tmp) / "w.npz", Path(tmp) / "ev.py", Path(tmp) / "out.json"
        refs = np.empty(len(windows), dtype=object)
        curs = np.empty(len(windows), dtype=object)
        for i, w in enumerate(windows):
            refs[i], curs[i] = w[2], w[3]
        np.savez(data, vectors=vectors, refs=refs, curs=curs, allow_pickle=True)
        script.write_text(EVIDENTLY_SCRIPT)
        env = dict(os.environ, PYTHONPATH=str(ROOT / "services" / "drift"))
        t = time.perf_counter()
        subprocess.run([cmd, str(script), str(data), str(out)], check=True, env=env)
        progress(f"  evidently_model: {time.perf_counter() - t:.0f}s")
        return json.loads(out.read_text())


def _has_evidently() -> bool:
    try:
        import evidently  # noqa: F401
    except ImportError:
        return False
    return True


# --- throughput --------------------------------------------------------------------------
def corpus_calls(n: int):
    import random
    import uuid
    from datetime import UTC, datetime, timedelta

    from lookout.core.events import LlmCall

    rnd = random.Random(1)
    pools = {t: questions(t, seed=3) for t in (*BASE_TOPICS, NEW_TOPIC)}
    now = datetime.now(UTC) - timedelta(hours=1)
    calls = []
    for i in range(n):
        topic = (*BASE_TOPICS, NEW_TOPIC)[i % 4]
        calls.append(LlmCall(event_id=uuid.uuid4(), ts=now + timedelta(milliseconds=10 * i), app_id="bench",
                             model=f"m{i % 3}", prompt=pools[topic][i // 4], output=answer(topic, rnd)))
    return calls


def raw_rate(encoder, texts: list[str]) -> float:
    t = time.perf_counter()
    encoder.model.encode(texts, batch_size=encoder.batch_size, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - t)


def service_path_rate(encoder, calls, batch: int) -> float:
    """The service's own path per consumer batch: texts cut, one encoder call for every
    stream's prompts and responses, tokenization and features."""
    from lookout.drift.features import FeatureExtractor
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings
    from lookout.drift.tokenizer import Tokenizer

    service = DriftService(DriftSettings(), encoder=encoder, tokenizer=Tokenizer())
    service.features = FeatureExtractor(service.tokenizer)
    t = time.perf_counter()
    texts = 0
    for i in range(0, len(calls), batch):
        samples = service._featurize(calls[i: i + batch])
        texts += sum((s.prompt_embedding is not None) + (s.response_embedding is not None) for s in samples)
    return texts / (time.perf_counter() - t)


async def e2e_rate(encoder, calls) -> tuple[float, int]:
    """Events through a Tansu broker, the worker and chdb, with windows tested on the way."""
    from lookout.core import kafka, topics
    from lookout.core.settings import CommonSettings
    from lookout.drift.service import DriftService
    from lookout.drift.settings import DriftSettings
    from lookout.testing.brokers import TansuBroker

    broker = TansuBroker().start()
    try:
        base = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence="off", topic_prefix="bench.",
                              clickhouse_dsn=f"chdb://{tempfile.mkdtemp(prefix='drift-bench-')}",
                              clickhouse_database="bench", kafka_topic_partitions=3)
        settings = DriftSettings(**base.model_dump(), drift_encoder_texts_per_s=1e9, drift_reference_size=200,
                                 drift_window_size=200, drift_test_every_events=100)
        await kafka.ensure_topics(settings, [topics.EVENTS, topics.DRIFT])
        producer = await kafka.start_producer(settings)
        name = topics.resolve(settings.topic_prefix, topics.EVENTS)
        for c in calls:
            await producer.send(name, c.to_bytes(), key=topics.event_key(c.app_id, c.model))
        await producer.flush()
        await producer.stop()
        service = DriftService(settings, encoder=encoder)
        await service.start()
        # Timed from the first committed batch (group join and model warm-up excluded) to the last.
        await _wait(lambda: service.stats.consumed > 0)
        t, first = time.perf_counter(), service.stats.consumed
        await _wait(lambda: service.stats.consumed >= len(calls))
        elapsed = time.perf_counter() - t
        windows = service.produced
        await service.stop()
        return 2 * (len(calls) - first) / elapsed, windows
    finally:
        broker.close()


async def _wait(condition, limit_s: float = 600) -> None:
    for _ in range(int(limit_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("the drift service did not keep up")


def throughput(encoder, events: int, skip_e2e: bool, rounds: int = 3) -> dict:
    """Raw and service runs alternate `rounds` times and medians are compared: on a shared
    2-core machine one pair can differ by 2x either way from other processes' load."""
    from lookout.drift.settings import DriftSettings

    batch = DriftSettings().drift_batch_events  # the consumer batch the service takes by default
    calls = corpus_calls(events)
    texts = [c.prompt for c in calls] + [c.output for c in calls]
    raw_rate(encoder, texts[:128])  # warm-up
    raws, svcs = [], []
    for _ in range(rounds):
        raws.append(raw_rate(encoder, texts))
        svcs.append(service_path_rate(encoder, calls, batch=batch))
    raw, svc = float(np.median(raws)), float(np.median(svcs))
    out = {"texts": len(texts), "rounds": rounds, "events_per_batch": batch,
           "load_average_1m": round(os.getloadavg()[0], 2),
           "raw_texts_per_s": [round(r, 1) for r in raws], "service_path_texts_per_s": [round(r, 1) for r in svcs],
           "service_path_ratio_of_medians": round(svc / raw, 3)}
    if not skip_e2e:
        e2e, results = asyncio.run(e2e_rate(encoder, calls))
        raw_after = raw_rate(encoder, texts)
        out.update(e2e_texts_per_s=round(e2e, 1), raw_after_e2e=round(raw_after, 1),
                   e2e_ratio=round(e2e / float(np.median([*raws, raw_after])), 3), e2e_results_produced=results)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=30, help="window pairs per shifted cell")
    parser.add_argument("--null-trials", type=int, default=60, help="window pairs per no-shift cell")
    parser.add_argument("--per-topic", type=int, default=1200)
    parser.add_argument("--events", type=int, default=1500, help="events for the throughput runs")
    parser.add_argument("--evidently-python", default=os.environ.get("LOOKOUT_EVIDENTLY_PYTHON"))
    parser.add_argument("--skip-detection", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()

    import torch

    encoder = load_encoder()
    report: dict = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if not args.skip_throughput:
        report["throughput"] = throughput(encoder, args.events, args.skip_e2e)
        progress(f"throughput: {json.dumps(report['throughput'])}")
    if not args.skip_detection:
        vectors, spans = embed_pools(encoder, args.per_topic)
        report["detection"] = detection(vectors, spans, args.trials, args.null_trials, args.evidently_python)
        for cell, values in report["detection"].items():
            progress(f"{cell}: {json.dumps(values)}")
    OUT.mkdir(exist_ok=True)
    (OUT / "drift.json").write_text(json.dumps(report, indent=2))
    progress(f"wrote {OUT / 'drift.json'}")


if __name__ == "__main__":
    main()
