"""A small sample of every table with known totals, for tests and for trying the panels.

Rows go in through the real schema: calls into llm_calls (the materialized views fill
calls_1m and versions_1m), then scores, drift_results, feedback, judge_agreement,
retrain_runs and dead_letters. Scores and votes carry their call's model, version and environment as the
judge and the thumbs service send them, and a changed vote names the vote it replaces, so
versions_1m fills as in production. A few toxicity score rows are inserted twice, as a
replay would before ReplacingMergeTree merges them (the sink skips those, and the rollup
counts toxicity per distinct call anyway).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

CALL_COLUMNS = (
    "event_id", "ts", "app_id", "environment", "provider", "model", "model_version",
    "tokens_in", "tokens_out", "latency_ms", "status", "error", "cost_usd",
)


@dataclass(frozen=True)
class Stream:
    app_id: str
    model: str
    environment: str
    calls_per_min: int
    error_every: int  # every n-th call fails (0: none)
    latency_ms: float
    cost_usd: float
    tokens_in: int = 100
    tokens_out: int = 50


STREAMS = (
    Stream("support-bot", "gpt-4o-mini", "prod", calls_per_min=10, error_every=10, latency_ms=400.0, cost_usd=0.001),
    Stream("support-bot", "claude-3-5-haiku", "staging", calls_per_min=5, error_every=0, latency_ms=800.0,
           cost_usd=0.002),
    Stream("search", "gpt-4o", "prod", calls_per_min=2, error_every=4, latency_ms=3000.0, cost_usd=0.01),
)
MINUTES = 60


@dataclass
class Sample:
    """What was inserted, to check panels against."""

    start: datetime
    end: datetime
    calls: list[dict] = field(default_factory=list)
    toxic_events: set[uuid.UUID] = field(default_factory=set)
    scored_events: set[uuid.UUID] = field(default_factory=set)
    judge_means: dict[str, float] = field(default_factory=dict)
    votes: int = 0
    thumbs_down: int = 0
    latest_thumbs: dict[uuid.UUID, int] = field(default_factory=dict)  # the one author's latest vote
    open_tasks: dict[uuid.UUID, tuple[str, datetime]] = field(default_factory=dict)  # app_id, created
    dead_letters: dict[str, int] = field(default_factory=dict)
    # The latest judge_agreement row of each (app_id, rubric, rubric_version, evaluator).
    agreement: dict[tuple[str, str, str, str], dict] = field(default_factory=dict)

    def calls_where(self, **match: str) -> list[dict]:
        return [c for c in self.calls if all(c[k] == v for k, v in match.items())]


def insert_calls(client: Client, calls: list[dict]) -> None:
    client.insert("llm_calls", [[c[k] for k in CALL_COLUMNS] for c in calls], column_names=list(CALL_COLUMNS))


def call(ts: datetime, app_id: str, model: str, *, environment: str = "prod", status: str = "ok",
         latency_ms: float | None = 500.0, cost_usd: float | None = 0.001, tokens_in: int | None = 100,
         tokens_out: int | None = 50, model_version: str = "") -> dict:
    return {
        "event_id": uuid.uuid4(), "ts": ts, "app_id": app_id, "environment": environment, "provider": "openai",
        "model": model, "model_version": model_version, "tokens_in": tokens_in, "tokens_out": tokens_out,
        "latency_ms": latency_ms, "status": status, "error": "upstream 503" if status == "error" else "",
        "cost_usd": cost_usd,
    }


def insert_scores(client: Client, rows: list[dict]) -> None:
    cols = ["score_id", "event_id", "ts", "app_id", "model", "name", "value", "label", "source", "evaluator",
            "evaluator_version", "explanation", "cost_usd", "model_version", "environment"]
    client.insert("scores", [[r.get(c, "") if c not in ("value", "cost_usd") else r.get(c, 0.0) for c in cols]
                             for r in rows], column_names=cols)


def score(c: dict, name: str, value: float, *, source: str = "model", delay_s: int = 5) -> dict:
    return {
        "score_id": uuid.uuid4(), "event_id": c["event_id"], "ts": c["ts"] + timedelta(seconds=delay_s),
        "app_id": c["app_id"], "model": c["model"], "name": name, "value": value, "source": source,
        "evaluator": "detoxify" if name.startswith("toxicity") else "judge", "evaluator_version": "1",
        "model_version": c["model_version"], "environment": c["environment"],
    }


def insert_drift(client: Client, rows: list[dict]) -> None:
    cols = ["result_id", "ts", "app_id", "model", "window_start", "window_end", "signal", "method", "statistic",
            "p_value", "threshold", "drifted", "reference_size", "current_size"]
    client.insert("drift_results", [[r[c] for c in cols] for r in rows], column_names=cols)


def drift(ts: datetime, app_id: str, model: str, signal: str, drifted: bool) -> dict:
    return {
        "result_id": uuid.uuid4(), "ts": ts, "app_id": app_id, "model": model,
        "window_start": ts - timedelta(minutes=15), "window_end": ts, "signal": signal, "method": "mmd",
        "statistic": 0.4 if drifted else 0.05, "p_value": 0.001 if drifted else 0.6, "threshold": 0.01,
        "drifted": int(drifted), "reference_size": 500, "current_size": 200,
    }


def insert_feedback(client: Client, rows: list[dict]) -> None:
    cols = ["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs", "model", "model_version",
            "environment", "call_ts", "replaces_thumbs"]
    client.insert("feedback", [[r[c] for c in cols] for r in rows], column_names=cols)


def vote(c: dict, thumbs: int, *, delay_s: int = 30, replaces: int | None = None) -> dict:
    """An end user's vote as the thumbs service sends it; `replaces`: the thumbs of the
    author's earlier vote on the call that this one changes."""
    return {
        "feedback_id": uuid.uuid4(), "event_id": c["event_id"], "ts": c["ts"] + timedelta(seconds=delay_s),
        "app_id": c["app_id"], "source": "end_user", "author": "u", "thumbs": thumbs, "model": c["model"],
        "model_version": c["model_version"], "environment": c["environment"], "call_ts": c["ts"],
        "replaces_thumbs": replaces,
    }


