"""Pure rule evaluation: observations in, firings out. No I/O, no clock: time is the
stream's event time (the newest observation seen), so a replay of the same evidence
gives the same decisions, and tests need no sleeping.

State per (app, model) stream: its observations inside the longest window, deduplicated by
id (a replayed record counts once). Thumbs count one vote per (call, voter): a voter's later
vote on the same call replaces the earlier one, so one end user re-posting a thumbs down
(with a new comment each time) is one vote however often it arrives. State per (policy, rule, stream): latched after a
firing until the statistic crosses the clear level (hysteresis). State per (policy,
stream): the time of its last firing (cooldown). A policy fires at most once per
evaluation; every rule that tripped is in the evidence and latches.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from .policies import DriftRule, JudgeRule, Policy, PolicyFile, ThumbsDownRule, ToxicityRule

Kind = Literal["thumbs", "score", "drift"]
Stream = tuple[str, str]  # (app_id, model)
MAX_EXAMPLES = 10


@dataclass(frozen=True, order=True)
class Observation:
    ts: float  # event time, unix seconds
    obs_id: str  # feedback_id / score_id / result_id: the dedup key
    kind: Kind
    name: str  # score name, drift signal, "thumbs"
    value: float  # thumbs: 1.0 = down; score value; drift: 1.0 = drifted
    event_id: str = ""  # the LLM call it is about (drift: "")
    voter: str = ""  # thumbs: the vote's author; "" (records stored before voters were kept): no replacing


@dataclass
class StreamWindow:
    """One stream's observations, sorted by time, kept for `horizon` seconds of event time.
    Of the thumbs of one voter on one call only the latest (by ts, then id) is kept."""

    horizon: float
    items: list[Observation] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    votes: dict[tuple[str, str], Observation] = field(default_factory=dict)  # (event_id, voter) -> latest
    now: float = 0.0

    def add(self, obs: Observation) -> bool:
        """Whether the window changed: False for a replay, a record older than the horizon,
        or a vote older than the one its voter already has on the call."""
        if obs.obs_id in self.ids:
            return False
        if self.now and obs.ts < self.now - self.horizon:
            return False  # older than any window: cannot change a decision
        if obs.kind == "thumbs" and obs.voter:
            key = (obs.event_id, obs.voter)
            held = self.votes.get(key)
            if held is not None:
                if (held.ts, held.obs_id) >= (obs.ts, obs.obs_id):
                    return False  # superseded already
                self._remove(held)
            self.votes[key] = obs
        self.ids.add(obs.obs_id)
        bisect.insort(self.items, obs)
        self.now = max(self.now, obs.ts)
        return True

    def _remove(self, obs: Observation) -> None:
        i = bisect.bisect_left(self.items, obs)
        if i < len(self.items) and self.items[i] == obs:
            del self.items[i]
        self.ids.discard(obs.obs_id)

    def prune(self) -> None:
        cut = bisect.bisect_left(self.items, (self.now - self.horizon,), key=lambda o: (o.ts,))
        for old in self.items[:cut]:
            self.ids.discard(old.obs_id)
            if old.kind == "thumbs" and old.voter and self.votes.get((old.event_id, old.voter)) is old:
                del self.votes[(old.event_id, old.voter)]
        del self.items[:cut]

    def since(self, start: float) -> list[Observation]:
        return self.items[bisect.bisect_left(self.items, (start,), key=lambda o: (o.ts,)):]


@dataclass(frozen=True)
class Measure:
    """A rule's statistic over its window. `bad`/`clear`: whether it trips / re-arms."""

    statistic: float
    samples: int
    enough: bool
    bad: bool
    clear: bool
    threshold: float
    examples: tuple[str, ...] = ()


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def measure(rule: Any, window: StreamWindow) -> Measure:
    obs = window.since(window.now - rule.window)
    if isinstance(rule, ThumbsDownRule):
        votes = [o for o in obs if o.kind == "thumbs"]
        n = len(votes)
        rate = sum(o.value for o in votes) / n if n else 0.0
        ex = tuple(o.event_id for o in votes if o.value >= 1)[-MAX_EXAMPLES:]
        return Measure(rate, n, n >= rule.min_samples, rate > rule.fire_above, rate < rule.clear_level,
                       rule.fire_above, ex)
    if isinstance(rule, ToxicityRule):
        # One answer has several toxicity scores (insult, threat...): it is toxic when any is.
        worst: dict[str, float] = {}
        for o in obs:
            if o.kind == "score" and fnmatchcase(o.name, rule.score):
                worst[o.event_id] = max(worst.get(o.event_id, -math.inf), o.value)
        n = len(worst)
        toxic = [e for e, v in worst.items() if v > rule.value_above]
        share = len(toxic) / n if n else 0.0
        return Measure(share, n, n >= rule.min_samples, share > rule.fire_above, share < rule.clear_level,
                       rule.fire_above, tuple(toxic[-MAX_EXAMPLES:]))
    if isinstance(rule, JudgeRule):
        scored = [o for o in obs if o.kind == "score" and fnmatchcase(o.name, rule.score)]
        n = len(scored)
        values = [o.value for o in scored]
        if not n:
            stat = math.nan
        elif rule.stat == "mean":
            stat = sum(values) / n
        else:
            stat = _quantile(values, rule.quantile)
        lowest = sorted(scored, key=lambda o: o.value)[:MAX_EXAMPLES]
        return Measure(stat, n, n >= rule.min_samples, n > 0 and stat < rule.fire_below,
                       n > 0 and stat > rule.clear_level, rule.fire_below, tuple(o.event_id for o in lowest))
    if isinstance(rule, DriftRule):
        by_signal: dict[str, list[Observation]] = {}
        for o in obs:
            if o.kind == "drift" and fnmatchcase(o.name, rule.signal):
                by_signal.setdefault(o.name, []).append(o)
        # Sustained drift: the run of drifted results at the end of each signal's series.
        streak = 0
        for series in by_signal.values():
            run = 0
            for o in reversed(series):
                if o.value < 1:
                    break
                run += 1
            streak = max(streak, run)
        n = sum(len(s) for s in by_signal.values())
        return Measure(float(streak), n, n >= rule.min_samples, streak >= rule.windows, streak == 0,
                       float(rule.windows))
    raise TypeError(f"unknown rule type {type(rule).__name__}")


