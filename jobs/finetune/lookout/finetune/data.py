"""SFT JSONL -> token ids with labels on the completion only, and a deterministic held-out split.

A line: {"messages": [{"role", "content"}...], "completion": "...", "event_id": "..."}.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import orjson

IGNORE = -100  # label id the loss skips (prompt tokens, padding)


@dataclass(frozen=True)
class Example:
    event_id: str
    messages: list[dict]
    completion: str


def sft_path(dataset: str | Path) -> Path:
    """The SFT file of a snapshot folder, or the file itself."""
    p = Path(dataset)
    return p / "sft.jsonl" if p.is_dir() else p


def load_sft(dataset: str | Path) -> list[Example]:
    out = []
    with open(sft_path(dataset), "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row.get("messages"), list) or not isinstance(row.get("completion"), str):
                raise ValueError(f"{sft_path(dataset)}:{n}: an SFT line needs `messages` (list) and `completion`")
            out.append(Example(str(row.get("event_id", n)), row["messages"], row["completion"]))
    return out


def dataset_texts(dataset: str | Path) -> list[str]:
    """Every prompt and completion of an SFT file: what a tokenizer built for it learns from."""
    return [text for ex in load_sft(dataset) for text in (*(m.get("content") or "" for m in ex.messages),
                                                          ex.completion) if text]


def split(examples: list[Example], held_out: float) -> tuple[list[Example], list[Example]]:
    """Held-out by a hash of the event id, so the same example lands on the same side in every
    run of the same snapshot, whatever the file order. At least one example on each side
    when there are two or more."""
    def bucket(e: Example) -> float:
        return int(hashlib.sha256(e.event_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    ranked = sorted(examples, key=bucket)
    k = round(len(ranked) * held_out)
    if len(ranked) >= 2:
        k = min(max(k, 1), len(ranked) - 1)
    else:
        k = 0
    return ranked[k:], ranked[:k]


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The model's own chat template when it has one; else a plain role-tagged layout."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    lines = [f"<|{m.get('role', 'user')}|>\n{m.get('content') or ''}" for m in messages]
    return "\n".join([*lines, "<|assistant|>\n"])


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode(tokenizer, ex: Example, max_length: int) -> Encoded:
    prompt = tokenizer(render_prompt(tokenizer, ex.messages), add_special_tokens=False)["input_ids"]
    answer = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer = [*answer, tokenizer.eos_token_id]
    # Keep the answer whole where possible: cut the prompt from the left.
    room = max(max_length - len(answer), 0)
    prompt = prompt[-room:] if room else []
    ids = (prompt + answer)[:max_length]
    labels = ([IGNORE] * len(prompt) + answer)[:max_length]
    return Encoded(ids, labels)
