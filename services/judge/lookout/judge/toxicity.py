"""Toxicity classifiers: detoxify (a checkpoint, batched and chunked) or, when no detoxify
checkpoint is configured, alt-profanity-check, which ships its trained weights.

Each model scores a list of texts at once and returns one {label: probability} per text.
A text longer than one model input is split into overlapping chunks and scored as the
max over its chunks: a toxic sentence at the end of a long answer still counts.
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


def _max_per_text(chunk_scores: np.ndarray, owner: Sequence[int], n_texts: int) -> np.ndarray:
    out = np.full((n_texts, chunk_scores.shape[1]), -np.inf, dtype=np.float64)
    np.maximum.at(out, np.asarray(owner, dtype=np.int64), chunk_scores)
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
        best = _max_per_text(probs, owner, len(texts))
        return [dict(zip(self.labels, map(float, row), strict=True)) for row in best]

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
            model=model, tokenizer=tokenizer, labels=tuple(names), version=version,
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


@dataclass
class ProfanityModel:
    """alt-profanity-check: a linear model on TF-IDF features, trained weights in the wheel."""

    # Its TF-IDF features are normalised per text, so one slur in a long answer is diluted
    # to nothing (p 0.99 alone, 0.08 among 64 other words): score short overlapping windows.
    window_words: int = 16
    step_words: int = 8
    evaluator: str = "alt-profanity-check"
    labels: tuple[str, ...] = ("profanity",)
    version: str = ""

    def __post_init__(self) -> None:
        import profanity_check

        self._predict_prob = profanity_check.predict_prob
        self.version = self.version or metadata.version("alt-profanity-check")

    def predict(self, texts: Sequence[str]) -> list[dict[str, float]]:
        if not texts:
            return []
        chunks: list[str] = []
        owner: list[int] = []
        for i, text in enumerate(texts):
            words = text.split()
            last = max(len(words) - self.window_words, 0)
            for start in range(0, last + self.step_words, self.step_words):
                chunks.append(" ".join(words[start : start + self.window_words]))
                owner.append(i)
                if start >= last:
                    break
        probs = np.asarray(self._predict_prob(chunks), dtype=np.float64).reshape(-1, 1)
        best = _max_per_text(probs, owner, len(texts))
        return [{"profanity": float(row[0])} for row in best]


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
