"""Toxicity scores on real labelled text (bench/toxicity_corpus.py): how the judge turns
alt-profanity-check's output into one score per text, chosen on the dev split and
reported on the held-out test split, and what each shipped threshold costs on benign text.

1. Aggregations. Every rule below is scored with the real model (profanity_check's
   predict_prob) on the corpus' comments (people's comments, labelled insult or not):
   - whole: the model on the whole text (the baseline: "the model alone");
   - fits L, else AGG over W-word windows (step W/2): the whole text when it has at most
     L words, else the max, or the word-weighted mean (wmean), of the windows' scores;
     L = 0 is windows always (the judge's earlier rule was L=0, max over 16/8 windows).
   Each rule is also scored on long answers composed from real text: 300+ words of Debian
   descriptions with one comment put in at a paragraph break, labelled as the comment (a
   constructed case, made of real sentences: does a passage still count in a long text?).
   Selection on the dev split: among the rules whose dev AUROC on the comments is at least
   the whole-text model's, those within 0.001 of the best dev AUROC on composed long
   answers; of these the one that leaves the most texts whole (the largest L: the fewest
   scores that differ from the model's own), then the best on composed answers. The judge
   ships that rule; this bench says if it does not.
2. The product's stored score: the held-out comments sent as answers through the judge
   service on a Tansu broker (llm.events -> JudgeService -> llm.scores), read back, and
   checked against ProfanityModel.predict in this process.
3. Thresholds: per threshold, the false-positive rate on benign text (Debian descriptions
   as answers, synopses as prompts, and per call: either of the two), recall and precision
   on the insults, and for the default retrain policy's toxic-answers rule the chance that
   a window of min_samples benign answers reaches its fire_above share.

Run: `.venv/bin/python -m bench.bench_toxicity [--skip-e2e]`. Results print and go to
bench/out/toxicity.json and bench/out/toxicity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "out"
sys.path.insert(0, str(ROOT))

from bench import toxicity_corpus  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def progress(msg: str) -> None:
    print(msg, flush=True)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half (sklearn's roc_auc_score)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


# -- rules -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    fits: int | None  # None: always the whole text
    window: int = 0
    agg: str = ""  # "max" or "wmean"

    @property
    def step(self) -> int:
        return max(self.window // 2, 1)

    @property
    def name(self) -> str:
        if self.fits is None:
            return "whole text (model alone)"
        windows = f"{self.agg} of {self.window}w/{self.step}w windows"
        return windows + " always" if self.fits == 0 else f"whole if <={self.fits}w, else {windows}"


WHOLE = Rule(None)
OLD = Rule(0, 16, "max")  # the judge's rule before this benchmark


def candidates() -> list[Rule]:
    rules = [WHOLE]
    for fits in (0, 32, 64, 128, 256):
        for window in (8, 16, 32, 64):
            if fits and window > fits:
                continue
            rules += [Rule(fits, window, agg) for agg in ("max", "wmean")]
    return rules


class Scorer:
    """Model scores of whole texts and of their windows, computed once per text set."""

    def __init__(self, texts: list[str]):
        from profanity_check import predict_prob

        from lookout.judge.toxicity import word_windows

        self.predict, self.word_windows = predict_prob, word_windows
        self.texts = texts
        self.words = [t.split() for t in texts]
        self.n = np.array([len(w) for w in self.words])
        self.whole = np.asarray(predict_prob(texts), dtype=np.float64)
        self._windows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def windows(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(max, word-weighted mean) over each text's windows of `size` words."""
        if size not in self._windows:
            chunks, owner, weight = [], [], []
            for i, words in enumerate(self.words):
                for w in self.word_windows(words, size, max(size // 2, 1)):
                    chunks.append(" ".join(w))
                    owner.append(i)
                    weight.append(max(len(w), 1))
            p = np.asarray(self.predict(chunks), dtype=np.float64)
            owner_, weight_ = np.asarray(owner), np.asarray(weight, dtype=np.float64)
            mx = np.full(len(self.texts), -np.inf)
            np.maximum.at(mx, owner_, p)
            mean = np.bincount(owner_, p * weight_, len(self.texts)) / np.bincount(owner_, weight_, len(self.texts))
            self._windows[size] = (mx, mean)
        return self._windows[size]

    def score(self, rule: Rule) -> np.ndarray:
        if rule.fits is None:
            return self.whole
        mx, mean = self.windows(rule.window)
        agg = mx if rule.agg == "max" else mean
        return np.where(self.n <= rule.fits, self.whole, agg) if rule.fits else agg


def composed(comments: list, benign: list[str], seed: int) -> list[str]:
    """Each comment inside 300+ words of benign prose, at a paragraph break."""
    rng = random.Random(seed)
    out = []
    for r in comments:
        parts, n = [], 0
        while n < 300:
            parts.append(rng.choice(benign))
            n += len(parts[-1].split())
        parts.insert(rng.randrange(len(parts) + 1), r.text)
        out.append("\n\n".join(parts))
    return out


def pr_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    flagged = scores >= threshold
    tp = int(np.sum(flagged & (labels == 1)))
    return (tp / max(int(flagged.sum()), 1), tp / max(int(np.sum(labels == 1)), 1))


def aggregations(rows: list, shipped: Rule) -> tuple[dict, Rule]:
    split = {s: [r for r in rows if r.split == s] for s in ("dev", "test")}
    sets = {}
    for s, part in split.items():
        comments = [r for r in part if r.corpus == "comments"]
        benign = [r.text for r in part if r.corpus == "debian"]
        labels = np.array([r.label for r in comments])
        progress(f"scoring {s}: {len(comments)} comments and as many composed long answers")
        sets[s] = (labels, Scorer([r.text for r in comments]), Scorer(composed(comments, benign, seed=11)))
    table = {}
    for rule in candidates():
        entry = {}
        for s, (labels, natural, long) in sets.items():
            scores = natural.score(rule)
            precision, recall = pr_at(labels, scores, 0.5)
            entry[s] = {"auroc": auroc(labels, scores), "composed_auroc": auroc(labels, long.score(rule)),
                        "precision@0.5": precision, "recall@0.5": recall}
        table[rule.name] = {"rule": rule.__dict__, **entry}
    baseline = table[WHOLE.name]["dev"]["auroc"]
    eligible = [r for r in candidates() if table[r.name]["dev"]["auroc"] >= baseline]
    best = max(table[r.name]["dev"]["composed_auroc"] for r in eligible)
    near = [r for r in eligible if table[r.name]["dev"]["composed_auroc"] >= best - 0.001]
    chosen = max(near, key=lambda r: (math.inf if r.fits is None else r.fits, table[r.name]["dev"]["composed_auroc"]))
    if chosen != shipped:
        progress(f"WARNING: the judge ships {shipped.name!r}, the selection on dev chose {chosen.name!r}")
    return table, chosen


# -- the product's stored score --------------------------------------------------------

async def stored_scores(texts: list[str]) -> tuple[list[float], float]:
    """toxicity.profanity of each text sent as an answer through the judge service on a
    Tansu broker; and the seconds it took."""
    from lookout.core import kafka, topics
    from lookout.core.events import LlmCall, Score
    from lookout.core.ids import uuid7
    from lookout.judge.service import JudgeService
    from lookout.judge.settings import JudgeSettings
    from lookout.testing.brokers import TansuBroker

    broker = TansuBroker().start()
    try:
        settings = JudgeSettings(kafka_bootstrap=broker.bootstrap, kafka_idempotence="off", topic_prefix="bench.",
                                 kafka_topic_partitions=3, kafka_session_timeout_ms=4000,
                                 toxicity_backend="profanity", judge_batch_ms=20)
        now = datetime.now(UTC)
        calls = [LlmCall(event_id=uuid7(), ts=now, app_id="bench", model="m", output=t) for t in texts]
        service = JudgeService(settings)
        await service.start()
        began = time.perf_counter()
        producer = await kafka.start_producer(settings)
        events = topics.resolve(settings.topic_prefix, topics.EVENTS)
        acks = [await producer.send(events, c.to_bytes(), key=topics.event_key(c.app_id, c.model)) for c in calls]
        await asyncio.gather(*acks)
        await producer.stop()
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(**kafka.client_options(settings), enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        name = topics.resolve(settings.topic_prefix, topics.SCORES)
        consumer.assign([TopicPartition(name, p) for p in range(settings.kafka_topic_partitions)])
        got: dict = {}
        deadline = time.monotonic() + 600
        while len(got) < len(calls) and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500)).values():
                for record in part:
                    s = Score.from_bytes(record.value)
                    if s.name == "toxicity.profanity":
                        got[s.event_id] = s.value
        elapsed = time.perf_counter() - began
        await consumer.stop()
        await service.stop()
        return [got.get(c.event_id, math.nan) for c in calls], elapsed
    finally:
        broker.close()


# -- thresholds ------------------------------------------------------------------------

def binomial_tail(n: int, p: float, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    return float(sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)))


