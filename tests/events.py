"""Event factories shared by the cross-service tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lookout.core.ids import uuid7


def llm_call(app_id: str = "shop", model: str = "gpt-4o-mini", i: int = 0, **overrides) -> dict:
    """A realistic ~1 KB call as an SDK would post it."""
    ts = datetime.now(UTC) - timedelta(milliseconds=i)
    event = {
        "event_id": str(uuid7()),
        "ts": ts.isoformat(),
        "app_id": app_id,
        "environment": "production",
        "provider": "openai",
        "model": model,
        "prompt_version": "v2",
        "input": [
            {"role": "system", "content": "You are a helpful shopping assistant for an online store."},
            {"role": "user", "content": f"Question {i}: which of your running shoes suit a marathon beginner? " * 3},
        ],
        "output": "For a first marathon, pick a cushioned, stable trainer and break it in for 50 km. " * 4,
        "tokens_in": 180 + i % 50,
        "tokens_out": 90 + i % 30,
        "latency_ms": 400.0 + i % 700,
        "ttft_ms": 120.0 + i % 90,
        "status": "ok",
        "tags": ["test"],
        "metadata": {"request": str(i)},
    }
    event.update(overrides)
    return event
