"""The parts of a Lookout client that do not depend on how it sends: configuration, the
caller-side API (log_call, feedback, observe), and the delivery policy.

The shape follows OpenTelemetry's BatchSpanProcessor: the caller only appends to a bounded
in-memory queue (dropping and counting when it is full, never blocking), and one background
worker drains it in batches, by size or by time, and does all the slow work.

The delivery policy itself (batching, gzip, retries with backoff, Retry-After, spilling to
disk) is written once, without I/O, as generators that yield the two effects they need:
`_Post` (send a request, get back a response or an exception) and `_Sleep` (wait, get back
whether the wait was interrupted by close()). `Lookout` runs them on a thread with
httpx.Client, `AsyncLookout` on a task with httpx.AsyncClient, so the two cannot drift apart.
"""

from __future__ import annotations

import atexit
import gzip
import json
import logging
import os
import random
import re
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Generator, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import httpx

from ._events import Redactor, build_call, dumps, events_body, split_batches
from ._ids import sample_key, uuid7
from ._spill import SpillStore

if TYPE_CHECKING:
    from ._observe import Observation

__version__ = "0.1.0"

logger = logging.getLogger("lookout_sdk")

_CALL = 0
_FEEDBACK = 1

_APP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_PATHS = {"events": "/v1/events", "feedback": "/v1/feedback"}
# Statuses that say "not now" rather than "never": everything else is final.
_RETRYABLE = frozenset({408, 429, 502, 503, 504})
_GZIP_MIN_BYTES = 1024
_MAX_EVENTS_PER_REQUEST = 5000
_SAMPLE_SCALE = 1 << 32
_YIELD_EVERY = 32

# The application's own context for every call logged inside `lookout_sdk.context(...)`.
# It lives here because log_call reads it on the hot path.
_CONTEXT: ContextVar[Mapping[str, Any] | None] = ContextVar("lookout_context", default=None)


@dataclass(frozen=True)
class Stats:
    """Counters of one client, in items (LLM calls and feedback), since it started or forked.

    - sent: accepted by the server.
    - dropped: refused on the caller's side because the queue was full (or the client closed).
    - retried: requests sent again after a 429/5xx/network error.
    - failed: given up for good: rejected by the server, whole-request 4xx, retries
      exhausted without a spill directory, masking hook errors, spill directory full.
    - spilled: written to the spill directory (they count as sent once re-sent).
    - sampled_out: not sent by the application's choice: the sample rate, or a `redact`
      hook that returned None.
    - queued: waiting in memory right now.
    """

    sent: int
    dropped: int
    retried: int
    failed: int
    spilled: int
    sampled_out: int
    queued: int


class _Post(NamedTuple):
    path: str
    body: bytes
    headers: dict[str, str]
    timeout: float


class _Sleep(NamedTuple):
    seconds: float


_Effect = Union[_Post, _Sleep]
# What a driver sends back for a _Post: (status, headers, body), or the transport error.
_Result = Union[tuple[int, Mapping[str, str], bytes], Exception]
_Plan = Generator[_Effect, Any, Any]

_OK, _RETRY, _FATAL = "ok", "retry", "fatal"


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: either a number or an HTTP date (RFC 9110 allows both)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _classify(result: _Result) -> tuple[str, Any, str]:
    """(outcome, detail, reason): detail is the parsed body for _OK, Retry-After for _RETRY."""
    if isinstance(result, Exception):
        return _RETRY, None, f"{type(result).__name__}: {result}"
    status, headers, content = result
    if 200 <= status < 300:
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            body = {}
        return _OK, body if isinstance(body, dict) else {}, ""
    reason = f"HTTP {status}: {content[:300].decode('utf-8', 'replace')}"
    if status in _RETRYABLE:
        return _RETRY, _parse_retry_after(headers.get("retry-after")), reason
    return _FATAL, status, reason


