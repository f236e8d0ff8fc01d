from __future__ import annotations

import orjson
import pytest

from lookout.finetune.tiny import build_model

QA = [("What is the capital of France?", "Paris is the capital of France."),
      ("How many legs does a spider have?", "A spider has eight legs."),
      ("What colour is the sky?", "The sky is blue on a clear day."),
      ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet.")]


def write_sft(path, n: int = 24) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            q, a = QA[i % len(QA)]
            row = {"messages": [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": q}],
                   "completion": a, "event_id": f"00000000-0000-0000-0000-{i:012d}"}
            f.write(orjson.dumps(row) + b"\n")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A 2-layer random GPT-2 and a byte-level BPE tokenizer trained here (no download)."""
    texts = [q + " " + a for q, a in QA] * 4
    return build_model(tmp_path_factory.mktemp("tiny") / "base", texts)


@pytest.fixture
def sft_dataset(tmp_path):
    d = tmp_path / "snapshot"
    d.mkdir()
    write_sft(d / "sft.jsonl")
    return d


def write_preference(path, n: int = 24) -> None:
    with open(path, "wb") as f:
        for i in range(n):
            q, a = QA[i % len(QA)]
            row = {"messages": [{"role": "user", "content": q}], "chosen": a, "rejected": "I do not know, sorry.",
                   "event_id": f"00000000-0000-0000-0000-{i:012d}"}
            f.write(orjson.dumps(row) + b"\n")


@pytest.fixture
def pref_dataset(sft_dataset):
    """The SFT snapshot plus preference pairs: the correct answer chosen over a useless one."""
    write_preference(sft_dataset / "preference.jsonl")
    return sft_dataset
