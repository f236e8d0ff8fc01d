"""Calls in through the ingest API, for judge tests that run beside a real ingest + sink
(the `stack` fixture of conftest.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from lookout.judge.settings import JudgeSettings
from lookout.testing.stack import IngestStack


def shared(stack: IngestStack) -> dict:
    """The stack's broker, topics and database, for a judge beside it."""
    return {k: v for k, v in stack.settings.model_dump().items()
            if k in JudgeSettings.model_fields and k not in ("http_port", "http_host")}


def post(stack: IngestStack, calls: list[dict]) -> None:
    with stack.http() as http:
        r = http.post("/v1/events", json={"events": calls})
        assert r.status_code == 200 and r.json()["accepted"] == len(calls), r.text


def event(output: str, prompt: str) -> dict:
    return {"event_id": str(uuid.uuid4()), "ts": datetime.now(UTC).isoformat(), "app_id": "tox", "model": "m",
            "provider": "openai", "input": [{"role": "user", "content": prompt}], "output": output}
