"""Silences: while one is active, the notifications of the instances it matches are held
back (recorded in the history, not sent). A silence names one rule and, optionally, label
values that must all be equal (app_id=support-bot, model=gpt-4o-mini); it covers that rule's
DatasourceError instance too. When it ends (or is expired early) an instance still firing
is notified then, as Alertmanager does; one that resolved meanwhile is not."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from .engine import Instance


@dataclass(frozen=True)
class Silence:
    silence_id: uuid.UUID
    rule_uid: str
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    version: int = field(default=0, compare=False)

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at

    def matches(self, inst: Instance, at: datetime) -> bool:
        return (self.active(at) and inst.rule_uid == self.rule_uid
                and all(inst.labels.get(k) == v for k, v in self.matchers.items()))

    @property
    def app_id(self) -> str:
        return self.matchers.get("app_id", "")

    def to_json(self, at: datetime) -> dict:
        return {
            "silence_id": str(self.silence_id), "rule_uid": self.rule_uid, "matchers": self.matchers,
            "starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat(),
            "created_by": self.created_by, "comment": self.comment, "created_at": self.created_at.isoformat(),
            "active": self.active(at),
        }


def silenced_by(silences: list[Silence], inst: Instance, at: datetime) -> Silence | None:
    return next((s for s in silences if s.matches(inst, at)), None)
