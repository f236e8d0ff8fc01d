"""Toxicity classifiers: detoxify (a checkpoint, batched and chunked) or, when no detoxify
checkpoint is configured, alt-profanity-check, which ships its trained weights.

Each model scores a list of texts at once and returns one {label: probability} per text.

How a text's score comes from the model (one rule for both models, chosen on real labelled
text by bench/bench_toxicity.py; every score's evaluator version names it):
- a text that fits one model input is scored whole, exactly as the model scores it;
- a longer text is split into overlapping windows and scored as the mean of the windows'
  scores, each window weighted by its length.
A max over windows, the earlier rule, raised benign answers more than toxic ones on real
text (AUROC below the model's own on whole texts): the more windows a text has, the more
chances one of them scores high by chance. The weighted mean keeps the model's ranking on
ordinary texts and still moves a long answer up when a passage of it is toxic.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

import numpy as np

from .settings import JudgeSettings

log = logging.getLogger(__name__)

# detoxify's own renaming of the Jigsaw class names (detoxify.load_checkpoint does the same).
_STANDARD_NAMES = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}


class ToxicityModel(Protocol):
    evaluator: str
    version: str
    labels: tuple[str, ...]

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]: ...


class ToxicityUnavailable(RuntimeError):
    """No toxicity model could be loaded; the reason is shown on /readyz."""


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def weighted_mean_per_text(chunk_scores: np.ndarray, owner: Sequence[int], weights: Sequence[float],
                           n_texts: int) -> np.ndarray:
    """Per text, the mean of its chunks' scores weighted by `weights` (chunk lengths); a
    text of one chunk gets that chunk's scores unchanged."""
    owner_ = np.asarray(owner, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float64)
    total = np.zeros((n_texts, chunk_scores.shape[1]), dtype=np.float64)
    np.add.at(total, owner_, chunk_scores * w[:, None])
    mass = np.zeros(n_texts, dtype=np.float64)
    np.add.at(mass, owner_, w)
    out = total / mass[:, None]
    single = np.bincount(owner_, minlength=n_texts) == 1
    # One chunk: the model's own number, bit for bit (no multiply-divide rounding).
    index = np.zeros(n_texts, dtype=np.int64)
    index[owner_] = np.arange(len(owner_))  # for a text of one chunk: that chunk
    out[single] = chunk_scores[index[single]]
    return out


@dataclass
class DetoxifyModel:
    model: Any  # a transformers *ForSequenceClassification
    tokenizer: Any
    labels: tuple[str, ...]
    version: str
    device: str = "cpu"
    batch_size: int = 32
    max_tokens: int = 512
    stride: int = 32
    evaluator: str = "detoxify"

    def __post_init__(self) -> None:
        self.model.to(self.device)
        self.model.eval()
        self.max_tokens = min(self.max_tokens, self._model_limit())
        # Overlap must leave room for new tokens in every chunk.
        self.stride = max(0, min(self.stride, self.max_tokens // 2))
        self.version = f"{self.version}/{self.aggregation}"

    @property
    def aggregation(self) -> str:
        """The rule in the evaluator version: whole when it fits max_tokens, else the
        token-weighted mean over chunks of max_tokens sharing `stride` tokens."""
        return f"whole<={self.max_tokens}t|wmean({self.max_tokens}t/{self.stride}t)"

    def _model_limit(self) -> int:
        limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(limit, int) and limit < 100_000:
            return limit
        config = self.model.config
        # RoBERTa-style position ids start after the padding index, leaving 2 fewer slots.
        return config.max_position_embeddings - (2 if "roberta" in config.model_type else 0)

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        import torch

        if not texts:
            return []
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=self.max_tokens, stride=self.stride,
            return_overflowing_tokens=True, padding=False,
        )
        owner = enc.pop("overflow_to_sample_mapping")
        features = [{k: enc[k][i] for k in enc} for i in range(len(owner))]
        # Chunks of similar length in one batch: far less padding than arrival order.
        order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
        probs = np.empty((len(features), len(self.labels)), dtype=np.float64)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = self.tokenizer.pad([features[i] for i in idx], return_tensors="pt").to(self.device)
                logits = self.model(**batch)[0]
                probs[idx] = torch.sigmoid(logits).float().cpu().numpy()
        lengths = [len(f["input_ids"]) for f in features]
        per_text = weighted_mean_per_text(probs, owner, lengths, len(texts))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in per_text]

    @classmethod
    def load(cls, settings: JudgeSettings) -> DetoxifyModel:
        from detoxify import Detoxify

        checkpoint = settings.detoxify_checkpoint
        if checkpoint and settings.detoxify_hf_config:
            model, tokenizer, names = _load_offline(checkpoint, settings.detoxify_hf_config, settings.detoxify_device)
        else:
            # detoxify's own path: the checkpoint given, or its release download by model type.
            d = Detoxify(model_type=settings.detoxify_model_type, checkpoint=checkpoint,
                         device=settings.detoxify_device)
            model, tokenizer, names = d.model, d.tokenizer, d.class_names
        # A checkpoint is named by its digest: the weights, not a label, say what scored.
        weights = f"ckpt-{_file_digest(checkpoint)}" if checkpoint else settings.detoxify_model_type
        version = f"{metadata.version('detoxify')}/{weights}"
        if not getattr(tokenizer, "is_fast", False):
            raise ToxicityUnavailable("detoxify tokenizer is not a fast tokenizer; chunking needs one")
        return cls(
            model=model, tokenizer=tokenizer, labels=tuple(str(n) for n in names), version=version,
            device=settings.detoxify_device, batch_size=settings.toxicity_batch_size,
            max_tokens=settings.toxicity_max_tokens, stride=settings.toxicity_stride,
        )


