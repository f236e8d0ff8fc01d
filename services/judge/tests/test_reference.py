"""BLEU and ROUGE-L against a reference answer, perplexity from token logprobs."""

from __future__ import annotations

import math

import pytest
from calls import call

from lookout.judge.reference import ReferenceMetrics, RougeL, bleu, perplexity

REF = "the cat sat on the mat"
HYP = "the cat is on the mat"


def test_bleu_of_identical_texts_is_one():
    assert bleu(REF, REF) == pytest.approx(1.0)


def test_bleu_on_a_known_pair_matches_the_hand_computed_value():
    # n-gram precisions 5/6, 3/5, 1/4 and 0/3 -> 1/(2*3) by exp smoothing; same lengths, BP = 1.
    expected = (5 / 6 * 3 / 5 * 1 / 4 * 1 / 6) ** 0.25
    assert bleu(HYP, REF) == pytest.approx(expected, abs=1e-4)


def test_rouge_l_on_a_known_pair_is_the_lcs_f_measure():
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides.
    assert RougeL()(HYP, REF) == pytest.approx(5 / 6)
    assert RougeL()("completely different words", REF) == 0.0


def test_perplexity_from_known_logprobs():
    assert perplexity([math.log(0.5), math.log(0.25)]) == pytest.approx(2 ** 1.5)
    assert perplexity([0.0, 0.0]) == pytest.approx(1.0)


def test_perplexity_refuses_what_cannot_be_logprobs():
    assert perplexity([]) is None
    assert perplexity([0.3, -1.0]) is None  # a probability above 1
    assert perplexity([float("nan")]) is None
    assert perplexity([-1e6]) is None  # overflows a float


def test_metrics_appear_only_when_the_call_carries_what_they_need():
    metrics = ReferenceMetrics()
    assert metrics.measure(call(output=HYP)) == []

    with_ref = {m.name: m for m in metrics.measure(call(output=HYP, reference=REF))}
    assert set(with_ref) == {"bleu", "rouge_l"}
    assert with_ref["bleu"].evaluator == "sacrebleu" and with_ref["bleu"].version
    assert with_ref["rouge_l"].evaluator == "rouge-score" and with_ref["rouge_l"].source == "heuristic"

    (ppl,) = metrics.measure(call(output=HYP, logprobs=[math.log(0.5)] * 4))
    assert ppl.name == "perplexity" and ppl.value == pytest.approx(2.0) and ppl.label == "4 tokens"
