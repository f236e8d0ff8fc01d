"""The alerts API: what fires (read scope, the key's apps), silences and acknowledgements
(admin scope), and where notifications stand (admin).

A key bound to one app sees and acts on that app's instances only; instances without an
app (the cost-burn rule, a rule whose query failed) need a key for every app (`*`). A
silence from an app-bound key must name its app (matchers.app_id) on a per-app rule.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from lookout.core.api_errors import ApiError, error_router, scope_dependency
from lookout.core.auth import ALL_APPS, ApiKey
from lookout.core.ids import uuid7
from lookout.dashboards import alerts

from .engine import Instance
from .service import AlertService
from .silences import Silence
from .store import Apps

MAX_SILENCE = timedelta(days=90)
MAX_MATCHERS = 10
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_FINGERPRINT = r"^[0-9a-f]{16}$"
_RULE_UIDS = [r.uid for r in alerts.RULES]
_RULE_ENUM: JsonDict = {"enum": list(_RULE_UIDS)}  # listed in the OpenAPI, so clients (and the fuzz) know them

Fingerprint = Annotated[str, PathParam(pattern=_FINGERPRINT, description="An alert instance's fingerprint.")]


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_uid: str = Field(json_schema_extra=_RULE_ENUM, max_length=128,
                          description="The rule whose notifications are held back.")
    matchers: dict[str, Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=dict, description="Labels that must all be equal (e.g. app_id, model); none: every "
        "instance of the rule.")
    ends_at: AwareDatetime | None = Field(default=None, description="When the silence ends (ISO 8601 with a zone).")
    duration_s: int | None = Field(default=None, ge=60, le=int(MAX_SILENCE.total_seconds()),
                                   description="Or: how long from now, in seconds.")
    comment: str = Field(min_length=1, max_length=500, description="Why (it is shown with the silence).")

    @field_validator("matchers")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_MATCHERS:
            raise ValueError(f"at most {MAX_MATCHERS} matchers")
        bad = [k for k in value if not _LABEL.match(k)]
        if bad:
            raise ValueError(f"label names are letters, digits and _ (not starting with a digit): {bad[0][:64]!r}")
        for v in value.values():
            _utf8(v)
        return value

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str) -> str:
        return _utf8(value)

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration_s is None):
            raise ValueError("give exactly one of ends_at and duration_s")
        return self


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=500, description="What is being done.")

    @field_validator("comment")
    @classmethod
    def _comment(cls, value: str) -> str:
        return _utf8(value)


def _utf8(value: str) -> str:
    """JSON may carry a lone surrogate (\\ud800), which no store can hold: the caller's 422."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


def _apps(key: ApiKey) -> Apps:
    return None if key.app_id == ALL_APPS else frozenset({key.app_id})


def _who(key: ApiKey) -> str:
    return f"key {key.key_id}" + (f" ({key.name})" if key.name else "")


def instance_json(inst: Instance) -> dict:
    rule = alerts.rule(inst.rule_uid) if inst.rule_uid in _RULE_UIDS else None
    return {
        "rule_uid": inst.rule_uid, "title": rule.title if rule else inst.rule_uid, "fingerprint": inst.fingerprint,
        "app_id": inst.app_id or None, "labels": inst.labels, "state": str(inst.state), "value": inst.value,
        "summary": inst.summary, "runbook": rule.runbook if rule else "", "panel": rule.panel_id if rule else "",
        "active_at": inst.active_at.isoformat() if inst.active_at else None,
        "fired_at": inst.fired_at.isoformat() if inst.fired_at else None,
        "acked_by": inst.acked_by or None, "acked_at": inst.acked_at.isoformat() if inst.acked_at else None,
        "ack_comment": inst.ack_comment or None, "dedup_key": inst.dedup_key, "error": inst.error or None,
    }


