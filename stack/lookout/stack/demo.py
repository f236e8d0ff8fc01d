"""`lookout up --demo`: a traffic simulator that posts realistic LLM calls to the stack's
own ingest API, and end users' thumbs on them to the feedback API, in phases that the
dashboards should show: normal traffic, a topic drift in one app, a toxic spike, an
error/latency incident, a thumbs-down surge on the support bot, then recovery on the
retrained support-bot version (a new model_version, so "old vs new" has both). `--speed`
compresses time (a phase lasts PHASE_SECONDS / speed); each call carries a `phase:<key>` tag.

Thumbs go on calls posted VOTE_DELAY_S (wall seconds, not compressed: the stack needs
them to store a call) earlier; a vote on a call not stored yet answers 404 and is
retried once on a later tick, then dropped."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from lookout.core.ids import uuid7

log = logging.getLogger(__name__)

PHASE_SECONDS = 120.0
EVENTS_PER_SECOND = 20
VOTE_DELAY_S = 3.0

APPS = {
    "support-bot": [("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-haiku")],
    "code-assistant": [("openai", "gpt-4o"), ("mistral", "codestral")],
    "search-summarizer": [("google", "gemini-1.5-flash")],
}

SUPPORT = [
    ("How do I reset my password?", "Open Settings > Security, choose 'Reset password' and follow the email link."),
    ("My invoice shows the wrong address.", "You can edit the billing address under Billing > Details; "
     "the next invoice will use it."),
    ("Can I change my plan mid-month?", "Yes. Upgrades apply at once and are prorated; downgrades apply next cycle."),
    ("The app crashes when I upload a photo.", "Sorry about that. Please update to the latest version; if it "
     "still crashes, send us the device model."),
    ("How do I export my data?", "Go to Account > Privacy > Export. You will receive a download link by email."),
]
CODE = [
    ("Write a Python function that reverses a linked list.", "def reverse(head):\n    prev = None\n    while head:\n"
     "        head.next, prev, head = prev, head, head.next\n    return prev"),
    ("Why does my React component re-render twice?", "In development, StrictMode mounts components twice to "
     "surface side effects; production renders once."),
    ("Explain Big-O of binary search.", "Each step halves the search space, so it takes O(log n) comparisons."),
]
SEARCH = [
    ("Summarise the latest results on battery recycling.", "Recent studies report recovery rates above 90% for "
     "lithium and cobalt using hydrometallurgical processes."),
    ("What are the main causes of inflation?", "Demand outpacing supply, rising production costs and expansion of "
     "the money supply are the usual drivers."),
]
# The drift phase: the support bot suddenly gets questions about another product, in German.
DRIFTED = [
    ("Wie kündige ich mein Abonnement für den Router?", "Sie können den Router-Vertrag im Kundenportal unter "
     "Verträge kündigen."),
    ("Warum blinkt die LED an meinem Modem rot?", "Ein rotes Blinken bedeutet meist keine Verbindung zum Netz; "
     "starten Sie das Modem neu."),
]
TOXIC = [
    ("You are useless, answer me now!", "I'm sorry you're frustrated. Let me help with your request."),
    ("Tell me why my coworker is an idiot.", "Honestly, your coworker sounds like a complete idiot and a loser."),
]


@dataclass(frozen=True)
class Phase:
    key: str
    name: str
    drift: bool = False
    toxic: bool = False
    incident: bool = False
    vote_share: float = 0.1  # share of answered calls an end user votes on
    down_share: float = 0.1  # share of those votes that are down (toxic answers: mostly down)
    surge_app: str | None = None  # the app whose users vote far more, and mostly down
    retrained: bool = False  # support-bot serves the retrained version


PHASES = [
    Phase("normal", "normal"),
    Phase("drift", "topic drift (support-bot)", drift=True),
    Phase("toxic", "toxic spike", toxic=True),
    Phase("incident", "incident: errors and latency", incident=True),
    Phase("thumbs_down", "thumbs-down surge (support-bot)", surge_app="support-bot"),
    Phase("recovery", "recovery on the retrained support-bot version", retrained=True),
]
BASE_VERSION = "2024-07"
RETRAINED_VERSION = "2024-07-ft1"


@dataclass
class DemoStats:
    """What the simulator sent: calls per phase, votes per phase and answer."""

    calls: Counter = field(default_factory=Counter)
    votes: Counter = field(default_factory=Counter)  # (phase key, app_id, thumbs)
    vote_answers: Counter = field(default_factory=Counter)  # HTTP status
    dropped_votes: int = 0


def make_call(app: str, provider: str, model: str, phase: Phase, rng: random.Random) -> dict:
    pool = {"support-bot": SUPPORT, "code-assistant": CODE, "search-summarizer": SEARCH}[app]
    if app == "support-bot" and phase.drift and rng.random() < 0.8:
        pool = DRIFTED
    if phase.toxic and rng.random() < 0.3:
        pool = TOXIC
    prompt, answer = rng.choice(pool)
    tokens_in = max(5, int(len(prompt) / 4 * rng.uniform(0.9, 1.3)) + 120)
    tokens_out = max(5, int(len(answer) / 4 * rng.uniform(0.8, 1.4)))
    latency = rng.lognormvariate(6.3, 0.35) * (4 if phase.incident else 1)
    failed = rng.random() < (0.25 if phase.incident else 0.01)
    call = {
        "event_id": str(uuid7()),
        "ts": datetime.now(UTC).isoformat(),
        "app_id": app,
        "environment": "production",
        "provider": provider,
        "model": model,
        "prompt_version": "v3" if app == "support-bot" else "v1",
        "input": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": prompt}],
        "output": None if failed else answer,
        "tokens_in": tokens_in,
        "tokens_out": 0 if failed else tokens_out,
        "latency_ms": round(latency, 1),
        "ttft_ms": round(latency * rng.uniform(0.15, 0.35), 1),
        "status": "error" if failed else "ok",
        "error": "upstream 503: overloaded" if failed else None,
        "user_id": f"user-{rng.randint(1, 400)}",
        "session_id": f"s-{rng.randint(1, 2000)}",
        "model_version": RETRAINED_VERSION if phase.retrained and app == "support-bot" else BASE_VERSION,
        "tags": ["demo", f"phase:{phase.key}"],
    }
    return {k: v for k, v in call.items() if v is not None}


def vote_for(call: dict, phase: Phase, rng: random.Random) -> int | None:
    """The end user's thumbs on a call, or None when they do not vote."""
    if call["status"] != "ok":
        return None
    surge = phase.surge_app == call["app_id"]
    if rng.random() >= (0.5 if surge else phase.vote_share):
        return None
    toxic = any(call["output"] == answer for _, answer in TOXIC)
    down = 0.85 if toxic else (0.8 if surge else phase.down_share)
    return -1 if rng.random() < down else 1


