"""Migration 0006 on a store that already has calls, scores and votes: the per-version
rollup is backfilled through the calls, old rows count under their call's version, and
re-running the migration's statements (a crash before it was recorded) counts nothing twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from lookout.core import clickhouse, migrations
from lookout.dashboards import macros
from lookout.dashboards.macros import ALL, QueryContext
from lookout.dashboards.panels import panel

VERSION = 6


@pytest.fixture
def before_0006(ch_settings):
    """A store migrated up to the migration before 0006, as it was before this change."""
    client = clickhouse.connect(ch_settings)
    client.command(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    for m in migrations.load():
        if m.version < VERSION:
            for statement in m.statements(ch_settings.retention_days):
                client.command(statement)
            client.insert("schema_migrations", [[m.version, m.name]], column_names=["version", "name"])
    yield client
    client.command(f"DROP DATABASE IF EXISTS {ch_settings.clickhouse_database}")


def _old_rows(client, t0: datetime) -> dict[str, uuid.UUID]:
    calls = {"v1": uuid.uuid4(), "v2": uuid.uuid4()}
    client.insert("llm_calls", [
        [calls["v1"], t0, "shop", "prod", "m1", "v1"],
        [calls["v2"], t0 + timedelta(minutes=1), "shop", "staging", "m1", "v2"],
    ], column_names=["event_id", "ts", "app_id", "environment", "model", "model_version"])
    scores = [
        (calls["v1"], "toxicity.insult", 0.9, "model"), (calls["v1"], "toxicity.threat", 0.1, "model"),
        (calls["v2"], "toxicity.insult", 0.2, "model"), (calls["v2"], "judge.relevance", 0.6, "llm_judge"),
        (uuid.uuid4(), "judge.relevance", 0.1, "llm_judge"),  # its call was never stored
    ]
    client.insert("scores", [[uuid.uuid4(), e, t0, "shop", "m1", name, value, source, "x"]
                             for e, name, value, source in scores],
                  column_names=["score_id", "event_id", "ts", "app_id", "model", "name", "value", "source",
                                "evaluator"])
    votes = [(calls["v1"], "u", 1, 30), (calls["v1"], "u", -1, 90), (calls["v2"], "r", 1, 120)]
    client.insert("feedback", [[uuid.uuid4(), e, t0 + timedelta(seconds=s), "shop", "end_user", a, t]
                               for e, a, t, s in votes],
                  column_names=["feedback_id", "event_id", "ts", "app_id", "source", "author", "thumbs"])
    return calls


def _panel(client, t0: datetime) -> dict[str, dict]:
    context = QueryContext(t0 - timedelta(minutes=5), t0 + timedelta(minutes=10),
                           variables={"app": ALL, "model": ALL, "environment": ALL, "daily_budget": 1.0})
    p = panel("model_versions")
    names = [c.name for c in p.columns]
    rows = client.query(macros.expand(p.sql, context)).result_rows
    return {r[2]: dict(zip(names, r, strict=True)) for r in rows}


def test_old_calls_scores_and_votes_are_backfilled_under_their_calls_version(before_0006, ch_settings):
    client = before_0006
    t0 = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    _old_rows(client, t0)
    # 0006 and every migration after it (later ones must not disturb the backfill).
    assert migrations.apply(client, ch_settings.retention_days) == [m.version for m in migrations.load()
                                                                     if m.version >= VERSION]

    expected = {
        "v1": {"app_id": "shop", "model": "m1", "model_version": "v1", "calls": 1, "thumbs_down_rate": 1.0,
               "judge_score": None, "toxicity_rate": 1.0},  # the author's latest vote; one toxic call
        "v2": {"app_id": "shop", "model": "m1", "model_version": "v2", "calls": 1, "thumbs_down_rate": 0.0,
               "judge_score": 0.6, "toxicity_rate": 0.0},
    }
    assert _panel(client, t0) == expected  # the orphan score has no call: not shown
    # The score without a call is kept under version '' rather than dropped.
    assert client.query("SELECT countIfMerge(judged) FROM versions_1m WHERE model_version = ''").result_rows == [(1,)]

    # A re-run of every statement (as after a crash before the migration was recorded)
    # finds each source already backfilled and adds nothing.
    (migration,) = [m for m in migrations.load() if m.version == VERSION]
    for statement in migration.statements(ch_settings.retention_days):
        client.command(statement)
    assert _panel(client, t0) == expected
    assert migrations.apply(client, ch_settings.retention_days) == []
