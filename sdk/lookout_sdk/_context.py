"""What the application's code has in scope when it logs a call: the fields of
`lookout_sdk.context(...)`, the id of the last call recorded, the active OpenTelemetry span,
and a way to reach the process's default client.

A leaf: it imports nothing from the SDK, so every other module may read it (log_call reads
the context fields on the hot path; observe and wrap_openai set the last event id) without
an import cycle.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Callable, Protocol

# Fields `lookout_sdk.context(...)` may set for every call logged inside it.
CONTEXT_FIELDS = frozenset(
    {"user_id", "session_id", "trace_id", "span_id", "prompt_version", "tags", "metadata", "environment"}
)

CALL_CONTEXT: ContextVar[Mapping[str, Any] | None] = ContextVar("lookout_context", default=None)
LAST_EVENT_ID: ContextVar[str | None] = ContextVar("lookout_last_event_id", default=None)


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach fields to every call logged inside the block, by any client, in this thread or
    asyncio task: user_id, session_id, trace_id, span_id, prompt_version, environment,
    tags (added) and metadata (merged; the call's own values win).

    >>> with lookout_sdk.context(user_id=request.user_id, session_id=conversation_id, tags=["beta"]):
    ...     reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    """
    unknown = set(fields) - CONTEXT_FIELDS
    if unknown:
        raise TypeError(f"context() does not take {sorted(unknown)}; it takes {sorted(CONTEXT_FIELDS)}")
    outer = CALL_CONTEXT.get() or {}
    merged: dict[str, Any] = {**outer, **{k: v for k, v in fields.items() if v is not None}}
    if "tags" in fields and fields["tags"] is not None:
        merged["tags"] = [*outer.get("tags", ()), *fields["tags"]]
    if "metadata" in fields and fields["metadata"] is not None:
        merged["metadata"] = {**outer.get("metadata", {}), **fields["metadata"]}
    token = CALL_CONTEXT.set(merged)
    try:
        yield
    finally:
        CALL_CONTEXT.reset(token)


def last_event_id() -> str | None:
    """The event_id of the last call recorded by `observe` or `wrap_openai` in this thread or
    asyncio task, e.g. to attach end-user feedback to it later.

    >>> reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    >>> session["event_id"] = lookout_sdk.last_event_id()
    """
    return LAST_EVENT_ID.get()


def otel_ids() -> tuple[int | None, int | None]:
    """trace and span ids of the active OpenTelemetry span, when the app uses OpenTelemetry
    (only looked up if it is already imported: the SDK never pulls it in)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None, None
    try:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            return ctx.trace_id, ctx.span_id
    except Exception:
        pass
    return None, None


class CallLog(Protocol):
    """What code below the client classes needs of a client: `log_call(...)`."""

    @property
    def log_call(self) -> Callable[..., str]: ...


def _no_default() -> CallLog:
    raise RuntimeError("lookout_sdk's default client is not available (import lookout_sdk, not its modules)")


_default_client: Callable[[], CallLog] = _no_default


def default_client() -> CallLog:
    """`lookout_sdk.get_client()`, for code that sits below the client classes (an
    observation made without a client logs through it when it ends)."""
    return _default_client()


def provide_default_client(get: Callable[[], CallLog]) -> None:
    """Called once, by the module that owns the default client (it sits above the client
    classes, which this module cannot import)."""
    global _default_client
    _default_client = get
