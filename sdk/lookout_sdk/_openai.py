"""wrap_openai: record every chat completion made with the official OpenAI client.

Duck-typed on purpose: the SDK never imports `openai`, so it works with whatever version
the application pins (and with AzureOpenAI and OpenAI-compatible servers alike).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable, TypeVar

from ._context import LAST_EVENT_ID, CallLog, otel_ids
from ._default import get_client
from ._ids import uuid7

logger = logging.getLogger("lookout_sdk")

C = TypeVar("C")


class _Recorder:
    """Everything measured about one completion; logs it exactly once."""

    def __init__(
        self, lookout: CallLog | None, kwargs: dict[str, Any], provider: str, fields: dict[str, Any], hide_usage: bool
    ) -> None:
        self.lookout = lookout
        self.streaming = bool(kwargs.get("stream"))
        self.hide_usage = hide_usage  # usage chunks we asked for, not the caller
        self.ts = time.time()
        self.t0 = time.perf_counter()
        self.event_id = uuid7(self.ts)
        self.model = kwargs.get("model")
        self.messages = kwargs.get("messages")
        self.want_logprobs = bool(kwargs.get("logprobs"))
        self.provider = provider
        self.fields = fields
        self.parts: list[str] = []
        self.tool_calls: dict[int, dict[str, str]] = {}
        self.logprobs: list[float] = []
        self.ttft: float | None = None
        self.tokens_in: int | None = None
        self.tokens_out: int | None = None
        self.model_version: str | None = None
        self.done = False
        LAST_EVENT_ID.set(self.event_id)

    def on_response(self, response: Any) -> None:
        try:
            self._usage(getattr(response, "usage", None))
            self.model_version = getattr(response, "model", None)
            choices = getattr(response, "choices", None) or []
            if choices:
                message = getattr(choices[0], "message", None)
                content = getattr(message, "content", None)
                if content:
                    self.parts.append(content)
                for i, call in enumerate(getattr(message, "tool_calls", None) or []):
                    fn = getattr(call, "function", None)
                    self.tool_calls[i] = {
                        "name": getattr(fn, "name", "") or "",
                        "arguments": getattr(fn, "arguments", "") or "",
                    }
                self._logprobs(getattr(choices[0], "logprobs", None))
        except Exception:
            logger.debug("lookout_sdk: could not read an OpenAI response", exc_info=True)
        self.finish()

    def on_chunk(self, chunk: Any) -> None:
        try:
            if self.model_version is None:
                self.model_version = getattr(chunk, "model", None)
            usage = getattr(chunk, "usage", None)
            if usage is not None:
                self._usage(usage)
            for choice in getattr(chunk, "choices", None) or ():
                if getattr(choice, "index", 0) != 0:
                    continue  # n > 1: the first choice stands for the call
                delta = getattr(choice, "delta", None)
                content = getattr(delta, "content", None)
                tool_calls = getattr(delta, "tool_calls", None)
                if content or tool_calls or getattr(delta, "refusal", None):
                    # The first chunk usually carries only the role: time to first token is
                    # the first chunk with something the user could see.
                    if self.ttft is None:
                        self.ttft = time.perf_counter()
                if content:
                    self.parts.append(content)
                for call in tool_calls or ():
                    slot = self.tool_calls.setdefault(getattr(call, "index", 0) or 0, {"name": "", "arguments": ""})
                    fn = getattr(call, "function", None)
                    slot["name"] += getattr(fn, "name", None) or ""
                    slot["arguments"] += getattr(fn, "arguments", None) or ""
                self._logprobs(getattr(choice, "logprobs", None))
        except Exception:
            logger.debug("lookout_sdk: could not read an OpenAI stream chunk", exc_info=True)

    def _usage(self, usage: Any) -> None:
        if usage is not None:
            self.tokens_in = getattr(usage, "prompt_tokens", None)
            self.tokens_out = getattr(usage, "completion_tokens", None)

    def _logprobs(self, logprobs: Any) -> None:
        for token in getattr(logprobs, "content", None) or ():
            value = getattr(token, "logprob", None)
            if isinstance(value, (int, float)):
                self.logprobs.append(float(value))

    @contextlib.contextmanager
    def failing(self) -> Iterator[None]:
        """Around the request: a failed one is recorded with its error (re-raised)."""
        try:
            yield
        except BaseException as exc:
            self.finish(exc)
            raise

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Around a stream: finished when it ends, fails (re-raised) or is stopped early
        (what was streamed so far)."""
        try:
            yield
        except GeneratorExit:
            self.finish()
            raise
        except BaseException as exc:
            self.finish(exc)
            raise
        self.finish()

    def finish(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        latency = time.perf_counter() - self.t0
        try:
            output: str | None = "".join(self.parts) if self.parts else None
            if output is None and self.tool_calls:
                output = json.dumps([self.tool_calls[i] for i in sorted(self.tool_calls)], ensure_ascii=False)
            fields = dict(self.fields)
            if "trace_id" not in fields:
                fields["trace_id"], fields["span_id"] = otel_ids()
            (self.lookout or get_client()).log_call(
                model=str(self.model or self.model_version or "unknown"),
                provider=self.provider,
                input=self.messages,
                output=output,
                tokens_in=self.tokens_in,
                tokens_out=self.tokens_out,
                latency_ms=latency * 1000.0,
                ttft_ms=None if self.ttft is None else (self.ttft - self.t0) * 1000.0,
                status="error" if error is not None else "ok",
                error=error,
                model_version=self.model_version,
                logprobs=self.logprobs if self.want_logprobs and self.logprobs else None,
                ts=self.ts,
                event_id=self.event_id,
                **fields,
            )
        except Exception:
            logger.warning("lookout_sdk: could not record an OpenAI call", exc_info=True)


def _usage_only(chunk: Any) -> bool:
    return not getattr(chunk, "choices", None) and getattr(chunk, "usage", None) is not None


class _Observed:
    """The caller's stream, chunk for chunk, measured as the chunks go by; anything else is
    the stream's own (`.response` and friends)."""

    def __init__(self, stream: Any, recorder: _Recorder) -> None:
        self._stream = stream
        self._recorder = recorder
        self._iterator = self._iterate()

    def _iterate(self) -> Any:
        raise NotImplementedError

    def _shown(self, chunk: Any) -> bool:
        self._recorder.on_chunk(chunk)
        return not (self._recorder.hide_usage and _usage_only(chunk))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_stream", "_recorder"):
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        recorder = self.__dict__.get("_recorder")
        if recorder is not None and not recorder.done:
            recorder.finish()


class _ObservedStream(_Observed):
    def _iterate(self) -> Iterator[Any]:
        with self._recorder.recording():
            for chunk in self._stream:
                if self._shown(chunk):
                    yield chunk

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __next__(self) -> Any:
        return next(self._iterator)

    def __enter__(self) -> _ObservedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._recorder.finish()
        self._stream.close()


class _ObservedAsyncStream(_Observed):
    async def _iterate(self) -> AsyncIterator[Any]:
        with self._recorder.recording():
            async for chunk in self._stream:
                if self._shown(chunk):
                    yield chunk

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterator

    async def __anext__(self) -> Any:
        return await self._iterator.__anext__()

    async def __aenter__(self) -> _ObservedAsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._recorder.finish()
        await self._stream.close()


def wrap_openai(
    client: C,
    lookout: CallLog | None = None,
    *,
    provider: str = "openai",
    stream_usage: bool = False,
    **fields: Any,
) -> C:
    """Record every `client.chat.completions.create(...)` of an OpenAI client (OpenAI,
    AsyncOpenAI, AzureOpenAI...) and return the same client.

    >>> from openai import OpenAI
    >>> from lookout_sdk import Lookout, wrap_openai
    >>> client = wrap_openai(OpenAI(), Lookout(app_id="support-bot"))
    >>> reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])

    Responses and stream chunks reach the caller unchanged. Recorded per call: model and
    model_version (the one the server answered with), input messages, output text (or the
    tool calls as JSON), tokens from `usage`, latency, time to first token for streams,
    logprobs when requested, status and error (the exception is re-raised). A stream is
    recorded when it ends, is closed, or is dropped.

    Streams report tokens only when `usage` is in the stream, i.e. with
    `stream_options={"include_usage": True}`. With `stream_usage=True` the wrapper asks for
    it on streams that do not set stream_options, and keeps that extra usage-only chunk
    from the caller. Off by default: some OpenAI-compatible servers reject the option.

    `lookout` defaults to `lookout_sdk.get_client()`; extra keyword arguments (tags,
    metadata, prompt_version...) go into every call. Only this client object is wrapped:
    `client.with_options(...)` returns a new, unwrapped client.
    """
    completions = client.chat.completions  # type: ignore[attr-defined]
    if getattr(completions, "_lookout_wrapped", False):
        return client
    original: Callable[..., Any] = completions.create
    is_async = inspect.iscoroutinefunction(inspect.unwrap(original))

    def prepare(kwargs: dict[str, Any]) -> _Recorder:
        hide_usage = False
        if stream_usage and kwargs.get("stream") and kwargs.get("stream_options") is None:
            kwargs["stream_options"] = {"include_usage": True}
            hide_usage = True
        return _Recorder(lookout, kwargs, provider, fields, hide_usage)

    def answer(result: Any, recorder: _Recorder, stream_type: type[_Observed]) -> Any:
        if recorder.streaming:
            return stream_type(result, recorder)
        recorder.on_response(result)
        return result

    if is_async:

        @functools.wraps(original)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            recorder = prepare(kwargs)
            with recorder.failing():
                result = await original(*args, **kwargs)
            return answer(result, recorder, _ObservedAsyncStream)

        completions.create = acreate
    else:

        @functools.wraps(original)
        def create(*args: Any, **kwargs: Any) -> Any:
            recorder = prepare(kwargs)
            with recorder.failing():
                result = original(*args, **kwargs)
            return answer(result, recorder, _ObservedStream)

        completions.create = create
    completions._lookout_wrapped = True
    return client
