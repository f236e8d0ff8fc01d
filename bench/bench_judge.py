"""Benchmarks of the judge service, each against a baseline measured in the same run:

- toxicity: texts/s through the judge's toxicity path (DetoxifyModel.predict: length-sorted
  batches, chunking) ÷ raw detoxify `Detoxify.predict` on the same texts in the same batches;
  and events/s end to end (llm.events on a Tansu broker -> JudgeService -> acked scores on
  llm.scores) ÷ raw `predict` on the same texts (prompt and response of each event) in the
  same batches. Target >= 0.9.
- evaluator: judgments/s at concurrency 16 with a local OpenAI-compatible endpoint that
  answers in 200 ms, through the service end to end. Target >= 50/s (latency bound: 80/s).

The detoxify checkpoint has random weights (no hub here) in a BERT shape: `--size small`
(4 layers x 256, the default: quick on 2 shared cores) or `--size base` (bert-base-uncased's
shape, 12 x 768: what `original` really costs). Scores are meaningless; cost per text is not.

Run: `.venv/bin/python -m bench.bench_judge [--size small|base] [--texts 512] [--events 256]
[--skip-e2e] [--device cpu]`. Results print and go to bench/out/judge.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "services" / "judge" / "tests"))  # openai_stub.py

OUT = Path(__file__).parent / "out"
SIZES = {"small": dict(hidden=256, layers=4, heads=4), "base": dict(hidden=768, layers=12, heads=12)}
BATCH = 32

_WORDS = (
    "the a an and or but if then because so to of in on at for with about from by as is are was were be "
    "been have has had do does did will would can could should may might must not no yes you your we our "
    "they their it its this that these those model answer question order refund shipping account password "
    "weather travel recipe code error function python install update price invoice customer support team "
    "please thanks sorry help issue fixed broken slow fast great good bad terrible stupid idiot hate love "
    "today tomorrow yesterday week month year time data report result value service product delivery"
).split()


def progress(msg: str) -> None:
    print(msg, flush=True)


def make_texts(n: int, seed: int = 7) -> list[str]:
    """LLM-call-like texts: mostly short, some long (5 to 350 words), all under 512 tokens,
    so both paths do the same model work (no chunking needed)."""
    rng = random.Random(seed)
    lengths = [min(350, max(5, int(rng.lognormvariate(3.6, 0.9)))) for _ in range(n)]
    return [" ".join(rng.choice(_WORDS) for _ in range(k)) for k in lengths]


def build_checkpoint(directory: Path, size: str) -> tuple[Path, Path]:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    shape = SIZES[size]
    hf = directory / "hf"
    hf.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(_WORDS))]
    (hf / "vocab.txt").write_text("\n".join(vocab) + "\n")
    classes = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    config = BertConfig(vocab_size=len(vocab), hidden_size=shape["hidden"], num_hidden_layers=shape["layers"],
                        num_attention_heads=shape["heads"], intermediate_size=shape["hidden"] * 4,
                        max_position_embeddings=512, num_labels=len(classes))
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    config.save_pretrained(hf)
    BertTokenizer(str(hf / "vocab.txt"), model_max_length=512).save_pretrained(hf)
    checkpoint = directory / "bench-detoxify.ckpt"
    torch.save({"config": {"arch": {"args": {"model_type": "bert-base-uncased",
                                             "model_name": "BertForSequenceClassification",
                                             "tokenizer_name": "BertTokenizer", "num_classes": len(classes)}},
                           "dataset": {"args": {"classes": classes}}},
                "state_dict": model.state_dict()}, checkpoint)
    return checkpoint, hf


def load_model(checkpoint: Path, hf: Path, device: str):
    from lookout.judge import toxicity
    from lookout.judge.settings import JudgeSettings

    return toxicity.load(JudgeSettings(detoxify_checkpoint=str(checkpoint), detoxify_hf_config=str(hf),
                                       detoxify_device=device, toxicity_batch_size=BATCH))


def raw_detoxify(model):
    """detoxify's own Detoxify object around the same weights: its predict() is the baseline."""
    from detoxify import Detoxify

    raw = Detoxify.__new__(Detoxify)
    raw.model, raw.tokenizer, raw.class_names = model.model, model.tokenizer, list(model.labels)
    raw.device = model.device
    return raw


def rate(fn, batches: list[list[str]]) -> float:
    fn(batches[0][:2])  # warm-up: first-call allocations are not throughput
    started = time.perf_counter()
    for batch in batches:
        fn(batch)
    return sum(len(b) for b in batches) / (time.perf_counter() - started)


def toxicity_model_path(model, texts: list[str]) -> dict:
    batches = [texts[i : i + BATCH] for i in range(0, len(texts), BATCH)]
    raw = raw_detoxify(model)
    raw_rate = rate(raw.predict, batches)
    ours = rate(model.predict, batches)
    raw_again = rate(raw.predict, batches)  # twice, to see the noise of a shared machine
    base = (raw_rate + raw_again) / 2
    return {"texts": len(texts), "batch": BATCH, "raw_texts_per_s": round(base, 1),
            "raw_runs": [round(raw_rate, 1), round(raw_again, 1)], "judge_texts_per_s": round(ours, 1),
            "ratio": round(ours / base, 3)}


