"""Alert rules as code: one spec for Grafana's unified alerting and for Lookout's own
evaluator (lookout.alerts, which `lookout up` runs, since the embedded mode has no Grafana).

Each rule's query (ref A) returns one row per alert instance: its string columns become
the instance's labels and the numeric column `value` is tested by a threshold expression
(ref B), so one rule pages separately for each app/model. Alert queries have no dashboard
variables; the plugin's time macros cover the rule's relative window.

What both modes share, from here: the SQL, the threshold (DashboardSettings, LOOKOUT_ALERT_*),
the `for` duration, the group's evaluation interval, the rule labels, the annotations
(summary, runbook, panel) and the no-data / error handling. `series` applies the threshold
to rows in Python the way Grafana's threshold expression does, so the evaluator and the
tests use the same condition; `render_yaml` writes Grafana's provisioning file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import yaml

from .datasource import DATASOURCE_TYPE, DATASOURCE_UID
from .panels import TOXIC_AT
from .settings import DashboardSettings

Op = Literal["gt", "gte", "lt"]

FOLDER = "Lookout"
GROUP = "lookout"
GROUP_INTERVAL = "1m"
# Labels every rule's instances carry besides their query's label columns; receivers route
# and rank by them (PagerDuty severity comes from `severity`).
RULE_LABELS = {"team": "lookout", "severity": "page"}
# A rule whose query returns no rows at all is OK: quiet streams are not an incident (the
# traffic panels show them). A query that fails is an Error, which pages like an alert.
NO_DATA_STATE = "OK"
EXEC_ERR_STATE = "Error"

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_s(text: str) -> float:
    """Seconds of a Grafana/Prometheus duration: `0s`, `5m`, `1h30m`."""
    parts = _DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h30m)")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


@dataclass(frozen=True)
class AlertRule:
    uid: str
    title: str
    # ClickHouse SQL with the plugin's macros; {placeholders} are filled from settings
    # (min_calls, min_votes, min_pairs, daily_budget_usd) when the file is generated.
    sql: str
    label_columns: tuple[str, ...]
    threshold_setting: str  # the DashboardSettings field holding the threshold
    op: Op
    window_s: int  # the query's relative time range: [now - window_s, now]
    pending: str  # Grafana's `for`: how long it must hold before it fires
    summary: str
    runbook: str  # what to look at first
    panel_id: str  # the dashboard panel that shows it

    def threshold(self, settings: DashboardSettings) -> float:
        return float(getattr(settings, self.threshold_setting))

    def render_sql(self, settings: DashboardSettings) -> str:
        return self.sql.format(
            min_calls=settings.alert_min_calls,
            min_votes=settings.alert_min_votes,
            min_pairs=settings.alert_judge_min_pairs,
            daily_budget_usd=repr(float(settings.daily_budget_usd)),
        )

    @property
    def pending_s(self) -> float:
        return duration_s(self.pending)

    @property
    def per_app(self) -> bool:
        """Whether each instance belongs to one app (its app_id label): viewers limited to
        some apps see only those apps' instances, and rules without one not at all."""
        return "app_id" in self.label_columns

    def annotations(self) -> dict[str, str]:
        return {"summary": self.summary, "runbook": self.runbook, "panel": self.panel_id}


INTERVAL_S = duration_s(GROUP_INTERVAL)

