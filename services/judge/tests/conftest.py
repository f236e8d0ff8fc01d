from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from openai_stub import FakeOpenAI
from tiny_detoxify import build

from lookout.testing.stack import IngestStack, ingest_settings_for

# Nothing in these tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def openai():
    server = FakeOpenAI().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tiny_detoxify(tmp_path_factory) -> tuple[Path, Path]:
    """(checkpoint, HF config dir) of a tiny random detoxify model."""
    return build(tmp_path_factory.mktemp("detoxify"))


@pytest.fixture
def stack(tansu_broker, settings_for):
    """Ingest + sink on Tansu (fresh topics and database): calls in through the ingest API,
    calls and scores stored in chdb, for a judge started beside them."""
    stack = IngestStack(ingest_settings_for(settings_for(tansu_broker))).start()
    yield stack
    stack.close()
