"""Fine-tuning throughput of jobs/finetune (lookout.finetune.train): tokens/s and peak memory,
LoRA vs full, per device, on a GPT-2 shaped model built from a config with random weights
(no hub here; cost per token does not depend on the weights).

- `--size tiny`: 2 layers x 64 (the tests' scale): the CPU time of a tiny run.
- `--size 100m`: 12 layers x 768, 32k vocabulary (~110M parameters, GPT-2 small's shape).

Throughput leaves out the first `--warmup` steps (CUDA kernels, allocator). Synthetic SFT
examples have one length, so every step trains the same number of tokens.

Run: `.venv/bin/python -m bench.bench_finetune [--size tiny|100m] [--devices cpu,cuda]
[--methods lora,full] [--steps 30] [--cpu-steps 6] [--seq 256] [--batch 8]`.
Results print and go to bench/out/finetune.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import orjson
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from lookout.finetune.tiny import build_tokenizer
from lookout.finetune.train import TrainConfig, train

SIZES = {"tiny": dict(n_layer=2, n_embd=64, n_head=2, vocab=512),
         "100m": dict(n_layer=12, n_embd=768, n_head=12, vocab=32000)}
WORDS = ("the model answers questions about orders refunds delivery accounts passwords invoices "
         "shipping returns warranty support billing plans upgrades cancellations").split()


def build(path: Path, size: str, seq: int) -> Path:
    spec = SIZES[size]
    texts = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(40)) for i in range(200)]
    tok = build_tokenizer(texts, vocab_size=min(spec["vocab"], 2000))
    config = GPT2Config(vocab_size=max(spec["vocab"], len(tok)), n_positions=max(seq, 256), n_embd=spec["n_embd"],
                        n_layer=spec["n_layer"], n_head=spec["n_head"], eos_token_id=tok.eos_token_id,
                        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def dataset(path: Path, n: int, seq: int) -> Path:
    """n examples of one length (about `seq` tokens: prompt half, completion half)."""
    words = max(seq // 4, 4)
    with open(path, "wb") as f:
        for i in range(n):
            q = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(words))
            a = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range(words))
            f.write(orjson.dumps({"messages": [{"role": "user", "content": q}], "completion": a,
                                  "event_id": str(i)}) + b"\n")
    return path


def run(base: Path, data: Path, out: Path, device: str, method: str, steps: int, warmup: int, batch: int,
        seq: int) -> dict:
    marks: list[float] = []
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = TrainConfig(dataset=str(data), base_model=str(base), output_dir=str(out), method=method, epochs=0,
                      max_steps=steps, batch_size=batch, max_length=seq, held_out=0.05, device=device,
                      report_every=1, learning_rate=1e-4 if method == "full" else 2e-4)

    def progress(msg: str, data: dict) -> None:
        if "step" in data:
            if device == "cuda":
                torch.cuda.synchronize()
            marks.append(time.perf_counter())

    m = train(cfg, progress)
    per_step = m["train_tokens"] / m["steps"]
    w = min(warmup, len(marks) - 2)
    steady = (len(marks) - 1 - w) * per_step / (marks[-1] - marks[w]) if len(marks) - w >= 2 else None
    result = {
        "device": device, "method": method, "steps": m["steps"], "tokens_per_step": per_step,
        "tokens_per_s": round(steady, 1) if steady else m["tokens_per_second"],
        "tokens_per_s_incl_warmup": m["tokens_per_second"], "trainable_parameters": m["trainable_parameters"],
        "total_parameters": m["total_parameters"], "train_seconds": m["train_seconds"],
        "eval_loss_before": m["eval_before"]["loss"], "eval_loss_after": m["eval_after"]["loss"],
    }
    if device == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result["gpu"] = torch.cuda.get_device_name(0)
    else:
        result["peak_rss_growth_gib"] = round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before)
                                              / 2**20, 2)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--devices", default="cuda,cpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", default="lora,full")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--cpu-steps", type=int, default=6, help="steps on cpu (slow at 100m)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default="bench/out/finetune.json")
    a = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base = build(tmp_path / "base", a.size, a.seq)
        for device in a.devices.split(","):
            steps = a.steps if device == "cuda" else a.cpu_steps
            data = dataset(tmp_path / f"sft-{device}.jsonl", (steps + 2) * a.batch, a.seq)
            for method in a.methods.split(","):
                r = run(base, data, tmp_path / f"out-{device}-{method}", device, method, steps,
                        min(a.warmup, steps - 2), a.batch, a.seq)
                results.append(r)
                print(json.dumps(r), flush=True)
    by = {(r["device"], r["method"]): r["tokens_per_s"] for r in results}
    for method in a.methods.split(","):
        if ("cuda", method) in by and ("cpu", method) in by and by[("cpu", method)]:
            print(f"{method}: cuda {by[('cuda', method)]:.0f} tok/s vs cpu {by[('cpu', method)]:.0f} tok/s "
                  f"= {by[('cuda', method)] / by[('cpu', method)]:.1f}x")
    report = {"size": a.size, "seq": a.seq, "batch": a.batch, "host": platform.node(),
              "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "results": results}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
