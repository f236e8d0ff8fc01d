"""The statistical tests on synthetic data: quiet when both samples come from one
distribution (false alarms bounded over 20 trials at the configured alpha), loud when
one is shifted."""

import numpy as np
import pytest

from lookout.drift.stats.classifier import classifier_test
from lookout.drift.stats.frequency import token_frequency_test
from lookout.drift.stats.mmd import mmd_test
from lookout.drift.stats.projection import projection_ks_test
from lookout.drift.stats.proportion import share_test
from lookout.drift.stats.univariate import length_test

ALPHA = 0.05
TRIALS = 20
# Binomial(20, 0.05): P(X >= 5) is about 1.6 %, so at most 4 false alarms in 20 trials.
MAX_FALSE_ALARMS = 4


def unit_vectors(rng, n, dim=64, shift=0.0):
    x = rng.standard_normal((n, dim))
    x[:, :4] += shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def topic_mixture(rng, n, new_share, dim=64):
    """Clustered 'embeddings': three base topics, plus a new topic at `new_share`."""
    centers = np.eye(dim)[:4] * 3
    topics = rng.choice(3, n)
    topics[rng.random(n) < new_share] = 3
    x = centers[topics] + rng.standard_normal((n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


EMBEDDING_TESTS = {
    "mmd": lambda r, c, rng: mmd_test(r, c, alpha=ALPHA, permutations=100, rng=rng),
    "classifier": lambda r, c, rng: classifier_test(r, c, alpha=ALPHA, permutations=100, rng=rng),
    "ks_pca": lambda r, c, rng: projection_ks_test(r, c, alpha=ALPHA, dims=8, kind="pca"),
    "ks_random": lambda r, c, rng: projection_ks_test(r, c, alpha=ALPHA, dims=8, kind="random"),
}


@pytest.mark.parametrize("name", EMBEDDING_TESTS)
def test_embedding_test_is_quiet_on_samples_of_one_distribution(name):
    rng = np.random.default_rng(11)
    test = EMBEDDING_TESTS[name]
    alarms = sum(test(topic_mixture(rng, 150, 0), topic_mixture(rng, 150, 0), rng).crossed for _ in range(TRIALS))
    assert alarms <= MAX_FALSE_ALARMS


# A random projection keeps little of a shift confined to a few directions, so it is only
# held to the no-false-alarm half (bench/RESULTS.md compares the methods' power).
@pytest.mark.parametrize("name", ["mmd", "classifier", "ks_pca"])
def test_embedding_test_detects_a_new_topic(name):
    rng = np.random.default_rng(12)
    test = EMBEDDING_TESTS[name]
    hits = sum(test(topic_mixture(rng, 200, 0), topic_mixture(rng, 200, 0.4), rng).crossed for _ in range(5))
    assert hits == 5


@pytest.mark.parametrize("name", ["mmd", "classifier"])
def test_examples_of_an_embedding_shift_come_from_the_new_topic(name):
    rng = np.random.default_rng(13)
    ref = topic_mixture(rng, 200, 0)
    cur = topic_mixture(rng, 200, 0.3)
    outcome = EMBEDDING_TESTS[name](ref, cur, rng)
    top = np.argsort(-outcome.example_scores)[:5]
    # The new topic is the 4th axis; its items have the largest component there.
    assert all(np.argmax(np.abs(cur[i, :4])) == 3 for i in top)


def test_mmd_p_value_is_a_permutation_p_value():
    rng = np.random.default_rng(1)
    outcome = mmd_test(unit_vectors(rng, 50), unit_vectors(rng, 50), permutations=99, rng=rng)
    assert 0.01 <= outcome.p_value <= 1.0
    assert outcome.p_value * 100 == pytest.approx(round(outcome.p_value * 100))


@pytest.mark.parametrize("method", ["ks", "wasserstein", "psi"])
def test_length_tests_are_quiet_without_shift_and_catch_longer_texts(method):
    rng = np.random.default_rng(2)
    alarms = sum(
        length_test(rng.poisson(40, 300), rng.poisson(40, 300), method=method, alpha=ALPHA, rng=rng).crossed
        for _ in range(TRIALS)
    )
    assert alarms <= MAX_FALSE_ALARMS
    longer = length_test(rng.poisson(40, 300), rng.poisson(52, 300), method=method, alpha=ALPHA, rng=rng)
    assert longer.crossed
    assert longer.details["current_median"] > longer.details["reference_median"]
    # The buckets that moved most are reported, the top end gaining share.
    assert longer.details["buckets"][0]["current_share"] > longer.details["buckets"][0]["reference_share"]


def _docs(rng, n, vocab, boost=None):
    weights = np.ones(vocab)
    if boost is not None:
        weights[boost] = 40.0
    weights /= weights.sum()
    return [rng.choice(vocab, rng.integers(5, 40), p=weights).astype(np.uint32) for _ in range(n)]


@pytest.mark.parametrize("method", ["chi2", "js"])
def test_token_frequency_is_quiet_without_shift_and_names_the_tokens_that_rose(method):
    rng = np.random.default_rng(3)
    alarms = sum(
        token_frequency_test(_docs(rng, 150, 500), _docs(rng, 150, 500), method=method, alpha=ALPHA,
                             permutations=100, rng=rng).crossed
        for _ in range(TRIALS)
    )
    assert alarms <= MAX_FALSE_ALARMS
    shifted = token_frequency_test(_docs(rng, 150, 500), _docs(rng, 150, 500, boost=[7, 8]), method=method,
                                   alpha=ALPHA, permutations=100, token_name=lambda t: f"tok{t}", rng=rng)
    assert shifted.crossed
    assert {t["token"] for t in shifted.details["top_tokens"][:2]} == {"tok7", "tok8"}


def test_token_frequency_p_value_is_not_fooled_by_long_documents():
    # 300 documents of 400 tokens each: a token-level chi-square table would call tiny
    # differences significant; permuting documents keeps the false alarms at alpha.
    rng = np.random.default_rng(4)
    alarms = 0
    for _ in range(TRIALS):
        topics = rng.integers(0, 5, 300)  # each document draws from one of 5 sub-vocabularies
        docs = [(rng.integers(0, 60, 400) + 60 * t).astype(np.uint32) for t in topics]
        alarms += token_frequency_test(docs[:150], docs[150:], alpha=ALPHA, permutations=100, rng=rng).crossed
    assert alarms <= MAX_FALSE_ALARMS


def test_share_of_empty_or_refused_answers():
    rng = np.random.default_rng(5)
    alarms = sum(share_test(rng.random(400) < 0.05, rng.random(400) < 0.05, alpha=ALPHA).crossed for _ in range(TRIALS))
    assert alarms <= MAX_FALSE_ALARMS
    rising = share_test(rng.random(400) < 0.05, rng.random(400) < 0.2, alpha=ALPHA)
    assert rising.crossed and rising.statistic > 0