RULES: tuple[AlertRule, ...] = (
    AlertRule(
        uid="lookout-cost-burn",
        title="LLM cost burn",
        # Spend of the last hour, extrapolated to a day, as a share of the daily budget.
        sql=(
            "SELECT sumMerge(cost_usd) * 86400 / greatest(dateDiff('second', $__fromTime, $__toTime), 1) "
            "/ {daily_budget_usd} AS value FROM calls_1m WHERE $__timeFilter(minute)"
        ),
        label_columns=(),
        threshold_setting="alert_cost_burn",
        op="gt",
        window_s=3600,
        pending="10m",
        summary="Spend is on course to exceed the daily budget ({{ $values.A.Value | printf \"%.2f\" }}x).",
        runbook="Open the Spend and Traffic panels: find the app/model whose calls or tokens per call grew, "
        "then its latest deploy or prompt_version.",
        panel_id="cost",
    ),
    AlertRule(
        uid="lookout-token-spike",
        title="LLM token spike",
        # Tokens per minute of the last 10 minutes over the average minute before them, since
        # the stream began within the window (a stream an hour old is not compared with a day
        # of silence); streams without a baseline stay out (no row, no alert).
        sql=(
            "WITH $__toTime - INTERVAL 10 MINUTE AS recent_from "
            "SELECT app_id, model, (sumIf(tokens, minute >= recent_from) / 10) / greatest(sumIf(tokens, "
            "minute < recent_from) / greatest(dateDiff('minute', greatest(min(minute), $__fromTime), recent_from), "
            "1), 1) AS value "
            "FROM (SELECT app_id, model, minute, sumMerge(tokens_in) + sumMerge(tokens_out) AS tokens, "
            "countMerge(calls) AS calls FROM calls_1m WHERE $__timeFilter(minute) GROUP BY app_id, model, minute) "
            "GROUP BY app_id, model HAVING sumIf(calls, minute < recent_from) >= {min_calls}"
        ),
        label_columns=("app_id", "model"),
        threshold_setting="alert_token_spike",
        op="gt",
        window_s=86400,
        pending="5m",
        summary="{{ $labels.app_id }}/{{ $labels.model }} uses {{ $values.A.Value | printf \"%.1f\" }}x "
        "its usual tokens per minute.",
        runbook="Open Tokens in/out for the stream: a prompt change, a retry loop or one user sending huge "
        "inputs; check prompt_version and user_id of the latest calls.",
        panel_id="tokens",
    ),
    AlertRule(
        uid="lookout-error-rate",
        title="LLM error rate",
        sql=(
            "SELECT app_id, model, sumMerge(errors) / countMerge(calls) AS value FROM calls_1m "
            "WHERE $__timeFilter(minute) GROUP BY app_id, model HAVING countMerge(calls) >= {min_calls}"
        ),
        label_columns=("app_id", "model"),
        threshold_setting="alert_error_rate",
        op="gt",
        window_s=300,
        pending="5m",
        summary="{{ $labels.app_id }}/{{ $labels.model }}: {{ $values.A.Value | humanizePercentage }} of calls fail.",
        runbook="Read the error column of the stream's latest failed calls in llm_calls: provider outage, "
        "rate limit or an invalid request after a deploy; then the provider's status page.",
        panel_id="error_rate",
    ),
    AlertRule(
        uid="lookout-latency-p99",
        title="LLM latency p99",
        sql=(
            "SELECT app_id, model, quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms)[3] AS value "
            "FROM calls_1m WHERE $__timeFilter(minute) GROUP BY app_id, model "
            "HAVING countMerge(calls) >= {min_calls}"
        ),
        label_columns=("app_id", "model"),
        threshold_setting="alert_latency_p99_ms",
        op="gt",
        window_s=300,
        pending="5m",
        summary="{{ $labels.app_id }}/{{ $labels.model }}: p99 latency {{ $values.A.Value | printf \"%.0f\" }} ms.",
        runbook="Compare Latency with Tokens out: longer completions explain it; if not, the provider is "
        "slow: check its status and the time to first token.",
        panel_id="latency",
    ),
    AlertRule(
        uid="lookout-toxicity-rate",
        title="LLM toxicity rate",
        sql=(
            "SELECT app_id, model, avg(toxic) AS value FROM (SELECT app_id, model, event_id, "
            f"max(value) >= {TOXIC_AT} AS toxic FROM scores WHERE $__timeFilter(ts) AND name LIKE 'toxicity%' "
            "GROUP BY app_id, model, event_id) GROUP BY app_id, model HAVING count() >= {min_calls}"
        ),
        label_columns=("app_id", "model"),
        threshold_setting="alert_toxicity_rate",
        op="gt",
        window_s=900,
        pending="5m",
        summary="{{ $labels.app_id }}/{{ $labels.model }}: {{ $values.A.Value | humanizePercentage }} of "
        "scored calls are toxic.",
        runbook="Read the highest toxicity.* scores' calls (scores JOIN llm_calls on event_id): a jailbreak "
        "pattern in the inputs, or a model/prompt change in the outputs.",
        panel_id="toxicity_rate",
    ),
    AlertRule(
        uid="lookout-sustained-drift",
        title="Sustained drift",
        # Consecutive drifted windows, counted back from the latest one of each signal.
        sql=(
            "SELECT app_id, model, signal, toFloat64(if(k = 0, length(ds), k - 1)) AS value FROM ("
            "SELECT app_id, model, signal, arrayMap(x -> x.2, arrayReverseSort(x -> x.1, groupArray((t, d)))) AS ds, "
            "arrayFirstIndex(x -> x = 0, ds) AS k FROM (SELECT app_id, model, signal, result_id, max(ts) AS t, "
            "max(drifted) AS d FROM drift_results WHERE $__timeFilter(ts) "
            "GROUP BY app_id, model, signal, result_id) GROUP BY app_id, model, signal)"
        ),
        label_columns=("app_id", "model", "signal"),
        threshold_setting="alert_drift_windows",
        op="gte",
        window_s=21600,
        pending="0s",
        summary="{{ $labels.app_id }}/{{ $labels.model }}: {{ $labels.signal }} drifted in "
        "{{ $values.A.Value }} windows in a row.",
        runbook="Open Drift state and the drift result's examples: new topics or a new prompt_version in the "
        "inputs? If quality scores fell too, expect a retrain run.",
        panel_id="drift_state",
    ),
    AlertRule(
        uid="lookout-thumbs-down",
        title="Thumbs-down surge",
        sql=(
            # Each author's latest vote per call of each app, like the Thumbs-down panel (two
            # apps' calls may share an event_id, so the vote's key includes the app).
            "SELECT app_id, countIf(thumbs = -1) / count() AS value FROM ("
            "SELECT f.app_id AS app_id, max(f.ts) AS ts, argMax(f.thumbs, (f.ts, f.feedback_id)) AS thumbs "
            "FROM feedback AS f WHERE (f.app_id, f.event_id) IN (SELECT app_id, event_id FROM feedback "
            "WHERE $__timeFilter(ts)) GROUP BY f.app_id, f.event_id, f.source, f.author) "
            "WHERE $__timeFilter(ts) AND thumbs IS NOT NULL GROUP BY app_id "
            "HAVING count() >= {min_votes}"
        ),
        label_columns=("app_id",),
        threshold_setting="alert_thumbs_down_rate",
        op="gt",
        window_s=1800,
        pending="5m",
        summary="{{ $labels.app_id }}: {{ $values.A.Value | humanizePercentage }} of votes are thumbs-down.",
        runbook="Read the down-voted calls and reviewer labels in the review queue; compare model_version "
        "and prompt_version with the last good hour.",
        panel_id="thumbs_down",
    ),
    AlertRule(
        uid="lookout-judge-agreement",
        title="Judge disagrees with reviewers",
        # The latest agreement row of each app/rubric@version/judge model (the judge writes
        # one per series every few minutes, over its rolling window of reviews); a kappa
        # from too few reviewed calls, or undefined, raises nothing.
        sql=(
            "SELECT app_id, rubric, rubric_version, evaluator, last.2 AS value FROM ("
            "SELECT app_id, rubric, rubric_version, evaluator, "
            "argMax((pairs, kappa), (window_end, computed_at)) AS last FROM judge_agreement "
            "WHERE $__timeFilter(window_end) GROUP BY app_id, rubric, rubric_version, evaluator) "
            "WHERE last.1 >= {min_pairs} AND isNotNull(last.2)"
        ),
        label_columns=("app_id", "rubric", "rubric_version", "evaluator"),
        threshold_setting="alert_judge_kappa",
        op="lt",
        window_s=3600,
        pending="15m",
        summary="{{ $labels.app_id }}: the judge's {{ $labels.rubric }}@{{ $labels.rubric_version }} "
        "({{ $labels.evaluator }}) agrees with reviewers at kappa {{ $values.A.Value | printf \"%.2f\" }}.",
        runbook="Open Judge agreement: compare the judge's and the reviewers' pass rates (kappa is low when one "
        "of them passes nearly everything); then read the review queue's judge_vs_thumbs and judge_unsure tasks "
        "of the app. A new rubric_version or judge model is the usual cause: until the rubric or the model is "
        "fixed, do not act on that rubric's scores (its panel, its retrain policies).",
        panel_id="judge_agreement",
    ),
)


