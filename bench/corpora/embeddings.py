"""Embeddings of the corpora, computed once per (corpus, encoder) and cached under
.cache/drift-corpora/, so benchmark runs and experiments cost no encoder time. The cache
key includes a hash of the corpus file: a rebuilt corpus is embedded again.

    .venv/bin/python -m bench.corpora.embeddings --encoder torch   # or onnx, onnx-int8
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from . import DATA, NAMES, load

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "drift-corpora"


def make_encoder(kind: str):
    """The service's own encoders: torch (sentence-transformers) or ONNX Runtime."""
    from lookout.drift.encoder import build_encoder

    return build_encoder(backend=kind, device="cpu")


def cache_path(name: str, kind: str) -> Path:
    digest = hashlib.sha256((DATA / f"{name}.jsonl.gz").read_bytes()).hexdigest()[:12]
    if kind.startswith("onnx"):
        from lookout.drift.onnx_encoder import EXPORT_VERSION

        kind = f"{kind}-{EXPORT_VERSION}"  # a new graph is a new encoder: embed again
    return CACHE / f"{name}-{kind}-{digest}.npz"


def embeddings(name: str, kind: str = "torch", encoder=None) -> tuple[np.ndarray, np.ndarray]:
    """(prompt, response) float32 arrays, row i for corpus item i."""
    path = cache_path(name, kind)
    if path.exists():
        data = np.load(path)
        return data["prompt"], data["response"]
    corpus = load(name)
    encoder = encoder or make_encoder(kind)
    started = time.perf_counter()
    prompt = _chunked(encoder, [i.prompt for i in corpus.items])
    response = _chunked(encoder, [i.response for i in corpus.items])
    seconds = time.perf_counter() - started
    print(f"[corpora] {name}/{kind}: {2 * len(corpus.items)} texts in {seconds:.0f}s "
          f"({2 * len(corpus.items) / seconds:.1f} texts/s)", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, prompt=prompt, response=response, seconds=seconds)
    tmp.replace(path)
    return prompt, response


def _chunked(encoder, texts: list[str], chunk: int = 1024) -> np.ndarray:
    return np.concatenate([encoder.encode(texts[i: i + chunk]) for i in range(0, len(texts), chunk)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="torch")
    parser.add_argument("--corpus", action="append", choices=NAMES)
    args = parser.parse_args()
    encoder = make_encoder(args.encoder)
    for name in args.corpus or NAMES:
        embeddings(name, args.encoder, encoder)


if __name__ == "__main__":
    main()
