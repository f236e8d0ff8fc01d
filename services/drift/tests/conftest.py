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


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory):
    """One ONNX export (fused, then int8) per session, shared by every test that needs it."""
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="session")
def onnx_encoder(onnx_cache):
    """The default encoder: MiniLM on ONNX Runtime, int8 (exported on first use)."""
    from lookout.drift.encoder import build_encoder

    return build_encoder("onnx-int8", cache_dir=str(onnx_cache))