def thresholds(rows: list) -> dict:
    from lookout.judge.toxicity import ProfanityModel

    model = ProfanityModel()
    out = {}
    for split in ("dev", "test"):
        part = [r for r in rows if r.split == split]
        answers = {r.source.rsplit(":", 1)[0]: r.text for r in part if r.corpus == "debian"}
        prompts = {r.source.rsplit(":", 2)[0]: r.text for r in part if r.corpus == "debian_synopsis"}
        comments = [r for r in part if r.corpus == "comments"]
        keys = sorted(answers)
        a = np.array([s["profanity"] for s in model.predict([answers[k] for k in keys])])
        pk = [k for k in keys if k in prompts]
        p = np.array([s["profanity"] for s in model.predict([prompts[k] for k in pk])])
        pmap = dict(zip(pk, p, strict=True))
        per_call = np.array([max(v, pmap.get(k, 0.0)) for k, v in zip(keys, a, strict=True)])
        labels = np.array([r.label for r in comments])
        c = np.array([s["profanity"] for s in model.predict([r.text for r in comments])])
        rows_out = {}
        for t in THRESHOLDS:
            precision, recall = pr_at(labels, c, t)
            fpr_answer = float(np.mean(a >= t))
            rows_out[str(t)] = {
                "fpr_answers": fpr_answer, "false_answers": int(np.sum(a >= t)),
                "fpr_prompts": float(np.mean(p >= t)), "false_prompts": int(np.sum(p >= t)),
                "fpr_calls": float(np.mean(per_call >= t)), "false_calls": int(np.sum(per_call >= t)),
                "fpr_non_insults": float(np.mean(c[labels == 0] >= t)),
                "precision": precision, "recall": recall,
                # toxic-answers ("toxicity*": prompt scores count too, an event is its worst score)
                # fires when > 5 % of >= 100 events in its window are above t
                "p_fire_100": binomial_tail(100, float(np.mean(per_call >= t)), 6),
            }
        out[split] = {"answers": len(a), "prompts": len(p), "comments": len(c),
                      "max_benign_answer": float(a.max()), "max_benign_prompt": float(p.max()), "by": rows_out}
    return out


