"""LoRA supervised fine-tuning on a snapshot's SFT JSONL, with held-out loss and perplexity
before and after, an adapter, metrics.json and a model card naming the dataset hash and
the rule that caused the run.

A plain torch loop rather than transformers.Trainer: the job is small, and a loop we own
reports progress where we want it and behaves the same across transformers releases.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from .data import IGNORE, Encoded, encode, load_sft, split
from .dpo import train_dpo

Progress = Callable[[str, dict], object]  # what it returns is ignored


@dataclass
class TrainConfig:
    dataset: str
    base_model: str
    output_dir: str
    run_id: str = ""
    app_id: str = ""
    model: str = ""
    rule: str = ""
    dataset_hash: str = ""
    model_version: str = ""
    method: str = "lora"  # lora | full
    epochs: int = 1
    max_steps: int = 0  # > 0 caps the optimiser steps
    batch_size: int = 8
    learning_rate: float = 2e-4
    max_length: int = 512
    held_out: float = 0.1
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=list)  # empty: peft's default for the architecture
    seed: int = 0
    device: str = ""  # "": cuda when available, else cpu
    bf16: bool = True  # on cuda only
    report_every: int = 10
    dpo_epochs: int = 0  # > 0: DPO on preference.jsonl after SFT (when the snapshot has pairs)
    dpo_beta: float = 0.1
    dpo_learning_rate: float = 5e-5


@dataclass
class EvalResult:
    loss: float
    perplexity: float
    tokens: int


def _batches(items: list[Encoded], size: int, pad_id: int, device: str):
    for i in range(0, len(items), size):
        chunk = items[i:i + size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            mask[row, :n] = 1
        yield ids.to(device), labels.to(device), mask.to(device)


def _token_loss(model, ids, labels, mask) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over completion tokens, and their count (shifted by one)."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((target != IGNORE).sum())


@torch.no_grad()
def evaluate(model, items: list[Encoded], batch_size: int, pad_id: int, device: str) -> EvalResult:
    model.eval()
    total, tokens = 0.0, 0
    for ids, labels, mask in _batches(items, batch_size, pad_id, device):
        loss, n = _token_loss(model, ids, labels, mask)
        total += float(loss)
        tokens += n
    mean = total / tokens if tokens else math.nan
    return EvalResult(mean, math.exp(mean) if tokens and mean < 50 else math.inf, tokens)


def _device(cfg: TrainConfig) -> str:
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


def train(cfg: TrainConfig, progress: Progress | None = None) -> dict:
    """Run one fine-tuning job; returns the metrics also written to metrics.json."""
    report = progress or (lambda _msg, _data: None)
    started = time.monotonic()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = _device(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = AutoTokenizer.from_pretrained(cfg.base_model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") and cfg.bf16 else torch.float32
    # PreTrainedModel.to is wrapped with functools.wraps, which hides from type checkers that it is bound.
    model = AutoModelForCausalLM.from_pretrained(cfg.base_model, dtype=dtype).to(device)  # pyright: ignore[reportArgumentType]

    examples = load_sft(cfg.dataset)
    if not examples:
        raise ValueError(f"no SFT examples in {cfg.dataset}")
    train_ex, eval_ex = split(examples, cfg.held_out)
    eval_split = "held_out"
    if not eval_ex:  # one example: evaluate on it rather than on nothing
        eval_ex, eval_split = train_ex, "train"
    train_items = [encode(tokenizer, e, cfg.max_length) for e in train_ex]
    eval_items = [encode(tokenizer, e, cfg.max_length) for e in eval_ex]
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError(f"the tokenizer of {cfg.base_model} has neither a pad nor an eos token")

    before = evaluate(model, eval_items, cfg.batch_size, pad, device)
    report("evaluated base model", {"eval_loss_before": before.loss})

    if cfg.method == "lora":
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=cfg.lora_target_modules or None, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    elif cfg.method != "full":
        raise ValueError(f"method must be lora or full, got {cfg.method!r}")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total_params = sum(p.numel() for p in model.parameters())
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)

    steps_per_epoch = math.ceil(len(train_items) / cfg.batch_size)
    planned = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        planned = min(planned, cfg.max_steps) if cfg.epochs else cfg.max_steps
    step, train_tokens, last_loss = 0, 0, math.nan
    train_started = time.monotonic()
    rng = random.Random(cfg.seed)
    while step < planned:
        order = train_items[:]
        rng.shuffle(order)
        for ids, labels, mask in _batches(order, cfg.batch_size, pad, device):
            model.train()
            loss_sum, n = _token_loss(model, ids, labels, mask)
            loss = loss_sum / max(n, 1)
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            train_tokens += int(mask.sum())
            last_loss = float(loss.detach())
            if step % cfg.report_every == 0 or step == planned:
                report(f"step {step}/{planned}", {"step": step, "steps": planned, "train_loss": last_loss})
            if step >= planned:
                break
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    train_s = time.monotonic() - train_started

    after = evaluate(model, eval_items, cfg.batch_size, pad, device)
    dpo = train_dpo(model, tokenizer, cfg.dataset, epochs=cfg.dpo_epochs, beta=cfg.dpo_beta,
                    learning_rate=cfg.dpo_learning_rate, batch_size=cfg.batch_size, max_length=cfg.max_length,
                    held_out=cfg.held_out, seed=cfg.seed, device=device, report=report)
    if dpo is not None:
        # SFT loss after DPO too: preference training must not undo what SFT taught.
        dpo["sft_eval_after_dpo"] = asdict(evaluate(model, eval_items, cfg.batch_size, pad, device))
    adapter_dir = out / ("adapter" if cfg.method == "lora" else "model")
    model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))

    metrics = {
        "run_id": cfg.run_id,
        "model_version": cfg.model_version,
        "method": cfg.method,
        "device": device,
        "dataset_hash": cfg.dataset_hash,
        "rule": cfg.rule,
        "examples": {"train": len(train_items), "eval": len(eval_items), "eval_split": eval_split},
        "steps": step,
        "train_tokens": train_tokens,
        "train_seconds": round(train_s, 3),
        "tokens_per_second": round(train_tokens / train_s, 1) if train_s > 0 else None,
        "trainable_parameters": trainable,
        "total_parameters": total_params,
        "final_train_loss": last_loss,
        "eval_before": asdict(before),
        "eval_after": asdict(after),
        "dpo": dpo,
        "wall_seconds": round(time.monotonic() - started, 3),
        "output": str(adapter_dir),
        "config": asdict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    (out / "README.md").write_text(model_card(cfg, metrics))
    return metrics


def model_card(cfg: TrainConfig, m: dict) -> str:
    b, a = m["eval_before"], m["eval_after"]
    return f"""---
