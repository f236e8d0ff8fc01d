"""The alert state machine, as Grafana's state manager runs it for the rules of
lookout.dashboards.alerts (no I/O here: the service feeds it query results and stores what it
returns).

Per evaluation of a rule at time `at`, for each row (series) of its query:

- the threshold holds: Normal -> Pending (its `for` starts at `at`), or straight to
  Alerting when `for` is 0; Pending -> Alerting once `at - active_at >= for`;
- it does not: Pending -> Normal (nothing was sent), Alerting -> Normal (resolved);
- a series that was Pending or Alerting and is missing from the rows (a stream fell under
  the rule's minimum, or stopped) keeps its state for one evaluation and is resolved on the
  second in a row (Grafana's MissingSeries, 2 evaluations by default).

No rows at all is the rule's no-data state, OK in our spec (lookout.dashboards.alerts.NO_DATA_STATE):
nothing new fires, and the series seen before are missing, as above.

A query that fails is the rule's error state, Error in our spec: one instance per rule,
labelled alertname=DatasourceError with the rule's name, goes to Error at once (as Grafana
does for the Error option; the `for` applies to the condition, not to failures) and pages
like an alert; it is resolved by the next evaluation that works. The series instances keep
their state meanwhile (nothing was learned about them) and are not counted missing.

Every instance carries Grafana's labels: alertname (the rule's title), grafana_folder, the
spec's rule labels and its query's label columns. Its fingerprint (a hash of the rule uid
and those labels) names it in storage, in the API and in PagerDuty's dedup key.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from lookout.core.ids import uuid7
from lookout.dashboards import alert_templates, alerts
from lookout.dashboards.alerts import AlertRule, Series

# Evaluations a series may be missing before it is resolved (Grafana's default).
MISSING_TO_RESOLVE = 2
ERROR_ALERTNAME = "DatasourceError"
MAX_ERROR_CHARS = 500
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NIL = uuid.UUID(int=0)


class State(StrEnum):
    NORMAL = "Normal"
    PENDING = "Pending"
    ALERTING = "Alerting"
    ERROR = "Error"


FIRING = frozenset({State.ALERTING, State.ERROR})
ACTIVE = frozenset({State.PENDING, State.ALERTING, State.ERROR})


def fingerprint(rule_uid: str, labels: dict[str, str]) -> str:
    text = json.dumps([rule_uid, sorted(labels.items())], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Instance:
    """One alert instance: a rule and one label set."""

    rule_uid: str
    fingerprint: str
    labels: dict[str, str]
    app_id: str  # '' for an instance that is not one app's (a rule without app_id, a failed query)
    state: State = State.NORMAL
    value: float | None = None
    error: str = ""
    summary: str = ""
    active_at: datetime | None = None  # the condition (or failure) first held in this episode
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    last_eval: datetime = EPOCH
    missing: int = 0
    episode: uuid.UUID = NIL  # one per Pending/Alerting episode: acks and notifications belong to it
    notified: tuple[str, ...] = ()  # receivers that were sent this episode's firing notification
    acked_by: str = ""
    acked_at: datetime | None = None
    ack_comment: str = ""

    @property
    def firing(self) -> bool:
        return self.state in FIRING

    @property
    def dedup_key(self) -> str:
        """PagerDuty's dedup key: a trigger and its resolve share it, and it is stable across
        restarts (a re-sent trigger lands on the same incident)."""
        return f"lookout/{self.rule_uid}/{self.fingerprint}"

    def snapshot(self) -> Instance:
        return copy.deepcopy(self)


@dataclass(frozen=True)
class Transition:
    instance: Instance  # as it is after the transition
    from_state: State
    to_state: State
    at: datetime
    reason: str

    @property
    def fired(self) -> bool:
        return self.to_state in FIRING and self.from_state not in FIRING

    @property
    def resolved(self) -> bool:
        return self.from_state in FIRING and self.to_state == State.NORMAL


@dataclass(frozen=True)
class Rows:
    """A query that worked: its rows as the threshold reads them."""

    series: list[Series]


@dataclass(frozen=True)
class Failed:
    error: str


Result = Rows | Failed


@dataclass
class Outcome:
    instances: dict[str, Instance]  # the rule's Pending/Alerting/Error instances after the step
    changed: list[Instance] = field(default_factory=list)  # to store (Normal ones included, once)
    transitions: list[Transition] = field(default_factory=list)


def instance_labels(rule: AlertRule, series_labels: dict[str, str]) -> dict[str, str]:
    return {"alertname": rule.title, "grafana_folder": alerts.FOLDER, **alerts.RULE_LABELS, **series_labels}


def error_labels(rule: AlertRule) -> dict[str, str]:
    return {"alertname": ERROR_ALERTNAME, "grafana_folder": alerts.FOLDER, **alerts.RULE_LABELS,
            "rulename": rule.title, "rule_uid": rule.uid, "datasource_uid": alerts.DATASOURCE_UID, "ref_id": "A"}


def summary(rule: AlertRule, inst: Instance) -> str:
    if inst.labels.get("alertname") == ERROR_ALERTNAME:
        return f"{rule.title} could not be evaluated: {inst.error}"
    return alert_templates.render(rule.summary, alert_templates.Context(inst.labels, inst.value, inst.firing))


def step(rule: AlertRule, known: dict[str, Instance], result: Result, at: datetime) -> Outcome:
    """One evaluation of `rule` at `at`: the instances after it, what changed, the transitions."""
    if alerts.NO_DATA_STATE != "OK" or alerts.EXEC_ERR_STATE != "Error":
        raise NotImplementedError("the evaluator implements no_data_state OK and exec_err_state Error")
    out = Outcome({fp: i.snapshot() for fp, i in known.items()})
    for_s = rule.pending_s
    err_labels = error_labels(rule)
    err_fp = fingerprint(rule.uid, err_labels)

    def move(inst: Instance, to: State, reason: str) -> None:
        before = inst.state
        inst.state = to
        if to == State.NORMAL:
            inst.resolved_at = at if before in FIRING else inst.resolved_at
        out.transitions.append(Transition(inst.snapshot(), before, to, at, reason))

    def start_episode(inst: Instance) -> None:
        inst.active_at, inst.fired_at, inst.resolved_at = at, None, None
        inst.episode, inst.notified = uuid7(int(at.timestamp() * 1000)), ()
        inst.acked_by, inst.acked_at, inst.ack_comment = "", None, ""

    if isinstance(result, Failed):
        inst = out.instances.get(err_fp) or Instance(rule.uid, err_fp, err_labels, "")
        inst.error = result.error[:MAX_ERROR_CHARS]
        inst.value, inst.last_eval, inst.missing = None, at, 0
        if inst.state != State.ERROR:
            start_episode(inst)
            inst.fired_at = at
            move(inst, State.ERROR, "the query failed")
        inst.summary = summary(rule, inst)
        out.instances[err_fp] = inst
        out.changed.append(inst)
        return out

    if err_fp in out.instances:  # the query works again
        inst = out.instances.pop(err_fp)
        inst.last_eval, inst.error = at, ""
        move(inst, State.NORMAL, "the query works again")
        inst.summary = summary(rule, inst)
        out.changed.append(inst)

    seen: set[str] = set()
    for s in result.series:
        labels = instance_labels(rule, s.labels)
        fp = fingerprint(rule.uid, labels)
        seen.add(fp)
        inst = out.instances.get(fp)
        if not s.firing:
            if inst is None:
                continue  # Normal and not tracked
            inst.value, inst.last_eval, inst.missing = s.value, at, 0
            move(inst, State.NORMAL, "recovered" if inst.state in FIRING else "the condition no longer holds")
        else:
            if inst is None:
                inst = Instance(rule.uid, fp, labels, labels.get("app_id", "") if rule.per_app else "")
                out.instances[fp] = inst
            inst.value, inst.last_eval, inst.missing = s.value, at, 0
            if inst.state == State.NORMAL:
                start_episode(inst)
                if for_s > 0:
                    move(inst, State.PENDING, "the condition holds")
                else:
                    inst.fired_at = at
                    move(inst, State.ALERTING, "the condition holds")
            elif inst.state == State.PENDING and inst.active_at is not None and \
                    (at - inst.active_at).total_seconds() >= for_s:
                inst.fired_at = at
                move(inst, State.ALERTING, f"the condition held for {rule.pending}")
        inst.summary = summary(rule, inst)
        out.changed.append(inst)

    for fp, inst in list(out.instances.items()):
        if fp in seen or fp == err_fp or inst.state == State.NORMAL:
            continue
        inst.missing += 1
        if inst.missing >= MISSING_TO_RESOLVE:
            inst.last_eval = at
            move(inst, State.NORMAL, "MissingSeries: the series left the query's rows")
        out.changed.append(inst)

    out.instances = {fp: i for fp, i in out.instances.items() if i.state != State.NORMAL}
    return out


def with_ack(inst: Instance, by: str, comment: str, at: datetime) -> Instance:
    return replace(inst.snapshot(), acked_by=by, acked_at=at, ack_comment=comment)
