"""Sentence embeddings: sentence-transformers on a configurable device, L2-normalised, in
batches that mix texts of many events (sentence-transformers sorts a call's texts by
length, so one large call pads less than many small ones)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .model_files import DEFAULT_MODEL_NAME, model_dir, offline

log = logging.getLogger(__name__)


class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def resolve_device(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class Throughput:
    """Exponential moving average of texts/s the encoder achieved."""

    texts_per_s: float = 0.0
    smoothing: float = 0.3

    def observe(self, texts: int, seconds: float) -> None:
        if texts < 8 or seconds <= 0:
            return  # tiny calls measure overhead, not throughput
        rate = texts / seconds
        if not self.texts_per_s:
            self.texts_per_s = rate
        else:
            self.texts_per_s = (1 - self.smoothing) * self.texts_per_s + self.smoothing * rate


class SentenceEncoder:
    def __init__(self, model: str = "", device: str = "auto", batch_size: int = 32):
        offline()
        from sentence_transformers import SentenceTransformer

        path = model_dir(model)
        self.device = resolve_device(device)
        self.model = SentenceTransformer(str(path), device=self.device)
        self.name = DEFAULT_MODEL_NAME if not model else path.name
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ValueError(f"{path}: the model states no embedding dimension")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.throughput = Throughput()
        # One forward pass at a time: the HTTP reference upload and the consumer share it.
        self._lock = threading.Lock()
        log.info("encoder %s on %s (dim %d)", self.name, self.device, self.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            started = time.perf_counter()
            out = self.model.encode(
                texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True,
                show_progress_bar=False,
            )
            self.throughput.observe(len(texts), time.perf_counter() - started)
        return np.asarray(out, dtype=np.float32)


def build_encoder(backend: str = "torch", model: str = "", device: str = "auto", batch_size: int = 32,
                  **options) -> Encoder:
    """The encoder a setting names: torch (sentence-transformers), ONNX Runtime, or a
    static model2vec model distilled from the same MiniLM."""
    if backend == "torch":
        return SentenceEncoder(model, device, batch_size)
    if backend == "model2vec":
        from .static_encoder import StaticEncoder

        return StaticEncoder(model, cache_dir=options.get("cache_dir", ""))
    from .onnx_encoder import OnnxEncoder

    return OnnxEncoder(model, quantized=backend == "onnx-int8", batch_size=batch_size, **options)