def _rule_json(rule: AlertRule, settings: DashboardSettings, datasource_uid: str) -> dict:
    # Only generating Grafana's files needs the SDK (the `generate` extra); the evaluator does not.
    from grafana_foundation_sdk.builders import alerting, expr
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import alerting as alerting_models
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    from .chquery import ClickHouseQueryBuilder

    query = (
        alerting.Query("A")
        .datasource_uid(datasource_uid)
        .relative_time_range(alerting_models.RelativeTimeRange(from_val=rule.window_s, to=0))
        .model(ClickHouseQueryBuilder("A", rule.render_sql(settings), table_format=True))
    )
    threshold = (
        alerting.Query("B")
        .datasource_uid("__expr__")
        .model(
            expr.TypeThreshold()
            .ref_id("B")
            .datasource(DataSourceRef(type_val="__expr__", uid="__expr__"))
            .expression("A")
            .conditions([
                expr.ExprTypeThresholdConditions().evaluator(
                    expr.ExprTypeThresholdConditionsEvaluator().type(rule.op).params([rule.threshold(settings)])
                )
            ])
        )
    )
    built = (
        alerting.Rule(rule.title)
        .uid(rule.uid)
        .condition("B")
        .queries([query, threshold])
        .for_val(rule.pending)
        .no_data_state(NO_DATA_STATE)
        .exec_err_state(EXEC_ERR_STATE)
        .labels(dict(RULE_LABELS))
        .annotations(rule.annotations())
        .build()
    )
    data = json.loads(json.dumps(built, cls=JSONEncoder))
    # Rule-level fields of the HTTP API that a provisioning file sets on the group instead.
    for key in ("folderUID", "orgID", "ruleGroup"):
        data.pop(key, None)
    return data


