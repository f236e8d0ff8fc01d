"""The on-call view's SQL runs on the real schema (chdb) the way Grafana would send it.

Every panel and alert query is expanded with lookout.dashboards.macros (the plugin's macros and
Grafana's variable formatting) and run on seeded rows; results are checked against what was
seeded. The generated provisioning files are checked for shape and for being up to date.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from lookout.dashboards import alerts, generate, macros, panels
from lookout.dashboards.macros import ALL, MacroError, QueryContext
from lookout.dashboards.panels import PANELS, VARIABLES, panel, spec_json
from lookout.dashboards.settings import DashboardSettings
from lookout.testing import sample

ALL_VARS = {"app": ALL, "model": ALL, "environment": ALL, "daily_budget": 100.0}


@pytest.fixture
def defaults(monkeypatch) -> DashboardSettings:
    for key in list(os.environ):
        if key.startswith("LOOKOUT_"):
            monkeypatch.delenv(key)
    return DashboardSettings()


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def seeded(ch, now):
    return ch, sample.seed(ch, now)


def panel_variable(name: str):
    return next(v for v in VARIABLES if v.name == name)


def ctx(s: sample.Sample, **variables) -> QueryContext:
    return QueryContext(
        time_from=s.start - timedelta(minutes=30),
        time_to=s.end + timedelta(minutes=1),
        interval_s=60,
        variables={**ALL_VARS, **variables},
    )


def describe(client, sql: str) -> list[tuple[str, str]]:
    """Names and ClickHouse types of a query's columns, also when it returns no rows."""
    return [(r[0], r[1]) for r in client.query(f"DESCRIBE ({sql})").result_rows]


_TYPES = {
    "time": re.compile(r"^(Nullable\()?DateTime"),
    "string": re.compile(r"^(LowCardinality\()?(Nullable\()?String"),
    "number": re.compile(r"^(Nullable\()?(U?Int|Float|Decimal|Bool)"),
}


def run(client, panel_id: str, context: QueryContext) -> list[dict]:
    p = panel(panel_id)
    sql = macros.expand(p.sql, context)
    described = describe(client, sql)
    assert [name for name, _ in described] == [c.name for c in p.columns], panel_id
    for (name, ch_type), col in zip(described, p.columns, strict=True):
        assert _TYPES[col.type].match(ch_type), (panel_id, name, ch_type)
    names = [c.name for c in p.columns]
    return [dict(zip(names, row, strict=True)) for row in client.query(sql).result_rows]


def total_calls(rows: list[dict]) -> float:
    return sum(r["calls_per_min"] for r in rows)  # one-minute buckets


# ---- macros ------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
T1 = datetime(2025, 3, 1, 13, 0, 30, 250000, tzinfo=UTC)


def test_time_macros_expand_like_the_plugin():
    c = QueryContext(T0, T1, interval_s=120)
    f, t = int(T0.timestamp()), int(T1.timestamp())
    assert macros.expand("$__timeFilter(ts)", c) == f"ts >= toDateTime({f}) AND ts <= toDateTime({t})"
    assert macros.expand("$__fromTime|$__toTime", c) == f"toDateTime({f})|toDateTime({t})"
    assert macros.expand("$__fromTime_ms", c) == f"fromUnixTimestamp64Milli({f * 1000})"
    assert macros.expand("$__toTime_ms", c) == f"fromUnixTimestamp64Milli({t * 1000 + 250})"
    assert macros.expand("$__timeInterval(minute)", c) == "toStartOfInterval(toDateTime(minute), INTERVAL 120 second)"
    assert macros.expand("$__timeInterval_ms(ts)", c) == (
        "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 120000 millisecond)"
    )
    assert macros.expand("$__interval_s", c) == "120"
    assert macros.expand("$__dateFilter(d)", c) == "d >= toDate('2025-03-01') AND d <= toDate('2025-03-01')"
    assert macros.expand("$__dt(d, ts)", c) == (
        f"(d >= toDate('2025-03-01') AND d <= toDate('2025-03-01')) AND (ts >= toDateTime({f}) AND ts <= "
        f"toDateTime({t}))"
    )


def test_macro_arguments_may_hold_parentheses_and_names_must_be_known():
    c = QueryContext(T0, T1)
    f = int(T0.timestamp())
    assert macros.expand("$__timeFilter(toDateTime(ts))", c).startswith(f"toDateTime(ts) >= toDateTime({f})")
    with pytest.raises(MacroError, match="unknown macro"):
        macros.expand("$__timeFilterr(ts)", c)
    with pytest.raises(MacroError, match="expected 1"):
        macros.expand("$__timeFilter(a, b)", c)
    with pytest.raises(MacroError, match="unbalanced"):
        macros.expand("$__timeFilter(ts", c)


def test_multi_value_variables_are_quoted_like_grafana():
    c = QueryContext(T0, T1, variables={"app": ["a", "it's"], "one": "raw"})
    assert macros.expand("x IN (${app:singlequote})", c) == "x IN ('a','it\\'s')"
    assert macros.expand("x IN (${app:sqlstring})", c) == "x IN ('a','it''s')"
    assert macros.expand("x IN ($app)", c) == "x IN ('a','it's')"  # the plugin's own formatter
    assert macros.expand("x = $one AND y = ${one}", c) == "x = raw AND y = raw"
    assert macros.expand("$unknown stays", c) == "$unknown stays"


def test_conditional_all_drops_the_condition_for_all_and_keeps_it_otherwise():
    sql = "WHERE $__conditionalAll(app_id IN (${app:singlequote}), $app) AND $__conditionalAll(m = 1, ${model})"
    everything = QueryContext(T0, T1, variables={"app": ALL, "model": []})
    assert macros.expand(sql, everything) == "WHERE 1=1 AND 1=1"
    some = QueryContext(T0, T1, variables={"app": ["a"], "model": ["m"]})
    assert macros.expand(sql, some) == "WHERE app_id IN ('a') AND m = 1"
    with pytest.raises(MacroError, match="All outside"):
        macros.expand("x IN (${app:singlequote})", everything)


