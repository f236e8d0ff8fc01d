"""What the service keeps in ClickHouse besides the shared tables, and how it comes back
after a restart.

Window state: every observation the rules use is written to `retrain_observations` before
the consumer commits its offsets, keyed by the id of the record it came from. At start the
last `horizon` of it is read back into the windows. A crash after the write and before the
commit replays records that are already there: the windows skip ids they hold, and the
table collapses them (ReplacingMergeTree). Rebuilding from the sink's tables instead would
lose what this service consumed and committed before the sink stored it.

Firings: the service writes each transition it makes into `retrain_runs` itself (as well
as producing it, which the sink stores again; same key and ts, so they collapse) before
committing, so a restart always knows the last firing (cooldown, latch) and the runs
still in flight (approvals, timeouts).

Both tables belong in core's migrations; they are created here until they move there.
"""

from __future__ import annotations

import math
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from lookout.core.events import Retrain

from .rules import Observation, Stream
from .versions import VERSIONS_DDL

_OBS_COLUMNS = ["obs_id", "ts", "app_id", "model", "kind", "name", "value", "event_id", "voter"]
# Tables made before votes kept their voter get the column ('' for their old rows).
_OBS_VOTER = "ALTER TABLE retrain_observations ADD COLUMN IF NOT EXISTS voter String"


def obs_ddl(retention_days: int) -> str:
    return f"""
CREATE TABLE IF NOT EXISTS retrain_observations
(
    obs_id String,
    ts DateTime64(3, 'UTC'),
    app_id LowCardinality(String),
    model LowCardinality(String),
    kind LowCardinality(String),
    name LowCardinality(String),
    value Float64,
    event_id String,
    voter String
)
ENGINE = ReplacingMergeTree
ORDER BY (app_id, model, obs_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
"""


TERMINAL = frozenset({"succeeded", "failed", "timed_out", "rejected"})
_RANK = {"requested": 0, "approved": 1, "launched": 2, "running": 3}


# The same order in SQL: two transitions in one millisecond still sort.
_RANK_SQL = ("multiIf(status IN ('succeeded', 'failed', 'timed_out', 'rejected'), 4, status = 'running', 3, "
             "status = 'launched', 2, status = 'approved', 1, 0)")


def rank(status: str) -> int:
    return 4 if status in TERMINAL else _RANK.get(status, 0)


@dataclass
class Run:
    run_id: uuid.UUID
    app_id: str
    model: str
    rule: str
    status: str
    updated: float  # unix seconds of the last transition seen
    dataset_uri: str = ""
    dataset_hash: str = ""
    dataset_counts: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def policy(self) -> str:
        return self.rule.split("/", 1)[0]


def _ts(dt: datetime) -> float:
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


class Store:
    """This service's ClickHouse access. One client is one session, and a session runs one
    query at a time, so calls from several threads take turns."""

    def __init__(self, client: Client, retention_days: int, horizon_s: float):
        self.client = client
        self.horizon_s = horizon_s
        self.lock = threading.Lock()
        days = max(retention_days, math.ceil(horizon_s / 86400) + 1)
        with self.lock:
            client.command(obs_ddl(days))
            client.command(_OBS_VOTER)
            client.command(VERSIONS_DDL)

    def add_observations(self, rows: list[tuple[Stream, Observation]]) -> None:
        if not rows:
            return
        data = [[o.obs_id, datetime.fromtimestamp(o.ts, UTC), app, model, o.kind, o.name, o.value, o.event_id,
                 o.voter] for (app, model), o in rows]
        with self.lock:
            self.client.insert("retrain_observations", data, column_names=_OBS_COLUMNS)

    def load_observations(self) -> dict[Stream, list[Observation]]:
        with self.lock:
            rows = self.client.query(
                "SELECT obs_id, ts, app_id, model, kind, name, value, event_id, voter FROM retrain_observations FINAL "
                "WHERE ts >= now64(3) - toIntervalSecond({h:UInt64})", parameters={"h": int(self.horizon_s) + 60},
            ).result_rows
        out: dict[Stream, list[Observation]] = {}
        for obs_id, ts, app, model, kind, name, value, event_id, voter in rows:
            out.setdefault((app, model), []).append(Observation(_ts(ts), obs_id, kind, name, value, event_id, voter))
        return out

    def models_of(self, calls: list[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], str]:
        """The model of each stored LLM call, by (app_id, event_id): feedback names its call
        and app, not the model. Scoped by app, so another app's call with the same event id
        never lends a vote its model (nor its stream)."""
        if not calls:
            return {}
        apps = sorted({app for app, _ in calls})
        ids = sorted({str(e) for _, e in calls})
        with self.lock:
            rows = self.client.query(
                "SELECT app_id, event_id, any(model) FROM llm_calls WHERE app_id IN {apps:Array(String)} "
                "AND event_id IN {ids:Array(UUID)} GROUP BY app_id, event_id",
                parameters={"apps": apps, "ids": ids}).result_rows
        wanted = set(calls)
        return {(r[0], r[1]): r[2] for r in rows if (r[0], r[1]) in wanted}

    def record(self, ev: Retrain) -> None:
        row = [ev.run_id, ev.ts, ev.app_id, ev.model, ev.status, ev.rule, orjson.dumps(ev.evidence).decode(),
               ev.dataset_uri or "", ev.dataset_counts, ev.dataset_hash or "", ev.model_version or "",
               ev.message or ""]
        cols = ["run_id", "ts", "app_id", "model", "status", "rule", "evidence", "dataset_uri", "dataset_counts",
                "dataset_hash", "model_version", "message"]
        with self.lock:
            self.client.insert("retrain_runs", [row], column_names=cols)

    def load_runs(self) -> list[tuple[Run, float | None]]:
        """Every run with its latest state, and when it was requested (None: never)."""
        with self.lock:
            rows = self.client.query(
                "SELECT run_id, any(app_id), any(model), argMax(rule, ts), "
                f"argMax(status, (ts, {_RANK_SQL})), max(ts), "
                "argMax(dataset_uri, length(dataset_uri)), argMax(dataset_hash, length(dataset_hash)), "
                "argMax(dataset_counts, length(dataset_counts)), argMax(evidence, status = 'requested'), "
                "minIf(ts, status = 'requested'), countIf(status = 'requested') "
                "FROM retrain_runs FINAL GROUP BY run_id").result_rows
        out = []
        for (run_id, app, model, rule, status, last, uri, h, counts, evidence, requested, n_req) in rows:
            run = Run(run_id, app, model, rule, status, _ts(last), uri, h, dict(counts), orjson.loads(evidence or "{}"))
            out.append((run, _ts(requested) if n_req else None))
        return out
