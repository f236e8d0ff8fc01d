"""`lookout up --demo`: a traffic simulator that posts realistic LLM calls to the stack's
own ingest API, in phases that the dashboards should show: normal traffic, a topic drift
in one app, a toxic spike, an error/latency incident, then recovery. `--speed` compresses
time (a phase lasts PHASE_SECONDS / speed)."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from lookout.core.ids import uuid7

log = logging.getLogger(__name__)

PHASE_SECONDS = 120.0
EVENTS_PER_SECOND = 20

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
    name: str
    drift: bool = False
    toxic: bool = False
    incident: bool = False


PHASES = [
    Phase("normal"),
    Phase("topic drift (support-bot)", drift=True),
    Phase("toxic spike", toxic=True),
    Phase("incident: errors and latency", incident=True),
    Phase("recovery"),
]


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
        "tags": ["demo"],
    }
    return {k: v for k, v in call.items() if v is not None}


async def run_demo(base_url: str, api_key: str, speed: float = 1.0, *, seed: int = 7) -> None:
    rng = random.Random(seed)
    streams = [(app, provider, model) for app, models in APPS.items() for provider, model in models]
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as client:
        await asyncio.sleep(1.0)
        while True:
            for phase in PHASES:
                log.info("demo phase: %s", phase.name)
                end = asyncio.get_running_loop().time() + PHASE_SECONDS / speed
                while asyncio.get_running_loop().time() < end:
                    batch = [make_call(*rng.choice(streams), phase, rng) for _ in range(EVENTS_PER_SECOND)]
                    try:
                        response = await client.post("/v1/events", json={"events": batch})
                        if response.status_code != 200:
                            log.warning("demo post answered %d: %s", response.status_code, response.text[:200])
                    except httpx.HTTPError as exc:
                        log.warning("demo post failed: %s", exc)
                    await asyncio.sleep(1.0)
