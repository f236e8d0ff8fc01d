"""`observe` (decorator and context manager): any function or block recorded as one LLM call."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import Any, Callable, TypeVar

from ._context import LAST_EVENT_ID, CallLog, default_client, otel_ids
from ._events import CALL_FIELDS
from ._ids import uuid7

logger = logging.getLogger("lookout_sdk")

F = TypeVar("F", bound=Callable[..., Any])

_CURRENT: ContextVar[Observation | None] = ContextVar("lookout_current_call", default=None)

# What the observation measures itself; every other log_call field may be set on it.
_MEASURED = frozenset({"model", "provider", "latency_ms", "ttft_ms", "status", "error"})
_FIELDS = tuple(f for f in CALL_FIELDS if f not in _MEASURED)
_TEXT_LIMIT = 100_000


def current_call() -> Observation | None:
    """The innermost call being observed in this thread or task (to set tokens, cost...)."""
    return _CURRENT.get()


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

    # The log_call fields it carries (_FIELDS), as log_call takes them.
    input: Sequence[Any] | str | None
    prompt: str | None
    output: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    model_version: str | None
    prompt_version: str | None
    user_id: str | None
    session_id: str | None
    trace_id: str | int | None
    span_id: str | int | None
    tags: Iterable[str] | None
    metadata: Mapping[str, Any] | None
    context: Iterable[str] | None
    reference: str | None
    logprobs: Iterable[float] | None
    app_id: str | None
    environment: str | None

    def __init__(
        self,
        client: CallLog | None,
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
        self._chunks: list[Any] = []

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
        LAST_EVENT_ID.set(self.event_id)

    def _end(self, exc: BaseException | None) -> None:
        elapsed = time.perf_counter() - self._t0
        if self._token is not None:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # a generator finished in another context than it started
                pass
            self._token = None
        try:
            # The default client is looked up now, not when the function was decorated.
            client = self._client or default_client()
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
                with call._ending():
                    return call._returned(await func(*args, **kwargs))

            return async_wrapper  # type: ignore[return-value]

        if inspect.isasyncgenfunction(func):

            @functools.wraps(func)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                with call._ending():
                    async for item in func(*args, **kwargs):
                        yield call._chunk(item)

            return async_gen_wrapper  # type: ignore[return-value]

        if inspect.isgeneratorfunction(func):

            @functools.wraps(func)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                call = start(args, kwargs)
                with call._ending():
                    for item in func(*args, **kwargs):
                        yield call._chunk(item)

            return gen_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call = start(args, kwargs)
            with call._ending():
                return call._returned(func(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    @contextlib.contextmanager
    def _ending(self) -> Iterator[None]:
        """Around one invocation: records it when it returns, ends, or raises (re-raised)."""
        try:
            yield
        except BaseException as exc:
            self._take_chunks()
            self._end(exc)
            raise
        self._take_chunks()
        self._end(None)

    def _chunk(self, item: Any) -> Any:
        self.first_token()
        self._chunks.append(item)
        return item

    def _returned(self, result: Any) -> Any:
        self._take_result(result)
        return result

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

    def _take_chunks(self) -> None:
        parts = self._chunks
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
    client: CallLog | None = None,
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