base_model: {cfg.base_model}
library_name: peft
tags: [lookout, {cfg.method}, sft]
---
# {cfg.model_version or cfg.model or "fine-tuned model"}

Fine-tuned by Lookout retrain run `{cfg.run_id}` for app `{cfg.app_id}`, model `{cfg.model}`.

- Caused by rule: `{cfg.rule}`
- Dataset: `{cfg.dataset}` (sha256 `{cfg.dataset_hash}`), {m["examples"]["train"]} training and \
{m["examples"]["eval"]} evaluation examples ({m["examples"]["eval_split"]} split)
- Method: {cfg.method} (r={cfg.lora_r}, alpha={cfg.lora_alpha}), {m["steps"]} steps, lr {cfg.learning_rate}, \
device {m["device"]}

| evaluation | loss | perplexity |
|---|---|---|
| before | {b["loss"]:.4f} | {b["perplexity"]:.2f} |
| after | {a["loss"]:.4f} | {a["perplexity"]:.2f} |
{_dpo_card(m.get("dpo"))}"""


def _dpo_card(d: dict | None) -> str:
    if not d:
        return ""
    return (f"\nDPO on {d['pairs_train']} preference pairs ({d['steps']} steps): loss {d['loss_before']:.4f} -> "
            f"{d['loss_after']:.4f}, chosen preferred on {d['accuracy_after']:.0%} of {d['pairs_eval']} "
            f"evaluation pairs.\n")
