"""What the drift tests see of one LLM call: its sample. Texts are cut to a bounded size
before any work, so a huge payload costs no more than a long one."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from lookout.core.events import LlmCall

from .tokenizer import Tokenizer

_EMPTY_IDS = np.zeros(0, dtype=np.uint32)


@dataclass
class Sample:
    event_id: uuid.UUID
    ts: datetime
    prompt_chars: int
    response_chars: int
    prompt_tokens: int
    response_tokens: int
    empty_or_refused: bool
    prompt_token_ids: np.ndarray = field(default_factory=lambda: _EMPTY_IDS)
    response_token_ids: np.ndarray = field(default_factory=lambda: _EMPTY_IDS)
    # None where the text was empty: an empty text has no meaning to embed.
    prompt_embedding: np.ndarray | None = None
    response_embedding: np.ndarray | None = None


@dataclass(frozen=True)
class Texts:
    prompt: str
    response: str
    prompt_chars: int
    response_chars: int


def clean(text: str | None, max_chars: int) -> str:
    if not text:
        return ""
    # Lone surrogates (valid JSON, invalid UTF-8) would break the tokenizer; replace them.
    text = text[:max_chars].encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", " ")


def texts_of(call: LlmCall, max_chars: int) -> Texts:
    prompt = call.prompt_text()
    response = call.output or ""
    return Texts(clean(prompt, max_chars), clean(response, max_chars), len(prompt), len(response))


@dataclass
class FeatureExtractor:
    tokenizer: Tokenizer
    max_chars: int = 20_000
    keep_token_ids: int = 512
    refusal_pattern: str = r"^\W*(i'?m sorry|i cannot)"

    def __post_init__(self) -> None:
        self._refusal = re.compile(self.refusal_pattern, re.IGNORECASE)

    def refused(self, response: str) -> bool:
        return not response.strip() or bool(self._refusal.search(response[:300]))

    def samples(
        self,
        calls: Sequence[LlmCall],
        prompt_embeddings: Sequence[np.ndarray | None],
        response_embeddings: Sequence[np.ndarray | None],
    ) -> list[Sample]:
        texts = [texts_of(c, self.max_chars) for c in calls]
        ids = self.tokenizer.encode([t.prompt for t in texts] + [t.response for t in texts])
        n = len(texts)
        out = []
        for i, (call, t) in enumerate(zip(calls, texts, strict=True)):
            p_ids, r_ids = ids[i], ids[n + i]
            out.append(
                Sample(
                    event_id=call.event_id,
                    ts=call.ts,
                    prompt_chars=t.prompt_chars,
                    response_chars=t.response_chars,
                    # Counted by our tokenizer, not the provider's tokens_in/out: one tokenizer
                    # for every event, so an SDK that starts reporting counts is no drift.
                    prompt_tokens=len(p_ids),
                    response_tokens=len(r_ids),
                    empty_or_refused=self.refused(t.response),
                    prompt_token_ids=p_ids[: self.keep_token_ids],
                    response_token_ids=r_ids[: self.keep_token_ids],
                    prompt_embedding=prompt_embeddings[i],
                    response_embedding=response_embeddings[i],
                )
            )
        return out
