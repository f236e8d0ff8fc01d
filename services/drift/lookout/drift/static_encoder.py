"""A static sentence encoder (LOOKOUT_DRIFT_ENCODER_BACKEND=model2vec): the high-volume option.

model2vec distils a sentence-transformers model into one vector per token (a forward pass
over the vocabulary, PCA, SIF weights); a text's embedding is then the mean of its tokens'
vectors, no transformer at run time: thousands of texts per second on one core. It is
distilled locally from the packaged all-MiniLM-L6-v2 on first start (no model hub; torch
is needed for that once) and cached, or loaded from LOOKOUT_DRIFT_ENCODER_MODEL when that
folder already holds a model2vec model.

It is much weaker on subtle topic shifts than MiniLM (bench/RESULTS.md, Drift): choose it
when the traffic is too large to embed, not as the default."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np

from .encoder import Throughput
from .model_files import DEFAULT_MODEL_NAME, model_dir, offline

log = logging.getLogger(__name__)

# Tokens per text, as MiniLM's max_seq_length: the same part of a long text is seen.
MAX_TOKENS = 256


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lookout" / "model2vec"


def is_static_model(folder: Path) -> bool:
    config = folder / "config.json"
    return config.exists() and json.loads(config.read_text()).get("model_type") == "model2vec"


def distil(source: Path, out: Path, pca_dims: int | None = 256, token_remove_pattern: str | None = r"\[unused\d+\]",
           ) -> Path:
    """Distil `source` (a sentence-transformers folder) into `out`, written under a temporary
    name and renamed so a concurrent start never loads half a model."""
    offline()
    from model2vec.distill import distill

    started = time.perf_counter()
    model = distill(str(source), pca_dims=pca_dims, device="cpu", token_remove_pattern=token_remove_pattern)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    model.save_pretrained(str(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out)
    log.info("distilled %s with model2vec in %.1fs", source.name, time.perf_counter() - started)
    return out


class StaticEncoder:
    def __init__(self, model: str = "", batch_size: int = 1024, cache_dir: str = ""):
        from model2vec import StaticModel

        folder = model_dir(model)
        if not is_static_model(folder):
            from .onnx_encoder import _fingerprint

            cache = Path(cache_dir) if cache_dir else default_cache()
            target = cache / f"{folder.name}-model2vec-{_fingerprint(folder)}"
            folder = target if is_static_model(target) else distil(folder, target)
        self.model = StaticModel.from_pretrained(str(folder), force_download=False)
        base = DEFAULT_MODEL_NAME if not model else Path(model).name
        self.name = f"{base}+model2vec"
        self.dim = int(self.model.dim)
        self.batch_size = batch_size
        self.throughput = Throughput()
        self._lock = threading.Lock()
        log.info("encoder %s (%s, dim %d)", self.name, folder, self.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            started = time.perf_counter()
            # No worker processes: the service's thread is the one to use.
            out = self.model.encode(texts, max_length=MAX_TOKENS, normalize=True, batch_size=self.batch_size,
                                    use_multiprocessing=False)
            self.throughput.observe(len(texts), time.perf_counter() - started)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)
