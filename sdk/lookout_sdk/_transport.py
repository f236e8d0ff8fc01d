"""The SDK's one seam with the network: performing a delivery plan's effects with httpx,
blocking (the sender thread, the exit-time drain) or on an asyncio loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from ._config import Config
from ._delivery import Effect, Plan, Post, Result, Sleep


def http_client(config: Config) -> httpx.Client:
    return httpx.Client(base_url=config.endpoint or "", headers=dict(config.headers), timeout=config.timeout)


def async_http_client(config: Config) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=config.endpoint or "", headers=dict(config.headers), timeout=config.timeout)


def _step(plan: Plan, value: Any) -> Effect | None:
    """The plan's next effect, given what the last one gave back; None when it is done."""
    try:
        return plan.send(value)
    except StopIteration:
        return None


def run(plan: Plan, http: httpx.Client, interrupt: threading.Event) -> None:
    """Run a plan to its end on this thread. `interrupt` cuts a Sleep short (close())."""
    effect = _step(plan, None)
    while effect is not None:
        effect = _step(plan, _post(http, effect) if isinstance(effect, Post) else _sleep(interrupt, effect))


async def run_async(plan: Plan, http: httpx.AsyncClient, interrupt: asyncio.Event) -> None:
    """Run a plan to its end on the running loop. `interrupt` cuts a Sleep short (aclose())."""
    effect = _step(plan, None)
    while effect is not None:
        value = await (_apost(http, effect) if isinstance(effect, Post) else _asleep(interrupt, effect))
        effect = _step(plan, value)


def _post(http: httpx.Client, post: Post) -> Result:
    try:
        r = http.post(post.path, content=post.body, headers=post.headers, timeout=post.timeout)
    except Exception as exc:  # any transport failure is "not now", never a crash
        return exc
    return r.status_code, r.headers, r.content


async def _apost(http: httpx.AsyncClient, post: Post) -> Result:
    try:
        r = await http.post(post.path, content=post.body, headers=post.headers, timeout=post.timeout)
    except Exception as exc:  # any transport failure is "not now", never a crash
        return exc
    return r.status_code, r.headers, r.content


def _sleep(interrupt: threading.Event, sleep: Sleep) -> bool:
    interrupted = interrupt.wait(max(0.0, sleep.seconds))
    if interrupted:
        interrupt.clear()
    return interrupted


async def _asleep(interrupt: asyncio.Event, sleep: Sleep) -> bool:
    try:
        await asyncio.wait_for(interrupt.wait(), max(0.0, sleep.seconds))
    except asyncio.TimeoutError:
        return False
    interrupt.clear()
    return True
