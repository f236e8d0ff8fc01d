"""Lookout: the client that sends from one background thread."""

from __future__ import annotations

import logging
import os
import threading
import time

from . import _transport
from ._caller import ClientBase
from ._lifecycle import ensure_exit_hooks

logger = logging.getLogger("lookout_sdk")


class Lookout(ClientBase):
    """Sends every LLM call of an application to Lookout, from one background thread.

    >>> from lookout_sdk import Lookout
    >>> lookout = Lookout(endpoint="https://lookout.example.com", api_key="lk_...", app_id="support-bot")
    >>> event_id = lookout.log_call(model="gpt-4o-mini", input="Hi", output="Hello!", latency_ms=312.0)

    Every argument falls back to the environment: LOOKOUT_ENDPOINT, LOOKOUT_API_KEY,
    LOOKOUT_APP_ID, LOOKOUT_ENVIRONMENT (default "production"), LOOKOUT_SAMPLE_RATE ("0.1"
    or "app-a=0.1,*=1") and LOOKOUT_SPILL_DIR. Without an endpoint the client is disabled:
    log_call still returns ids and nothing is sent.

    Delivery: calls wait in a queue of at most `max_queue_size` items (new ones are dropped
    and counted beyond that; the caller never waits), and the sender thread posts them in
    batches of `batch_size`, or whatever is there every `flush_interval` seconds, gzipped.
    429/502/503/504 and network errors are retried with exponential backoff and full jitter
    (`backoff_base` doubling up to `backoff_max`), never sooner than Retry-After, for
    `max_retry_time` seconds (default 60, or 5 with a spill directory); other 4xx are final
    and logged once. With `spill_dir`, batches that could not be delivered go to disk
    (at most `spill_max_bytes`) and are re-sent when the server answers again, also by the
    next process that opens the directory.

    `sample_rate` keeps that fraction of calls (per app_id when a mapping); `redact` is
    called with each event dict before it is encoded, on the sender thread, and returns the
    masked dict (or None to drop the event): nothing leaves the process, or reaches the
    spill directory, without passing through it.

    `flush(timeout)` waits for what was logged so far; at interpreter exit the client
    flushes for up to `shutdown_timeout` seconds by itself. After `os.fork()` the child
    starts with an empty queue and its own sender (the parent sends what it had queued).
    """

    def _reset_state(self) -> None:
        super()._reset_state()
        self._thread: threading.Thread | None = None
        self._wakeup = threading.Event()
        self._progress = threading.Condition(threading.Lock())

    def _start(self) -> None:
        with self._outbox.lock:
            if self._started:
                return
            self._started = True
        ensure_exit_hooks()
        self._thread = threading.Thread(target=self._run, name="lookout-sender", daemon=True)
        self._thread.start()

    def _wake(self) -> None:
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _run(self) -> None:
        with _transport.http_client(self._config) as http:
            drain_due = time.monotonic() + self._config.flush_interval
            while True:
                drain_all, drain_due = self._next_round(drain_due)
                outbox = self._outbox
                try:
                    _transport.run(outbox.pump(drain_all), http, self._interrupt)
                except Exception:
                    logger.exception("lookout_sdk: sender error")
                    outbox.abandon_in_flight()
                    self._interrupt.wait(min(1.0, self._config.flush_interval))
                if outbox.stopping and not outbox.queue:
                    return
                # Woken early when a batch is full, on flush() and on close().
                self._wakeup.wait(max(0.0, drain_due - time.monotonic()))
                self._wakeup.clear()

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything logged before this call is handled: sent, refused by the
        server, or spilled to disk. False if that took longer than `timeout` seconds.

        >>> lookout.flush(timeout=5)  # e.g. at the end of a batch job or a Lambda handler
        True
        """
        if self._pid != os.getpid():
            self._after_fork()
        outbox = self._outbox
        target = outbox.enqueued
        if outbox.processed >= target:
            return True
        self._flush_requested = True
        self._wakeup.set()
        with self._progress:
            return self._progress.wait_for(lambda: outbox.processed >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush for at most `timeout` seconds (default `shutdown_timeout`), then stop the
        sender. What could not be sent by then is spilled (with a spill directory) or counted
        as failed. Later log_call()s are dropped. Called at interpreter exit."""
        outbox = self._outbox
        if outbox.closed:
            return
        deadline = self._begin_close(timeout)
        self._wakeup.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if thread is None or thread.is_alive():
            # The sender is stuck in a request or was never started: take the leftovers.
            # Events of the request in flight may then arrive twice; the server keeps one.
            outbox.give_up_items([*(outbox.in_flight if thread is not None else []), *outbox.drain()])

    def _close_at_exit(self) -> None:
        self.close()

    def __enter__(self) -> Lookout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
