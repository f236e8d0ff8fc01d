"""Model identity watch: a provider that silently serves another model behind a name.

Why here, and how: ingest is stateless per request, and llm.events is keyed by (app,
served model), so no consumer of it sees one requested name answered by two models in one
partition. Storage does: migration 0013's `model_identity_1h` rollup (a materialized view
of llm_calls) keeps per hour and (app, requested model) each identity that answered: the
served model (`gen_ai.response.model`) and the system fingerprint. This watch reads the
rollup every LOOKOUT_DRIFT_IDENTITY_POLL_S seconds over the last
LOOKOUT_DRIFT_IDENTITY_LOOKBACK_H hours, and for each requested name whose answers changed
identity produces one DriftResult on llm.drift: signal `model_identity`, method
`identity_change`, naming the old and the new identity (details.old / details.new), with
the first calls of the new identity as examples.

The result id is derived from (app, requested model, old identity, new identity), so every
replica and every poll produces the same result and the sink stores it once. A call that
reported no fingerprint (streamed calls often do not) never counts as a change of
fingerprint: only the served model, or two fingerprints both known, tell identities apart.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer

from lookout.core import ids, topics
from lookout.core.events import DriftResult
from lookout.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

SIGNAL = "model_identity"
METHOD = "identity_change"
_MAX_GROUPS = 100_000  # rows read per poll; the rollup has one per hour and identity


@dataclass(frozen=True)
class Identity:
    model: str
    fingerprint: str  # "" where no call reported one
    first_seen: datetime
    last_seen: datetime
    calls: int
    first_event: uuid.UUID


@dataclass(frozen=True)
class Change:
    app_id: str
    requested_model: str
    old: Identity
    new: Identity


def read_identities(client: Any, since: datetime) -> dict[tuple[str, str], list[Identity]]:
    """Per (app, requested model), the identities that answered since `since`, oldest first."""
    rows = client.query(
        "SELECT app_id, requested_model, served_model, fingerprint, min(first_seen), max(last_seen), "
        "countMerge(calls), argMinMerge(first_event) FROM model_identity_1h "
        "WHERE hour >= toStartOfHour({since:DateTime64(3, 'UTC')}) "
        "GROUP BY app_id, requested_model, served_model, fingerprint "
        "ORDER BY app_id, requested_model, min(first_seen) LIMIT {n:UInt32}",
        parameters={"since": since, "n": _MAX_GROUPS},
    ).result_rows
    found: dict[tuple[str, str], list[Identity]] = {}
    for app, requested, served, fingerprint, first, last, calls, event in rows:
        found.setdefault((app, requested), []).append(Identity(served, fingerprint, _utc(first), _utc(last),
                                                               int(calls), event))
    return found


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _merged(identities: list[Identity]) -> list[Identity]:
    """Identities without a fingerprint join the fingerprinted identity of the same model
    (if there is exactly one): "unknown" is not a different fingerprint."""
    by_model: dict[str, list[Identity]] = {}
    for identity in identities:
        by_model.setdefault(identity.model, []).append(identity)
    merged: list[Identity] = []
    for group in by_model.values():
        known = [i for i in group if i.fingerprint]
        unknown = [i for i in group if not i.fingerprint]
        if unknown and len(known) == 1:
            base, extra = known[0], unknown[0]
            first = min((base, extra), key=lambda i: i.first_seen)
            merged.append(Identity(base.model, base.fingerprint, first.first_seen,
                                   max(base.last_seen, extra.last_seen), base.calls + extra.calls, first.first_event))
        else:
            merged.extend(group)
    return sorted(merged, key=lambda i: i.first_seen)


def changes(found: dict[tuple[str, str], list[Identity]]) -> list[Change]:
    """Each identity that first answered a requested name after another had: one change
    from the identity seen before it."""
    out = []
    for (app, requested), identities in found.items():
        ordered = _merged(identities)
        for old, new in itertools.pairwise(ordered):
            if new.first_seen > old.first_seen:
                out.append(Change(app, requested, old, new))
    return out


def _describe(identity: Identity) -> dict[str, Any]:
    return {"model": identity.model, "fingerprint": identity.fingerprint or None,
            "first_seen": identity.first_seen.isoformat(), "last_seen": identity.last_seen.isoformat(),
            "calls": identity.calls}


def result_of(change: Change) -> DriftResult:
    old, new = change.old, change.new
    key = f"model-identity/{change.app_id}/{change.requested_model}/{old.model}/{old.fingerprint}" \
          f"/{new.model}/{new.fingerprint}"
    name_old = old.model + (f" ({old.fingerprint})" if old.fingerprint else "")
    name_new = new.model + (f" ({new.fingerprint})" if new.fingerprint else "")
    return DriftResult(
        result_id=ids.uuid_from(key),
        ts=new.first_seen,
        app_id=change.app_id,
        model=change.requested_model,
        window_start=old.first_seen,
        window_end=max(new.first_seen, new.last_seen),
        signal=SIGNAL,
        method=METHOD,
        statistic=new.calls / max(1, old.calls + new.calls),
        drifted=True,
        reference_size=old.calls,
        current_size=new.calls,
        reference_id=f"identity:{name_old}"[:1024],
        examples=[new.first_event],
        details={"requested_model": change.requested_model, "old": _describe(old), "new": _describe(new),
                 "message": f"{change.requested_model} was answered by {name_old}, then by {name_new} "
                            f"from {new.first_seen.isoformat()}"},
    )


class IdentityWatch:
    """Polls the rollup and produces a result per identity change (at-least-once; the
    sink keeps one per result id)."""

    def __init__(self, client: Any, producer: AIOKafkaProducer, topic_prefix: str, *, poll_s: float,
                 lookback: timedelta) -> None:
        self.client = client
        self.producer = producer
        self.topic = topics.resolve(topic_prefix, topics.DRIFT)
        self.poll_s = poll_s
        self.lookback = lookback
        self.produced = 0
        self._sent: set[uuid.UUID] = set()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lookout-model-identity")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def problem(self) -> str | None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            return f"model identity watch stopped: {self._task.exception()!r}"
        return None

    async def poll(self) -> list[DriftResult]:
        since = datetime.now(UTC) - self.lookback
        found = await asyncio.to_thread(read_identities, self.client, since)
        results = [result_of(change) for change in changes(found)]
        fresh = [r for r in results if r.result_id not in self._sent]
        for result in fresh:
            key = f"{result.app_id}/{result.model}".encode()
            await (await self.producer.send(self.topic, result.to_bytes(), key=key))
            self._sent.add(result.result_id)
            self.produced += 1
            log.warning("model identity changed: %s: %s", result.app_id, result.details["message"])
        return fresh

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # ClickHouse or Kafka away: the next poll tries again
                log.warning("model identity poll failed: %r", exc)
            await asyncio.sleep(self.poll_s)
