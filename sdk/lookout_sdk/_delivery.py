"""The delivery rules of a client, written once and without network I/O.

The shape follows OpenTelemetry's BatchSpanProcessor: the caller only appends to a bounded
in-memory queue (dropping and counting when it is full, never blocking), and one background
sender drains it in batches, by size or by time, and does all the slow work.

The rules (batching, gzip, retries with backoff, Retry-After, spilling to disk) are plans:
generators that yield the two effects they need, `Post` (send a request, get back a
response or the exception) and `Sleep` (wait, get back whether close() cut the wait short).
`_transport` performs them with httpx, on a thread for `Lookout` and on a task for
`AsyncLookout`, so the two clients cannot drift apart, and a plan can be driven by hand.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, NamedTuple, Union

from ._config import Config
from ._events import build_call, dumps, events_body, split_batches
from ._spill import SpillStore

logger = logging.getLogger("lookout_sdk")

CALL = 0
FEEDBACK = 1

_PATHS = {"events": "/v1/events", "feedback": "/v1/feedback"}
# Statuses that say "not now" rather than "never": everything else is final.
_RETRYABLE = frozenset({408, 429, 502, 503, 504})
_GZIP_MIN_BYTES = 1024
_YIELD_EVERY = 32


@dataclass(frozen=True)
class Stats:
    """Counters of one client, in items (LLM calls and feedback), since it started or forked.

    - sent: accepted by the server.
    - dropped: refused on the caller's side because the queue was full (or the client closed).
    - retried: requests sent again after a 429/5xx/network error.
    - failed: given up for good: rejected by the server, whole-request 4xx, retries
      exhausted without a spill directory, masking hook errors, spill directory full,
      arguments log_call could not copy.
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


class Post(NamedTuple):
    path: str
    body: bytes
    headers: Mapping[str, str]
    timeout: float


class Sleep(NamedTuple):
    seconds: float


Effect = Union[Post, Sleep]
# What a driver sends back for a Post: (status, headers, body), or the transport error.
Result = Union[tuple[int, Mapping[str, str], bytes], Exception]
Plan = Generator[Effect, Any, Any]

_OK, _RETRY, _FATAL = "ok", "retry", "fatal"


def parse_retry_after(value: str | None) -> float | None:
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


def classify(result: Result) -> tuple[str, Any, str]:
    """(outcome, detail, reason): detail is the parsed body for _OK, Retry-After for _RETRY,
    the status for _FATAL."""
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
        return _RETRY, parse_retry_after(headers.get("retry-after")), reason
    return _FATAL, status, reason


class OnceLog:
    """Warn once per distinct reason, so a misconfigured key or a schema mismatch is visible
    in the application's log without flooding it."""

    def __init__(self, limit: int = 1000) -> None:
        self._seen: set[Any] = set()
        self._limit = limit

    def warning(self, key: Any, msg: str, *args: Any, exc_info: bool = False) -> None:
        if key in self._seen:
            return
        if len(self._seen) < self._limit:
            self._seen.add(key)
        logger.warning(msg, *args, exc_info=exc_info)


