"""Settings of the ingest service (the HTTP and OTLP intake)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lookout.core.app_map import AppMap
from lookout.core.settings import CommonSettings, ServerSettings

PiiMode = Literal["off", "mask", "hash"]
WorkMode = Literal["process", "thread"]


class IngestSettings(CommonSettings, ServerSettings):
    http_workers: int = Field(
        default=1, ge=1, description="Intake processes (`python -m lookout.ingest`); one per core."
    )
    max_batch_events: int = Field(default=5000, ge=1, description="Most events in one POST /v1/events.")
    max_body_bytes: int = Field(default=10 << 20, ge=1024, description="Largest request body, after gzip decoding.")
    max_spans_per_request: int = Field(
        default=5000, ge=1,
        description="Most spans in one POST /v1/traces (counted before any is converted); more: 413.",
    )
    max_response_bytes: int = Field(
        default=8 << 20, ge=64 << 10,
        description="About the most bytes of calls in one GET /v1/calls page; a page that reaches it ends early "
        "with `truncated` and a `next` cursor (a single larger call is still returned whole).",
    )
    max_inflight_events: int = Field(
        default=100_000, ge=1, description="Events being produced at once; beyond it requests get 503 + Retry-After."
    )
    produce_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a request waits for Kafka acks before 503."
    )
    bulk_request_bytes: int = Field(
        default=256 * 1024, ge=0,
        description="A request whose records exceed this many bytes is produced over a Kafka connection of its own, "
        "so a megabyte batch never holds up the acks of small requests (a connection has one produce request in "
        "flight at a time). 0: one connection for all.",
    )
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After seconds sent with a 503 or 429.")
    work_mode: WorkMode = Field(
        default="process", description="Where each request's CPU work runs (decoding, validation, PII redaction, OTLP "
        "conversion): `process`, worker processes beside the server, so it never competes with the server for "
        "Python's interpreter lock; `thread`, threads in the server process (where extra processes are unwelcome)."
    )
    work_workers: int = Field(
        default=4, ge=1,
        description="Worker processes (or threads) for that CPU work, per intake process; started with the service."
    )
    work_workers_per_key: int = Field(
        default=1, ge=1, description="Most of those workers one API key holds at once, so other keys always find one."
    )
    work_queue_per_key: int = Field(
        default=32, ge=0, description="Requests of one key waiting for a worker; beyond it 429 + Retry-After."
    )
    work_quick_workers: int = Field(
        default=2, ge=0,
        description="Worker processes for small requests only (a body that decodes to at most "
        "LOOKOUT_BULK_REQUEST_BYTES), at LOOKOUT_WORK_QUICK_NICE, so their work is never queued or starved behind "
        "megabyte jobs; process mode only. 0: every request on the workers above.",
    )
    work_quick_nice: int = Field(
        default=0, ge=0, le=19, description="How far the small-request workers lower their CPU priority.",
    )
    work_nice: int = Field(
        default=10, ge=0, le=19, description="How far worker processes lower their CPU priority (os.nice), so the "
        "server and /healthz win the CPU when the machine is busy."
    )
    pii_mode: PiiMode = Field(default="mask", description="PII redaction: off, mask or hash.")
    pii_app_modes: AppMap[PiiMode] = Field(
        default=AppMap(), description="Per-app PII modes, e.g. 'app1=off,app2=hash'."
    )
    pii_secret: str = Field(
        default="",
        description="Secret (16+ chars) for PII hash tokens and user/session id pseudonyms. Required; "
        "`lookout up` generates one under its data dir.",
    )
    price_table: str | None = Field(default=None, description="Path of a price table YAML (default: the packaged one).")
