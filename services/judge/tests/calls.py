"""LlmCall builders for the judge's tests."""

from __future__ import annotations

from datetime import UTC, datetime

from lookout.core.events import LlmCall, Message
from lookout.core.ids import uuid7


def call(output: str = "Paris is the capital of France.", prompt: str = "What is the capital of France?",
         **extra) -> LlmCall:
    values = dict(
        event_id=uuid7(), ts=datetime.now(UTC), app_id=extra.pop("app_id", "shop"), model="gpt-4o-mini",
        provider="openai", input=[Message(role="user", content=prompt)], output=output,
    )
    values.update(extra)
    return LlmCall(**values)