def test_parameterized_expansion_passes_values_as_query_parameters():
    c = QueryContext(T0, T1, variables={"app": ["a", "b') OR 1=1 --"], "daily_budget": 50.0})
    sql, params = macros.expand_parameterized(
        "app_id IN (${app:singlequote}) AND b = ${daily_budget} AND $__timeFilter(ts)", c
    )
    assert sql.startswith("app_id IN ({v_app:Array(String)}) AND b = {v_daily_budget:Float64} AND ts >= ")
    assert params == {"v_app": ["a", "b') OR 1=1 --"], "v_daily_budget": 50.0}


def test_interval_follows_the_range_and_never_splits_a_minute():
    assert macros.interval_for(T0, T0 + timedelta(minutes=15)) == 60
    assert macros.interval_for(T0, T0 + timedelta(hours=24)) == 600  # 86400/240 = 360 -> 600
    assert macros.interval_for(T0, T0 + timedelta(days=7)) == 3600


# ---- panels on seeded data -------------------------------------------------------------------


def test_every_panel_returns_its_declared_columns(seeded):
    client, s = seeded
    for p in PANELS:
        rows = run(client, p.id, ctx(s))
        assert rows, f"{p.id} returned nothing on the sample"
        for row in rows:
            for col in p.columns:
                value = row[col.name]
                if col.type == "time":
                    assert isinstance(value, datetime), (p.id, col.name, value)
                elif col.type == "string":
                    assert isinstance(value, str), (p.id, col.name, value)
                else:
                    assert value is None or isinstance(value, int | float), (p.id, col.name, value)


def test_every_panel_runs_with_each_filter_set(seeded):
    client, s = seeded
    for variables in ({"app": ["search"]}, {"model": ["gpt-4o-mini"]}, {"environment": ["staging"]},
                      {"app": ["support-bot"], "model": ["claude-3-5-haiku"], "environment": ["staging"]}):
        for p in PANELS:
            run(client, p.id, ctx(s, **variables))


def test_call_totals_match_the_seeded_calls(seeded):
    client, s = seeded
    (row,) = run(client, "calls_total", ctx(s))
    assert row["calls"] == len(s.calls) == 1020
    (row,) = run(client, "calls_total", ctx(s, app=["search"]))
    assert row["calls"] == len(s.calls_where(app_id="search"))
    (row,) = run(client, "calls_total", ctx(s, environment=["prod"], model=["gpt-4o", "gpt-4o-mini"]))
    assert row["calls"] == len(s.calls_where(environment="prod"))
    assert total_calls(run(client, "traffic", ctx(s))) == pytest.approx(len(s.calls))


def test_error_rate_equals_the_seeded_share(seeded):
    client, s = seeded
    errors = sum(c["status"] == "error" for c in s.calls)
    (row,) = run(client, "error_share", ctx(s))
    assert row["error_rate"] == pytest.approx(errors / len(s.calls))
    # Per series: support-bot/gpt-4o-mini fails every 10th call, 10 calls a minute.
    rows = [r for r in run(client, "error_rate", ctx(s)) if r["series"] == "support-bot/gpt-4o-mini"]
    assert len(rows) == sample.MINUTES
    assert all(r["error_rate"] == pytest.approx(0.1) for r in rows)


def test_tokens_spend_and_latency_match_the_sample(seeded):
    client, s = seeded
    rows = run(client, "tokens", ctx(s))
    assert sum(r["tokens_in"] for r in rows) == sum(c["tokens_in"] for c in s.calls)
    assert sum(r["tokens_out"] for r in rows) == sum(c["tokens_out"] for c in s.calls)
    (row,) = run(client, "spend_total", ctx(s))
    assert row["spend_usd"] == pytest.approx(sum(c["cost_usd"] for c in s.calls))
    (row,) = run(client, "latency_p99_total", ctx(s))
    assert 2900 <= row["p99_ms"] <= 3100  # search's slow calls are the top 12%
    rows = run(client, "latency", ctx(s, app=["support-bot"], model=["gpt-4o-mini"]))
    assert all(400 <= r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= 490 for r in rows)


def test_spend_runs_up_from_midnight_against_the_budget(seeded):
    client, s = seeded
    rows = run(client, "cost", ctx(s, daily_budget=250.0))
    assert all(r["daily_budget_usd"] == 250.0 for r in rows)
    spend = [r["spend_today_usd"] for r in rows]
    last_day = rows[-1]["time"].date()
    assert spend[-1] == pytest.approx(sum(c["cost_usd"] for c in s.calls if c["ts"].date() == last_day))
    same_day = [r["spend_today_usd"] for r in rows if r["time"].date() == last_day]
    assert same_day == sorted(same_day)


def test_quality_panels_count_each_event_once(seeded):
    client, s = seeded
    rows = run(client, "toxicity_rate", ctx(s))
    scored = sum(r["scored_calls"] for r in rows)
    toxic = sum(r["toxicity_rate"] * r["scored_calls"] for r in rows)
    assert scored == len(s.scored_events)  # replayed score rows do not count twice
    assert toxic == pytest.approx(len(s.toxic_events))
    judged = run(client, "judge_scores", ctx(s))
    for rubric, mean in s.judge_means.items():
        assert all(r["score"] == pytest.approx(mean) for r in judged if r["rubric"] == rubric)
    assert {r["rubric"] for r in judged} == set(s.judge_means)
    # Filtering scores by environment goes through their calls: claude's stream is staging.
    assert run(client, "toxicity_rate", ctx(s, environment=["staging"])) == []


