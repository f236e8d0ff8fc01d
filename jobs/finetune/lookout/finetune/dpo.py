"""DPO (direct preference optimisation) on the snapshot's preference pairs, after SFT.

Written out rather than taken from trl: the loss is a few lines, trl's trainer API moves
between releases, and the job already owns its loop. The reference policy is the model as
SFT left it; its log-probabilities are computed once, before any DPO step, so no second
copy of the model is kept.

    loss = -log sigmoid(beta * ((logp_c - ref_c) - (logp_r - ref_r)))
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import torch

from .data import IGNORE, Encoded, Example, encode, split


@dataclass(frozen=True)
class Pair:
    event_id: str
    messages: list[dict]
    chosen: str
    rejected: str


def preference_path(dataset: str | Path) -> Path | None:
    p = Path(dataset)
    f = p / "preference.jsonl" if p.is_dir() else p.with_name("preference.jsonl")
    return f if f.exists() else None


def load_pairs(path: Path) -> list[Pair]:
    out = []
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        row = orjson.loads(line)
        if not all(isinstance(row.get(k), str) for k in ("chosen", "rejected")):
            raise ValueError(f"{path}:{n}: a preference line needs `chosen` and `rejected`")
        out.append(Pair(str(row.get("event_id", n)), row["messages"], row["chosen"], row["rejected"]))
    return out


def _seq_logps(model, items: list[Encoded], pad_id: int, device: str) -> torch.Tensor:
    """Summed log-probability of each item's completion tokens."""
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        ids[row, :len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, :len(e.labels)] = torch.tensor(e.labels)
        mask[row, :len(e.input_ids)] = 1
    ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target = labels[:, 1:]
    keep = target != IGNORE
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (logp * keep).sum(-1)


@dataclass
class DpoResult:
    pairs_train: int
    pairs_eval: int
    steps: int
    loss_before: float
    loss_after: float
    accuracy_before: float
    accuracy_after: float
    margin_after: float


def _encode_pairs(tokenizer, pairs: list[Pair], max_length: int) -> list[tuple[Encoded, Encoded]]:
    return [(encode(tokenizer, Example(p.event_id, p.messages, p.chosen), max_length),
             encode(tokenizer, Example(p.event_id, p.messages, p.rejected), max_length)) for p in pairs]


@torch.no_grad()
def _reference(model, enc, pad, device, batch) -> list[tuple[float, float]]:
    model.eval()
    out = []
    for i in range(0, len(enc), batch):
        chunk = enc[i:i + batch]
        lp = _seq_logps(model, [c for c, _ in chunk] + [r for _, r in chunk], pad, device)
        n = len(chunk)
        out += list(zip(lp[:n].tolist(), lp[n:].tolist(), strict=True))
    return out


@torch.no_grad()
def _evaluate(model, enc, ref, pad, device, batch, beta) -> tuple[float, float, float]:
    """(mean DPO loss, share of pairs whose implicit reward prefers chosen, mean margin)."""
    model.eval()
    losses, wins, margins = [], 0, []
    for i in range(0, len(enc), batch):
        chunk = enc[i:i + batch]
        lp = _seq_logps(model, [c for c, _ in chunk] + [r for _, r in chunk], pad, device)
        n = len(chunk)
        for k in range(n):
            rc, rr = ref[i + k]
            margin = beta * ((lp[k].item() - rc) - (lp[n + k].item() - rr))
            margins.append(margin)
            losses.append(math.log1p(math.exp(-margin)) if margin > -30 else -margin)
            wins += margin > 0
    n = max(len(enc), 1)
    return sum(losses) / n, wins / n, sum(margins) / n


def train_dpo(model, tokenizer, dataset: str, *, epochs: int, beta: float, learning_rate: float, batch_size: int,
              max_length: int, held_out: float, seed: int, device: str, report) -> dict | None:
    path = preference_path(dataset)
    if path is None or epochs <= 0:
        return None
    pairs = load_pairs(path)
    if not pairs:
        return None
    as_examples = [Example(p.event_id, p.messages, p.chosen) for p in pairs]
    tr_ids = {e.event_id for e in split(as_examples, held_out)[0]}
    train_pairs = [p for p in pairs if p.event_id in tr_ids]
    eval_pairs = [p for p in pairs if p.event_id not in tr_ids] or train_pairs
    pad = tokenizer.pad_token_id
    tr, ev = _encode_pairs(tokenizer, train_pairs, max_length), _encode_pairs(tokenizer, eval_pairs, max_length)
    per = max(batch_size // 2, 1)  # a batch holds chosen and rejected of each pair
    ref_tr, ref_ev = _reference(model, tr, pad, device, per), _reference(model, ev, pad, device, per)
    loss0, acc0, _ = _evaluate(model, ev, ref_ev, pad, device, per, beta)
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate)
    rng = random.Random(seed)
    steps = 0
    for _ in range(epochs):
        order = list(range(len(tr)))
        rng.shuffle(order)
        for i in range(0, len(order), per):
            idx = order[i:i + per]
            model.train()
            lp = _seq_logps(model, [tr[k][0] for k in idx] + [tr[k][1] for k in idx], pad, device)
            n = len(idx)
            ref = torch.tensor([ref_tr[k] for k in idx], device=lp.device)
            logits = beta * ((lp[:n] - ref[:, 0]) - (lp[n:] - ref[:, 1]))
            loss = -torch.nn.functional.logsigmoid(logits).mean()
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            steps += 1
        report(f"dpo epoch done, step {steps}", {"dpo_step": steps, "dpo_loss": float(loss.detach())})
    loss1, acc1, margin1 = _evaluate(model, ev, ref_ev, pad, device, per, beta)
    return asdict(DpoResult(len(train_pairs), len(eval_pairs), steps, loss0, loss1, acc0, acc1, margin1))
