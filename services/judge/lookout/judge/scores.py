"""Score records the judge emits, with ids that make replays collapse."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

from lookout.core.events import LlmCall, Score

Source = Literal["model", "llm_judge", "human", "heuristic"]


def score_id(event_id: uuid.UUID, name: str, evaluator: str, version: str) -> uuid.UUID:
    """uuid5 in the event's namespace over name, evaluator and version: the same judgment of
    the same call, recomputed after a crash or a replay, gets the same id."""
    return uuid.uuid5(event_id, f"{name}|{evaluator}|{version}")


@dataclass(frozen=True)
class Measurement:
    """One value one evaluator produced for one call, before it becomes a Score."""

    name: str
    value: float
    source: Source
    evaluator: str
    version: str
    label: str | None = None
    explanation: str | None = None
    cost_usd: float = 0.0


def to_score(call: LlmCall, m: Measurement) -> Score:
    # ts is the call's ts, not the time of scoring: the scores table orders by ts, so a
    # replay scored later must carry the same ts to collapse onto the stored row.
    return Score(
        score_id=score_id(call.event_id, m.name, m.evaluator, m.version),
        event_id=call.event_id,
        ts=call.ts,
        app_id=call.app_id,
        model=call.model,
        name=m.name,
        value=m.value,
        label=m.label,
        source=m.source,
        evaluator=m.evaluator,
        evaluator_version=m.version,
        explanation=m.explanation,
        cost_usd=m.cost_usd,
        # The call's version and environment ride along, so the sink and the per-version
        # rollup need no lookup of the call.
        model_version=call.model_version,
        environment=call.environment,
    )