def test_thumbs_down_rate_is_the_share_of_down_votes(seeded):
    client, s = seeded
    rows = run(client, "thumbs_down", ctx(s))
    assert sum(r["votes"] for r in rows) == s.votes
    assert sum(r["thumbs_down_rate"] * r["votes"] for r in rows) == pytest.approx(s.thumbs_down)
    rows = run(client, "thumbs_down", ctx(s, model=["gpt-4o"]))
    assert sum(r["votes"] for r in rows) == 20


def test_thumbs_down_rate_counts_each_authors_latest_vote(seeded):
    client, s = seeded
    # One author changed an up vote to down: 60 votes, not 61, and the change counts as down.
    rows = run(client, "thumbs_down", ctx(s))
    assert sum(r["votes"] for r in rows) == len(s.latest_thumbs) == 60
    assert sum(r["thumbs_down_rate"] * r["votes"] for r in rows) == pytest.approx(23)
    rows = run(client, "thumbs_down", ctx(s, app=["search"]))
    assert sum(r["thumbs_down_rate"] * r["votes"] for r in rows) == pytest.approx(12)


def test_review_queue_depth_and_oldest_age(seeded):
    client, s = seeded
    c = ctx(s)
    (row,) = run(client, "review_queue_depth", c)
    assert row["open_tasks"] == len(s.open_tasks) == 2  # done tasks and replayed rows excluded
    (row,) = run(client, "review_oldest_age", c)
    oldest = min(created for _, created in s.open_tasks.values())
    assert row["oldest_age_s"] == (c.time_to.replace(microsecond=0) - oldest).total_seconds()
    (row,) = run(client, "review_queue_depth", ctx(s, app=["search"]))
    assert row["open_tasks"] == 1
    (row,) = run(client, "review_oldest_age", ctx(s, app=["search"]))
    assert row["oldest_age_s"] == (c.time_to.replace(microsecond=0) - s.open_tasks[next(
        e for e, (app, _) in s.open_tasks.items() if app == "search")][1]).total_seconds()
    # Before any review was done every task was open; before any task existed the queue was empty.
    early = QueryContext(s.start, s.start + timedelta(minutes=29), interval_s=60, variables=ALL_VARS)
    (row,) = run(client, "review_queue_depth", early)
    assert row["open_tasks"] == 5
    before = QueryContext(s.start - timedelta(hours=1), s.start, interval_s=60, variables=ALL_VARS)
    assert run(client, "review_queue_depth", before) == [{"open_tasks": 0}]
    assert run(client, "review_oldest_age", before) == [{"oldest_age_s": 0}]


def test_model_versions_compare_old_and_new(seeded):
    client, s = seeded
    rows = {(r["app_id"], r["model"], r["model_version"]): r for r in run(client, "model_versions", ctx(s))}
    expected_keys = {(c["app_id"], c["model"], c["model_version"]) for c in s.calls}
    assert set(rows) == expected_keys and len(expected_keys) == 6
    for key, r in rows.items():
        calls = [c for c in s.calls if (c["app_id"], c["model"], c["model_version"]) == key]
        assert r["calls"] == len(calls)
        votes = [s.latest_thumbs[c["event_id"]] for c in calls if c["event_id"] in s.latest_thumbs]
        if votes:
            assert r["thumbs_down_rate"] == pytest.approx(votes.count(-1) / len(votes)), key
        else:
            assert r["thumbs_down_rate"] is None, key
        scored = [c for c in calls if c["event_id"] in s.scored_events]
        if scored:
            toxic = sum(c["event_id"] in s.toxic_events for c in scored)
            assert r["toxicity_rate"] == pytest.approx(toxic / len(scored)), key
        else:
            assert r["toxicity_rate"] is None, key
        if key[1] == "claude-3-5-haiku":
            assert r["judge_score"] == pytest.approx(sum(s.judge_means.values()) / len(s.judge_means)), key
        else:
            assert r["judge_score"] is None, key
    old = rows[("support-bot", "gpt-4o-mini", "2024-07")]
    assert old["thumbs_down_rate"] == pytest.approx(11 / 40) and old["toxicity_rate"] == pytest.approx(0.05)
    rows = run(client, "model_versions", ctx(s, environment=["staging"]))
    assert {r["model"] for r in rows} == {"claude-3-5-haiku"}


def test_drift_state_shows_the_latest_window_of_each_stream(seeded):
    client, s = seeded
    rows = {(r["app_id"], r["model"], r["signal"]): r for r in run(client, "drift_state", ctx(s))}
    assert set(rows) == {
        ("support-bot", "gpt-4o-mini", "embedding"), ("support-bot", "gpt-4o-mini", "prompt_tokens"),
        ("search", "gpt-4o", "embedding"),
    }
    assert rows[("support-bot", "gpt-4o-mini", "embedding")]["drifted"] == 1
    assert rows[("support-bot", "gpt-4o-mini", "embedding")]["drifted_windows"] == 3
    assert rows[("search", "gpt-4o", "embedding")]["drifted"] == 0  # recovered in its latest window
    assert rows[("search", "gpt-4o", "embedding")]["windows"] == 2


def test_retrain_runs_show_their_latest_status(seeded):
    client, s = seeded
    rows = {r["app_id"]: r for r in run(client, "retrain_runs", ctx(s))}
    assert rows["support-bot"]["status"] == "succeeded"
    assert rows["support-bot"]["model_version"] == "ft-2"
    assert rows["support-bot"]["rule"] == "thumbs_down_rate>0.2"
    assert rows["search"]["status"] == "failed"
    assert rows["search"]["started"] < rows["search"]["updated"]


def test_dead_letters_per_topic(seeded):
    client, s = seeded
    totals: dict[str, int] = {}
    for r in run(client, "dead_letters", ctx(s)):
        totals[r["series"]] = totals.get(r["series"], 0) + r["dead_letters"]
    assert totals == s.dead_letters


