"""Toxicity models: detoxify loaded from a locally built checkpoint through detoxify's own
loading code, batched and chunked; alt-profanity-check as the fallback that ships weights."""

from __future__ import annotations

import pytest
from detoxify import Detoxify

from lookout.judge import toxicity
from lookout.judge.settings import JudgeSettings
from lookout.judge.toxicity import DetoxifyModel, ProfanityModel, ToxicityUnavailable

DETOXIFY_LABELS = ("toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack")
TOXIC = "you are a stupid idiot go away"
CLEAN = "have a nice day and thanks for help"


def _settings(tiny_detoxify, **extra) -> JudgeSettings:
    checkpoint, hf = tiny_detoxify
    return JudgeSettings(detoxify_checkpoint=str(checkpoint), detoxify_hf_config=str(hf), **extra)


def _raw_detoxify(model: DetoxifyModel) -> Detoxify:
    """detoxify's own Detoxify object around the same weights, for its predict()."""
    raw = Detoxify.__new__(Detoxify)
    raw.model, raw.tokenizer, raw.class_names, raw.device = model.model, model.tokenizer, list(model.labels), "cpu"
    return raw


def test_detoxify_loads_a_local_checkpoint_offline_and_scores_with_the_model(tiny_detoxify):
    model = toxicity.load(_settings(tiny_detoxify))

    assert isinstance(model, DetoxifyModel)
    assert model.evaluator == "detoxify"
    assert model.labels == DETOXIFY_LABELS  # detoxify renamed the Jigsaw classes
    assert model.version.startswith("0.5.") and "ckpt-" in model.version
    toxic, clean = model.predict([TOXIC, CLEAN])
    assert set(toxic) == set(DETOXIFY_LABELS)
    assert all(0 < v < 1 for v in toxic.values())
    assert toxic != clean  # computed per text, not a constant


def test_batched_scores_equal_detoxify_predict_on_the_same_texts(tiny_detoxify):
    model = toxicity.load(_settings(tiny_detoxify, toxicity_batch_size=2))
    texts = [TOXIC, CLEAN, "good", "it will rain tomorrow please", TOXIC + " " + CLEAN]

    ours = model.predict(texts)
    raw = _raw_detoxify(model).predict(texts)

    for i, scores in enumerate(ours):
        for label in DETOXIFY_LABELS:
            assert scores[label] == pytest.approx(raw[label][i], abs=1e-5)


def test_long_text_is_chunked_and_scored_as_the_token_weighted_mean_over_chunks(tiny_detoxify):
    # 10 tokens a chunk: [CLS] + 8 words + [SEP]; each word of the vocab is one token.
    model = toxicity.load(_settings(tiny_detoxify, toxicity_max_tokens=10, toxicity_stride=0))
    pieces = ["you are a stupid idiot please go away", "have a nice day and thanks for help",
              "the weather today is sunny and cloudy it", "good"]
    assert all(len(p.split()) == 8 for p in pieces[:3])

    (whole,) = model.predict([" ".join(pieces)])
    parts = model.predict(pieces)

    weights = [10, 10, 10, 3]  # the last chunk: [CLS] good [SEP]
    for label in DETOXIFY_LABELS:
        mean = sum(w * p[label] for w, p in zip(weights, parts, strict=True)) / sum(weights)
        assert whole[label] == pytest.approx(mean, abs=1e-5)
    # Not truncated: detoxify's own predict would have seen only the first chunk.
    assert any(whole[label] != pytest.approx(parts[0][label], abs=1e-6) for label in DETOXIFY_LABELS)
    assert model.version.endswith("/whole<=10t|wmean(10t/0t)")


def test_profanity_fallback_runs_when_no_detoxify_checkpoint_is_configured():
    model = toxicity.load(JudgeSettings())

    assert isinstance(model, ProfanityModel)
    assert model.evaluator == "alt-profanity-check" and model.version
    profane, clean = model.predict(["what the fuck is this shit, you idiot", "Thank you, that was very helpful."])
    assert profane["profanity"] > 0.5 > clean["profanity"]
    assert profane["profanity"] > clean["profanity"]


def test_profanity_scores_a_text_of_up_to_256_words_whole_exactly_as_the_model_does():
    from profanity_check import predict_prob

    model = ProfanityModel()
    texts = ["Thank you, that was very helpful.", "you are a stupid idiot " * 51]  # 255 words
    ours = model.predict(texts)
    assert [s["profanity"] for s in ours] == [float(p) for p in predict_prob(texts)]
    assert model.version.endswith("/whole<=256w|wmean(8w/4w)")


def test_profanity_scores_a_longer_text_as_the_word_weighted_mean_over_8_word_windows():
    from profanity_check import predict_prob

    model = ProfanityModel()
    words = [f"w{i}" for i in range(258)]  # 258 words: windows start at 0, 4, ..., 248 and 250
    assert model.chunks(" ".join(words)) == [" ".join(words[s : s + 8]) for s in [*range(0, 250, 4), 250]]
    calm = "The meeting covers the budget, the roadmap and the hiring plan for next quarter. " * 30
    (long_profane,) = model.predict([calm + "This plan is total shit, you fucking idiots."])
    (long_calm,) = model.predict([calm])
    windows = model.chunks(calm)
    expected = sum(p * len(w.split()) for p, w in zip(predict_prob(windows), windows, strict=True)) / sum(
        len(w.split()) for w in windows)
    assert long_calm["profanity"] == pytest.approx(expected, abs=1e-12)
    # A profane passage still moves a long answer up, in proportion to its share of the text.
    assert long_profane["profanity"] > long_calm["profanity"]


def test_a_configured_checkpoint_that_cannot_load_is_reported_not_replaced(tmp_path):
    with pytest.raises(ToxicityUnavailable, match="does not exist"):
        toxicity.load(JudgeSettings(detoxify_checkpoint=str(tmp_path / "missing.ckpt")))
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ToxicityUnavailable):
        toxicity.load(JudgeSettings(detoxify_checkpoint=str(broken), detoxify_hf_config=str(tmp_path)))


def test_toxicity_off_loads_nothing():
    assert toxicity.load(JudgeSettings(toxicity_backend="off")) is None
