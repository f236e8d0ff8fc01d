"""The one panel specification: Grafana's dashboard and the embedded overview page both draw it.

Each panel's SQL is written for the grafana-clickhouse-datasource plugin: its macros
($__timeFilter(col), $__fromTime, $__toTime, $__timeInterval(col), $__interval_s,
$__conditionalAll(...)) and the dashboard's template variables ${app}, ${model},
${environment} (multi-value, with All) and ${daily_budget} (a constant). macros.py expands
them the way the plugin does, so tests and the overview run exactly this text.

Variable values are text written by the apps' users (model names, environments), so no
value is ever quoted into SQL: every reference is `'${var:percentencode}'`, whose text holds
only A-Z a-z 0-9 - _ . ~ and %XX, and ClickHouse decodes it back (`_values`). Grafana's
quoting formats cannot be used: `singlequote` and `sqlstring` leave a backslash alone, so
a value ending in one escapes the closing quote. A list is encoded as `{a,b}`, so a value
holding a comma (or wrapped in braces) cannot be told apart from a list: the variable
queries do not offer such values (they still count under All).

Rows of two apps may share an event_id, so every join or grouping by event_id is by
(app_id, event_id).

Call metrics read the per-minute rollup calls_1m, so a panel stays fast on months of calls;
the version comparison reads versions_1m (calls, votes and scores per served version).
Tables without a rollup (scores, feedback, drift_results, retrain_runs, dead_letters) are
ReplacingMergeTree keyed by id, and a replayed row may stay doubled until a merge: counts
here are distinct ids, not rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["timeseries", "stat", "table"]
ColumnType = Literal["time", "string", "number"]


@dataclass(frozen=True)
class Axis:
    """A value axis' bounds, the same in Grafana (min, max, custom.axisSoftMax) and on the
    overview (uPlot's range, computed the way Grafana computes it): `min` and `max` are
    hard, the axis never passes them; `soft_max` is the least it shows (so a flat 0 % is
    not drawn on an axis to 100 %, nor 0.1 % as a full-height swing), more when the data
    goes higher, up to `max`."""

    min: float | None = None
    max: float | None = None
    soft_max: float | None = None


# Shares are 0..1 (Grafana's percentunit draws them as 0-100 %); every other measure here is
# a count, a duration, money or a score, none of them negative.
PERCENT_AXIS = Axis(min=0.0, max=1.0, soft_max=0.1)
NON_NEGATIVE_AXIS = Axis(min=0.0)


def axis_for(unit: str) -> Axis:
    return PERCENT_AXIS if unit == "percentunit" else NON_NEGATIVE_AXIS


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    # A timeseries column in another unit than the panel's is drawn on a second axis; a
    # table column is shown in it.
    unit: str | None = None

    @property
    def axis(self) -> Axis | None:
        return axis_for(self.unit) if self.unit else None

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "unit": self.unit,
                "axis": asdict(self.axis) if self.axis else None}


@dataclass(frozen=True)
class Panel:
    id: str
    title: str
    kind: Kind
    sql: str
    columns: tuple[Column, ...]
    unit: str  # a Grafana unit id (percentunit, ms, currencyUSD...)
    description: str
    width: int = 12  # of Grafana's 24 grid columns
    height: int = 8
    # Whether the rows belong to apps (and the SQL filters by $app). A viewer limited to some
    # apps (the overview's keys and reviewers) is shown per-app panels only.
    per_app: bool = True
    axis: Axis | None = None  # the value axis; None: the unit's (axis_for)

    @property
    def y_axis(self) -> Axis:
        return self.axis or axis_for(self.unit)

    @property
    def series_column(self) -> str | None:
        """A timeseries in long format names its series in a string column (Grafana pivots it)."""
        strings = [c.name for c in self.columns if c.type == "string"]
        return strings[0] if self.kind == "timeseries" and strings else None

    def to_json(self) -> dict:
        data = asdict(self)
        data["columns"] = [c.to_json() for c in self.columns]
        data["axis"] = asdict(self.y_axis)
        data["series_column"] = self.series_column
        return data


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    kind: Literal["query", "constant"]
    sql: str | None = None  # query variables: one column of values

    def to_json(self) -> dict:
        return asdict(self)


def _c(name: str, type_: ColumnType = "number", unit: str | None = None) -> Column:
    return Column(name, type_, unit)


def decoded_values(var: str) -> str:
    """The selected values of `var` as an Array(String), decoded from Grafana's percentencode
    text: `{a,b}` for a list (split on the encoded comma, then decoded), a bare value for a
    single string. Whatever the value, the text between the quotes cannot end the literal.
    The pattern ends in \\z, not $: the plugin splices a $__conditionalAll condition in with
    JavaScript's String.replace, which would read `$'` as "the rest of the query"."""
    return (
        "arrayMap(v -> decodeURLComponent(v), splitByString('%2C', "
        f"replaceRegexpOne('${{{var}:percentencode}}', '^%7B(.*)%7D\\\\z', '\\\\1')))"
    )


def _all_or(column: str, var: str) -> str:
    # $__conditionalAll drops the whole condition when All is selected, so the default view
    # filters nothing instead of sending every known value in an IN list.
    # has(list, column), not column IN list: ClickHouse uses the primary key for has() of a
    # constant array, not for IN over a function's result.
    return f"$__conditionalAll(has({decoded_values(var)}, {column}), ${var})"


def _calls_of(column: str, var: str) -> str:
    # Tables without the column (feedback; scores' environment) filter through the calls
    # they rate; the day of slack covers feedback that arrives after its call.
    calls = (
        "(app_id, event_id) IN (SELECT app_id, event_id FROM llm_calls WHERE ts >= $__fromTime - INTERVAL 1 DAY "
        f"AND ts <= $__toTime AND has({decoded_values(var)}, {column}))"
    )
    return f"$__conditionalAll({calls}, ${var})"


def _offerable(column: str) -> str:
    # Values a percent-encoded list cannot carry unambiguously, and '' (which
    # $__conditionalAll reads as All), are not offered as options.
    return f"{column} != '' AND NOT match({column}, '[,]|^[{{].*[}}]\\\\z')"


CALLS_FILTER = " AND ".join([
    "$__timeFilter(minute)", _all_or("app_id", "app"), _all_or("model", "model"), _all_or("environment", "environment")
])

# Sizes of a bucket from $__timeInterval; the rollup never has less than a minute.
_BUCKET_MINUTES = "(greatest($__interval_s, 60) / 60)"

# A call counts as toxic when any toxicity.* score reaches this (the detoxify labels are 0..1).
TOXIC_AT = 0.5

# Open review tasks at the end of the range, as the feedback service's queue counts them:
# the review_task_state view (migration 0015) says when each task was finished, and a task
# is open at the end of the range when it was created by then and not finished by then.
# The queue is a state, so the range's start does not cut it; environment goes through
# the calls (their day of slack before the range).
_OPEN_TASKS = (
    "SELECT app_id, event_id, min(created_at) AS created FROM review_task_state WHERE created_at <= $__toTime "
    "AND (done_at IS NULL OR done_at > $__toTime) "
    f"AND {_all_or('app_id', 'app')} AND {_all_or('model', 'model')} AND {_calls_of('environment', 'environment')} "
    "GROUP BY app_id, event_id"
)

# Each author's latest vote on each call, like the feedback_latest view but per app: two
# apps' calls may share an event_id, and their votes must not replace each other. Grouping
# the whole table cannot be pushed below the range (ts is the group's max), so it is cut to
# the calls with a vote since the range began first: a latest vote in the range is a vote
# in it, so the answer does not change (8x faster on 10M rows).
_LATEST_VOTES = (
    "(SELECT f.app_id AS app_id, f.event_id AS event_id, max(f.ts) AS ts, "
    "argMax(f.thumbs, (f.ts, f.feedback_id)) AS thumbs FROM feedback AS f "
    "WHERE (f.app_id, f.event_id) IN (SELECT app_id, event_id FROM feedback WHERE ts >= $__fromTime "
    f"AND {_all_or('app_id', 'app')}) GROUP BY f.app_id, f.event_id, f.source, f.author)"
)

_AGREEMENT_COLUMNS = ("pairs", "kappa", "judge_pass_rate", "reviewer_pass_rate", "kappa_quadratic", "spearman")


def _latest_agreement(*columns: str) -> str:
    """The columns of the latest judge_agreement row in a group, as a tuple: the judge
    rewrites a window's row when it computes it again (replicas, a restart), and until
    ClickHouse merges them the later computation counts. A tuple, because argMax of a
    Nullable column alone would skip a NULL (an undefined kappa) for an older value."""
    return f"argMax(({', '.join(columns)}), (window_end, computed_at))"

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "app", "App", "query",
        f"SELECT DISTINCT app_id FROM calls_1m WHERE $__timeFilter(minute) AND {_offerable('app_id')} ORDER BY app_id",
    ),
    Variable(
        "model", "Model", "query",
        f"SELECT DISTINCT model FROM calls_1m WHERE $__timeFilter(minute) AND {_all_or('app_id', 'app')} "
        f"AND {_offerable('model')} ORDER BY model",
    ),
    Variable(
        "environment", "Environment", "query",
        f"SELECT DISTINCT environment FROM calls_1m WHERE $__timeFilter(minute) AND {_all_or('app_id', 'app')} "
        f"AND {_all_or('model', 'model')} AND {_offerable('environment')} ORDER BY environment",
    ),
    Variable("daily_budget", "Daily budget (USD)", "constant"),
)

PANELS: tuple[Panel, ...] = (
    Panel(
        id="calls_total",
        title="Calls",
        kind="stat",
        sql=f"SELECT countMerge(calls) AS calls FROM calls_1m WHERE {CALLS_FILTER}",
        columns=(_c("calls"),),
        unit="short",
        description="LLM calls in the time range.",
        width=6, height=4,
    ),
    Panel(
        id="error_share",
        title="Error rate (range)",
        kind="stat",
        sql=f"SELECT sumMerge(errors) / countMerge(calls) AS error_rate FROM calls_1m WHERE {CALLS_FILTER}",
        columns=(_c("error_rate"),),
        unit="percentunit",
        description="Share of calls with status error over the whole range.",
        width=6, height=4,
    ),
    Panel(
        id="spend_total",
        title="Spend (range)",
        kind="stat",
        sql=f"SELECT sumMerge(cost_usd) AS spend_usd FROM calls_1m WHERE {CALLS_FILTER}",
        columns=(_c("spend_usd"),),
        unit="currencyUSD",
        description="LLM spend in the time range.",
        width=6, height=4,
    ),
    Panel(
        id="latency_p99_total",
        title="p99 latency (range)",
        kind="stat",
        sql="SELECT quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms)[3] AS p99_ms "
        f"FROM calls_1m WHERE {CALLS_FILTER}",
        columns=(_c("p99_ms"),),
        unit="ms",
        description="99th percentile latency over the whole range.",
        width=6, height=4,
    ),
    Panel(
        id="traffic",
        title="Traffic (calls/min)",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(minute) AS time, concat(app_id, '/', model) AS series, "
            f"countMerge(calls) / {_BUCKET_MINUTES} AS calls_per_min "
            f"FROM calls_1m WHERE {CALLS_FILTER} GROUP BY time, series ORDER BY time, series"
        ),
        columns=(_c("time", "time"), _c("series", "string"), _c("calls_per_min")),
        unit="reqpm",
        description="Calls per minute per app/model.",
    ),
    Panel(
        id="latency",
        title="Latency p50 / p90 / p99",
        kind="timeseries",
        sql=(
            "SELECT time, q[1] AS p50_ms, q[2] AS p90_ms, q[3] AS p99_ms FROM ("
            "SELECT $__timeInterval(minute) AS time, quantilesTDigestIfMerge(0.5, 0.9, 0.99)(latency_ms) AS q "
            f"FROM calls_1m WHERE {CALLS_FILTER} GROUP BY time) ORDER BY time"
        ),
        columns=(_c("time", "time"), _c("p50_ms"), _c("p90_ms"), _c("p99_ms")),
        unit="ms",
        description="Latency quantiles of the selected streams (t-digest states merged across them).",
    ),
    Panel(
        id="error_rate",
        title="Error rate",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(minute) AS time, concat(app_id, '/', model) AS series, "
            "sumMerge(errors) / countMerge(calls) AS error_rate "
            f"FROM calls_1m WHERE {CALLS_FILTER} GROUP BY time, series ORDER BY time, series"
        ),
        columns=(_c("time", "time"), _c("series", "string"), _c("error_rate")),
        unit="percentunit",
        description="Share of calls with status error, per app/model.",
    ),
    Panel(
        id="tokens",
        title="Tokens in / out",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(minute) AS time, sumMerge(tokens_in) AS tokens_in, "
            f"sumMerge(tokens_out) AS tokens_out FROM calls_1m WHERE {CALLS_FILTER} GROUP BY time ORDER BY time"
        ),
        columns=(_c("time", "time"), _c("tokens_in"), _c("tokens_out")),
        unit="short",
        description="Prompt and completion tokens per bucket.",
    ),
    Panel(
        id="cost",
        title="Spend today vs daily budget",
        kind="timeseries",
        # The running sum starts at the UTC midnight before the range, so "spent today" is
        # right even when the range begins mid-day; buckets before the range are cut after.
        sql=(
            "SELECT time, spend_today_usd, daily_budget_usd FROM ("
            "SELECT time, sum(cost) OVER (PARTITION BY toDate(time) ORDER BY time) AS spend_today_usd, "
            "toFloat64OrNull(decodeURLComponent('${daily_budget:percentencode}')) AS daily_budget_usd FROM ("
            "SELECT $__timeInterval(minute) AS time, sumMerge(cost_usd) AS cost FROM calls_1m "
            "WHERE minute >= toStartOfDay($__fromTime) AND minute <= $__toTime "
            f"AND {_all_or('app_id', 'app')} AND {_all_or('model', 'model')} "
            f"AND {_all_or('environment', 'environment')} GROUP BY time)) "
            "WHERE time + INTERVAL $__interval_s SECOND > $__fromTime ORDER BY time"
        ),
        columns=(_c("time", "time"), _c("spend_today_usd"), _c("daily_budget_usd")),
        unit="currencyUSD",
        description="Cumulative spend since UTC midnight against the daily budget.",
    ),
    Panel(
        id="toxicity_rate",
        title="Toxicity rate",
        kind="timeseries",
        sql=(
            "SELECT time, avg(toxic) AS toxicity_rate, count() AS scored_calls FROM ("
            f"SELECT $__timeInterval(ts) AS time, app_id, event_id, max(value) >= {TOXIC_AT} AS toxic FROM scores "
            f"WHERE $__timeFilter(ts) AND name LIKE 'toxicity%' AND {_all_or('app_id', 'app')} "
            f"AND {_all_or('model', 'model')} AND {_calls_of('environment', 'environment')} "
            "GROUP BY time, app_id, event_id) GROUP BY time ORDER BY time"
        ),
        columns=(_c("time", "time"), _c("toxicity_rate"), _c("scored_calls", unit="short")),
        unit="percentunit",
        description=f"Share of scored calls with any toxicity.* score >= {TOXIC_AT}.",
    ),
    Panel(
        id="judge_scores",
        title="Judge scores per rubric",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(ts) AS time, name AS rubric, avg(value) AS score FROM scores FINAL "
            f"WHERE $__timeFilter(ts) AND source = 'llm_judge' AND {_all_or('app_id', 'app')} "
            f"AND {_all_or('model', 'model')} AND {_calls_of('environment', 'environment')} "
            "GROUP BY time, rubric ORDER BY time, rubric"
        ),
        columns=(_c("time", "time"), _c("rubric", "string"), _c("score")),
        unit="short",
        description="Mean evaluator-LLM score per rubric.",
    ),
    Panel(
        id="judge_agreement",
        title="Judge agreement with reviewers (kappa)",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(window_end) AS time, "
            "concat(app_id, '/', rubric, '@', rubric_version, ' (', evaluator, ')') AS series, "
            f"{_latest_agreement('kappa', 'pairs')}.1 AS kappa FROM judge_agreement "
            f"WHERE $__timeFilter(window_end) AND {_all_or('app_id', 'app')} "
            "GROUP BY time, series ORDER BY time, series"
        ),
        columns=(_c("time", "time"), _c("series", "string"), _c("kappa")),
        unit="short",
        description="Cohen's kappa of the judge's pass/fail call against reviewers' (a score or rating above the "
        "middle of its scale passes), per app, rubric@version and judge model, over the judge's rolling window of "
        "reviews (LOOKOUT_JUDGE_AGREEMENT_WINDOW_DAYS). 1: they always agree, 0: no better than chance. Read it "
        "with the base rates in the table beside it. Not filtered by model or environment.",
    ),
    Panel(
        id="thumbs_down",
        title="Thumbs-down rate",
        kind="timeseries",
        # Each author's latest vote per call (per app): a changed vote counts once.
        sql=(
            "SELECT $__timeInterval(ts) AS time, countIf(thumbs = -1) / count() AS thumbs_down_rate, "
            f"count() AS votes FROM {_LATEST_VOTES} "
            f"WHERE $__timeFilter(ts) AND thumbs IS NOT NULL AND {_all_or('app_id', 'app')} "
            f"AND {_calls_of('model', 'model')} AND {_calls_of('environment', 'environment')} "
            "GROUP BY time ORDER BY time"
        ),
        columns=(_c("time", "time"), _c("thumbs_down_rate"), _c("votes", unit="short")),
        unit="percentunit",
        description="Share of thumbs votes that are down (each author's latest vote per call).",
    ),
    Panel(
        id="review_queue_depth",
        title="Review queue depth",
        kind="stat",
        sql=f"SELECT count() AS open_tasks FROM ({_OPEN_TASKS})",
        columns=(_c("open_tasks"),),
        unit="short",
        description="Review tasks still open at the end of the range (a call still lacking its reviews).",
        width=6, height=4,
    ),
    Panel(
        id="review_oldest_age",
        title="Oldest open review task",
        kind="stat",
        sql=(
            "SELECT if(count() = 0, 0, greatest(dateDiff('second', min(created), $__toTime), 0)) AS oldest_age_s "
            f"FROM ({_OPEN_TASKS})"
        ),
        columns=(_c("oldest_age_s"),),
        unit="s",
        description="Age at the end of the range of the oldest open review task (0 when the queue is empty).",
        width=6, height=4,
    ),
    Panel(
        id="dead_letters",
        title="Dead letters",
        kind="timeseries",
        sql=(
            "SELECT $__timeInterval(ts) AS time, source_topic AS series, uniqExact(dlq_id) AS dead_letters "
            "FROM dead_letters WHERE $__timeFilter(ts) GROUP BY time, series ORDER BY time, series"
        ),
        columns=(_c("time", "time"), _c("series", "string"), _c("dead_letters")),
        unit="short",
        description="Messages that could not be parsed or stored, per source topic (not per app).",
        per_app=False,
    ),
    Panel(
        id="judge_agreement_latest",
        title="Judge agreement: latest per rubric",
        kind="table",
        # Aliases differ from the columns they aggregate (see drift_state).
        sql=(
            "SELECT app_id, rubric, rubric_version, evaluator, last.1 AS reviewed_pairs, last.2 AS pass_kappa, "
            "last.3 AS judge_passes, last.4 AS reviewer_passes, last.5 AS weighted_kappa, last.6 AS rank_correlation, "
            "last_window_end FROM ("
            "SELECT app_id, rubric, rubric_version, evaluator, "
            f"{_latest_agreement(*_AGREEMENT_COLUMNS)} AS last, max(window_end) AS last_window_end "
            "FROM judge_agreement "
            f"WHERE $__timeFilter(window_end) AND {_all_or('app_id', 'app')} "
            "GROUP BY app_id, rubric, rubric_version, evaluator) "
            "ORDER BY pass_kappa, app_id, rubric, rubric_version, evaluator"
        ),
        columns=(
            _c("app_id", "string"), _c("rubric", "string"), _c("rubric_version", "string"),
            _c("evaluator", "string"), _c("reviewed_pairs"), _c("pass_kappa"), _c("judge_passes", unit="percentunit"),
            _c("reviewer_passes", unit="percentunit"), _c("weighted_kappa"), _c("rank_correlation"),
            _c("last_window_end", "time"),
        ),
        unit="short",
        description="The latest agreement of each app/rubric@version/judge model in the range, least trusted first: "
        "reviewed calls in the window, the pass/fail kappa with its base rates (the share of those calls the judge "
        "passes and the share reviewers pass: a kappa is low when either passes nearly everything), the "
        "quadratic-weighted kappa on 1..5 ratings and Spearman's rank correlation. Not filtered by model or "
        "environment.",
        width=24,
    ),
    Panel(
        id="model_versions",
        title="Model versions: old vs new",
        kind="table",
        # One row per served version of each app/model over the calls in the range, from the
        # per-minute rollup versions_1m (migration 0006): scores and votes carry their call's
        # version and count at their call's minute, so no join to llm_calls. Calls count rows
        # like calls_1m; votes are each author's latest (a replacing vote takes its
        # predecessor back); judge scores are the mean of the llm_judge rows; toxicity is the
        # share of distinct toxicity-scored calls with any toxicity.* score >= TOXIC_AT.
        # Scores and votes stored before 0006 were backfilled through their calls; one whose
        # call was never stored has no calls and is left out (HAVING), as are rows a
        # producer could not tie to a call (version '').
        sql=(
            "SELECT app_id, model, model_version, countMerge(calls) AS calls, "
            "sumMerge(thumbs_down) / nullIf(sumMerge(votes), 0) AS thumbs_down_rate, "
            "sumIfMerge(judge_sum) / nullIf(countIfMerge(judged), 0) AS judge_score, "
            "uniqExactIfMerge(toxic_calls) / nullIf(uniqExactIfMerge(scored_calls), 0) AS toxicity_rate "
            f"FROM versions_1m WHERE {CALLS_FILTER} "
            "GROUP BY app_id, model, model_version HAVING calls > 0 ORDER BY app_id, model, model_version"
        ),
        columns=(
            _c("app_id", "string"), _c("model", "string"), _c("model_version", "string"), _c("calls"),
            _c("thumbs_down_rate", unit="percentunit"), _c("judge_score"), _c("toxicity_rate", unit="percentunit"),
        ),
        unit="short",
        description="Calls, thumbs-down rate, mean judge score and toxicity rate per model version, "
        "so a retrained version can be compared with the one it replaced.",
        width=24,
    ),
    Panel(
        id="drift_state",
        title="Drift state per stream",
        kind="table",
        # Aliases differ from the columns they aggregate: ClickHouse would read `drifted`
        # inside uniqExactIf as the alias, an aggregate inside an aggregate.
        sql=(
            "SELECT app_id, model, signal, last.1 AS method, last.2 AS drifted, last.3 AS statistic, "
            "last.4 AS p_value, last_window_end, drifted_windows, windows FROM ("
            "SELECT app_id, model, signal, argMax((method, drifted, statistic, p_value), ts) AS last, "
            "max(window_end) AS last_window_end, uniqExactIf(result_id, drifted = 1) AS drifted_windows, "
            "uniqExact(result_id) AS windows FROM drift_results "
            f"WHERE $__timeFilter(ts) AND {_all_or('app_id', 'app')} AND {_all_or('model', 'model')} "
            "GROUP BY app_id, model, signal) ORDER BY drifted DESC, app_id, model, signal"
        ),
        columns=(
            _c("app_id", "string"), _c("model", "string"), _c("signal", "string"), _c("method", "string"),
            _c("drifted"), _c("statistic"), _c("p_value"), _c("last_window_end", "time"),
            _c("drifted_windows"), _c("windows"),
        ),
        unit="short",
        description="The latest drift test of each app/model/signal in the range, and how many windows drifted.",
        width=24,
    ),
    Panel(
        id="retrain_runs",
        title="Retrain runs",
        kind="table",
        # Runs with any transition in the range, with every transition they have, so a run
        # started before the range still shows where it began: each run's latest state is
        # the retrain_run_state view (migration 0015), as the retrain trigger reads it.
        sql=(
            "SELECT toString(run_id) AS run_id, app_id, model, latest_status AS status, started, updated, rule, "
            "trained_version AS model_version FROM retrain_run_state "
            "WHERE (app_id, run_id) IN (SELECT app_id, run_id FROM retrain_runs WHERE $__timeFilter(ts)) "
            f"AND {_all_or('app_id', 'app')} AND {_all_or('model', 'model')} "
            "ORDER BY updated DESC LIMIT 50"
        ),
        columns=(
            _c("run_id", "string"), _c("app_id", "string"), _c("model", "string"), _c("status", "string"),
            _c("started", "time"), _c("updated", "time"), _c("rule", "string"), _c("model_version", "string"),
        ),
        unit="short",
        description="Latest state of each retrain run.",
        width=24,
    ),
)

_BY_ID = {p.id: p for p in PANELS}
if len(_BY_ID) != len(PANELS):
    raise RuntimeError("duplicate panel ids")


def panel(panel_id: str) -> Panel:
    return _BY_ID[panel_id]


def spec_json() -> dict:
    return {"panels": [p.to_json() for p in PANELS], "variables": [v.to_json() for v in VARIABLES]}
