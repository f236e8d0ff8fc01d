"""Admin decisions on retrain runs from the review UI.

A retrain run whose policy requires approval waits in `requested`. The retrain-trigger
applies approvals from two places through one code path: its own API (admin API key) and
records on llm.retrain.status. An admin's browser has a review session, not an API key, so
the review UI posts here (session + CSRF, admin role) and this service produces the
decision as a Retrain record (status approved or rejected) to llm.retrain.status; the
retrain-trigger consumes it, records it and launches (or drops) the run.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from lookout.core import topics
from lookout.core.events import Retrain

from .store import Db

# The order of retrain states, as in the retrain-trigger: two rows in one millisecond still sort.
_RANK_SQL = ("multiIf(status IN ('succeeded', 'failed', 'timed_out', 'rejected'), 4, status = 'running', 3, "
             "status = 'launched', 2, status = 'approved', 1, 0)")
_RUNS_SQL = f"""
SELECT run_id, any(app_id) AS app, any(model) AS mdl, argMax(rule, ts) AS rule_name,
       argMax(status, (ts, {_RANK_SQL})) AS latest, argMaxIf(evidence, ts, status = 'requested') AS ev,
       argMaxIf(dataset_uri, ts, status = 'requested') AS uri,
       argMaxIf(dataset_hash, ts, status = 'requested') AS digest,
       argMaxIf(dataset_counts, ts, status = 'requested') AS counts,
       argMaxIf(message, ts, status = 'requested') AS msg, minIf(ts, status = 'requested') AS requested_at,
       countIf(status = 'requested') AS n_requested
FROM retrain_runs FINAL
WHERE {{where}}
GROUP BY run_id
HAVING latest = 'requested' AND n_requested > 0
ORDER BY requested_at
LIMIT 500
"""


def _run(row: dict) -> dict[str, Any]:
    evidence = orjson.loads(row["ev"] or "{}")
    at = row["requested_at"]
    return {"run_id": str(row["run_id"]), "app_id": row["app"], "model": row["mdl"], "rule": row["rule_name"],
            "status": row["latest"], "evidence": evidence, "dataset_uri": row["uri"], "dataset_hash": row["digest"],
            "dataset_counts": dict(row["counts"]), "message": row["msg"],
            "requested_at": (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()}


def awaiting(db: Db, run_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """Runs whose latest state is `requested` and whose policy requires approval."""
    if run_id is None:
        rows = db.named(_RUNS_SQL.format(where="1"))
    else:
        rows = db.named(_RUNS_SQL.format(where="run_id = {r:UUID}"), r=str(run_id))
    runs = [_run(r) for r in rows]
    return [r for r in runs if r["evidence"].get("require_approval") and not r["evidence"].get("dry_run")]


async def publish_decision(producer: AIOKafkaProducer, topic_prefix: str, run: dict[str, Any], approve: bool,
                           who: str, timeout_s: float) -> Retrain:
    status = "approved" if approve else "rejected"
    ev = Retrain(run_id=uuid.UUID(run["run_id"]), ts=datetime.now(UTC), app_id=run["app_id"], model=run["model"],
                 status=status, rule=run["rule"], evidence={**run["evidence"], "decided_by": who, "via": "review_ui"},
                 dataset_uri=run["dataset_uri"] or None, dataset_counts=run["dataset_counts"],
                 dataset_hash=run["dataset_hash"] or None, message=f"{status} by reviewer {who} (review UI)")
    ack = await producer.send(topics.resolve(topic_prefix, topics.RETRAIN_STATUS), ev.to_bytes(),
                              key=str(ev.run_id).encode())
    await asyncio.wait_for(ack, timeout_s)
    return ev
