"""`observe` (decorator and context manager), `context`, and the process-wide default client."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from typing import Any, Callable, TypeVar

from ._base import _CONTEXT, _BaseClient, logger
from ._client import Lookout
from ._events import CONTEXT_FIELDS
from ._ids import uuid7

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: ContextVar[Observation | None] = ContextVar("lookout_current_call", default=None)
_LAST_EVENT_ID: ContextVar[str | None] = ContextVar("lookout_last_event_id", default=None)

# What an observation may carry besides the timings it measures itself.
_FIELDS = (
    "input",
    "prompt",
    "output",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "model_version",
    "prompt_version",
    "user_id",
    "session_id",
    "trace_id",
    "span_id",
    "tags",
    "metadata",
    "context",
    "reference",
    "logprobs",
    "app_id",
    "environment",
)
_TEXT_LIMIT = 100_000


# ---------------------------------------------------------------------- default client

_default: _BaseClient | None = None
_default_lock = threading.Lock()


def init(**kwargs: Any) -> Lookout:
    """Create a `Lookout` (same arguments) and make it the default for `observe`,
    `wrap_openai` and friends when they are not handed a client.

    >>> import lookout_sdk
    >>> lookout_sdk.init(app_id="support-bot")  # endpoint and key from LOOKOUT_* env vars
    """
    client = Lookout(**kwargs)
    set_client(client)
    return client


def set_client(client: _BaseClient) -> None:
    """Make `client` (a Lookout or an AsyncLookout) the default one."""
    global _default
    with _default_lock:
        _default = client


def get_client() -> _BaseClient:
    """The default client; created from the LOOKOUT_* environment on first use."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = Lookout()
            client = _default
    return client


# ---------------------------------------------------------------------- context


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
    outer = _CONTEXT.get() or {}
    merged: dict[str, Any] = {**outer, **{k: v for k, v in fields.items() if v is not None}}
    if "tags" in fields and fields["tags"] is not None:
        merged["tags"] = [*outer.get("tags", ()), *fields["tags"]]
    if "metadata" in fields and fields["metadata"] is not None:
        merged["metadata"] = {**outer.get("metadata", {}), **fields["metadata"]}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_call() -> Observation | None:
    """The innermost call being observed in this thread or task (to set tokens, cost...)."""
    return _CURRENT.get()


def last_event_id() -> str | None:
    """The event_id of the last call recorded by `observe` or `wrap_openai` in this thread or
    asyncio task, e.g. to attach end-user feedback to it later.

    >>> reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    >>> session["event_id"] = lookout_sdk.last_event_id()
    """
    return _LAST_EVENT_ID.get()


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


# ---------------------------------------------------------------------- observe


def _text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=repr)
        except (TypeError, ValueError):
            text = repr(value)
    return text[:_TEXT_LIMIT]


_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9._:/@+-]+")


def _model_from_name(name: str | None) -> str:
    """The stand-in model when none was given: the observed function's name, in the
    characters ingest accepts for a model ("<locals>" of nested functions, spaces and
    the like would get every call rejected)."""
    text = _NOT_IDENTIFIER.sub("_", (name or "").replace(".<locals>", ""))
    while "--" in text:
        text = text.replace("--", "-")
    text = text.lstrip("._:/@+-")[:256]
    return text or "unknown"


