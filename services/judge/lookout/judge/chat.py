"""A client for any OpenAI-compatible chat completions endpoint (POST {base}/chat/completions),
with timeouts and retries: 429 and 5xx (honouring Retry-After), timeouts, dropped
connections and truncated replies are retried with exponential back-off and jitter."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from . import metrics

log = logging.getLogger(__name__)

# 408/409 are what some gateways send for a request that may simply be retried.
_RETRY_STATUS = frozenset({408, 409, 429})
# The endpoint or its configuration is unusable (wrong key, model or URL): no single call's
# fault, so judging stops until it works instead of dropping every call as an error.
_CONFIG_STATUS = frozenset({401, 403, 404})


class JudgeUnavailable(RuntimeError):
    """The endpoint did not answer usefully after every retry, or rejects our configuration."""


class JudgeRejected(RuntimeError):
    """The endpoint refused this one request (400, 413, 422...): a judge error for that call."""


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _Message


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _ChatResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")
    choices: list[_Choice]
    usage: _Usage | None = None


@dataclass(frozen=True)
class Completion:
    content: str
    tokens_in: int | None
    tokens_out: int | None


def _retry_after(resp: httpx.Response) -> float | None:
    ms = resp.headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:  # the other form: an HTTP date
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass
class ChatClient:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 30.0
    max_retries: int = 6
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    json_mode: bool = True
    max_tokens: int = 300
    transport: httpx.AsyncBaseTransport | None = None

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url.rstrip("/"), headers=headers, timeout=self.timeout_s, transport=self.transport,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _backoff(self, attempt: int) -> float:
        base = min(self.backoff_s * (2**attempt), self.backoff_max_s)
        return base * random.uniform(0.5, 1.0)  # jitter: clients that failed together retry apart

    async def complete(self, messages: list[dict[str, str]]) -> Completion:
        body: dict = {"model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens}
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        problem = ""
        for attempt in range(self.max_retries + 1):
            delay: float | None = None
            try:
                resp = await self._http.post("/chat/completions", json=body)
            except httpx.TimeoutException as exc:
                problem, reason = f"timeout: {exc!r}", "timeout"
            except httpx.TransportError as exc:  # refused, reset, connection dropped mid-reply
                problem, reason = f"transport: {exc!r}", "transport"
            else:
                status = resp.status_code
                if status == 200:
                    try:
                        return self._parse(resp)
                    except (ValueError, ValidationError) as exc:
                        problem, reason = f"unreadable 200 reply: {exc}", "bad_reply"
                elif status in _RETRY_STATUS or status >= 500:
                    problem, reason = f"HTTP {status}: {resp.text[:300]}", str(status)
                    ra = _retry_after(resp)
                    delay = None if ra is None else min(ra, self.backoff_max_s)
                elif status in _CONFIG_STATUS:
                    raise JudgeUnavailable(f"endpoint refuses our configuration: HTTP {status}: {resp.text[:300]}")
                else:
                    raise JudgeRejected(f"HTTP {status}: {resp.text[:300]}")
            if attempt == self.max_retries:
                break
            metrics.RETRIES.labels(reason).inc()
            wait = self._backoff(attempt) if delay is None else delay
            log.debug("judge request failed (%s); retry %d in %.2fs", problem, attempt + 1, wait)
            await asyncio.sleep(wait)
        raise JudgeUnavailable(f"judge endpoint failed {self.max_retries + 1} times; last: {problem}")

    @staticmethod
    def _parse(resp: httpx.Response) -> Completion:
        parsed = _ChatResponse.model_validate_json(resp.content)
        if not parsed.choices:
            raise ValueError("no choices in the reply")
        usage = parsed.usage or _Usage()
        return Completion(parsed.choices[0].message.content or "", usage.prompt_tokens, usage.completion_tokens)
