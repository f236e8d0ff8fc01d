"""Causal LMs built from a config with random weights, and a byte-level BPE tokenizer trained
locally: the tests' tiny model, the embedded demo's base model (`ensure_model`, via
`--tiny-base-if-missing`) and the benchmark's ~100M one, with no hub download."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS, PAD = "<|endoftext|>", "<|pad|>"


def build_tokenizer(texts: Iterable[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # No progress bar: it writes to stdout, where the job's status events go.
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD)


def build_model(path: str | Path, texts: Iterable[str], *, n_layer: int = 2, n_embd: int = 32, n_head: int = 2,
                n_positions: int = 256, vocab_size: int = 400, seed: int = 0) -> Path:
    """Write a random GPT-2 style model and its tokenizer to `path`; returns the path."""
    import torch

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(texts, vocab_size)
    vocab = tokenizer.get_vocab()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                        n_head=n_head, bos_token_id=vocab[EOS], eos_token_id=vocab[EOS], pad_token_id=vocab[PAD])
    path = Path(path)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def ensure_model(path: str | Path, texts: Iterable[str], **shape) -> Path:
    """The tiny model at `path`, built there first when absent (the embedded demo's base
    model: made on this machine at its first run, no hub). Built in a sibling folder and
    renamed into place, so a run never loads half a model, and of two jobs racing to build
    it one wins and the other uses the winner's."""
    path = Path(path)
    if (path / "config.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    build_model(tmp, texts, **shape)
    try:
        os.rename(tmp, path)
    except OSError:  # built meanwhile by another job: keep that one
        shutil.rmtree(tmp, ignore_errors=True)
    return path
