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
from lookout.core.session import Session

# A run's latest state is the retrain_run_state view's (migration 0015), as the retrain
# trigger and the dashboards read it.
_RUNS_SQL = """
SELECT run_id, app_id, model, rule, latest_status, requested_evidence, dataset_uri, dataset_hash, dataset_counts,
       requested_message, requested_at
FROM retrain_run_state
WHERE {where} AND latest_status = 'requested' AND requests > 0
ORDER BY requested_at
LIMIT 500
"""


def _run(row: dict) -> dict[str, Any]:
    evidence = orjson.loads(row["requested_evidence"] or "{}")
    at = row["requested_at"]
    return {"run_id": str(row["run_id"]), "app_id": row["app_id"], "model": row["model"], "rule": row["rule"],
            "status": row["latest_status"], "evidence": evidence, "dataset_uri": row["dataset_uri"],
            "dataset_hash": row["dataset_hash"], "dataset_counts": dict(row["dataset_counts"]),
            "message": row["requested_message"],
            "requested_at": (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat()}


def awaiting(session: Session, run_id: uuid.UUID | None = None) -> list[dict[str, Any]]:
    """Runs whose latest state is `requested` and whose policy requires approval."""
    if run_id is None:
        rows = session.named(_RUNS_SQL.format(where="1"))
    else:
        rows = session.named(_RUNS_SQL.format(where="run_id = {r:UUID}"), r=str(run_id))
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