def test_judge_agreement_table_shows_each_series_latest_computation_least_trusted_first(seeded):
    client, s = seeded
    rows = run(client, "judge_agreement_latest", ctx(s))
    got = {(r["app_id"], r["rubric"], r["rubric_version"], r["evaluator"]): r for r in rows}
    assert set(got) == set(s.agreement)
    for key, expected in s.agreement.items():
        r = got[key]
        assert (r["reviewed_pairs"], r["judge_passes"], r["reviewer_passes"]) == (
            expected["pairs"], expected["judge_pass_rate"], expected["reviewer_pass_rate"]), key
        assert r["pass_kappa"] == (None if expected["kappa"] is None else pytest.approx(expected["kappa"])), key
        assert r["last_window_end"].replace(tzinfo=UTC) == expected["window_end"], key
    # The rewritten last window counts its later computation (0.58), not the earlier (0.1);
    # the new version's latest row has no kappa (too few pairs), not the older row's 0.3.
    assert got[("support-bot", "relevance", "1+p2", "judge")]["pass_kappa"] == pytest.approx(0.58)
    assert got[("support-bot", "relevance", "2+p2", "judge")]["pass_kappa"] is None
    assert [r["rubric"] for r in rows] == ["faithfulness", "relevance", "relevance"]  # lowest kappa first
    assert {r["app_id"] for r in run(client, "judge_agreement_latest", ctx(s, app=["search"]))} == {"search"}


def test_judge_agreement_series_draw_each_windows_latest_kappa(seeded):
    client, s = seeded
    rows = run(client, "judge_agreement", ctx(s))
    relevance = [r for r in rows if r["series"] == "support-bot/relevance@1+p2 (judge)"]
    assert [r["kappa"] for r in relevance] == pytest.approx([0.8 - 0.02 * i for i in range(12)])
    assert {r["series"] for r in rows} == {"support-bot/relevance@1+p2 (judge)", "support-bot/relevance@2+p2 (judge)",
                                           "search/faithfulness@1+p2 (judge)"}
    assert {r["series"] for r in run(client, "judge_agreement", ctx(s, app=["search"]))} == {
        "search/faithfulness@1+p2 (judge)"}


def test_template_variable_queries_list_the_streams(seeded):
    client, s = seeded
    found = {}
    for v in VARIABLES:
        if v.kind == "query":
            found[v.name] = [r[0] for r in client.query(macros.expand(v.sql, ctx(s, app=["support-bot"]))).result_rows]
    assert found == {
        "app": ["search", "support-bot"],
        "model": ["claude-3-5-haiku", "gpt-4o-mini"],
        "environment": ["prod", "staging"],
    }


def test_parameterized_and_text_expansion_select_the_same_rows(seeded):
    client, s = seeded
    context = ctx(s, app=["support-bot", "search"], model=["gpt-4o-mini", "gpt-4o"], environment=["prod"])
    for p in PANELS:
        text = client.query(macros.expand(p.sql, context)).result_rows
        sql, params = macros.expand_parameterized(p.sql, context)
        assert sample.rounded(client.query(sql, parameters=params).result_rows) == sample.rounded(text), p.id


def test_a_hostile_variable_value_matches_nothing(seeded):
    client, s = seeded
    sql, params = macros.expand_parameterized(panel("calls_total").sql, ctx(s, app=["x') OR 1=1 --"]))
    assert client.query(sql, parameters=params).result_rows == [(0,)]


# ---- hostile variable values ------------------------------------------------------------------
# Model names and environments are written by whoever holds an ingest key, and a Grafana URL
# can carry any value (var-app=...), so every value the plugin can substitute is hostile.
# The panels' SQL is expanded exactly as Grafana sends it (macros.expand: the plugin's
# $__conditionalAll, Grafana's formatter, the backend macros) and run on the real schema.

HOSTILE = [
    "x\\",  # a trailing backslash: escapes the closing quote under singlequote/sqlstring
    "x'",
    "x\\' OR 1=1 --",
    "') OR 1=1 --",
    "a'); DROP TABLE llm_calls; --",
    "x\\\nOR 1=1",
    "line\nbreak\r\ttab",
    "/* comment */ search",
    "-- comment",
    "# hash",
    "$__timeFilter(ts)",
    "${app}",
    "{v_app:String}",
    "%27%20OR%201%3D1",
    "\x00nul",
    "é ☃ 𝔘 \u202e rtl",
    "search ",  # near a real app's name
]


def _vars_referenced(sql: str) -> list[tuple[int, int, str]]:
    names = {v.name for v in VARIABLES}
    return [(m.start(), m.end(), m.group(0)) for m in re.finditer(r"\$\{?(\w+)(?::\w+)?\}?", sql)
            if m.group(1) in names]


def test_panels_use_variables_only_percent_encoded_between_quotes():
    sql_of = [(p.id, p.sql) for p in PANELS] + [(v.name, v.sql) for v in VARIABLES if v.sql]
    sql_of += [(r.uid, r.sql) for r in alerts.RULES]
    for name, sql in sql_of:
        for start, end, ref in _vars_referenced(sql):
            quoted = sql[start - 1:end + 1] == f"'{ref}'" and ref.endswith(":percentencode}")
            # The only other place: naming the variable to $__conditionalAll, which never prints it.
            tail = re.match(r"\$\w+\)", sql[start:]) and sql[:start].rstrip().endswith(",")
            assert quoted or tail, (name, ref)