def _parse_sample_rate(value: float | Mapping[str, float] | str | None) -> dict[str, float]:
    """{app_id or "*": rate}. From the environment: "0.1" or "app-a=0.1,app-b=0.5,*=1"."""
    if value is None:
        return {"*": 1.0}
    if isinstance(value, str):
        if "=" not in value:
            return {"*": float(value)}
        rates = {}
        for part in value.split(","):
            if part.strip():
                app, _, rate = part.partition("=")
                rates[app.strip()] = float(rate)
        return rates
    if isinstance(value, Mapping):
        return {str(k): float(v) for k, v in value.items()}
    return {"*": float(value)}


class _OnceLog:
    """Warn once per distinct reason, so a misconfigured key or a schema mismatch is visible
    in the application's log without flooding it."""

    def __init__(self, limit: int = 1000) -> None:
        self._seen: set[Any] = set()
        self._limit = limit

    def warning(self, key: Any, msg: str, *args: Any) -> None:
        if key in self._seen:
            return
        if len(self._seen) < self._limit:
            self._seen.add(key)
        logger.warning(msg, *args)


class _BaseClient:
    """Everything but the worker: configuration, the caller-side API and the delivery plans."""

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        app_id: str | None = None,
        environment: str | None = None,
        *,
        sample_rate: float | Mapping[str, float] | None = None,
        redact: Redactor | None = None,
        spill_dir: str | os.PathLike[str] | None = None,
        spill_max_bytes: int = 256 * 1024 * 1024,
        max_queue_size: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        gzip: bool = True,
        timeout: float = 10.0,
        max_retry_time: float | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 10.0,
        shutdown_timeout: float = 5.0,
        max_request_bytes: int = 9 * 1024 * 1024,
    ) -> None:
        env = os.environ
        endpoint = endpoint or env.get("LOOKOUT_ENDPOINT") or None
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self.api_key = api_key or env.get("LOOKOUT_API_KEY") or None
        self.app_id = app_id or env.get("LOOKOUT_APP_ID") or ""
        self.environment = environment or env.get("LOOKOUT_ENVIRONMENT") or "production"
        self.enabled = self.endpoint is not None
        if not self.enabled:
            # Unconfigured (a laptop, a unit test): log_call still works and returns ids,
            # nothing is sent. Monitoring must not be the reason an app fails to start.
            logger.warning("lookout_sdk: no endpoint (LOOKOUT_ENDPOINT); events will not be sent")
        elif not _APP_ID.match(self.app_id):
            raise ValueError(f"app_id must match {_APP_ID.pattern} (got {self.app_id!r}); set it or LOOKOUT_APP_ID")

        rates = _parse_sample_rate(sample_rate if sample_rate is not None else env.get("LOOKOUT_SAMPLE_RATE"))
        for rate in rates.values():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sample rates must be within [0, 1] (got {rates})")
        self._rates = {app: int(rate * _SAMPLE_SCALE) for app, rate in rates.items()}
        self._any_threshold = self._rates.get("*", _SAMPLE_SCALE)
        self._default_threshold = self._rates.get(self.app_id, self._any_threshold)
        self._sampling = any(t < _SAMPLE_SCALE for t in self._rates.values())

        spill_dir = spill_dir or env.get("LOOKOUT_SPILL_DIR") or None
        self._spill = SpillStore(spill_dir, spill_max_bytes) if spill_dir and self.enabled else None
        self._redact = redact
        self._max_queue_size = max_queue_size
        self._batch_size = max(1, min(batch_size, _MAX_EVENTS_PER_REQUEST))
        self._flush_interval = flush_interval
        self._gzip = gzip
        self._timeout = timeout
        # With a spill directory a batch goes to disk after a short while and the sender
        # moves on; without one, retrying longer is the only way not to lose it.
        self._retry_budget = max_retry_time if max_retry_time is not None else (5.0 if self._spill else 60.0)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._shutdown_timeout = shutdown_timeout
        self._max_request_bytes = max_request_bytes
        self._headers = {
            "Content-Type": "application/json",
            "User-Agent": f"lookout-sdk-python/{__version__}",
        }
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        self._jitter = random.Random()
        self._once = _OnceLog()
        self._reset_state()
        _clients.add(self)
        if self._spill is not None and self._spill.claim_possible():
            # Left over by an earlier run: send it now rather than at the first new event.
            self._start()

    def _reset_state(self) -> None:
        """Fresh queue, counters and worker handles: at start, and in a forked child (the
        parent keeps sending its own pending events; the child must not touch the parent's
        locks, thread or sockets)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._queue: deque[tuple] = deque()
        self._enqueued = 0
        self._processed = 0
        self._sent = self._dropped = self._retried = self._failed = self._spilled = self._sampled_out = 0
        self._in_flight: list[tuple] = []
        self._started = False
        self._closed = False
        self._stopping = False
        self._give_up_at: float | None = None
        self._interrupt = threading.Event()
        self._down_until = 0.0
        self._probe_delay = self._backoff_base
        self._drop_warn_at = 0.0
        self._down_epoch = 0
        self._flush_requested = False

    # ------------------------------------------------------------------ caller side

    def log_call(
        self,
        *,
        model: str,
        input: Sequence[Any] | str | None = None,
        output: str | None = None,
        prompt: str | None = None,
        provider: str | None = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_ms: float | None = None,
        ttft_ms: float | None = None,
        status: str | None = None,
        error: BaseException | str | None = None,
        cost_usd: float | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
        trace_id: str | int | None = None,
        span_id: str | int | None = None,
        tags: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        context: Iterable[str] | None = None,
        reference: str | None = None,
        logprobs: Iterable[float] | None = None,
        model_version: str | None = None,
        prompt_version: str | None = None,
        app_id: str | None = None,
        environment: str | None = None,
        ts: float | datetime | None = None,
        event_id: str | None = None,
    ) -> str:
        """Record one LLM call and return its event_id (a UUIDv7) at once.

        Never blocks and never raises: the call is appended to an in-memory queue (or
        dropped and counted when the queue is full) and sent in the background.

        >>> lookout = Lookout(endpoint="http://localhost:8080", api_key="lk_...", app_id="support-bot")
        >>> event_id = lookout.log_call(
        ...     model="gpt-4o-mini", provider="openai",
        ...     input=[{"role": "user", "content": "Where is my order?"}],
        ...     output="It ships tomorrow.", tokens_in=12, tokens_out=6, latency_ms=840.0,
        ...     user_id="u-123", tags=["checkout"], metadata={"region": "eu"},
        ... )
        >>> lookout.feedback(event_id, thumbs=+1)

        `input` is a list of chat messages (dicts or SDK message objects) or a plain prompt
        string; `error` may be the exception itself (status becomes "error"). Fields left
        as None are not sent. `ts` defaults to now; `event_id` to a fresh UUIDv7 (pass one
        to make a replay idempotent).
        """
        now = time.time()
        if event_id is None:
            event_id = uuid7(now)
        try:
            if self._sampling and not self._sampled(event_id, app_id):
                with self._lock:
                    self._sampled_out += 1
                return event_id
            if not self.enabled:
                return event_id
            # Copies of the containers, not of their contents: callers commonly keep
            # appending to their `messages` list, and the event must show the call as it was.
            self._put(
                (
                    _CALL,
                    event_id,
                    now if ts is None else ts,
                    _CONTEXT.get(),
                    model,
                    provider,
                    input if input is None or isinstance(input, str) else list(input),
                    prompt,
                    output,
                    tokens_in,
                    tokens_out,
                    latency_ms,
                    ttft_ms,
                    status,
                    error,
                    cost_usd,
                    user_id,
                    session_id,
                    trace_id,
                    span_id,
                    None if tags is None else list(tags),
                    None if metadata is None else dict(metadata),
                    None if context is None else list(context),
                    reference,
                    None if logprobs is None else list(logprobs),
                    model_version,
                    prompt_version,
                    app_id,
                    environment,
                )
            )
        except Exception:  # the app must never fail because of its monitoring
            self._once.warning("log_call", "lookout_sdk: log_call failed; event dropped", exc_info=True)
        return event_id

    def feedback(
        self, event_id: str, thumbs: int | bool, *, comment: str | None = None, user_id: str | None = None
    ) -> bool:
        """Record an end user's rating of a logged call: thumbs=+1 (good) or -1 (bad).

        Queued and sent like events, never blocking. Returns False (and logs once) when it
        is not queued: a thumbs value other than +1/-1, a full queue, or an event that was
        sampled out (its rating would point at nothing).

        >>> event_id = lookout.log_call(model="gpt-4o-mini", input="hi", output="hello")
        >>> lookout.feedback(event_id, thumbs=-1, comment="wrong language", user_id="u-123")
        True
        """
        if isinstance(thumbs, bool):
            thumbs = 1 if thumbs else -1
        if thumbs not in (1, -1):
            self._once.warning("thumbs", "lookout_sdk: feedback thumbs must be +1 or -1 (got %r)", thumbs)
            return False
        if not self.enabled or (self._sampling and not self._sampled(event_id, None)):
            return False
        payload: dict[str, Any] = {"event_id": str(event_id), "thumbs": thumbs}
        if comment is not None:
            payload["comment"] = str(comment)
        if user_id is not None:
            payload["user_id"] = str(user_id)
        return self._put((_FEEDBACK, payload))

    def observe(
        self,
        name: str | None = None,
        *,
        model: str | None = None,
        provider: str | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
        **fields: Any,
    ) -> Observation:
        """Observe a function or a block as one LLM call (latency, errors, input and output).

        >>> @lookout.observe(model="llama-3-8b", provider="vllm")
        ... def answer(question: str) -> str:
        ...     return llm.generate(question)

        >>> with lookout.observe(model="llama-3-8b") as call:
        ...     call.input = messages
        ...     call.output = text = llm.chat(messages)
        ...     call.tokens_in, call.tokens_out = 42, 17

        See `lookout_sdk.observe` for the details.
        """
        from ._observe import Observation

        return Observation(
            self,
            name=name,
            model=model,
            provider=provider,
            capture_input=capture_input,
            capture_output=capture_output,
            fields=fields,
        )

    def _sampled(self, event_id: str, app_id: str | None) -> bool:
        threshold = self._default_threshold if app_id is None else self._rates.get(app_id, self._any_threshold)
        return sample_key(event_id) < threshold

    def _put(self, item: tuple) -> bool:
        if self._pid != os.getpid():
            # A fork that skipped os.register_at_fork hooks (uWSGI forks from C).
            self._after_fork()
        with self._lock:
            if self._closed or len(self._queue) >= self._max_queue_size:
                self._dropped += 1
                accepted = False
            else:
                self._queue.append(item)
                self._enqueued += 1
                accepted = True
        if not accepted:
            now = time.monotonic()
            if now >= self._drop_warn_at:  # at most once a minute, however long the overload
                self._drop_warn_at = now + 60.0
                logger.warning(
                    "lookout_sdk: queue full (%d); dropping events (%d dropped so far)",
                    self._max_queue_size,
                    self._dropped,
                )
            return False
        if not self._started:
            self._start()
        if len(self._queue) >= self._batch_size:
            self._wake()
        return True

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see `Stats`)."""
        return Stats(
            sent=self._sent,
            dropped=self._dropped,
            retried=self._retried,
            failed=self._failed,
            spilled=self._spilled,
            sampled_out=self._sampled_out,
            queued=len(self._queue),
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} app_id={self.app_id!r} endpoint={self.endpoint!r} {self.stats}>"

    # ------------------------------------------------------------------ worker hooks

    def _start(self) -> None:
        raise NotImplementedError

    def _wake(self) -> None:
        raise NotImplementedError

    def _notify_progress(self) -> None:
        raise NotImplementedError

    def _close_at_exit(self) -> None:
        raise NotImplementedError

    def _after_fork(self) -> None:
        self._reset_state()
        # Or parent and child would back off in lockstep.
        self._jitter.seed(os.urandom(16))

    # ------------------------------------------------------------------ delivery plans (no I/O)

    def _count(self, **deltas: int) -> None:
        # The worker is the main writer, but close() may count leftovers from another thread.
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, f"_{name}", getattr(self, f"_{name}") + delta)

    def _take(self) -> list[tuple]:
        # deque.popleft is atomic, so the caller's lock is not held while a batch is taken.
        queue, items = self._queue, []
        try:
            for _ in range(self._batch_size):
                items.append(queue.popleft())
        except IndexError:
            pass
        return items

    def _done(self, n: int) -> None:
        self._count(processed=n)
        self._notify_progress()

    def _pump(self, drain_all: bool) -> _Plan:
        """Send the full batches queued now, or with `drain_all` (the flush interval is up,
        flush() or close() asked) everything queued now; then, while the server is up,
        whatever was spilled."""
        queue = self._queue
        # Only what is there now: under a steady trickle, draining "until empty" would
        # turn into a stream of one-event requests.
        budget = len(queue) if drain_all else 0
        while True:
            if len(queue) >= self._batch_size or (budget > 0 and queue):
                items = self._take()
                budget -= len(items)
                self._in_flight = items
                yield from self._deliver(items)
                self._in_flight = []
                self._done(len(items))
                continue
            spill = self._spill
            server_up = not self._stopping and time.monotonic() >= self._down_until
            if spill is not None and spill.maybe_pending and server_up:
                if (yield from self._resend_segment(spill)):
                    continue
            return

    def _encode_calls(self, items: Iterable[tuple]) -> tuple[list[bytes], list[bytes]]:
        events: list[bytes] = []
        feedback: list[bytes] = []
        for n, item in enumerate(items, 1):
            if n % _YIELD_EVERY == 0:
                # Encoding is pure Python and holds the GIL: hand it back now and then, so an
                # application thread waits for it a fraction of a millisecond, not a whole
                # switch interval (5 ms).
                time.sleep(0)
            if item[0] == _FEEDBACK:
                feedback.append(dumps(item[1]))
                continue
            try:
                event: dict | None = build_call(item[1], item[2], item[3], item[4:], self.app_id, self.environment)
                if self._redact is not None:
                    event = self._redact(event)
                    if event is None:  # the hook chose not to send it
                        self._count(sampled_out=1)
                        continue
                events.append(dumps(event))
            except Exception as exc:
                # Never send an event the masking hook could not process.
                self._count(failed=1)
                self._once.warning(
                    ("encode", type(exc)), "lookout_sdk: could not prepare an event (%s: %s); dropped", type(exc), exc
                )
        return events, feedback

    def _deliver(self, items: list[tuple]) -> _Plan:
        events, feedback = self._encode_calls(items)
        for chunk in split_batches(events, self._batch_size, self._max_request_bytes):
            if len(chunk) == 1 and len(chunk[0]) > self._max_request_bytes:
                self._count(failed=1)
                self._once.warning("too_large", "lookout_sdk: an event larger than the request limit was dropped")
                continue
            yield from self._send("events", chunk)
        # After the events, so a rating never arrives before the call it rates.
        for line in feedback:
            yield from self._send("feedback", [line])

    def _request(self, kind: str, lines: list[bytes]) -> _Post:
        payload = events_body(lines) if kind == "events" else lines[0]
        headers = self._headers
        if self._gzip and len(payload) >= _GZIP_MIN_BYTES:
            # Level 1: JSON still shrinks several-fold, at a fraction of the CPU (the GIL
            # is shared with the application).
            payload = gzip.compress(payload, compresslevel=1, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip"}
        timeout = self._timeout
        if self._give_up_at is not None:
            timeout = max(0.1, min(timeout, self._give_up_at - time.monotonic()))
        return _Post(_PATHS[kind], payload, headers, timeout)

    def _send(self, kind: str, lines: list[bytes]) -> _Plan:
        """One request, retried on 429/5xx/network errors with exponential backoff and full
        jitter, never sooner than Retry-After; given up after the retry budget (or at the
        close() deadline), to the spill directory when there is one."""
        if self._spill is not None and time.monotonic() < self._down_until:
            # The server was unreachable a moment ago: straight to disk, no waiting.
            self._give_up(kind, lines, "ingest unavailable")
            return
        request = self._request(kind, lines)
        started = time.monotonic()
        attempt = 0
        while True:
            outcome, detail, reason = _classify((yield request))
            if outcome == _OK:
                self._accepted(len(lines), detail)
                return
            if outcome == _FATAL:
                self._count(failed=len(lines))
                self._once.warning(
                    ("status", kind, detail),
                    "lookout_sdk: ingest refused %d %s, not retrying: %s",
                    len(lines),
                    kind,
                    reason,
                )
                return
            attempt += 1
            # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^n)].
            delay = self._jitter.uniform(0, min(self._backoff_max, self._backoff_base * 2 ** (attempt - 1)))
            if detail is not None:
                # The server said when; a little jitter on top keeps clients from returning
                # in lockstep.
                delay = detail + self._jitter.uniform(0, self._backoff_base)
            wake_at = time.monotonic() + delay
            limit = started + self._retry_budget
            while True:
                now = time.monotonic()
                if now >= wake_at:
                    break
                if self._give_up_at is not None:
                    limit = min(limit, self._give_up_at)
                if wake_at > limit or self._under_pressure():
                    self._give_up(kind, lines, reason)
                    return
                # Woken early by close() (to re-check its deadline); with a spill directory,
                # also every few tenths of a second to watch the queue.
                yield _Sleep(wake_at - now if self._spill is None else min(wake_at - now, 0.1))
            self._count(retried=1)
            request = self._request(kind, lines)

    def _under_pressure(self) -> bool:
        """With a spill directory, waiting out a backoff while the queue fills would turn an
        outage into drops: once it is half full, the batch in hand goes to disk instead."""
        return self._spill is not None and len(self._queue) * 2 >= self._max_queue_size

    def _accepted(self, n: int, body: Mapping[str, Any]) -> None:
        accepted = body.get("accepted")
        accepted = n if not isinstance(accepted, int) else max(0, min(n, accepted))
        self._count(sent=accepted, failed=n - accepted)
        rejected = body.get("rejected")
        if isinstance(rejected, list):
            for item in rejected[:50]:
                if isinstance(item, Mapping):
                    field, message = item.get("field"), item.get("message")
                    self._once.warning(
                        ("rejected", field, message), "lookout_sdk: ingest rejected an event: %s: %s", field, message
                    )
        self._down_until = 0.0
        self._probe_delay = self._backoff_base

    def _give_up(self, kind: str, lines: list[bytes], reason: str) -> None:
        n = len(lines)
        if self._spill is not None:
            if self._spill.write(kind, lines):
                self._count(spilled=n)
                self._mark_down()
                self._once.warning(
                    ("spilling", self._down_epoch), "lookout_sdk: cannot deliver (%s); spilling to disk", reason
                )
                return
            self._once.warning("spill_full", "lookout_sdk: spill directory full; dropping undeliverable events")
        self._count(failed=n)
        self._once.warning(("gave_up", kind), "lookout_sdk: giving up on %d %s after retries: %s", n, kind, reason)

    def _mark_down(self, at_least: float | None = None) -> None:
        if self._down_until == 0.0:
            self._down_epoch += 1
        delay = max(self._probe_delay, at_least or 0.0)
        self._down_until = time.monotonic() + delay
        self._probe_delay = min(self._backoff_max, self._probe_delay * 2)

    def _resend_segment(self, spill: SpillStore) -> _Plan:
        """Try the oldest spilled segment once; True when the loop may go on to the next."""
        segment = spill.claim()
        if segment is None:
            return False
        kind = segment.kind if segment.kind in _PATHS else "events"
        lines = segment.lines if kind == "events" else segment.lines[:1]
        outcome, detail, reason = _classify((yield self._request(kind, lines)))
        if outcome == _RETRY or (outcome == _FATAL and detail in (401, 403)):
            # A key problem is fixed by redeploying with the right key: the data on disk
            # must still be there then.
            if outcome == _FATAL:
                self._once.warning(("status", kind, detail), "lookout_sdk: ingest refused spilled %s: %s", kind, reason)
            spill.release(segment)
            self._mark_down(detail if outcome == _RETRY else None)
            return False
        spill.remove(segment)
        if outcome == _OK:
            self._accepted(len(lines), detail)
        else:
            self._count(failed=len(lines))
            self._once.warning(("status", kind, detail), "lookout_sdk: ingest refused spilled %s: %s", kind, reason)
        return True

    def _give_up_items(self, items: list[tuple]) -> None:
        """Items the worker can no longer send (close() ran out of time): to disk, or failed."""
        if not items:
            return
        events, feedback = self._encode_calls(items)
        for chunk in split_batches(events, self._batch_size, self._max_request_bytes):
            self._give_up("events", chunk, "closed before delivery")
        for line in feedback:
            self._give_up("feedback", [line], "closed before delivery")
        self._done(len(items))

    def _abandon_in_flight(self) -> None:
        """After an unexpected error in the sender: count the batch it held, so that flush()
        does not wait for it forever."""
        items, self._in_flight = self._in_flight, []
        if items:
            self._count(failed=len(items))
            self._done(len(items))

    def _drain_queue(self) -> list[tuple]:
        items = []
        try:
            while True:
                items.append(self._queue.popleft())
        except IndexError:
            return items

    def _begin_close(self, timeout: float | None) -> float:
        timeout = self._shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            self._closed = True
        self._give_up_at = deadline
        self._stopping = True
        self._interrupt.set()
        return deadline

    # ------------------------------------------------------------------ sync driver

    def _http_client(self) -> httpx.Client:
        return httpx.Client(base_url=self.endpoint or "", headers=self._headers, timeout=self._timeout)

    def _drive_sync(self, plan: _Plan, http: httpx.Client) -> Any:
        try:
            effect = next(plan)
            while True:
                if isinstance(effect, _Post):
                    value: Any
                    try:
                        r = http.post(effect.path, content=effect.body, headers=effect.headers, timeout=effect.timeout)
                        value = (r.status_code, r.headers, r.content)
                    except Exception as exc:  # any transport failure is "not now", never a crash
                        value = exc
                else:
                    value = self._interrupt.wait(max(0.0, effect.seconds))
                    if value:
                        self._interrupt.clear()
                effect = plan.send(value)
        except StopIteration as stop:
            return stop.value


# ---------------------------------------------------------------------- process lifecycle

_clients: weakref.WeakSet[_BaseClient] = weakref.WeakSet()


def _close_all() -> None:
    for client in list(_clients):
        try:
            client._close_at_exit()
        except Exception:
            logger.exception("lookout_sdk: flush at exit failed")


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._after_fork()


_exit_hooks_pid: int | None = None


def _ensure_exit_hooks() -> None:
    """multiprocessing children leave through os._exit, which skips atexit; they do run
    multiprocessing's own finalizers, so the flush is registered there too (per process:
    a forked child starts with its parent's finalizer registry cleared)."""
    global _exit_hooks_pid
    if _exit_hooks_pid == os.getpid():
        return
    _exit_hooks_pid = os.getpid()
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None:
        mp_util.Finalize(None, _close_all, exitpriority=100)


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
