"""The `docker` group: what chdb and the Kafka jars cannot show, against the servers a
deployment runs (compose.yaml's images), started through testcontainers
(lookout.testing.containers):

- the `http://` ClickHouse path: ingest and the sink on Kafka in a container, storing into
  a ClickHouse server (the server-side JSONEachRow fast path, not chdb's);
- every panel's SQL from the generated dashboard, on that server, with seeded data;
- Grafana with the ClickHouse plugin and our provisioning: the datasource answers as the
  read-only `grafana` user, the dashboard and every alert rule are loaded and accepted
  (the rules evaluate without error), and every panel query runs through Grafana.

Without a Docker engine the whole group skips with one reason. Not run on the development
machine (it has no Docker): written against testcontainers' API, untested there.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml

from lookout.core import clickhouse, migrations
from lookout.core.settings import CommonSettings
from lookout.dashboards import macros
from lookout.dashboards.panels import PANELS
from lookout.testing import sample
from lookout.testing.containers import ROOT
from lookout.testing.stack import IngestStack, ingest_settings_for
from lookout.testing.waiting import wait_until
from tests.events import llm_call
from tests.test_dashboards import ctx, run

pytestmark = pytest.mark.docker

DASHBOARD = json.loads((ROOT / "dashboards/grafana/dashboards/lookout.json").read_text())
ALERTS = yaml.safe_load((ROOT / "dashboards/grafana/provisioning/alerting/lookout-alerts.yaml").read_text())
RULE_UIDS = {r["uid"] for g in ALERTS["groups"] for r in g["rules"]}


@pytest.fixture(scope="module")
def seeded_server(clickhouse_server):
    """The `lookout` database of the server (the one Grafana reads), migrated and seeded."""
    settings = CommonSettings(clickhouse_dsn=clickhouse_server.dsn(), clickhouse_database="lookout")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return client, sample.seed(client, now)


def test_ingest_and_the_sink_store_calls_in_a_clickhouse_server_over_http(kafka_container, clickhouse_server):
    common = CommonSettings(
        kafka_bootstrap=kafka_container.get_bootstrap_server(), topic_prefix=f"d{uuid.uuid4().hex[:8]}.",
        kafka_topic_partitions=3, clickhouse_dsn=clickhouse_server.dsn(),
        clickhouse_database=f"t_{uuid.uuid4().hex[:10]}",
    )
    stack = IngestStack(ingest_settings_for(common)).start()
    try:
        assert not stack.sink.store.chdb  # the server path
        events = [llm_call("docker-app", i=i) for i in range(500)]
        with stack.http() as http:
            r = http.post("/v1/events", json={"events": events})
            assert r.status_code == 200 and r.json()["accepted"] == 500, r.text
            assert stack.wait_for_calls("docker-app", 500, timeout=120) == 500
            r = http.post("/v1/events", json={"events": events[:100]})  # a client retrying
            assert r.status_code == 200
        wait_until("the replay reached the sink", lambda: stack.sink.stats.consumed >= 600, every=1)
        assert stack.count_calls("docker-app") == 500 and stack.duplicate_rows("docker-app") == 0
        with stack.http() as http:
            call = http.get(f"/v1/calls/{events[0]['event_id']}").json()
        assert call["output"] == events[0]["output"]
    finally:
        stack.close()


def test_every_panel_query_runs_on_the_clickhouse_server(seeded_server):
    client, s = seeded_server
    for p in PANELS:
        rows = run(client, p.id, ctx(s))
        assert rows, f"{p.id} returned nothing on the sample"


def _grafana(grafana) -> httpx.Client:
    return httpx.Client(base_url=grafana.url, auth=("admin", grafana.password), timeout=60)


def test_grafanas_clickhouse_datasource_answers_as_the_read_only_user(grafana, seeded_server):
    with _grafana(grafana) as http:
        health = http.get("/api/datasources/uid/lookout-clickhouse/health")
        assert health.status_code == 200 and health.json()["status"] == "OK", health.text


def test_grafana_loads_the_dashboard_and_accepts_it_through_its_api(grafana):
    with _grafana(grafana) as http:
        got = wait_until("the provisioned dashboard", lambda: (
            r := http.get(f"/api/dashboards/uid/{DASHBOARD['uid']}")).status_code == 200 and r, every=1)
        body = got.json()
        assert body["meta"]["provisioned"] is True
        assert len(body["dashboard"]["panels"]) == len(DASHBOARD["panels"])
        # The same JSON posted through the API (as a copy: the provisioned one is read-only).
        posted = copy.deepcopy(DASHBOARD)
        posted.update(uid="lookout-api-check", title=f"{DASHBOARD['title']} (API check)")
        posted.pop("id", None)
        r = http.post("/api/dashboards/db", json={"dashboard": posted, "overwrite": True})
        assert r.status_code == 200 and r.json()["status"] == "success", r.text


def test_grafana_loads_every_alert_rule_and_evaluates_each_without_error(grafana, seeded_server):
    with _grafana(grafana) as http:
        loaded = wait_until("the provisioned alert rules", lambda: {
            r["uid"] for r in http.get("/api/v1/provisioning/alert-rules").json()} >= RULE_UIDS
            and http.get("/api/v1/provisioning/alert-rules").json(), every=1)
        assert {r["uid"] for r in loaded} >= RULE_UIDS
        for uid in RULE_UIDS:
            assert http.get(f"/api/v1/provisioning/alert-rules/{uid}").status_code == 200, uid

        def evaluated() -> dict[str, str] | None:
            groups = http.get("/api/prometheus/grafana/api/v1/rules").json()["data"]["groups"]
            health = {r["name"]: r.get("health", "unknown") for g in groups for r in g["rules"]}
            return health if len(health) >= len(RULE_UIDS) and "unknown" not in health.values() else None

        health = wait_until("one evaluation of every rule", evaluated, timeout=180, every=1)  # the group runs every 1m
        assert all(h in ("ok", "nodata") for h in health.values()), health


def test_every_panel_query_runs_through_grafana(grafana, seeded_server):
    _, s = seeded_server
    context = ctx(s)
    span = {"from": str(int((s.start - timedelta(minutes=30)).timestamp() * 1000)),
            "to": str(int((s.end + timedelta(minutes=1)).timestamp() * 1000))}
    with _grafana(grafana) as http:
        for p in PANELS:
            query = {"refId": "A", "datasource": {"type": "grafana-clickhouse-datasource", "uid": "lookout-clickhouse"},
                     "rawSql": macros.expand(p.sql, context), "format": 1, "queryType": "table",
                     "editorType": "sql"}
            r = http.post("/api/ds/query", json={"queries": [query], **span})
            assert r.status_code == 200, (p.id, r.text[:500])
            result = r.json()["results"]["A"]
            assert not result.get("error"), (p.id, result.get("error"))
            assert result["frames"], p.id