# -- report ----------------------------------------------------------------------------

def markdown(result: dict) -> str:
    lines = [f"Corpus {result['corpus']['digest']}: {result['corpus']['counts']}", "",
             "| rule | dev AUROC | dev composed | test AUROC | test composed | test P@0.5 | test R@0.5 |",
             "|---|---|---|---|---|---|---|"]
    table = result["aggregations"]
    order = sorted(table, key=lambda n: -table[n]["test"]["auroc"])
    for name in order:
        e = table[name]
        mark = " **(shipped)**" if name == result["shipped"] else (" (judge before)" if name == OLD.name else "")
        lines.append(f"| {name}{mark} | {e['dev']['auroc']:.4f} | {e['dev']['composed_auroc']:.4f} | "
                     f"{e['test']['auroc']:.4f} | {e['test']['composed_auroc']:.4f} | "
                     f"{e['test']['precision@0.5']:.3f} | {e['test']['recall@0.5']:.3f} |")
    if "stored" in result:
        s = result["stored"]
        lines += ["", f"Stored (judge service on Tansu, {s['texts']} held-out comments, {s['seconds']:.1f}s): "
                  f"AUROC {s['auroc']:.4f}, P@0.5 {s['precision@0.5']:.3f}, R@0.5 {s['recall@0.5']:.3f}; "
                  f"max |stored - ProfanityModel.predict| = {s['max_abs_diff']:.2e}"]
    lines += ["", "| threshold | FPR answers | FPR prompts | FPR calls | FPR non-insult comments | recall | precision "
              "| P(toxic-answers fires on 100 benign calls) |", "|---|---|---|---|---|---|---|---|"]
    t = result["thresholds"]["test"]
    for th, e in t["by"].items():
        lines.append(f"| {th} | {e['fpr_answers']:.5f} ({e['false_answers']}/{t['answers']}) | "
                     f"{e['fpr_prompts']:.5f} ({e['false_prompts']}/{t['prompts']}) | "
                     f"{e['fpr_calls']:.5f} ({e['false_calls']}) | {e['fpr_non_insults']:.3f} | {e['recall']:.3f} | "
                     f"{e['precision']:.3f} | {e['p_fire_100']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-e2e", action="store_true", help="no run through the judge service")
    args = parser.parse_args()
    from lookout.judge.toxicity import ProfanityModel

    model = ProfanityModel()
    shipped = Rule(model.whole_words, model.window_words, "wmean")
    rows = toxicity_corpus.load()
    counts: dict[str, int] = {}
    for r in rows:
        key = f"{r.corpus}/{r.split}/{r.label}"
        counts[key] = counts.get(key, 0) + 1
    result: dict = {"corpus": {"digest": toxicity_corpus.digest(rows), "counts": counts},
                    "model_version": model.version, "shipped": shipped.name}
    table, chosen = aggregations(rows, shipped)
    result["aggregations"], result["chosen_on_dev"] = table, chosen.name
    progress(f"chosen on dev: {chosen.name}; shipped: {shipped.name}")
    test_comments = [r for r in rows if r.split == "test" and r.corpus == "comments"]
    labels = np.array([r.label for r in test_comments])
    if not args.skip_e2e:
        progress(f"sending {len(test_comments)} held-out comments through the judge service")
        stored, seconds = asyncio.run(stored_scores([r.text for r in test_comments]))
        stored_ = np.array(stored)
        direct = np.array([s["profanity"] for s in model.predict([r.text for r in test_comments])])
        precision, recall = pr_at(labels, stored_, 0.5)
        result["stored"] = {"texts": len(stored), "seconds": seconds, "missing": int(np.isnan(stored_).sum()),
                            "auroc": auroc(labels, np.nan_to_num(stored_)), "precision@0.5": precision,
                            "recall@0.5": recall, "max_abs_diff": float(np.nanmax(np.abs(stored_ - direct)))}
    result["thresholds"] = thresholds(rows)
    OUT.mkdir(exist_ok=True)
    (OUT / "toxicity.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (OUT / "toxicity.md").write_text(text)
    print(text)
    whole = table[WHOLE.name]["test"]["auroc"]
    product = result.get("stored", {}).get("auroc", table[shipped.name]["test"]["auroc"])
    print(f"target: product AUROC {product:.4f} >= model alone {whole:.4f}: {'met' if product >= whole else 'NOT met'}")


if __name__ == "__main__":
    main()