def test_percent_encoding_is_grafanas_and_leaves_nothing_sql_could_read():
    # Grafana's own examples (scenes' formatRegistry tests): lists as {a,b}, then encoded.
    assert macros.percent_encode(["foo()bar BAZ", "test2"]) == "%7Bfoo%28%29bar%20BAZ%2Ctest2%7D"
    assert macros.percent_encode("it's!*~._-") == "it%27s%21%2A~._-"
    assert macros.percent_encode(100.0) == "100"
    for value in HOSTILE:
        for rendered in (macros.percent_encode(value), macros.percent_encode([value, "b"])):
            assert re.fullmatch(r"[A-Za-z0-9._~%-]*", rendered), value
    with pytest.raises(MacroError, match="cannot be percent-encoded"):
        macros.percent_encode(["\ud800"])  # encodeURIComponent throws on a lone surrogate


def test_the_panels_decode_every_hostile_value_back_exactly(ch):
    values = [*HOSTILE, "", "{braced}", "%", "a%2Cb"]
    for selection in ([v] for v in values):
        expr = macros.expand(panels.decoded_values("app"), QueryContext(T0, T1, variables={"app": selection}))
        assert ch.query(f"SELECT {expr}").result_rows == [(selection,)], selection
    both = macros.expand(panels.decoded_values("app"), QueryContext(T0, T1, variables={"app": HOSTILE}))
    assert ch.query(f"SELECT {both}").result_rows == [(HOSTILE,)]
    single = macros.expand(panels.decoded_values("app"), QueryContext(T0, T1, variables={"app": "x\\' --"}))
    assert ch.query(f"SELECT {single}").result_rows == [(["x\\' --"],)]  # a bare string, not a list


def test_grafanas_quoting_formats_let_a_backslash_break_out(seeded):
    """Why the panels do not quote: the old form, ${app:singlequote}, on two hostile values."""
    client, s = seeded
    old = "SELECT countMerge(calls) FROM calls_1m WHERE $__timeFilter(minute) AND " \
        "$__conditionalAll(app_id IN (${app:singlequote}), $app)"
    attack = ["x\\", ") OR 1=1 --"]
    sql = macros.expand(old, ctx(s, app=attack))
    assert client.query(sql).result_rows == [(len(s.calls),)]  # every app's calls
    (row,) = run(client, "calls_total", ctx(s, app=attack))
    assert row["calls"] == 0


def assert_same_rows(got: list, expected: list, what: str) -> None:
    """Equal rows; sums of floats only up to their summation order (threads may add in any)."""
    assert len(got) == len(expected), what
    for a, b in zip(got, expected, strict=True):
        assert [pytest.approx(x, rel=1e-9, nan_ok=True) if isinstance(x, float) else x for x in a] == list(b), what


def _reference(sql: str, context: QueryContext) -> tuple[str, dict]:
    """The panel with each decoded list replaced by a plain Array(String) parameter: what
    "only that value's rows" means, without the decoding under test."""
    params = {}
    for name, value in context.variables.items():
        if name in ("app", "model", "environment"):
            sql = sql.replace(panels.decoded_values(name), "{r_" + name + ":Array(String)}")
            if value is not ALL:
                params["r_" + name] = list(value)
    expanded, more = macros.expand_parameterized(sql, context)
    return expanded, {**params, **more}


@pytest.fixture
def hostile_seeded(seeded):
    """The sample, plus a stream of calls for each hostile value as its app, model and
    environment (rows stored before intake checked them, or by a writer that does not)."""
    client, s = seeded
    rows = []
    for i, value in enumerate(HOSTILE):
        for n in range(i + 1):
            rows.append(sample.call(s.start + timedelta(minutes=n + 1), value, value, environment=value))
    sample.insert_calls(client, rows)
    return client, s


def test_a_hostile_value_selects_only_its_own_rows_in_every_panel(hostile_seeded):
    client, s = hostile_seeded
    for n, value in enumerate(HOSTILE, start=1):
        (row,) = run(client, "calls_total", ctx(s, app=[value]))
        assert row["calls"] == n, value
        (row,) = run(client, "calls_total", ctx(s, app=[value, "search"], model=[value, "gpt-4o"]))
        assert row["calls"] == n + len(s.calls_where(app_id="search")), value
        (row,) = run(client, "calls_total", ctx(s, environment=[value]))
        assert row["calls"] == n, value
        benign = ctx(s, app=["zz", "search"], model=["zz", "gpt-4o", "gpt-4o-mini"], environment=["zz", "prod"])
        hostile = ctx(s, app=[value, "search"], model=[value, "gpt-4o", "gpt-4o-mini"],
                      environment=[value, "prod"])
        for p in PANELS:
            sql = macros.expand(p.sql, hostile)
            # The value changed nothing but the text between its quotes: no new token, no comment.
            shape = sql
            for name in ("app", "model", "environment"):
                shape = shape.replace(macros.percent_encode(hostile.variables[name]),
                                      macros.percent_encode(benign.variables[name]))
            assert shape == macros.expand(p.sql, benign), (p.id, value)
            ref_sql, ref_params = _reference(p.sql, hostile)
            assert_same_rows(client.query(sql).result_rows,
                             client.query(ref_sql, parameters=ref_params).result_rows, f"{p.id} {value!r}")


def test_variables_offer_hostile_values_verbatim_but_not_ones_a_list_cannot_carry(hostile_seeded):
    client, s = hostile_seeded
    sample.insert_calls(client, [sample.call(s.start + timedelta(minutes=1), app, "m")
                                 for app in ("a,b", "{braced}", "a", "b")])
    app = panel_variable("app")
    offered = [r[0] for r in client.query(macros.expand(app.sql, ctx(s))).result_rows]
    # A value with a comma, or wrapped in braces, would read as a list: not offered (All counts it).
    listlike = {"a,b", "{braced}", "{v_app:String}"}
    assert set(offered) == (set(HOSTILE) | {"a", "b", "a,b", "{braced}", "search", "support-bot"}) - listlike
    for value in set(HOSTILE) - listlike:  # an offered option, selected, gives back that app's calls
        models = [r[0] for r in client.query(macros.expand(panel_variable("model").sql, ctx(s, app=[value])))
                  .result_rows]
        assert models == [value]