def _load_offline(checkpoint: str, hf_config: str, device: str):
    """detoxify.load_checkpoint with a local config dir, fully offline.

    detoxify looks the base model's config up by hub name (`bert-base-uncased`) even when it
    is given a local config dir; here the local dir stands in for that name, and the model
    and tokenizer are built by detoxify's own get_model_and_tokenizer."""
    import torch
    from detoxify.detoxify import get_model_and_tokenizer

    # The checkpoint format (config dict beside the state dict) needs full unpickling, as in
    # detoxify itself; it is a file the operator configured, not input from the wire.
    loaded = torch.load(checkpoint, map_location=device, weights_only=False)
    if "config" not in loaded or "state_dict" not in loaded:
        raise ToxicityUnavailable(f"{checkpoint}: not a detoxify checkpoint (needs config and state_dict)")
    args = dict(loaded["config"]["arch"]["args"], model_type=hf_config)
    model, tokenizer = get_model_and_tokenizer(
        **args, state_dict=loaded["state_dict"], huggingface_config_path=hf_config
    )
    names = [_STANDARD_NAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    return model, tokenizer, names


def word_windows(words: Sequence[str], size: int, step: int) -> list[list[str]]:
    """Windows of `size` words every `step` words; the last one ends at the last word."""
    last = max(len(words) - size, 0)
    starts = [*range(0, last, step), last]
    return [list(words[s : s + size]) for s in starts]


@dataclass
class ProfanityModel:
    """alt-profanity-check: a linear model on TF-IDF features, trained weights in the wheel.

    Its features are normalised per text, so one slur in a long answer is diluted (p 0.99
    alone, 0.08 among 64 other words). On the labelled comments of bench/toxicity_corpus.py
    the whole-text score was still the best up to `whole_words` words; longer texts are
    scored as the word-weighted mean over windows of `window_words` (bench/RESULTS.md)."""

    whole_words: int = 256
    window_words: int = 8
    step_words: int = 4
    evaluator: str = "alt-profanity-check"
    labels: tuple[str, ...] = ("profanity",)
    version: str = ""

    def __post_init__(self) -> None:
        import profanity_check

        self._predict_prob = profanity_check.predict_prob
        self.version = self.version or f"{metadata.version('alt-profanity-check')}/{self.aggregation}"

    @property
    def aggregation(self) -> str:
        return f"whole<={self.whole_words}w|wmean({self.window_words}w/{self.step_words}w)"

    def chunks(self, text: str) -> list[str]:
        """What the model scores for one text: the text itself when it has at most
        whole_words words, else its windows (words joined by single spaces)."""
        words = text.split()
        if len(words) <= self.whole_words:
            return [text]
        return [" ".join(w) for w in word_windows(words, self.window_words, self.step_words)]

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        chunks: list[str] = []
        owner: list[int] = []
        weights: list[float] = []
        for i, text in enumerate(texts):
            for chunk in self.chunks(text):
                chunks.append(chunk)
                owner.append(i)
                weights.append(max(len(chunk.split()), 1))
        probs = np.asarray(self._predict_prob(chunks), dtype=np.float64).reshape(-1, 1)
        per_text = weighted_mean_per_text(probs, owner, weights, len(texts))
        return [{"profanity": float(row[0])} for row in per_text]


def load(settings: JudgeSettings) -> ToxicityModel | None:
    """The configured model; None when toxicity scoring is off. Raises ToxicityUnavailable
    with the reason when the configured model cannot be loaded (never a stand-in)."""
    backend = settings.toxicity_backend
    if backend == "off":
        return None
    if backend == "auto":
        backend = "detoxify" if settings.detoxify_checkpoint else "profanity"
    try:
        if backend == "detoxify":
            if settings.detoxify_checkpoint and not os.path.exists(settings.detoxify_checkpoint):
                raise ToxicityUnavailable(f"LOOKOUT_DETOXIFY_CHECKPOINT {settings.detoxify_checkpoint} does not exist")
            model: ToxicityModel = DetoxifyModel.load(settings)
        else:
            model = ProfanityModel()
    except ToxicityUnavailable:
        raise
    except Exception as exc:
        raise ToxicityUnavailable(f"{backend}: {type(exc).__name__}: {exc}") from exc
    log.info("toxicity model: %s %s, labels %s", model.evaluator, model.version, ", ".join(model.labels))
    return model
