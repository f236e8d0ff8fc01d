"""`lookout up --demo`: a traffic simulator that posts realistic LLM calls to the stack's
own ingest API, and end users' thumbs on them to the feedback API, in phases that the
dashboards should show: normal traffic, a topic drift in one app, a toxic spike, an
error/latency incident, a thumbs-down surge on the support bot, then recovery on the
retrained support-bot version (a new model_version, so "old vs new" has both). `--speed`
compresses time (a phase lasts PHASE_SECONDS / speed); each call carries a `phase:<key>` tag.

Thumbs go on calls posted VOTE_DELAY_S (wall seconds, not compressed: the stack needs
them to store a call) earlier; a vote on a call not stored yet answers 404 and is
retried once on a later tick, then dropped.

The quality loop is closed for real: a demo reviewer (the stack's admin account) works the
review queue through the reviewer API, correcting support-bot answers, so there is reviewed
data to train on; the stack's retrain trigger runs demo_policies.yaml, whose thumbs-down
rule on support-bot/gpt-4o-mini fires in the surge and launches a LoRA run of jobs/finetune
on a tiny local model. The recovery phase serves the version that run registered, read
from the retrain trigger's API; until it is there the support bot keeps the old version
(logged), and with `await_retrain` the recovery phase waits for it (at most
RECOVERY_WAIT_S more) and then serves it for half a phase.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from lookout.core.ids import uuid7

from .demo_reviewer import DemoReviewer

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
    retrained: bool = False  # RETRAIN_STREAM serves the retrained version once a run registered one


PHASES = [
    Phase("normal", "normal"),
    Phase("drift", "topic drift (support-bot)", drift=True),
    Phase("toxic", "toxic spike", toxic=True),
    Phase("incident", "incident: errors and latency", incident=True),
    Phase("thumbs_down", "thumbs-down surge (support-bot)", surge_app="support-bot"),
    Phase("recovery", "recovery on the retrained support-bot version", retrained=True),
]
BASE_VERSION = "2024-07"
# The stream demo_policies.yaml retrains: the one whose recovery serves the new version.
RETRAIN_STREAM = ("support-bot", "gpt-4o-mini")
RECOVERY_WAIT_S = 180.0  # wall seconds the recovery phase waits at most for a run in flight


@dataclass
class RetrainLoop:
    """What the demo saw of the quality loop on RETRAIN_STREAM; times are time.time()."""

    onset: float | None = None  # the thumbs-down surge began
    version: str | None = None  # the version a run registered after the onset
    run_id: str | None = None
    registered_at: str | None = None  # as the retrain trigger recorded it
    seen: float | None = None  # when the demo read it from the API
    switched: float | None = None  # the first recovery call on it
    waited_s: float = 0.0  # how long recovery ran past its length waiting for it


@dataclass
class DemoStats:
    """What the simulator sent: calls per phase, votes per phase and answer, reviews, and
    the model versions it served."""

    calls: Counter = field(default_factory=Counter)
    votes: Counter = field(default_factory=Counter)  # (phase key, app_id, thumbs)
    vote_answers: Counter = field(default_factory=Counter)  # HTTP status
    dropped_votes: int = 0
    reviews: Counter = field(default_factory=Counter)  # "corrected" / "approved"
    served: Counter = field(default_factory=Counter)  # (phase key, app_id, model, model_version)
    loop: RetrainLoop = field(default_factory=RetrainLoop)


def make_call(app: str, provider: str, model: str, phase: Phase, rng: random.Random,
              version: str = BASE_VERSION) -> dict:
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
        "model_version": version,
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
                   stats: DemoStats | None = None, reviewer: tuple[str, str] | None = None,
                   await_retrain: bool = False) -> DemoStats:
    """Post the phases in turn, `cycles` times (None: until cancelled). `reviewer`: (user,
    password) of a review admin, who then reviews support-bot calls throughout.
    `await_retrain`: the stack runs the demo retrain policy, so recovery waits for its run."""
    rng = random.Random(seed)
    stats = stats if stats is not None else DemoStats()
    streams = [(app, provider, model) for app, models in APPS.items() for provider, model in models]
    pending: deque = deque()  # (posted at, call, phase, thumbs, tries): votes waiting for their call
    clock = asyncio.get_running_loop().time
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
    ) as client:
        review_task = None
        if reviewer is not None:
            review_task = asyncio.create_task(DemoReviewer(base_url, *reviewer, stats.reviews).run(),
                                              name="demo-reviewer")
        await asyncio.sleep(1.0)
        cycle = 0
        try:
            while cycles is None or cycle < cycles:
                cycle += 1
                watch: VersionWatch | None = None  # from the surge on
                for phase in PHASES:
                    log.info("demo phase: %s", phase.name)
                    if phase.surge_app:
                        stats.loop = RetrainLoop(onset=time.time())
                        watch = await VersionWatch(client, stats.loop).arm()
                    elif phase.retrained and watch is not None:
                        if stats.loop.version is None:
                            log.info("demo recovery: the retrain run has not finished; %s/%s keeps %s until it "
                                     "has", *RETRAIN_STREAM, BASE_VERSION)
                    length = PHASE_SECONDS / speed
                    began = clock()
                    switched_at = None
                    while True:
                        now = clock()
                        if watch is not None and (phase.surge_app or phase.retrained):
                            await watch.poll()
                        serving = phase.retrained and stats.loop.version is not None
                        if serving and switched_at is None:
                            switched_at = now
                        if now >= began + length and not (
                            phase.retrained and await_retrain and watch is not None
                            and _recovery_waits(now - began - length, switched_at, now, length)
                        ):
                            break
                        batch = []
                        for app, provider, model in (rng.choice(streams) for _ in range(EVENTS_PER_SECOND)):
                            retrained = stats.loop.version if serving and (app, model) == RETRAIN_STREAM \
                                else None
                            version = retrained or BASE_VERSION
                            batch.append(make_call(app, provider, model, phase, rng, version))
                        try:
                            response = await client.post("/v1/events", json={"events": batch})
                            if response.status_code != 200:
                                log.warning("demo post answered %d: %s", response.status_code, response.text[:200])
                            else:
                                stats.calls[phase.key] += len(batch)
                                sent_at = time.monotonic()
                                for call in batch:
                                    stats.served[(phase.key, call["app_id"], call["model"], call["model_version"])] += 1
                                    if phase.retrained and call["model_version"] != BASE_VERSION \
                                            and stats.loop.switched is None:
                                        stats.loop.switched = time.time()
                                        log.info("demo recovery: %s/%s now serves %s", *RETRAIN_STREAM,
                                                 call["model_version"])
                                    thumbs = vote_for(call, phase, rng)
                                    if thumbs is not None:
                                        pending.append((sent_at, call, phase, thumbs, 0))
                        except httpx.HTTPError as exc:
                            log.warning("demo post failed: %s", exc)
                        await _send_votes(client, pending, stats)
                        await asyncio.sleep(1.0)
                    if phase.retrained:
                        stats.loop.waited_s = max(0.0, clock() - began - length)
                        if watch is not None and stats.loop.version is None:
                            log.warning("demo recovery ended without a retrained version of %s/%s",
                                        *RETRAIN_STREAM)
            # The last calls' votes: wait for them to be due, then send.
            deadline = time.monotonic() + VOTE_DELAY_S * 4
            while pending and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                await _send_votes(client, pending, stats)
        finally:
            if review_task is not None:
                review_task.cancel()
                await asyncio.gather(review_task, return_exceptions=True)
    return stats


def _recovery_waits(over: float, switched_at: float | None, now: float, length: float) -> bool:
    """Whether recovery, `over` seconds past its length, goes on: while the run is in flight
    (at most RECOVERY_WAIT_S), then until the new version has served for half a phase."""
    if switched_at is None:
        return over < RECOVERY_WAIT_S
    return now - switched_at < length / 2


class VersionWatch:
    """Polls the retrain trigger's versions of RETRAIN_STREAM for one registered after the
    surge began (`arm` notes those known before it)."""

    def __init__(self, client: httpx.AsyncClient, loop: RetrainLoop):
        self.client = client
        self.loop = loop
        self.known: set[str] = set()

    async def _versions(self) -> list[dict[str, Any]] | None:
        app, model = RETRAIN_STREAM
        try:
            r = await self.client.get(f"/v1/models/{app}/{model}/versions")
        except httpx.HTTPError as exc:
            log.debug("demo: versions not readable: %s", exc)
            return None
        if r.status_code != 200:
            log.debug("demo: versions answered %d", r.status_code)
            return None
        return r.json()

    async def arm(self) -> VersionWatch:
        self.known = {v["model_version"] for v in await self._versions() or []}
        return self

    async def poll(self) -> None:
        if self.loop.version is not None:
            return
        fresh = [v for v in await self._versions() or [] if v["model_version"] not in self.known]
        if not fresh:
            return
        newest = max(fresh, key=lambda v: str(v["registered_at"]))
        self.loop.version, self.loop.run_id = newest["model_version"], newest.get("run_id")
        self.loop.registered_at, self.loop.seen = str(newest["registered_at"]), time.time()
        log.info("demo: retrain run %s registered %s for %s/%s, %.1fs after the thumbs-down surge began",
                 self.loop.run_id, self.loop.version, *RETRAIN_STREAM, self.loop.seen - (self.loop.onset or 0))


async def _send_votes(client: httpx.AsyncClient, pending: deque, stats: DemoStats) -> None:
    due_before = time.monotonic() - VOTE_DELAY_S
    due = []
    while pending and pending[0][0] <= due_before:
        due.append(pending.popleft())
    retry: list = []
    for start in range(0, len(due), 8):  # a few at a time: the stack shares its cores
        await asyncio.gather(*(_vote(client, item, stats, retry) for item in due[start : start + 8]))
    pending.extend(retry)