def provisioning(settings: DashboardSettings, *, datasource_uid: str = DATASOURCE_UID) -> dict:
    return {
        "apiVersion": 1,
        "groups": [
            {
                "orgId": 1,
                "name": GROUP,
                "folder": FOLDER,
                "interval": GROUP_INTERVAL,
                "rules": [_rule_json(r, settings, datasource_uid) for r in RULES],
            }
        ],
    }


def render_yaml(
    settings: DashboardSettings, *, datasource_uid: str = DATASOURCE_UID, datasource_type: str = DATASOURCE_TYPE
) -> str:
    del datasource_type  # the query model carries it (chquery)
    body = yaml.safe_dump(provisioning(settings, datasource_uid=datasource_uid), sort_keys=True, width=10_000)
    return "# Generated by lookout.dashboards.generate from lookout.dashboards.alerts: do not edit.\n" + body


@dataclass(frozen=True)
class Firing:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One row of a rule's query: an alert instance's labels, its value, and whether the
    threshold holds for it."""

    labels: dict[str, str]
    value: float | None
    firing: bool


class QueryShapeError(ValueError):
    """The rows cannot be read as alert instances (missing column, repeated labels)."""


def series(rule: AlertRule, settings: DashboardSettings, columns: Sequence[str], rows: Sequence[Sequence]) -> list[
    Series
]:
    """Each row as Grafana's threshold expression sees it. A null or NaN value holds no
    threshold (the instance is Normal); two rows with the same labels are an error, as in
    Grafana (one instance per label set)."""
    if not rows:
        return []  # no data (a client may not name the columns of an empty result)
    threshold = rule.threshold(settings)
    names = list(columns)
    missing = [c for c in (*rule.label_columns, "value") if c not in names]
    if missing:
        raise QueryShapeError(f"{rule.uid}: the query returned no column {missing[0]!r}")
    at = names.index("value")
    label_at = [(c, names.index(c)) for c in rule.label_columns]
    out: list[Series] = []
    seen: set[tuple[str, ...]] = set()
    for row in rows:
        labels = {c: str(row[i]) for c, i in label_at}
        key = tuple(labels.values())
        if key in seen:
            raise QueryShapeError(f"{rule.uid}: two rows with the labels {labels}")
        seen.add(key)
        raw = row[at]
        value = None if raw is None or (isinstance(raw, float) and math.isnan(raw)) else float(raw)
        hit = value is not None and {"gt": value > threshold, "gte": value >= threshold,
                                     "lt": value < threshold}[rule.op]
        out.append(Series(labels, value, hit))
    return out


def evaluate(rule: AlertRule, settings: DashboardSettings, columns: Sequence[str], rows: Sequence[Sequence]) -> list[
    Firing
]:
    """The alert instances Grafana's threshold expression would put in Alerting for these rows."""
    return [Firing(s.labels, s.value) for s in series(rule, settings, columns, rows)
            if s.firing and s.value is not None]


_BY_UID = {r.uid: r for r in RULES}
if len(_BY_UID) != len(RULES):
    raise RuntimeError("duplicate alert rule uids")


def rule(uid: str) -> AlertRule:
    return _BY_UID[uid]