def test_decoded_filters_still_use_the_primary_key(seeded):
    client, s = seeded
    for panel_id in ("calls_total", "model_versions", "drift_state"):
        sql = macros.expand(panel(panel_id).sql, ctx(s, app=["search", "x\\'"], model=["gpt-4o"]))
        plan = "\n".join(r[0] for r in client.query(f"EXPLAIN indexes = 1 {sql}").result_rows)
        assert "(app_id in 2-element set)" in plan and "(model in 1-element set)" in plan, (panel_id, plan)


def test_a_value_that_cannot_be_encoded_fails_closed(seeded):
    _, s = seeded
    with pytest.raises(MacroError):
        macros.expand(panel("calls_total").sql, ctx(s, app=["\ud800"]))


# ---- two apps, one event id -------------------------------------------------------------------


def _copy(client, table: str, select: str) -> None:
    # The source rows sit in a subquery: the new app_id's alias would shadow the column in WHERE.
    result = client.query(select)
    assert result.result_rows, select
    client.insert(table, [list(r) for r in result.result_rows], column_names=list(result.column_names))


def _twin(client, victim: str, twin: str) -> None:
    """`twin` stores rows with the victim's event ids: its own calls (staging), toxic scores,
    opposite votes by the same author a moment later, and every review task done."""
    _copy(client, "llm_calls", f"SELECT * REPLACE ('{twin}' AS app_id, 'staging' AS environment) "
          f"FROM (SELECT * FROM llm_calls WHERE app_id = '{victim}')")
    _copy(client, "scores", f"SELECT * REPLACE ('{twin}' AS app_id, generateUUIDv4() AS score_id, 0.99 AS value, "
          f"'staging' AS environment) FROM (SELECT * FROM scores WHERE app_id = '{victim}')")
    _copy(client, "feedback", f"SELECT * REPLACE ('{twin}' AS app_id, generateUUIDv4() AS feedback_id, "
          "ts + INTERVAL 5 SECOND AS ts, if(thumbs = 1, -1, 1) AS thumbs) "
          f"FROM (SELECT * FROM feedback WHERE app_id = '{victim}')")
    _copy(client, "review_tasks", f"SELECT * REPLACE ('{twin}' AS app_id) "
          f"FROM (SELECT * FROM review_tasks WHERE app_id = '{victim}')")
    _copy(client, "review_done", f"SELECT event_id, '{twin}' AS app_id, 'r9' AS reviewer, generateUUIDv4() AS "
          f"feedback_id, 1 AS needed, created_at AS ts FROM (SELECT * FROM review_tasks WHERE app_id = '{victim}')")


def test_an_app_storing_another_apps_event_ids_changes_none_of_its_panels(seeded):
    client, s = seeded
    selections = [
        {"app": ["support-bot"]},
        {"app": ["support-bot"], "environment": ["staging"]},
        {"app": ["support-bot"], "model": ["gpt-4o-mini"], "environment": ["prod"]},
    ]
    before = {(p.id, i): run(client, p.id, ctx(s, **sel)) for p in PANELS for i, sel in enumerate(selections)}
    queue_all = run(client, "review_queue_depth", ctx(s))
    votes_all = sum(r["votes"] for r in run(client, "thumbs_down", ctx(s)))
    _twin(client, "support-bot", "twin")
    for (panel_id, i), rows in before.items():
        if panel_id == "dead_letters":
            continue  # not per app
        assert sample.rounded(run(client, panel_id, ctx(s, **selections[i]))) == sample.rounded(rows), (
            panel_id, selections[i])
    # Across all apps the twin's rows count as its own: its done tasks close none of the
    # victim's, and its votes replace none of the victim's.
    assert run(client, "review_queue_depth", ctx(s)) == queue_all
    twin_votes = len({c["event_id"] for c in s.calls_where(app_id="support-bot")} & set(s.latest_thumbs))
    assert sum(r["votes"] for r in run(client, "thumbs_down", ctx(s))) == votes_all + twin_votes


# ---- alerts --------------------------------------------------------------------------------


def firing(client, rule: alerts.AlertRule, settings: DashboardSettings, at: datetime) -> set[tuple[str, ...]]:
    context = QueryContext(at - timedelta(seconds=rule.window_s), at, interval_s=60)
    sql = macros.expand(rule.render_sql(settings), context)
    described = describe(client, sql)
    columns = [name for name, _ in described]
    assert columns == [*rule.label_columns, "value"], rule.uid
    assert all(_TYPES["string"].match(t) for _, t in described[:-1]), described
    assert _TYPES["number"].match(described[-1][1]), described
    rows = client.query(sql).result_rows
    return {tuple(f.labels[c] for c in rule.label_columns) for f in alerts.evaluate(rule, settings, columns, rows)}


def _minutes(now: datetime, n: int, step_s: int = 60):
    return [now - timedelta(seconds=step_s * (i + 1)) for i in range(n)]


def scenario_cost_burn(client, now):
    # $6 in the last hour is $144/day against $100; three hours earlier, $0.60 in an hour.
    sample.insert_calls(client, [sample.call(t, "a", "m", cost_usd=0.10) for t in _minutes(now, 60)])
    earlier = now - timedelta(hours=3)
    sample.insert_calls(client, [sample.call(t, "a", "m", cost_usd=0.01) for t in _minutes(earlier, 60)])
    return [(now, {()}), (earlier, set())]


def scenario_token_spike(client, now):
    calls = []
    for app_id in ("hot", "cool"):
        for i, t in enumerate(_minutes(now, 24 * 60 - 1)):
            big = app_id == "hot" and i < 10
            calls.append(sample.call(t, app_id, "m", tokens_in=900 if big else 90, tokens_out=100 if big else 10))
    sample.insert_calls(client, calls)
    return [(now, {("hot", "m")})]