def insert_review_tasks(client: Client, rows: list[dict]) -> None:
    cols = ["event_id", "app_id", "model", "kind", "reason", "severity", "created_at"]
    client.insert("review_tasks", [[r[c] for c in cols] for r in rows], column_names=cols)


def review_task(c: dict, reason: str, created_at: datetime, *, kind: str = "score") -> dict:
    return {"event_id": c["event_id"], "app_id": c["app_id"], "model": c["model"], "kind": kind, "reason": reason,
            "severity": 0.5, "created_at": created_at}


def insert_review_done(client: Client, rows: list[dict]) -> None:
    cols = ["event_id", "app_id", "reviewer", "feedback_id", "needed", "ts"]
    client.insert("review_done", [[r[c] for c in cols] for r in rows], column_names=cols)


def review_done(c: dict, reviewer: str, needed: int, ts: datetime) -> dict:
    return {"event_id": c["event_id"], "app_id": c["app_id"], "reviewer": reviewer, "feedback_id": uuid.uuid4(),
            "needed": needed, "ts": ts}


AGREEMENT_COLUMNS = ("window_end", "window_start", "app_id", "rubric", "rubric_version", "evaluator", "pairs", "kappa",
                     "observed_agreement", "judge_pass_rate", "reviewer_pass_rate", "kappa_quadratic", "spearman",
                     "spearman_p", "computed_at")


def insert_agreement(client: Client, rows: list[dict]) -> None:
    client.insert("judge_agreement", [[r[c] for c in AGREEMENT_COLUMNS] for r in rows],
                  column_names=list(AGREEMENT_COLUMNS))


def agreement(window_end: datetime, app_id: str, rubric: str, *, kappa: float | None, pairs: int = 40,
              version: str = "1+p2", evaluator: str = "judge", judge_pass_rate: float = 0.6,
              reviewer_pass_rate: float = 0.5, computed_after_s: int = 1) -> dict:
    """A judge_agreement row as the judge writes it (live_agreement.py), over a week of reviews."""
    return {
        "window_end": window_end, "window_start": window_end - timedelta(days=7), "app_id": app_id,
        "rubric": rubric, "rubric_version": version, "evaluator": evaluator, "pairs": pairs, "kappa": kappa,
        "observed_agreement": None if kappa is None else 0.5 + kappa / 2, "judge_pass_rate": judge_pass_rate,
        "reviewer_pass_rate": reviewer_pass_rate, "kappa_quadratic": None if kappa is None else min(1.0, kappa + 0.1),
        "spearman": None if kappa is None else kappa, "spearman_p": None if kappa is None else 0.01,
        "computed_at": window_end + timedelta(seconds=computed_after_s),
    }