async def _wait(condition, limit_s: float = 900) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met")
        await asyncio.sleep(0.02)


async def _through_service(n_events: int, texts: list[str], toxicity_model, openai=None,
                           rubrics: str = "") -> tuple[float, int]:
    """Seconds from producing n_events until every expected score is acked on llm.scores,
    after a warm-up event (group join and model warm-up are not throughput)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from lookout.core import kafka, topics
    from lookout.core.settings import CommonSettings
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings
    from lookout.testing.brokers import TansuBroker

    sys.path.insert(0, str(ROOT / "services" / "judge" / "tests"))
    from calls import call

    broker = TansuBroker().start()
    try:
        base = CommonSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence="off", topic_prefix="bench.",
                              kafka_topic_partitions=1)
        extra = dict(judge_base_url=openai.base_url, judge_model="bench-judge", judge_rubrics=rubrics,
                     judge_input_per_mtok=0.1, judge_output_per_mtok=0.1, judge_concurrency=16) if openai else {}
        settings = JudgeSettings(**base.model_dump(), judge_batch_max=256, judge_batch_ms=20,
                                 toxicity_backend="off" if toxicity_model is None else "auto", **extra)
        service = JudgeService(settings, toxicity_model=toxicity_model)
        await service.start()
        producer = await kafka.start_producer(settings)
        reader = AIOKafkaConsumer(**kafka.client_options(settings), enable_auto_commit=False,
                                  auto_offset_reset="earliest")
        await reader.start()
        reader.assign([TopicPartition(topics.resolve("bench.", topics.SCORES), 0)])
        seen = {"n": 0}

        async def drain():
            while True:
                got = await reader.getmany(timeout_ms=100)
                seen["n"] += sum(len(v) for v in got.values())

        drainer = asyncio.create_task(drain())
        name = topics.resolve("bench.", topics.EVENTS)

        async def send(calls):
            acks = [await producer.send(name, c.to_bytes(), key=topics.event_key(c.app_id, c.model)) for c in calls]
            await asyncio.gather(*acks)

        await send([call(output="warm up", prompt="warm up")])
        await _wait(lambda: seen["n"] > 0)
        await asyncio.sleep(0.5)
        before = seen["n"]
        calls = [call(prompt=texts[(2 * i) % len(texts)], output=texts[(2 * i + 1) % len(texts)])
                 for i in range(n_events)]
        per_event = before  # the warm-up event got exactly one event's scores
        started = time.perf_counter()
        await send(calls)
        await _wait(lambda: seen["n"] >= before + n_events * per_event)
        elapsed = time.perf_counter() - started
        drainer.cancel()
        await reader.stop()
        await producer.stop()
        await service.stop()
        return elapsed, seen["n"] - before
    finally:
        broker.close()


def toxicity_e2e(model, texts: list[str], n_events: int) -> dict:
    elapsed, scores = asyncio.run(_through_service(n_events, texts, model))
    # Baseline: raw predict on the same texts (prompt + response per event) in batches of 32.
    n = len(texts)
    per_event_texts = [t for i in range(n_events) for t in (texts[(2 * i) % n], texts[(2 * i + 1) % n])]
    batches = [per_event_texts[i : i + BATCH] for i in range(0, len(per_event_texts), BATCH)]
    raw = rate(raw_detoxify(model).predict, batches) / 2  # events/s: two texts an event
    service_rate = n_events / elapsed
    return {"events": n_events, "scores": scores, "raw_events_per_s": round(raw, 1),
            "service_events_per_s": round(service_rate, 1), "ratio": round(service_rate / raw, 3)}


def evaluator_e2e(n_events: int) -> dict:
    from openai_stub import FakeOpenAI

    openai = FakeOpenAI(latency_s=0.2).start()
    try:
        elapsed, scores = asyncio.run(_through_service(n_events, make_texts(2 * n_events, seed=11), None, openai,
                                                       rubrics="relevance,coherence,fluency"))
    finally:
        openai.close()
    return {"events": n_events, "judgments": scores, "endpoint_latency_ms": 200, "concurrency": 16,
            "judgments_per_s": round(scores / elapsed, 1), "latency_bound_per_s": 16 / 0.2,
            "max_in_flight": openai.max_in_flight}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--events", type=int, default=256)
    parser.add_argument("--judge-events", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args()

    import torch

    report: dict = {"size": args.size, "device": args.device, "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint, hf = build_checkpoint(Path(tmp), args.size)
        model = load_model(checkpoint, hf, args.device)
        texts = make_texts(args.texts)
        report["toxicity_model_path"] = toxicity_model_path(model, texts)
        progress(f"toxicity, model path: {json.dumps(report['toxicity_model_path'])}")
        if not args.skip_e2e:
            report["toxicity_e2e"] = toxicity_e2e(model, texts, args.events)
            progress(f"toxicity, end to end: {json.dumps(report['toxicity_e2e'])}")
    if not args.skip_e2e:
        report["evaluator_e2e"] = evaluator_e2e(args.judge_events)
        progress(f"evaluator, end to end: {json.dumps(report['evaluator_e2e'])}")
    OUT.mkdir(exist_ok=True)
    (OUT / "judge.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