def scenario_error_rate(client, now):
    calls = []
    for app_id, errors, n in (("hot", 8, 40), ("cool", 0, 40), ("tiny", 5, 5)):
        for i, t in enumerate(_minutes(now, n, step_s=7)):
            calls.append(sample.call(t, app_id, "m", status="error" if i < errors else "ok"))
    sample.insert_calls(client, calls)
    return [(now, {("hot", "m")})]


def scenario_latency_p99(client, now):
    calls = []
    for app_id in ("hot", "cool"):
        for i, t in enumerate(_minutes(now, 40, step_s=7)):
            slow = app_id == "hot" and i < 5
            calls.append(sample.call(t, app_id, "m", latency_ms=20_000.0 if slow else 500.0))
    sample.insert_calls(client, calls)
    return [(now, {("hot", "m")})]


def scenario_toxicity_rate(client, now):
    calls, scores = [], []
    for app_id, toxic in (("hot", 6), ("cool", 0)):
        for i, t in enumerate(_minutes(now, 30, step_s=20)):
            c = sample.call(t, app_id, "m")
            calls.append(c)
            scores.append(sample.score(c, "toxicity.toxicity", 0.95 if i < toxic else 0.05, delay_s=1))
    sample.insert_calls(client, calls)
    sample.insert_scores(client, scores)
    return [(now, {("hot", "m")})]


def scenario_sustained_drift(client, now):
    rows = []
    for app_id, pattern in (("hot", [0, 1, 1, 1]), ("cool", [1, 1, 1, 0]), ("short", [0, 0, 1, 1])):
        for i, drifted in enumerate(pattern):  # oldest first
            ts = now - timedelta(minutes=15 * (len(pattern) - i))
            rows.append(sample.drift(ts, app_id, "m", "embedding", bool(drifted)))
    sample.insert_drift(client, rows)
    return [(now, {("hot", "m", "embedding")})]


def scenario_thumbs_down(client, now):
    calls, votes = [], []
    for app_id, down in (("hot", 10), ("cool", 2)):
        for i, t in enumerate(_minutes(now, 20)):
            c = sample.call(t - timedelta(minutes=1), app_id, "m")
            calls.append(c)
            votes.append(sample.vote(c, -1 if i < down else 1, delay_s=30))
    sample.insert_calls(client, calls)
    sample.insert_feedback(client, votes)
    return [(now, {("hot",)})]


def scenario_judge_agreement(client, now):
    def row(app_id: str, kappa: float | None, pairs: int, minutes_ago: int, version: str = "1+p2") -> dict:
        return sample.agreement(now - timedelta(minutes=minutes_ago), app_id, "relevance", kappa=kappa, pairs=pairs,
                                version=version)

    sample.insert_agreement(client, [
        row("hot", 0.7, 80, 30), row("hot", 0.12, 80, 5),  # agreement fell: fires
        row("cool", 0.1, 80, 30), row("cool", 0.75, 80, 5),  # recovered: quiet
        row("few", -0.2, 12, 5),  # too few reviewed calls for a verdict
        row("undefined", None, 50, 5),  # no kappa (a rater that never varies)
        row("cool", 0.05, 80, 5, version="2+p2"),  # a new rubric version is its own series
    ])
    return [(now, {("hot", "relevance", "1+p2", "judge"), ("cool", "relevance", "2+p2", "judge")}),
            (now - timedelta(minutes=20), {("cool", "relevance", "1+p2", "judge")})]


SCENARIOS = {
    "lookout-cost-burn": scenario_cost_burn,
    "lookout-token-spike": scenario_token_spike,
    "lookout-error-rate": scenario_error_rate,
    "lookout-latency-p99": scenario_latency_p99,
    "lookout-toxicity-rate": scenario_toxicity_rate,
    "lookout-sustained-drift": scenario_sustained_drift,
    "lookout-thumbs-down": scenario_thumbs_down,
    "lookout-judge-agreement": scenario_judge_agreement,
}


def test_every_alert_rule_has_a_scenario():
    assert {r.uid for r in alerts.RULES} == set(SCENARIOS)


@pytest.mark.parametrize("rule", alerts.RULES, ids=lambda r: r.uid)
def test_alert_fires_above_its_threshold_and_not_below(ch, now, defaults, rule):
    for at, expected in SCENARIOS[rule.uid](ch, now):
        assert firing(ch, rule, defaults, at) == expected, at


def test_a_young_stream_at_its_usual_rate_is_no_token_spike(ch, now, defaults):
    # 30 minutes of even traffic: its baseline is those minutes, not a day with 20 hours of silence.
    sample.insert_calls(ch, [sample.call(t, "young", "m", tokens_in=90, tokens_out=10) for t in _minutes(now, 30)])
    assert firing(ch, alerts.rule("lookout-token-spike"), defaults, now) == set()


@pytest.mark.parametrize("rule", alerts.RULES, ids=lambda r: r.uid)
def test_alert_is_quiet_on_an_empty_store(ch, now, defaults, rule):
    assert firing(ch, rule, defaults, now) == set()


def test_alert_thresholds_follow_the_environment(ch, now, monkeypatch, defaults):
    scenario_error_rate(ch, now)
    rule = next(r for r in alerts.RULES if r.uid == "lookout-error-rate")
    monkeypatch.setenv("LOOKOUT_ALERT_ERROR_RATE", "0.5")
    assert firing(ch, rule, DashboardSettings(), now) == set()
    monkeypatch.setenv("LOOKOUT_ALERT_MIN_CALLS", "5")
    monkeypatch.setenv("LOOKOUT_ALERT_ERROR_RATE", "0.9")
    assert firing(ch, rule, DashboardSettings(), now) == {("tiny", "m")}
    rendered = yaml.safe_load(alerts.render_yaml(DashboardSettings()))
    (group,) = rendered["groups"]
    rule_yaml = next(r for r in group["rules"] if r["uid"] == "lookout-error-rate")
    assert rule_yaml["data"][1]["model"]["conditions"][0]["evaluator"]["params"] == [0.9]


