"""Decoding and validating a POST /v1/events body. Pure functions: no I/O, no auth.

Whole-request problems raise IntakeError with the HTTP status to answer; per-event
problems become rejections that name the event's index and the field.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson
from pydantic import ValidationError

from lookout.core.events import LlmCall


class IntakeError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Rejection:
    index: int
    field: str
    message: str

    def as_dict(self) -> dict:
        return {"index": self.index, "field": self.field, "message": self.message}


def gunzip(body: bytes, limit: int) -> bytes:
    """Decode gzip without ever holding more than `limit` bytes (a small gzip bomb
    would otherwise expand to gigabytes)."""
    decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decoder.decompress(body, limit + 1)
        if len(out) > limit or decoder.unconsumed_tail:
            raise IntakeError(413, f"decoded body exceeds {limit} bytes")
        out += decoder.flush()
    except zlib.error as exc:
        raise IntakeError(400, f"body is not valid gzip: {exc}") from None
    if not decoder.eof:
        raise IntakeError(400, "body is not valid gzip: truncated stream")
    if len(out) > limit:
        raise IntakeError(413, f"decoded body exceeds {limit} bytes")
    return out


def decode_body(body: bytes, content_type: str | None, content_encoding: str | None, *, max_bytes: int) -> object:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise IntakeError(415, f"Content-Type must be application/json, got {media or 'none'!r}")
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip(body, max_bytes)
    elif encoding != "identity":
        raise IntakeError(415, f"Content-Encoding {encoding!r} is not supported (use gzip or none)")
    if len(body) > max_bytes:
        raise IntakeError(413, f"body exceeds {max_bytes} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IntakeError(400, f"body is not valid JSON: {exc}") from None


def field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(event)"


def validate_events(payload: object, *, max_events: int) -> tuple[list[tuple[int, LlmCall]], list[Rejection]]:
    """Valid events with their index, and a rejection per invalid one."""
    if not isinstance(payload, dict) or "events" not in payload:
        raise IntakeError(422, 'body must be a JSON object {"events": [...]}', field="events")
    extra = sorted(set(payload) - {"events"})
    if extra:
        raise IntakeError(422, f"unknown top-level field(s): {', '.join(extra)}", field=extra[0])
    events = payload["events"]
    if not isinstance(events, list):
        raise IntakeError(422, "events must be a list", field="events")
    if not events:
        raise IntakeError(422, "events is empty", field="events")
    if len(events) > max_events:
        raise IntakeError(413, f"{len(events)} events in one request; the limit is {max_events}", field="events")
    accepted: list[tuple[int, LlmCall]] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(events):
        if not isinstance(raw, dict):
            rejected.append(Rejection(index, "(event)", "each event must be a JSON object"))
            continue
        try:
            accepted.append((index, LlmCall.model_validate(raw)))
        except ValidationError as exc:
            first = exc.errors()[0]
            rejected.append(Rejection(index, field_path(first["loc"]), first["msg"]))
    return accepted, rejected
