"""The sentence encoder on ONNX Runtime (LOOKOUT_DRIFT_ENCODER_BACKEND=onnx or onnx-int8).

The same all-MiniLM-L6-v2 weights, exported once with `torch.onnx.export` to a cache
folder (optimum's exporter, behind sentence-transformers' `backend="onnx"`, fails with
transformers 5.x), its graph fused by onnxruntime's transformer optimizer (one Attention
op per layer, embedding and skip LayerNorms, bias+GELU: the same numbers as torch, fewer
kernels), optionally quantised to int8 with onnxruntime's dynamic quantisation. The
export uses the eager attention: the optimizer recognises its pattern, not SDPA's.
Tokenisation (the model's own tokenizer.json, truncation at its max_seq_length), mean
pooling over the attention mask and L2 normalisation are the model's sentence-transformers
modules, done here in numpy. torch is needed only to export; a folder that already holds
the export (an image built with it) runs on onnxruntime alone.

Whether int8 is good enough is judged by the drift benchmark (detection delay, false
alarms), not by cosine to the torch vectors: bench/RESULTS.md."""

from __future__ import annotations

import hashlib
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


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lookout" / "onnx"


# Part of the cache key: a change to how the graph is made must not reuse an old export.
EXPORT_VERSION = "fused-1"


def _fingerprint(folder: Path) -> str:
    h = hashlib.sha256(EXPORT_VERSION.encode())
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = folder / name
        if path.exists():
            stat = path.stat()
            h.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return h.hexdigest()[:12]


def export(folder: Path, out: Path, quantized: bool) -> Path:
    """model.onnx (fp32, fused) and, if asked, model-int8.onnx in `out`; returns the one to
    run. Written to a temporary name and renamed, so a concurrent start never loads half a
    file."""
    out.mkdir(parents=True, exist_ok=True)
    fp32 = out / "model.onnx"
    if not fp32.exists():
        raw = out / f"model-unfused.onnx.{os.getpid()}.tmp"
        _export_torch(folder, raw)
        tmp = out / f"model.onnx.{os.getpid()}.tmp"
        try:
            _fuse(folder, raw, tmp)
        except Exception:
            # An optimizer that does not know this graph costs speed, not correctness.
            log.exception("transformer optimizer failed on %s; running the unfused graph", folder.name)
            raw.replace(tmp)
        raw.unlink(missing_ok=True)
        tmp.replace(fp32)
    if not quantized:
        return fp32
    int8 = out / "model-int8.onnx"
    if not int8.exists():
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = out / f"model-int8.onnx.{os.getpid()}.tmp.onnx"
        # The fused ops are from the com.microsoft domain, which onnx's shape inference does
        # not type: their outputs are float.
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        tmp.replace(int8)
        log.info("quantised %s to int8", folder.name)
    return int8


def _fuse(folder: Path, src: Path, dst: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((folder / "config.json").read_text())
    started = time.perf_counter()
    model = optimize_model(str(src), model_type="bert", num_heads=int(config["num_attention_heads"]),
                           hidden_size=int(config["hidden_size"]))
    fused = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
    if not fused.get("Attention"):
        raise RuntimeError(f"no attention fused ({fused})")
    model.save_model_to_file(str(dst))
    log.info("fused %s in %.1fs: %s", folder.name, time.perf_counter() - started, fused)


def _export_torch(folder: Path, dst: Path) -> None:
    offline()
    import torch
    from transformers import AutoModel

    class _Hidden(torch.nn.Module):
        # Keyword arguments: BertModel.forward's positional order changed across versions.
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = _Hidden(AutoModel.from_pretrained(str(folder), attn_implementation="eager")).eval()
    ids = torch.ones((2, 16), dtype=torch.long)
    started = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(dst),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in
                          ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=17, dynamo=False,
        )
    log.info("exported %s to ONNX in %.1fs", folder.name, time.perf_counter() - started)


class OnnxEncoder:
    def __init__(self, model: str = "", quantized: bool = True, batch_size: int = 32, cache_dir: str = "",
                 threads: int = 0, spinning: bool = False):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = model_dir(model)
        cache = Path(cache_dir) if cache_dir else default_cache()
        path = export(folder, cache / f"{folder.name}-{_fingerprint(folder)}", quantized)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Off by default: between ops a spinning pool keeps its threads busy-waiting, and in
        # the service those cycles are the ones the broker client, chdb and the other
        # signals need (bench/RESULTS.md, "ONNX Runtime's thread pool").
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        config = json.loads((folder / "sentence_bert_config.json").read_text()) \
            if (folder / "sentence_bert_config.json").exists() else {}
        self.max_length = int(config.get("max_seq_length", 256))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.no_padding()
        base = DEFAULT_MODEL_NAME if not model else folder.name
        self.name = f"{base}+onnx{'-int8' if quantized else ''}"
        self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        self.batch_size = batch_size
        self.throughput = Throughput()
        self._lock = threading.Lock()
        log.info("encoder %s (%s)", self.name, path)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            started = time.perf_counter()
            # Identical texts (a shared system prompt, a canned answer) are embedded once.
            first: dict[str, int] = {}
            which = np.fromiter((first.setdefault(t, len(first)) for t in texts), dtype=np.int64, count=len(texts))
            encodings = self.tokenizer.encode_batch(list(first))
            # Longest first, as sentence-transformers does: batches of similar length pad less.
            order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
            unique = np.empty((len(encodings), self.dim), dtype=np.float32)
            for start in range(0, len(encodings), self.batch_size):
                chunk = order[start: start + self.batch_size]
                unique[chunk] = self._forward([encodings[i] for i in chunk])
            self.throughput.observe(len(texts), time.perf_counter() - started)
        return unique[which]

    def _forward(self, encodings) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = np.asarray(self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0])
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
