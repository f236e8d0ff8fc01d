"""Shared fixtures of the drift tests: the real packaged MiniLM and its tokenizer, loaded
once per session (loading takes well under a second; encoding is what costs)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # corpus.py, importable by the tests


@pytest.fixture(scope="session")
def encoder():
    from lookout.drift.encoder import SentenceEncoder

    return SentenceEncoder(device="cpu")


@pytest.fixture(scope="session")
def tokenizer():
    from lookout.drift.tokenizer import Tokenizer

    return Tokenizer()
