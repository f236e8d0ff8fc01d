"""Alert rules as code: Grafana unified-alerting provisioning, built from one spec.

Each rule's query (ref A) returns one row per alert instance: its string columns become
the instance's labels and the numeric column `value` is tested by a threshold expression
(ref B), so one rule pages separately for each app/model. Alert queries have no dashboard
variables; the plugin's time macros cover the rule's relative window.

`evaluate` applies the same threshold to rows in Python, so tests can show a rule fires on
data that crosses it and stays quiet below it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import yaml
from grafana_foundation_sdk.builders import alerting, expr
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import alerting as alerting_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from .chquery import DATASOURCE_TYPE, DATASOURCE_UID, ClickHouseQueryBuilder
from .panels import TOXIC_AT
from .settings import DashboardSettings

Op = Literal["gt", "gte", "lt"]

FOLDER = "Lookout"
GROUP = "lookout"
GROUP_INTERVAL = "1m"


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
        # Tokens per minute of the last 10 minutes over the average minute of the window
        # before them; streams without a baseline stay out (no row, no alert).
        sql=(
            "WITH $__toTime - INTERVAL 10 MINUTE AS recent_from "
            "SELECT app_id, model, (sumIf(tokens, minute >= recent_from) / 10) / greatest(sumIf(tokens, "
            "minute < recent_from) / greatest(dateDiff('minute', $__fromTime, recent_from), 1), 1) AS value "
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
        .no_data_state("OK")  # quiet streams are not an incident; the traffic panels show them
        .exec_err_state("Error")
        .labels({"team": "lookout", "severity": "page"})
        .annotations({"summary": rule.summary, "runbook": rule.runbook, "panel": rule.panel_id})
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
    return "# Generated by dashboards/generate.py from dashboards/alerts.py: do not edit.\n" + body


@dataclass(frozen=True)
class Firing:
    labels: dict[str, str]
    value: float


def evaluate(rule: AlertRule, settings: DashboardSettings, columns: Sequence[str], rows: Sequence[Sequence]) -> list[
    Firing
]:
    """The alert instances Grafana's threshold expression would put in Alerting for these rows."""
    threshold = rule.threshold(settings)
    at = list(columns).index("value")
    firing = []
    for row in rows:
        value = row[at]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        value = float(value)
        hit = {"gt": value > threshold, "gte": value >= threshold, "lt": value < threshold}[rule.op]
        if hit:
            firing.append(Firing({c: str(row[list(columns).index(c)]) for c in rule.label_columns}, value))
    return firing