class Observation:
    """One observed call. Used as a context manager it is the call; used as a decorator it
    is the template of the calls, one per invocation.

    Inside the block (or the decorated function, via `lookout_sdk.current_call()`), set any
    of: input, prompt, output, tokens_in, tokens_out, cost_usd, model, model_version,
    provider, prompt_version, user_id, session_id, tags, metadata, context, reference,
    logprobs; call `first_token()` when the first token arrives to get ttft_ms. Latency,
    status and error are measured; the event_id exists from the start (`call.event_id`).
    """

    def __init__(
        self,
        client: _BaseClient | None,
        *,
        name: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        capture_input: bool = True,
        capture_output: bool = True,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        fields = dict(fields or {})
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise TypeError(f"observe() does not take {sorted(unknown)}")
        self._client = client
        self.name = name
        self.model = model
        self.provider = provider
        self._capture_input = capture_input
        self._capture_output = capture_output
        self._defaults = fields
        for key in _FIELDS:
            setattr(self, key, fields.get(key))
        self.event_id: str | None = None
        self._ts = 0.0
        self._t0 = 0.0
        self._ttft: float | None = None
        self._token: Token[Observation | None] | None = None

    # -- the call itself

    def first_token(self) -> None:
        """Mark the arrival of the first token (once; later calls are ignored)."""
        if self._ttft is None:
            self._ttft = time.perf_counter()

    def _begin(self) -> None:
        self._ts = time.time()
        self._t0 = time.perf_counter()
        self.event_id = uuid7(self._ts)
        self._token = _CURRENT.set(self)
        _LAST_EVENT_ID.set(self.event_id)

    def _end(self, exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._t0
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # a generator finished in another context than it started
                pass
            self._token = None
        try:
            client = self._client or get_client()
            values = {key: getattr(self, key) for key in _FIELDS}
            if values["trace_id"] is None:
                values["trace_id"], values["span_id"] = otel_ids()
            if exc is not None and not isinstance(exc, GeneratorExit):
                values["status"], values["error"] = "error", exc
            client.log_call(
                model=self.model or _model_from_name(self.name),
                provider=self.provider,
                latency_ms=elapsed * 1000.0,
                ttft_ms=None if self._ttft is None else (self._ttft - self._t0) * 1000.0,
                ts=self._ts,
                event_id=self.event_id,
                **values,
            )
        except Exception:
            logger.warning("lookout_sdk: could not record an observed call", exc_info=True)

    def __enter__(self) -> Observation:
        self._begin()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)

    async def __aenter__(self) -> Observation:
        self._begin()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(exc)

    # -- decorator

    def _child(self) -> Observation:
        return Observation(
            self._client,
            name=self.name,
            model=self.model,
            provider=self.provider,
            capture_input=self._capture_input,
            capture_output=self._capture_output,
            fields=self._defaults,
        )

    def __call__(self, func: F) -> F:
        if self.name is None:
            self.name = getattr(func, "__qualname__", None) or getattr(func, "__name__", "function")
        signature = _signature(func)

        def start(args: tuple, kwargs: dict) -> Observation:
            call = self._child()
            if self._capture_input:
                call._take_arguments(signature, args, kwargs)
            call._begin()
            return call

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    call._end(exc)
                    raise
                call._take_result(result)
                call._end(None)
                return result

            return async_wrapper  # type: ignore[return-value]

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                parts: list[Any] = []
                try:
                    async for item in func(*args, **kwargs):
                        call.first_token()
                        parts.append(item)
                        yield item
                except BaseException as exc:
                    call._take_chunks(parts)
                    call._end(exc)
                    raise
                call._take_chunks(parts)
                call._end(None)

            return async_gen_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                parts: list[Any] = []
                try:
                    for item in func(*args, **kwargs):
                        call.first_token()
                        parts.append(item)
                        yield item
                except BaseException as exc:
                    call._take_chunks(parts)
                    call._end(exc)
                    raise
                call._take_chunks(parts)
                call._end(None)

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = start(args, kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                call._end(exc)
                raise
            call._take_result(result)
            call._end(None)
            return result

        return wrapper  # type: ignore[return-value]

    def _take_arguments(self, signature: inspect.Signature | None, args: tuple, kwargs: dict) -> None:
        if self.input is not None or self.prompt is not None:
            return
        try:
            if signature is None:
                self.prompt = _text({"args": list(args), "kwargs": kwargs})
                return
            bound = signature.bind_partial(*args, **kwargs).arguments
            bound.pop("self", None)
            bound.pop("cls", None)
            if isinstance(bound.get("messages"), (list, tuple)):
                self.input = bound["messages"]
            elif isinstance(bound.get("prompt"), str):
                self.prompt = bound["prompt"]
            elif len(bound) == 1 and isinstance(next(iter(bound.values())), str):
                self.prompt = next(iter(bound.values()))
            elif bound:
                self.prompt = _text(dict(bound))
        except Exception:
            pass

    def _take_result(self, result: Any) -> None:
        if not self._capture_output or self.output is not None or result is None:
            return
        try:
            choices = getattr(result, "choices", None)
            if choices:  # an OpenAI-style completion returned as is
                message = getattr(choices[0], "message", None)
                self.output = getattr(message, "content", None) or getattr(choices[0], "text", None)
                usage = getattr(result, "usage", None)
                if usage is not None:
                    self.tokens_in = self.tokens_in or getattr(usage, "prompt_tokens", None)
                    self.tokens_out = self.tokens_out or getattr(usage, "completion_tokens", None)
                self.model_version = self.model_version or getattr(result, "model", None)
            else:
                self.output = _text(result)
        except Exception:
            pass

    def _take_chunks(self, parts: list[Any]) -> None:
        if not self._capture_output or self.output is not None or not parts:
            return
        if all(isinstance(p, str) for p in parts):
            self.output = "".join(parts)[:_TEXT_LIMIT]
        else:
            self.output = _text(parts)


def _signature(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def observe(
    name: str | None = None,
    *,
    model: str | None = None,
    provider: str | None = None,
    client: _BaseClient | None = None,
    capture_input: bool = True,
    capture_output: bool = True,
    **fields: Any,
) -> Observation:
    """Record a function, or a block, as one LLM call: latency, time to first token (for
    generators), input and output, status and error (the exception is re-raised).

    As a decorator, on plain, async, generator and async generator functions:

    >>> @observe(model="llama-3-8b", provider="vllm", prompt_version="rag-v3")
    ... def answer(question: str) -> str:
    ...     return llm.generate(question)

    The input is the `messages` argument if there is one, else `prompt`, else the only
    string argument, else all arguments as JSON; the output is the return value (an
    OpenAI-style completion is read for text, tokens and model), or the yielded strings
    joined. As a context manager, fill the call yourself:

    >>> with observe(model="llama-3-8b") as call:
    ...     call.input = messages
    ...     for token in llm.stream(messages):
    ...         call.first_token()
    ...         ...
    ...     call.output, call.tokens_out = text, n

    `client` defaults to the one from `lookout_sdk.init()` (or the environment), looked up
    when the call ends, so decorating at import time is fine. Extra keyword arguments are
    log_call fields given to every call (tags, metadata, user_id...).
    """
    return Observation(
        client,
        name=name,
        model=model,
        provider=provider,
        capture_input=capture_input,
        capture_output=capture_output,
        fields=fields,
    )
