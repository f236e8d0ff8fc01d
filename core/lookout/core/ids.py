"""Identifiers: UUIDv7 for events, deterministic ids for replays."""

from __future__ import annotations

import os
import time
import uuid

# Fixed namespace so ids derived from OTLP trace/span ids are the same in every process.
OTLP_NAMESPACE = uuid.UUID("6f1d8a52-0b7e-4c3a-9a57-4c6f6f6b6f75")


def uuid7(ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit unix ms timestamp, then random bits, so ids sort by time."""
    ms = int(time.time() * 1000) if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def span_event_id(trace_id: str, span_id: str) -> uuid.UUID:
    """event_id of an OTLP span: UUIDv5 over "<trace_id hex>/<span_id hex>" (lower case) in
    OTLP_NAMESPACE, so a retried export is stored once."""
    return uuid.uuid5(OTLP_NAMESPACE, f"{trace_id.lower()}/{span_id.lower()}")


def uuid_from(text: str) -> uuid.UUID:
    """A stable id for something identified by text (e.g. a topic/partition/offset), so
    reprocessing it yields the same id and storage collapses the replay."""
    return uuid.uuid5(OTLP_NAMESPACE, text)