def insert_retrain(client: Client, rows: list[dict]) -> None:
    cols = ["run_id", "ts", "app_id", "model", "status", "rule", "model_version"]
    client.insert("retrain_runs", [[r[c] for c in cols] for r in rows], column_names=cols)


def insert_dead_letters(client: Client, rows: list[tuple[datetime, str]]) -> None:
    cols = ["dlq_id", "ts", "source_topic", "partition", "offset", "payload", "error", "service"]
    data = [[uuid.uuid4(), ts, topic, 0, i, "{", "invalid json", "sink"] for i, (ts, topic) in enumerate(rows)]
    client.insert("dead_letters", data, column_names=cols)


def seed(client: Client, now: datetime) -> Sample:
    """An hour of traffic ending at `now` (a whole minute, UTC), with its scores and feedback."""
    start = now - timedelta(minutes=MINUTES)
    sample = Sample(start=start, end=now)
    for s in STREAMS:
        n = 0
        for minute in range(MINUTES):
            for i in range(s.calls_per_min):
                n += 1
                ts = start + timedelta(minutes=minute, seconds=i * (60 // s.calls_per_min))
                failed = s.error_every and n % s.error_every == 0
                sample.calls.append(call(
                    ts, s.app_id, s.model, environment=s.environment, status="error" if failed else "ok",
                    latency_ms=s.latency_ms + (i * 10), cost_usd=s.cost_usd, tokens_in=s.tokens_in,
                    tokens_out=s.tokens_out, model_version="2024-07" if minute < 30 else "2024-09",
                ))
    insert_calls(client, sample.calls)

    # Toxicity on every support-bot/gpt-4o-mini call: 1 in 20 is toxic; a few rows doubled.
    scores = []
    for n, c in enumerate(sample.calls_where(app_id="support-bot", model="gpt-4o-mini")):
        toxic = n % 20 == 0
        scores.append(score(c, "toxicity.insult", 0.9 if toxic else 0.1))
        scores.append(score(c, "toxicity.identity_attack", 0.02))
        sample.scored_events.add(c["event_id"])
        if toxic:
            sample.toxic_events.add(c["event_id"])
    scores += scores[:10]  # a replay before the merge
    # Judge rubrics on the claude stream.
    for c in sample.calls_where(model="claude-3-5-haiku"):
        scores.append(score(c, "judge.relevance", 0.8, source="llm_judge"))
        scores.append(score(c, "judge.faithfulness", 0.6, source="llm_judge"))
    sample.judge_means = {"judge.relevance": 0.8, "judge.faithfulness": 0.6}
    insert_scores(client, scores)

    m = now - timedelta(minutes=1)
    insert_drift(client, [
        drift(m - timedelta(minutes=45), "support-bot", "gpt-4o-mini", "embedding", False),
        drift(m - timedelta(minutes=30), "support-bot", "gpt-4o-mini", "embedding", True),
        drift(m - timedelta(minutes=15), "support-bot", "gpt-4o-mini", "embedding", True),
        drift(m, "support-bot", "gpt-4o-mini", "embedding", True),
        drift(m - timedelta(minutes=15), "support-bot", "gpt-4o-mini", "prompt_tokens", False),
        drift(m, "support-bot", "gpt-4o-mini", "prompt_tokens", False),
        drift(m - timedelta(minutes=15), "search", "gpt-4o", "embedding", True),
        drift(m, "search", "gpt-4o", "embedding", False),
    ])

    # Thumbs: 40 on support-bot (10 down), 20 on search (12 down).
    votes = []
    for app_id, total, down in (("support-bot", 40, 10), ("search", 20, 12)):
        for n, c in enumerate(sample.calls_where(app_id=app_id)[:total]):
            votes.append(vote(c, -1 if n < down else 1))
    # The author changes one up vote to down later: feedback_latest keeps only the down.
    changed = sample.calls_where(app_id="support-bot")[20]
    votes.append(vote(changed, -1, delay_s=90, replaces=1))
    for v in votes:
        sample.latest_thumbs[v["event_id"]] = v["thumbs"]  # in insertion order: the later vote wins
    sample.votes, sample.thumbs_down = 60, 23
    insert_feedback(client, votes)

    # Review queue: a task is open until `needed` distinct reviewers completed it.
    bot, srch = sample.calls_where(app_id="support-bot"), sample.calls_where(app_id="search")

    def at(minutes: int) -> datetime:
        return start + timedelta(minutes=minutes)

    tasks = [
        review_task(bot[100], "toxicity", at(minutes=5)),            # done by one of one: closed
        review_task(bot[101], "toxicity", at(minutes=10)),           # open, the oldest
        review_task(bot[101], "thumbs_down", at(minutes=12), kind="feedback"),
        review_task(bot[102], "judge.relevance", at(minutes=15)),    # done: closed
        review_task(srch[10], "drift", at(minutes=20), kind="drift"),  # one of two reviews: open
        review_task(srch[11], "drift", at(minutes=25), kind="drift"),  # two of two: closed
    ]
    insert_review_tasks(client, tasks + tasks[1:2])  # a replayed signal collapses into its task
    insert_review_done(client, [
        review_done(bot[100], "r1", 1, at(minutes=30)),
        review_done(bot[102], "r2", 1, at(minutes=31)),
        review_done(srch[10], "r1", 2, at(minutes=32)),
        review_done(srch[11], "r1", 2, at(minutes=33)),
        review_done(srch[11], "r2", 2, at(minutes=34)),
        review_done(srch[11], "r2", 2, at(minutes=34)),  # a replay
    ])
    sample.open_tasks = {bot[101]["event_id"]: ("support-bot", at(minutes=10)),
                         srch[10]["event_id"]: ("search", at(minutes=20))}

    run_ok, run_failed = uuid.uuid4(), uuid.uuid4()
    rule = "thumbs_down_rate>0.2"
    insert_retrain(client, [
        {"run_id": run_ok, "ts": start + timedelta(minutes=m_), "app_id": "support-bot", "model": "gpt-4o-mini",
         "status": st, "rule": rule if st == "requested" else "", "model_version": "ft-2" if st == "succeeded" else ""}
        for m_, st in ((5, "requested"), (6, "launched"), (7, "running"), (40, "succeeded"))
    ] + [
        {"run_id": run_failed, "ts": start + timedelta(minutes=m_), "app_id": "search", "model": "gpt-4o",
         "status": st, "rule": rule if st == "requested" else "", "model_version": ""}
        for m_, st in ((20, "requested"), (21, "launched"), (50, "failed"))
    ])

    # Judge agreement, a row per series every 5 minutes. support-bot's relevance slides from
    # 0.8 to 0.58, and its last window was computed twice (a replica, a restart): the later
    # computation counts. Its rubric's version 2 started half-way with too few reviews for
    # a kappa (NULL), after one row that had one. search's faithfulness disagrees.
    rows = []
    for i in range(12):
        end = start + timedelta(minutes=5 * (i + 1))
        rows.append(agreement(end, "support-bot", "relevance", kappa=0.8 - 0.02 * i, pairs=100 + i))
        if i >= 6:
            rows.append(agreement(end, "support-bot", "relevance", version="2+p2", kappa=0.3 if i == 6 else None,
                                  pairs=2, judge_pass_rate=1.0, reviewer_pass_rate=1.0))
        rows.append(agreement(end, "search", "faithfulness", kappa=0.2, pairs=40, judge_pass_rate=0.9,
                              reviewer_pass_rate=0.4))
    rows.append(agreement(start + timedelta(minutes=60), "support-bot", "relevance", kappa=0.1, pairs=111,
                          computed_after_s=0))  # the earlier computation of the last window
    insert_agreement(client, rows)
    for r in rows:
        key = (r["app_id"], r["rubric"], r["rubric_version"], r["evaluator"])
        held = sample.agreement.get(key)
        if held is None or (held["window_end"], held["computed_at"]) < (r["window_end"], r["computed_at"]):
            sample.agreement[key] = r

    letters = [(start + timedelta(minutes=5 * i), "llm.events") for i in range(3)]
    letters.append((start + timedelta(minutes=30), "llm.scores"))
    insert_dead_letters(client, letters)
    sample.dead_letters = {"llm.events": 3, "llm.scores": 1}
    return sample


def rounded(value: Any, digits: int = 12) -> Any:
    """`value` with every float in it to `digits` significant digits (lists, tuples and dicts
    followed): ClickHouse adds a float column part by part, and a background merge between
    two reads of the same rows moves the sum's last bits (1.2000000000000008 / ...06)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(rounded(v, digits) for v in value)
    return value