class Outbox:
    """One client's queue, its counters, and the plans that empty it. A forked child makes a
    new one: it must not touch the parent's lock, and the parent sends its own queue."""

    def __init__(
        self, config: Config, spill: SpillStore | None, once: OnceLog, on_progress: Callable[[], None]
    ) -> None:
        self._config = config
        self._spill = spill
        self._once = once
        self._on_progress = on_progress  # the driver's: flush() waits on it
        self.lock = threading.Lock()
        self.queue: deque[tuple] = deque()
        self.enqueued = 0
        self.processed = 0
        self.sent = self.dropped = self.retried = self.failed = self.spilled = self.sampled_out = 0
        self.in_flight: list[tuple] = []
        self.closed = False
        self.stopping = False
        self.give_up_at: float | None = None  # close()'s deadline
        self._down_until = 0.0
        self._probe_delay = config.backoff_base
        self._down_epoch = 0
        self._drop_warn_at = 0.0
        self._jitter = random.Random()  # seeded from the OS: a forked child backs off on its own

    # ------------------------------------------------------------------ caller side

    def offer(self, item: tuple) -> bool:
        """Queue one item, or drop and count it when the queue is full or closed."""
        with self.lock:
            if not self.closed and len(self.queue) < self._config.max_queue_size:
                self.queue.append(item)
                self.enqueued += 1
                return True
            self.dropped += 1
        now = time.monotonic()
        if now >= self._drop_warn_at:  # at most once a minute, however long the overload
            self._drop_warn_at = now + 60.0
            logger.warning(
                "lookout_sdk: queue full (%d); dropping events (%d dropped so far)",
                self._config.max_queue_size,
                self.dropped,
            )
        return False

    def count(self, **deltas: int) -> None:
        # The sender is the main writer, but close() may count leftovers from another thread.
        with self.lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def stats(self) -> Stats:
        return Stats(
            sent=self.sent,
            dropped=self.dropped,
            retried=self.retried,
            failed=self.failed,
            spilled=self.spilled,
            sampled_out=self.sampled_out,
            queued=len(self.queue),
        )

    def close(self, deadline: float) -> None:
        """Refuse new items; the sender drains until `deadline`, then gives up what is left."""
        with self.lock:
            self.closed = True
        self.give_up_at = deadline
        self.stopping = True

    # ------------------------------------------------------------------ sender side

    def _take(self) -> list[tuple]:
        # deque.popleft is atomic, so the caller's lock is not held while a batch is taken.
        queue, items = self.queue, []
        try:
            for _ in range(self._config.batch_size):
                items.append(queue.popleft())
        except IndexError:
            pass
        return items

    def _done(self, n: int) -> None:
        self.count(processed=n)
        self._on_progress()

    def pump(self, drain_all: bool) -> Plan:
        """Send the full batches queued now, or with `drain_all` (the flush interval is up,
        flush() or close() asked) everything queued now; then, while the server is up,
        whatever was spilled."""
        queue = self.queue
        # Only what is there now: under a steady trickle, draining "until empty" would
        # turn into a stream of one-event requests.
        budget = len(queue) if drain_all else 0
        while True:
            if len(queue) >= self._config.batch_size or (budget > 0 and queue):
                items = self._take()
                budget -= len(items)
                self.in_flight = items
                yield from self._deliver(items)
                self.in_flight = []
                self._done(len(items))
                continue
            spill = self._spill
            server_up = not self.stopping and time.monotonic() >= self._down_until
            if spill is not None and spill.maybe_pending and server_up:
                if (yield from self._resend_segment(spill)):
                    continue
            return

    def _encode(self, items: Iterable[tuple]) -> tuple[list[bytes], list[bytes]]:
        events: list[bytes] = []
        feedback: list[bytes] = []
        config, redact = self._config, self._config.redact
        for n, item in enumerate(items, 1):
            if n % _YIELD_EVERY == 0:
                # Encoding is pure Python and holds the GIL: hand it back now and then, so an
                # application thread waits for it a fraction of a millisecond, not a whole
                # switch interval (5 ms).
                time.sleep(0)
            if item[0] == FEEDBACK:
                feedback.append(dumps(item[1]))
                continue
            try:
                event: dict | None = build_call(item[1], item[2], item[3], item[4:], config.app_id, config.environment)
                if redact is not None:
                    event = redact(event)
                    if event is None:  # the hook chose not to send it
                        self.count(sampled_out=1)
                        continue
                events.append(dumps(event))
            except Exception as exc:
                # Never send an event the masking hook could not process.
                self.count(failed=1)
                self._once.warning(
                    ("encode", type(exc)), "lookout_sdk: could not prepare an event (%s: %s); dropped", type(exc), exc
                )
        return events, feedback

    def _batches(self, items: list[tuple]) -> Iterable[tuple[str, list[bytes]]]:
        """(kind, lines) per request: the events in chunks that fit one request, then each
        feedback on its own, after the events, so a rating never arrives before the call it
        rates."""
        events, feedback = self._encode(items)
        for chunk in split_batches(events, self._config.batch_size, self._config.max_request_bytes):
            yield "events", chunk
        for line in feedback:
            yield "feedback", [line]

    def _deliver(self, items: list[tuple]) -> Plan:
        for kind, lines in self._batches(items):
            if kind == "events" and len(lines) == 1 and len(lines[0]) > self._config.max_request_bytes:
                self.count(failed=1)
                self._once.warning("too_large", "lookout_sdk: an event larger than the request limit was dropped")
                continue
            yield from self._send(kind, lines)

    def _request(self, kind: str, lines: list[bytes]) -> Post:
        payload = events_body(lines) if kind == "events" else lines[0]
        headers = self._config.headers
        if self._config.gzip and len(payload) >= _GZIP_MIN_BYTES:
            # Level 1: JSON still shrinks several-fold, at a fraction of the CPU (the GIL
            # is shared with the application).
            payload = gzip.compress(payload, compresslevel=1, mtime=0)
            headers = {**headers, "Content-Encoding": "gzip"}
        timeout = self._config.timeout
        if self.give_up_at is not None:
            timeout = max(0.1, min(timeout, self.give_up_at - time.monotonic()))
        return Post(_PATHS[kind], payload, headers, timeout)

    def _send(self, kind: str, lines: list[bytes]) -> Plan:
        """One request, retried on 429/5xx/network errors with exponential backoff and full
        jitter, never sooner than Retry-After; given up after the retry budget (or at the
        close() deadline), to the spill directory when there is one."""
        config = self._config
        if self._spill is not None and time.monotonic() < self._down_until:
            # The server was unreachable a moment ago: straight to disk, no waiting.
            self._give_up(kind, lines, "ingest unavailable")
            return
        request = self._request(kind, lines)
        started = time.monotonic()
        attempt = 0
        while True:
            outcome, detail, reason = classify((yield request))
            if outcome == _OK:
                self._accepted(len(lines), detail)
                return
            if outcome == _FATAL:
                self.count(failed=len(lines))
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
            delay = self._jitter.uniform(0, min(config.backoff_max, config.backoff_base * 2 ** (attempt - 1)))
            if detail is not None:
                # The server said when; a little jitter on top keeps clients from returning
                # in lockstep.
                delay = detail + self._jitter.uniform(0, config.backoff_base)
            wake_at = time.monotonic() + delay
            limit = started + config.retry_budget
            while True:
                now = time.monotonic()
                if now >= wake_at:
                    break
                if self.give_up_at is not None:
                    limit = min(limit, self.give_up_at)
                if wake_at > limit or self._under_pressure():
                    self._give_up(kind, lines, reason)
                    return
                # Woken early by close() (to re-check its deadline); with a spill directory,
                # also every few tenths of a second to watch the queue.
                yield Sleep(wake_at - now if self._spill is None else min(wake_at - now, 0.1))
            self.count(retried=1)
            request = self._request(kind, lines)

    def _under_pressure(self) -> bool:
        """With a spill directory, waiting out a backoff while the queue fills would turn an
        outage into drops: once it is half full, the batch in hand goes to disk instead."""
        return self._spill is not None and len(self.queue) * 2 >= self._config.max_queue_size

    def _accepted(self, n: int, body: Mapping[str, Any]) -> None:
        accepted = body.get("accepted")
        accepted = n if not isinstance(accepted, int) else max(0, min(n, accepted))
        self.count(sent=accepted, failed=n - accepted)
        rejected = body.get("rejected")
        if isinstance(rejected, list):
            for item in rejected[:50]:
                if isinstance(item, Mapping):
                    field, message = item.get("field"), item.get("message")
                    self._once.warning(
                        ("rejected", field, message), "lookout_sdk: ingest rejected an event: %s: %s", field, message
                    )
        self._down_until = 0.0
        self._probe_delay = self._config.backoff_base

    def _give_up(self, kind: str, lines: list[bytes], reason: str) -> None:
        n = len(lines)
        if self._spill is not None:
            if self._spill.write(kind, lines):
                self.count(spilled=n)
                self._mark_down()
                self._once.warning(
                    ("spilling", self._down_epoch), "lookout_sdk: cannot deliver (%s); spilling to disk", reason
                )
                return
            self._once.warning("spill_full", "lookout_sdk: spill directory full; dropping undeliverable events")
        self.count(failed=n)
        self._once.warning(("gave_up", kind), "lookout_sdk: giving up on %d %s after retries: %s", n, kind, reason)

    def _mark_down(self, at_least: float | None = None) -> None:
        if self._down_until == 0.0:
            self._down_epoch += 1
        delay = max(self._probe_delay, at_least or 0.0)
        self._down_until = time.monotonic() + delay
        self._probe_delay = min(self._config.backoff_max, self._probe_delay * 2)

    def _resend_segment(self, spill: SpillStore) -> Generator[Effect, Any, bool]:
        """Try the oldest spilled segment once; True when the loop may go on to the next."""
        segment = spill.claim()
        if segment is None:
            return False
        kind = segment.kind if segment.kind in _PATHS else "events"
        lines = segment.lines if kind == "events" else segment.lines[:1]
        outcome, detail, reason = classify((yield self._request(kind, lines)))
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
            self.count(failed=len(lines))
            self._once.warning(("status", kind, detail), "lookout_sdk: ingest refused spilled %s: %s", kind, reason)
        return True

    # ------------------------------------------------------------------ the end

    def give_up_items(self, items: list[tuple]) -> None:
        """Items the sender can no longer send (close() ran out of time): to disk, or failed."""
        if not items:
            return
        for kind, lines in self._batches(items):
            self._give_up(kind, lines, "closed before delivery")
        self._done(len(items))

    def abandon_in_flight(self) -> None:
        """After an unexpected error in the sender: count the batch it held, so that flush()
        does not wait for it forever."""
        items, self.in_flight = self.in_flight, []
        if items:
            self.count(failed=len(items))
            self._done(len(items))

    def drain(self) -> list[tuple]:
        """Everything queued, taken out of the queue."""
        items = []
        try:
            while True:
                items.append(self.queue.popleft())
        except IndexError:
            return items