# ---- generated provisioning -------------------------------------------------------------------


def test_generated_files_are_up_to_date(defaults):
    for rel, text in generate.render(defaults).items():
        path = generate.ROOT / rel
        assert path.exists(), f"{path} missing: run python -m lookout.dashboards.generate"
        assert path.read_text() == text, f"{path} is stale: run python -m lookout.dashboards.generate"


def test_dashboard_json_has_the_spec_panels_on_the_clickhouse_datasource():
    d = json.loads((generate.ROOT / generate.DASHBOARD_FILE).read_text())
    assert d["uid"] == generate.DASHBOARD_UID and d["title"]
    assert len(d["panels"]) == len(PANELS)
    assert len({p["id"] for p in d["panels"]}) == len(PANELS)
    for spec, p in zip(PANELS, d["panels"], strict=True):
        assert p["title"] == spec.title
        assert p["type"] == spec.kind
        assert p["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "lookout-clickhouse"}
        (target,) = p["targets"]
        assert target["rawSql"] == spec.sql
        assert target["datasource"]["type"] == "grafana-clickhouse-datasource"
        assert target["editorType"] == "sql"
        assert target["format"] == (0 if spec.kind == "timeseries" else 1)
        assert p["fieldConfig"]["defaults"]["unit"] == spec.unit
        grid = p["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert set(variables) == {"app", "model", "environment", "daily_budget"}
    for name in ("app", "model", "environment"):
        v = variables[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"]
        assert v["datasource"]["uid"] == "lookout-clickhouse"
        assert v["query"].startswith(f"SELECT DISTINCT {'app_id' if name == 'app' else name} FROM calls_1m")
    assert variables["daily_budget"]["type"] == "constant"
    assert float(variables["daily_budget"]["query"]) == 100.0


def test_grafana_gets_each_panels_axis_bounds_and_column_units_from_the_spec():
    d = json.loads((generate.ROOT / generate.DASHBOARD_FILE).read_text())
    for spec, p in zip(PANELS, d["panels"], strict=True):
        defaults = p["fieldConfig"]["defaults"]
        overrides = {o["matcher"]["options"]: {x["id"]: x["value"] for x in o["properties"]}
                     for o in p["fieldConfig"]["overrides"]}
        if spec.kind == "timeseries":
            axis = spec.y_axis
            assert defaults.get("min") == axis.min and defaults.get("max") == axis.max, spec.id
            assert defaults.get("custom", {}).get("axisSoftMax") == axis.soft_max, spec.id
        for col in spec.columns:
            if col.unit and col.unit != spec.unit:
                assert overrides[col.name]["unit"] == col.unit, (spec.id, col.name)
                if spec.kind == "timeseries":
                    assert overrides[col.name]["min"] == 0 and overrides[col.name]["custom.axisPlacement"] == "right"
    percent = [p for p in PANELS if p.unit == "percentunit" and p.kind == "timeseries"]
    assert percent and all(p.y_axis.min == 0 and p.y_axis.max == 1 for p in percent)
    assert panel("review_oldest_age").unit == "s"  # an age, not a bare number


def test_panels_overlap_nowhere_on_the_grid():
    d = json.loads((generate.ROOT / generate.DASHBOARD_FILE).read_text())
    cells = set()
    for p in d["panels"]:
        g = p["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, p["title"]
        cells |= mine


def test_alert_provisioning_file_has_a_runbook_and_threshold_per_rule():
    doc = yaml.safe_load((generate.ROOT / generate.ALERTS_FILE).read_text())
    assert doc["apiVersion"] == 1
    (group,) = doc["groups"]
    assert group["folder"] and group["interval"] == "1m"
    assert [r["uid"] for r in group["rules"]] == [r.uid for r in alerts.RULES]
    for r in group["rules"]:
        assert r["annotations"]["runbook"] and r["annotations"]["summary"]
        query, threshold = r["data"]
        assert query["datasourceUid"] == "lookout-clickhouse"
        assert query["relativeTimeRange"]["from"] > 0
        assert "$__timeFilter" in query["model"]["rawSql"]
        assert threshold["datasourceUid"] == "__expr__" and threshold["model"]["type"] == "threshold"
        assert threshold["model"]["expression"] == "A" and r["condition"] == "B"
        assert not math.isnan(threshold["model"]["conditions"][0]["evaluator"]["params"][0])


def test_datasource_provisioning_reads_its_settings_from_the_environment():
    doc = yaml.safe_load((generate.ROOT / generate.DATASOURCE_FILE).read_text())
    (ds,) = doc["datasources"]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["uid"] == "lookout-clickhouse"
    assert ds["jsonData"]["host"] == "${CLICKHOUSE_HOST}"
    # Grafana's own read-only ClickHouse user (compose.yaml, deploy/clickhouse/users.d).
    assert ds["jsonData"]["username"] == "${CLICKHOUSE_READER_USER}"
    assert ds["secureJsonData"]["password"] == "${CLICKHOUSE_READER_PASSWORD}"
    provider = yaml.safe_load((generate.ROOT / generate.PROVIDER_FILE).read_text())
    assert provider["providers"][0]["options"]["path"].startswith("/var/lib/grafana/dashboards")


def test_spec_json_is_plain_json():
    spec = json.loads(json.dumps(spec_json()))
    assert [p["id"] for p in spec["panels"]] == [p.id for p in PANELS]
    assert spec["panels"][4]["series_column"] == "series"
