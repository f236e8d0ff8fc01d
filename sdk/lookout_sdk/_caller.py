"""The caller's side of a client, the same for `Lookout` and `AsyncLookout`: log_call,
feedback and observe, which only put an item on the outbox's queue and never block or
raise. How the queue is sent is the subclasses' part (a thread, or a task)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from . import _lifecycle
from ._config import Config
from ._context import CALL_CONTEXT
from ._delivery import CALL, FEEDBACK, OnceLog, Outbox, Stats
from ._events import Redactor
from ._ids import uuid7
from ._observe import Observation, observe
from ._spill import SpillStore


class ClientBase:
    """Everything but the sender: configuration, the caller-side API and the outbox."""

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
        self._config = config = Config.load(
            endpoint=endpoint,
            api_key=api_key,
            app_id=app_id,
            environment=environment,
            sample_rate=sample_rate,
            redact=redact,
            spill_dir=spill_dir,
            spill_max_bytes=spill_max_bytes,
            max_queue_size=max_queue_size,
            batch_size=batch_size,
            flush_interval=flush_interval,
            gzip=gzip,
            timeout=timeout,
            max_retry_time=max_retry_time,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            shutdown_timeout=shutdown_timeout,
            max_request_bytes=max_request_bytes,
        )
        # Read on every call: plain attributes, not lookups through the config.
        self._enabled = config.enabled
        self._sampler = None if config.sampler.keeps_everything else config.sampler
        self._batch_size = config.batch_size
        self._spill = SpillStore(config.spill_dir, config.spill_max_bytes) if config.spill_dir else None
        self._once = OnceLog()
        self._reset_state()
        _lifecycle.track(self)
        if self._spill is not None and self._spill.claim_possible():
            # Left over by an earlier run: send it now rather than at the first new event.
            self._start()

    def _reset_state(self) -> None:
        """A fresh outbox and sender handles: at start, and in a forked child (the parent
        keeps sending its own pending events; the child must not touch the parent's locks,
        thread or sockets). Subclasses add their sender's state."""
        self._pid = os.getpid()
        self._outbox = Outbox(self._config, self._spill, self._once, self._notify_progress)
        self._started = False
        self._flush_requested = False
        # Cuts a retry's backoff short when close() begins (the blocking transport waits on it).
        self._interrupt = threading.Event()

    @property
    def endpoint(self) -> str | None:
        return self._config.endpoint

    @property
    def api_key(self) -> str | None:
        return self._config.api_key

    @property
    def app_id(self) -> str:
        return self._config.app_id

    @property
    def environment(self) -> str:
        return self._config.environment

    @property
    def enabled(self) -> bool:
        """False without an endpoint: calls still get ids, nothing is sent."""
        return self._enabled

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
            sampler = self._sampler
            if sampler is not None and not sampler.keeps(event_id, app_id):
                self._outbox.count(sampled_out=1)
                return event_id
            if not self._enabled:
                return event_id
            # Copies of the containers, not of their contents: callers commonly keep
            # appending to their `messages` list, and the event must show the call as it was.
            self._put(
                (
                    CALL,
                    event_id,
                    now if ts is None else ts,
                    CALL_CONTEXT.get(),
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
            self._outbox.count(failed=1)
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
        sampler = self._sampler
        if not self._enabled or (sampler is not None and not sampler.keeps(event_id, None)):
            return False
        payload: dict[str, Any] = {"event_id": str(event_id), "thumbs": thumbs}
        if comment is not None:
            payload["comment"] = str(comment)
        if user_id is not None:
            payload["user_id"] = str(user_id)
        return self._put((FEEDBACK, payload))

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
        return observe(name, client=self, model=model, provider=provider, capture_input=capture_input,
                       capture_output=capture_output, **fields)

    def _put(self, item: tuple) -> bool:
        if self._pid != os.getpid():
            # A fork that skipped os.register_at_fork hooks (uWSGI forks from C).
            self._after_fork()
        outbox = self._outbox
        if not outbox.offer(item):
            return False
        if not self._started:
            self._start()
        if len(outbox.queue) >= self._batch_size:
            self._wake()
        return True

    @property
    def stats(self) -> Stats:
        """A snapshot of the counters (see `Stats`)."""
        return self._outbox.stats()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} app_id={self.app_id!r} endpoint={self.endpoint!r} {self.stats}>"

    # ------------------------------------------------------------------ the sender's part

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

    def _next_round(self, drain_due: float) -> tuple[bool, float]:
        """Whether the sender's next round sends everything queued (the flush interval is
        up, or flush() or close() asked), and when the one after that is due."""
        now = time.monotonic()
        if self._outbox.stopping or self._flush_requested or now >= drain_due:
            self._flush_requested = False
            return True, now + self._config.flush_interval
        return False, drain_due

    def _begin_close(self, timeout: float | None) -> float:
        """Refuse new calls and start the last drain; its deadline, monotonic."""
        timeout = self._config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, timeout)
        self._outbox.close(deadline)
        self._interrupt.set()
        return deadline
