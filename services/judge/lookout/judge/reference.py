"""Reference metrics: BLEU and ROUGE-L against the call's reference answer (sacrebleu,
rouge-score), perplexity from the call's token logprobs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from lookout.core.events import LlmCall

from .scores import Measurement


def bleu(output: str, reference: str) -> float:
    """Sentence BLEU (sacrebleu defaults: 13a tokenizer, exp smoothing) on a 0..1 scale."""
    import sacrebleu

    # sacrebleu reports 0..100 and can exceed 100 by a rounding ulp on identical texts.
    return min(sacrebleu.sentence_bleu(output, [reference]).score / 100.0, 1.0)


@dataclass
class RougeL:
    _scorer: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def __call__(self, output: str, reference: str) -> float:
        """ROUGE-L F-measure (longest common subsequence), 0..1."""
        return self._scorer.score(reference, output)["rougeL"].fmeasure


def perplexity(logprobs: Sequence[float]) -> float | None:
    """exp of the mean negative log-likelihood of the generated tokens (natural-log
    logprobs, as OpenAI-style APIs return them); None when they cannot be logprobs."""
    if not logprobs or any(not math.isfinite(lp) or lp > 0 for lp in logprobs):
        return None
    nll = -math.fsum(logprobs) / len(logprobs)
    return math.exp(nll) if nll < 700 else None  # beyond, a float overflows: not a usable score


@dataclass
class ReferenceMetrics:
    rouge_l: RougeL = field(default_factory=RougeL)
    bleu_version: str = field(default_factory=lambda: metadata.version("sacrebleu"))
    rouge_version: str = field(default_factory=lambda: metadata.version("rouge-score"))

    def measure(self, call: LlmCall) -> list[Measurement]:
        out: list[Measurement] = []
        if call.reference and call.output:
            out.append(Measurement("bleu", bleu(call.output, call.reference), "heuristic", "sacrebleu",
                                   self.bleu_version))
            out.append(Measurement("rouge_l", self.rouge_l(call.output, call.reference), "heuristic", "rouge-score",
                                   self.rouge_version))
        if call.logprobs:
            ppl = perplexity(call.logprobs)
            if ppl is not None:
                out.append(Measurement("perplexity", ppl, "heuristic", "logprobs", "1",
                                       label=f"{len(call.logprobs)} tokens"))
        return out
