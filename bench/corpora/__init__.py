"""Real-text corpora for the drift benchmark and tests, read offline from the compact
extracts in data/ (built by bench/corpora/build.py, which says where every text came from).

    from bench.corpora import load
    corpus = load("debian")          # or "wordnet"
    corpus.topics                    # ('admin', 'database', ...)
    corpus.by_topic["games"][0]      # Item(topic, prompt, response, source)
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
NAMES = ("debian", "wordnet")


@dataclass(frozen=True)
class Item:
    topic: str
    prompt: str
    response: str
    source: str  # debian:<package>=<version> or wordnet:<synset offset>


@dataclass(frozen=True)
class Corpus:
    name: str
    header: dict
    items: tuple[Item, ...]
    by_topic: dict[str, tuple[Item, ...]] = field(repr=False)

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self.by_topic)


@cache
def load(name: str) -> Corpus:
    if name not in NAMES:
        raise ValueError(f"unknown corpus {name!r}; one of {NAMES}")
    items, header = [], {}
    with gzip.open(DATA / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for i, line in enumerate(f):
            row = json.loads(line)
            if i == 0:
                header = row["header"]
                continue
            source = (f"debian:{row['package']}={row['version']}" if name == "debian"
                      else f"wordnet:{row['synset']}")
            items.append(Item(row["topic"], row["prompt"], row["response"], source))
    by_topic: dict[str, list[Item]] = {}
    for item in items:
        by_topic.setdefault(item.topic, []).append(item)
    return Corpus(name, header, tuple(items), {t: tuple(v) for t, v in by_topic.items()})