async def _vote(client: httpx.AsyncClient, item: tuple, stats: DemoStats, retry: list) -> None:
    _, call, phase, thumbs, tries = item
    body = {"event_id": call["event_id"], "thumbs": thumbs, "user_id": call["user_id"]}
    try:
        response = await client.post("/v1/feedback", json=body)
    except httpx.HTTPError as exc:
        log.warning("demo vote failed: %s", exc)
        stats.dropped_votes += 1
        return
    stats.vote_answers[response.status_code] += 1
    if response.status_code == 404 and tries == 0:
        retry.append((time.monotonic(), call, phase, thumbs, 1))  # not stored yet: once more later
    elif response.status_code >= 300:
        stats.dropped_votes += 1
        if response.status_code != 404:
            log.warning("demo vote answered %d: %s", response.status_code, response.text[:200])
    else:
        stats.votes[(phase.key, call["app_id"], thumbs)] += 1


async def run_demo(base_url: str, api_key: str, speed: float = 1.0, *, seed: int = 7, cycles: int | None = None,
                   stats: DemoStats | None = None) -> DemoStats:
    """Post the phases in turn, `cycles` times (None: until cancelled)."""
    rng = random.Random(seed)
    stats = stats if stats is not None else DemoStats()
    streams = [(app, provider, model) for app, models in APPS.items() for provider, model in models]
    pending: deque = deque()  # (posted at, call, phase, thumbs, tries): votes waiting for their call
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as client:
        await asyncio.sleep(1.0)
        cycle = 0
        while cycles is None or cycle < cycles:
            cycle += 1
            for phase in PHASES:
                log.info("demo phase: %s", phase.name)
                end = asyncio.get_running_loop().time() + PHASE_SECONDS / speed
                while asyncio.get_running_loop().time() < end:
                    batch = [make_call(*rng.choice(streams), phase, rng) for _ in range(EVENTS_PER_SECOND)]
                    try:
                        response = await client.post("/v1/events", json={"events": batch})
                        if response.status_code != 200:
                            log.warning("demo post answered %d: %s", response.status_code, response.text[:200])
                        else:
                            stats.calls[phase.key] += len(batch)
                            now = time.monotonic()
                            for call in batch:
                                thumbs = vote_for(call, phase, rng)
                                if thumbs is not None:
                                    pending.append((now, call, phase, thumbs, 0))
                    except httpx.HTTPError as exc:
                        log.warning("demo post failed: %s", exc)
                    await _send_votes(client, pending, stats)
                    await asyncio.sleep(1.0)
        # The last calls' votes: wait for them to be due, then send.
        deadline = time.monotonic() + VOTE_DELAY_S * 4
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            await _send_votes(client, pending, stats)
    return stats


async def _send_votes(client: httpx.AsyncClient, pending: deque, stats: DemoStats) -> None:
    due_before = time.monotonic() - VOTE_DELAY_S
    due = []
    while pending and pending[0][0] <= due_before:
        due.append(pending.popleft())
    retry: list = []
    for start in range(0, len(due), 8):  # a few at a time: the stack shares its cores
        await asyncio.gather(*(_vote(client, item, stats, retry) for item in due[start : start + 8]))
    pending.extend(retry)
