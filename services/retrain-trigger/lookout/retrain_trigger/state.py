"""What the service keeps in ClickHouse besides the shared tables, and how it comes back
after a restart. Its tables (retrain_observations, model_versions) and the
retrain_run_state view are migration 0015's; every query goes through the service's one
Session.

Window state: every observation the rules use is written to `retrain_observations` before
the consumer commits its offsets, keyed by the id of the record it came from. At start the
last `horizon` of it is read back into the windows. A crash after the write and before the
commit replays records that are already there: the windows skip ids they hold, and the
table collapses them (ReplacingMergeTree). Rebuilding from the sink's tables instead would
lose what this service consumed and committed before the sink stored it. Observations are
kept for LOOKOUT_RETENTION_DAYS (the table's TTL), so a policy window longer than that is
not restored whole after a restart (the service warns at start).

Firings: the service writes each transition it makes into `retrain_runs` itself (as well
as producing it, which the sink stores again; same key and ts, so they collapse) before
committing, so a restart always knows the last firing (cooldown, latch) and the runs
still in flight (approvals, timeouts): each run's latest state is the retrain_run_state
view, the one the review UI and the dashboards read.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from lookout.core.events import Retrain
from lookout.core.session import Session

from .rules import Observation, Stream

_OBS_COLUMNS = ["obs_id", "ts", "app_id", "model", "kind", "name", "value", "event_id", "voter"]
_RUN_COLUMNS = ["run_id", "ts", "app_id", "model", "status", "rule", "evidence", "dataset_uri", "dataset_counts",
                "dataset_hash", "model_version", "message"]

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "rejected"})
# The order a run passes its states, for transitions held in memory; the retrain_run_state
# view (migration 0015) breaks ties of equal timestamps by the same order.
_RANK = {"requested": 0, "approved": 1, "launched": 2, "running": 3}


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
    """This service's reads and writes (blocking: callers run them in threads)."""

    def __init__(self, session: Session, horizon_s: float):
        self.session = session
        self.horizon_s = horizon_s

    def add_observations(self, rows: list[tuple[Stream, Observation]]) -> None:
        data = [[o.obs_id, datetime.fromtimestamp(o.ts, UTC), app, model, o.kind, o.name, o.value, o.event_id,
                 o.voter] for (app, model), o in rows]
        self.session.insert("retrain_observations", data, _OBS_COLUMNS)

    def load_observations(self) -> dict[Stream, list[Observation]]:
        rows = self.session.rows(
            "SELECT obs_id, ts, app_id, model, kind, name, value, event_id, voter FROM retrain_observations FINAL "
            "WHERE ts >= now64(3) - toIntervalSecond({h:UInt64})", h=int(self.horizon_s) + 60)
        out: dict[Stream, list[Observation]] = {}
        for obs_id, ts, app, model, kind, name, value, event_id, voter in rows:
            out.setdefault((app, model), []).append(Observation(_ts(ts), obs_id, kind, name, value, event_id, voter))
        return out

    def record(self, ev: Retrain) -> None:
        row = [ev.run_id, ev.ts, ev.app_id, ev.model, ev.status, ev.rule, orjson.dumps(ev.evidence).decode(),
               ev.dataset_uri or "", ev.dataset_counts, ev.dataset_hash or "", ev.model_version or "",
               ev.message or ""]
        self.session.insert("retrain_runs", [row], _RUN_COLUMNS)

    def load_runs(self) -> list[tuple[Run, float | None]]:
        """Every run with its latest state, and when it was requested (None: never)."""
        rows = self.session.rows(
            "SELECT run_id, app_id, model, rule, latest_status, updated, dataset_uri, dataset_hash, dataset_counts, "
            "requested_evidence, requested_at, requests FROM retrain_run_state")
        out = []
        for (run_id, app, model, rule, status, last, uri, h, counts, evidence, requested, n_req) in rows:
            run = Run(run_id, app, model, rule, status, _ts(last), uri, h, dict(counts), orjson.loads(evidence or "{}"))
            out.append((run, _ts(requested) if n_req else None))
        return out