@dataclass(frozen=True)
class Firing:
    policy: Policy
    app_id: str
    model: str
    rule: str  # "<policy>/<rule>" of the first rule that tripped
    at: float  # event time
    evidence: dict[str, Any]


def rule_id(policy: Policy, rule: Any) -> str:
    return f"{policy.name}/{rule.name}"


class RuleEngine:
    def __init__(self, policies: PolicyFile):
        self.policies = policies
        # Keep a little more than the longest window, so a late record can still be judged.
        self.horizon = max(policies.max_window, 1.0)
        self.windows: dict[Stream, StreamWindow] = {}
        self.latched: dict[tuple[str, Stream], float] = {}  # rule id, stream -> fired at
        self.last_fired: dict[tuple[str, Stream], float] = {}  # policy name, stream -> fired at

    def observe(self, app_id: str, model: str, obs: Iterable[Observation]) -> int:
        """Add observations; returns how many were new."""
        w = self.windows.get((app_id, model))
        if w is None:
            w = self.windows[(app_id, model)] = StreamWindow(self.horizon)
        added = sum(1 for o in sorted(obs) if w.add(o))
        w.prune()
        return added

    def restore(self, policy: str, rule: str, app_id: str, model: str, fired_at: float) -> None:
        """Carry a firing recorded before a restart: cooldown from it, and the rule stays
        latched while the evidence that tripped it can still be in its window."""
        stream = (app_id, model)
        key = (policy, stream)
        self.last_fired[key] = max(self.last_fired.get(key, 0.0), fired_at)
        for p in self.policies.policies:
            for r in p.rules:
                if p.name == policy and rule_id(p, r) == rule:
                    self.latched[(rule, stream)] = fired_at

    def evaluate(self, app_id: str, model: str) -> list[Firing]:
        stream = (app_id, model)
        w = self.windows.get(stream)
        if w is None:
            return []
        out = []
        for policy in self.policies.for_stream(app_id, model):
            tripped: list[tuple[str, Any, Measure]] = []
            for r in policy.rules:
                rid = rule_id(policy, r)
                m = measure(r, w)
                if not m.enough:
                    continue  # too little evidence either way: neither trip nor re-arm
                if (rid, stream) in self.latched:
                    if m.clear:
                        del self.latched[(rid, stream)]
                    continue
                if m.bad:
                    tripped.append((rid, r, m))
            if not tripped:
                continue
            last = self.last_fired.get((policy.name, stream))
            if last is not None and w.now - last < policy.cooldown:
                continue  # not latched: if still bad after the cooldown, it fires then
            for rid, _, _ in tripped:
                self.latched[(rid, stream)] = w.now
            self.last_fired[(policy.name, stream)] = w.now
            evidence = {
                "window_end": w.now,
                "rules": [_evidence(rid, r, m) for rid, r, m in tripped],
            }
            out.append(Firing(policy, app_id, model, tripped[0][0], w.now, evidence))
        return out


def _evidence(rid: str, rule: Any, m: Measure) -> dict[str, Any]:
    return {
        "rule": rid,
        "kind": rule.kind,
        "statistic": None if math.isnan(m.statistic) else round(m.statistic, 6),
        "threshold": m.threshold,
        "samples": m.samples,
        "min_samples": rule.min_samples,
        "window_s": rule.window,
        "examples": list(m.examples),
    }
