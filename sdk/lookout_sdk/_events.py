"""Turning what the caller handed to `log_call` into `llm_call/1` JSON.

All of this runs on the sender (thread or task), never on the caller's thread: the caller
only snapshots its arguments into a tuple, and the work of shaping, masking and encoding is
paid in the background.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Callable, Optional

SCHEMA = "llm_call/1"

# Order of the values in a queued call item, after (kind, event_id, ts, context).
CALL_FIELDS = (
    "model",
    "provider",
    "input",
    "prompt",
    "output",
    "tokens_in",
    "tokens_out",
    "latency_ms",
    "ttft_ms",
    "status",
    "error",
    "cost_usd",
    "user_id",
    "session_id",
    "trace_id",
    "span_id",
    "tags",
    "metadata",
    "context",
    "reference",
    "logprobs",
    "model_version",
    "prompt_version",
    "app_id",
    "environment",
)

# The server's limits (core/lookout/core/events.py). Trimming here keeps one oversized
# field from getting a whole event rejected.
_LONG = 1_000_000
_SHORT = 1024
_MAX_TAGS = 256
_MAX_METADATA = 256
_MIN_LOGPROB = -1e9

Redactor = Callable[[dict], Optional[dict]]


def rfc3339(ts: float | datetime) -> str:
    if isinstance(ts, datetime):
        # A naive datetime is taken as UTC: the server rejects timestamps without a zone.
        dt = ts if ts.tzinfo is not None else ts.replace(tzinfo=timezone.utc)
        return dt.isoformat()
    return datetime.fromtimestamp(ts, timezone.utc).isoformat()


def _text(value: Any, limit: int = _LONG) -> str:
    text = value if type(value) is str else str(value)
    return text if len(text) <= limit else text[:limit]


def _get(obj: Any, key: str) -> Any:
    if type(obj) is dict or isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _finite(value: Any) -> float | None:
    # NaN and infinities are not JSON: one of them would get the whole batch refused.
    number = float(value)
    return number if math.isfinite(number) else None


def _content(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return content if content is None or len(content) <= _LONG else content[:_LONG]
    if isinstance(content, (list, tuple)):
        # Multi-part content (text + images): keep the text parts.
        parts = [_get(p, "text") for p in content]
        return _text("".join(p for p in parts if isinstance(p, str)))
    return _text(content)


def message(m: Any) -> dict:
    """One chat message as {"role", "content", "name"?}, from a dict or an SDK object."""
    if type(m) is dict:  # the common case, without the generic lookups below
        role, content, name = m.get("role"), m.get("content"), m.get("name")
    elif isinstance(m, str):
        return {"role": "user", "content": _text(m)}
    else:
        role, content, name = _get(m, "role"), _get(m, "content"), _get(m, "name")
    out: dict = {
        "role": _text(role, 64) if role else "user",
        "content": content if type(content) is str and len(content) <= _LONG else _content(content),
    }
    if name is not None:
        out["name"] = _text(name, _SHORT)
    return out


def error_text(error: Any) -> str:
    if isinstance(error, BaseException):
        return _text(f"{type(error).__name__}: {error}")
    return _text(error)


def _hex_id(value: Any, width: int) -> str:
    # OpenTelemetry hands trace/span ids around as ints.
    return format(value, f"0{width}x") if isinstance(value, int) else _text(value, width * 2)


def _tags(values: Iterable[Any]) -> list[str]:
    return [_text(t, _SHORT) for t in values][:_MAX_TAGS]


def _metadata(values: Mapping[Any, Any]) -> dict[str, str]:
    out = {}
    for k, v in values.items():
        if len(out) >= _MAX_METADATA:
            break
        out[_text(k, _SHORT)] = _text(v, _SHORT)
    return out


def build_call(
    event_id: str, ts: float | datetime, ctx: Mapping[str, Any] | None, values: tuple, app_id: str, environment: str
) -> dict:
    """The wire event for one queued call; None values are left out (the server rejects nulls
    it does not expect, and absent means 'unknown')."""
    f: dict[str, Any] = dict(zip(CALL_FIELDS, values))
    if ctx:
        for key, value in ctx.items():
            if key == "tags":
                f["tags"] = [*value, *(f["tags"] or ())]
            elif key == "metadata":
                f["metadata"] = {**value, **(f["metadata"] or {})}
            elif f.get(key) is None:
                f[key] = value

    event: dict = {
        "schema": SCHEMA,
        "event_id": event_id,
        "ts": rfc3339(ts),
        "app_id": f["app_id"] or app_id,
        "environment": _text(f["environment"] or environment, 64),
        "model": _text(f["model"], 256),
    }
    if f["provider"] is not None:
        event["provider"] = _text(f["provider"], 64)
    for key in ("model_version", "prompt_version", "user_id", "session_id"):
        if f[key] is not None:
            event[key] = _text(f[key], _SHORT)

    messages, prompt = f["input"], f["prompt"]
    if isinstance(messages, str):
        # A bare string is a completion-style prompt, not a conversation.
        prompt = messages if prompt is None else prompt
    elif messages is not None:
        event["input"] = [message(m) for m in messages]
    if prompt is not None:
        event["prompt"] = _text(prompt)
    if f["output"] is not None:
        event["output"] = _text(f["output"])

    for key in ("tokens_in", "tokens_out"):
        if f[key] is not None:
            event[key] = max(0, int(f[key]))
    for key in ("latency_ms", "ttft_ms", "cost_usd"):
        if f[key] is not None:
            number = _finite(f[key])
            if number is not None:
                event[key] = max(0.0, number)

    error = f["error"]
    if error is not None:
        event["error"] = error_text(error)
    status = f["status"]
    event["status"] = status if status in ("ok", "error") else ("error" if error is not None else "ok")

    if f["trace_id"] is not None:
        event["trace_id"] = _hex_id(f["trace_id"], 32)
    if f["span_id"] is not None:
        event["span_id"] = _hex_id(f["span_id"], 16)
    if f["tags"]:
        event["tags"] = _tags(f["tags"])
    if f["metadata"]:
        event["metadata"] = _metadata(f["metadata"])
    if f["context"] is not None:
        event["context"] = [_text(c) for c in f["context"]]
    if f["reference"] is not None:
        event["reference"] = _text(f["reference"])
    if f["logprobs"] is not None:
        # A token the model gave zero probability has logprob -inf: kept as a very
        # unlikely token, so the list stays aligned with the output tokens.
        event["logprobs"] = [x if x is not None else _MIN_LOGPROB for x in map(_finite, f["logprobs"])]
    return event


def dumps(obj: Any) -> bytes:
    # `default=str` so an odd value somewhere (a Decimal, a UUID) degrades to text instead
    # of losing the whole event; allow_nan=False so a stray NaN fails this one event here
    # instead of making the request body invalid JSON.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False).encode()


def events_body(lines: list[bytes]) -> bytes:
    """`{"events": [...]}` from already-encoded events, without decoding them again."""
    return b'{"events":[' + b",".join(lines) + b"]}"


def split_batches(lines: list[bytes], max_events: int, max_bytes: int) -> Iterable[list[bytes]]:
    """Chunks of encoded events that fit one request (the server's per-request limits)."""
    chunk: list[bytes] = []
    size = 16
    for line in lines:
        if chunk and (len(chunk) >= max_events or size + len(line) + 1 > max_bytes):
            yield chunk
            chunk, size = [], 16
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        yield chunk