def build_router(service: AlertService) -> APIRouter:
    router = error_router(tags=["alerts"])
    reader = scope_dependency(lambda: service.keys, "read")
    admin = scope_dependency(lambda: service.keys, "admin")

    def store():
        if service.store is None:
            raise ApiError(503, "the alert service is starting; retry shortly", headers={"Retry-After": "1"})
        return service.store

    def may_touch(key: ApiKey, app_id: str) -> None:
        if key.app_id != ALL_APPS and key.app_id != app_id:
            # Another app's instance reads as missing: its existence is not this key's business.
            raise ApiError(404, "no such alert instance", field="fingerprint")

    @router.get("/v1/alerts")
    async def active(key: ApiKey = Depends(reader)) -> dict:
        """Pending, Alerting and Error instances of the key's apps, the firing ones first."""
        found = await store().active_instances(_apps(key))
        return {"alerts": [instance_json(i) for i in found]}

    @router.get("/v1/alerts/rules")
    async def rules(key: ApiKey = Depends(reader)) -> dict:
        """The rules, their thresholds (LOOKOUT_ALERT_*) and when each last ran."""
        s = service.settings
        return {"interval": alerts.GROUP_INTERVAL, "receivers": sorted(service.receivers), "rules": [{
            "uid": r.uid, "title": r.title, "op": r.op, "threshold": r.threshold(s),
            "threshold_setting": f"LOOKOUT_{r.threshold_setting.upper()}", "for": r.pending, "window_s": r.window_s,
            "labels": list(r.label_columns), "per_app": r.per_app, "summary": r.summary, "runbook": r.runbook,
            "panel": r.panel_id,
            "last_evaluation": service.last_evaluation[r.uid].isoformat() if r.uid in service.last_evaluation else None,
            "last_error": service.last_error.get(r.uid) if key.app_id == ALL_APPS else None,
        } for r in service.rules]}

    @router.get("/v1/alerts/history")
    async def history(
        key: ApiKey = Depends(reader),
        rule_uid: Annotated[str | None, Query(max_length=128, json_schema_extra=_RULE_ENUM)] = None,
        fingerprint: Annotated[str | None, Query(pattern=_FINGERPRINT)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict:
        """Transitions, acknowledgements and held-back notifications, newest first."""
        rows = await store().history(_apps(key), rule_uid=rule_uid, fingerprint=fingerprint, limit=limit)
        return {"history": rows}

    @router.post("/v1/alerts/{fingerprint}/ack")
    async def acknowledge(fingerprint: Fingerprint, body: AckIn, key: ApiKey = Depends(admin)) -> dict:
        """Record that someone is on it (PagerDuty's incident is acknowledged too)."""
        found = service.find(fingerprint)
        if found is None or not found[1].firing:
            raise ApiError(404, "no firing alert instance with this fingerprint", field="fingerprint")
        may_touch(key, found[1].app_id)
        acked = await service.acknowledge(fingerprint, _who(key), body.comment)
        if acked is None:  # resolved meanwhile
            raise ApiError(409, "the alert instance resolved before the acknowledgement", field="fingerprint")
        return {"alert": instance_json(acked)}

    @router.get("/v1/alerts/silences")
    async def silences(key: ApiKey = Depends(reader),
                       include_ended: Annotated[bool, Query(description="also silences that ended")] = False) -> dict:
        now = service.clock.now()
        found = await store().silences(current_at=None if include_ended else now, apps=_apps(key))
        return {"silences": [s.to_json(now) for s in found]}

    @router.post("/v1/alerts/silences", status_code=201)
    async def silence(body: SilenceIn, key: ApiKey = Depends(admin)) -> dict:
        """Hold back the notifications of a rule's instances (those matching the labels) until it ends."""
        rule = service.rule(body.rule_uid)
        if rule is None:
            raise ApiError(422, f"no rule {body.rule_uid[:128]!r}", field="rule_uid")
        if key.app_id != ALL_APPS:
            if not rule.per_app:
                raise ApiError(403, f"{rule.title} is not kept per app: only a key for every app may silence it",
                               field="rule_uid")
            if body.matchers.get("app_id") != key.app_id:
                raise ApiError(403, f"this API key is bound to app '{key.app_id}': the silence must match "
                               f"app_id={key.app_id}", field="matchers")
        now = service.clock.now()
        ends = body.ends_at or now + timedelta(seconds=body.duration_s or 0)
        if ends <= now:
            raise ApiError(422, "ends_at is in the past", field="ends_at")
        if ends - now > MAX_SILENCE:
            raise ApiError(422, f"a silence lasts at most {MAX_SILENCE.days} days", field="ends_at")
        s = Silence(uuid7(), rule.uid, dict(body.matchers), now, ends, _who(key), body.comment, now)
        await service.add_silence(s)
        return {"silence": s.to_json(now)}

    @router.delete("/v1/alerts/silences/{silence_id}")
    async def expire(silence_id: uuid.UUID, key: ApiKey = Depends(admin)) -> dict:
        """End a silence now; what it held back and still fires is notified at once."""
        found = await store().silences(silence_id=silence_id, apps=_apps(key))
        if not found:
            raise ApiError(404, "no such silence", field="silence_id")
        ended = await service.expire_silence(found[0])
        return {"silence": ended.to_json(service.clock.now())}

    @router.get("/v1/alerts/notifications")
    async def notifications(
        key: ApiKey = Depends(admin),
        status: Annotated[Literal["pending", "sent", "failed"] | None, Query()] = None,
        fingerprint: Annotated[str | None, Query(pattern=_FINGERPRINT)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict:
        """Where notifications stand: pending ones with their next attempt, failed ones with why."""
        found = await store().notifications(status=status, apps=_apps(key), fingerprint=fingerprint, limit=limit)
        return {"notifications": [n.to_json() for n in found[:limit]]}

    return router
