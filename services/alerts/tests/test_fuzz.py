"""Fuzz with schemathesis over the alerts API: every operation, positive and negative data
from its schema, as an anonymous caller, an admin key for every app and a read key bound to
one app, against the real service on chdb with an alert firing. No 5xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from lookout.alerts.service import AlertService
from lookout.alerts.settings import AlertSettings
from lookout.core import clickhouse, migrations
from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.dashboards import alerts
from lookout.testing import sample
from lookout.testing.fuzz import assert_no_5xx, serving

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(chdb_path):
    settings = AlertSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="alertsfuzz")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    sample.insert_calls(client, [sample.call(now - timedelta(seconds=10 * i), "shop", "m", status="error")
                                 for i in range(60)])
    keys = ApiKeyStore(client)
    _, admin = keys.create("*", ["read", "admin"], name="fuzz admin")
    _, reader = keys.create("shop", ["read"], name="fuzz reader")
    service = AlertService(settings, Session.of(client), run_loops=False)
    with serving(service) as server:
        for k in range(5, -1, -1):
            server.run(service.evaluate_rule(alerts.rule("lookout-error-rate"), now - timedelta(minutes=k)))
        yield server, {"admin": admin, "reader": reader}
    client.command("DROP DATABASE IF EXISTS alertsfuzz")


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, keys = served
    seen = assert_no_5xx(server.url, keys)
    for op in ("admin GET /v1/alerts", "admin POST /v1/alerts/silences", "reader GET /v1/alerts/history",
               "admin GET /v1/alerts/notifications"):
        assert seen[op][200 if "POST" not in op else 201] > 0, (op, seen[op])


def test_a_lone_surrogate_in_a_comment_is_a_422_naming_it(served):
    server, keys = served
    body = '{"rule_uid": "lookout-error-rate", "duration_s": 600, "comment": "\\ud800"}'
    r = httpx.post(f"{server.url}/v1/alerts/silences", content=body, timeout=30,
                   headers={"Authorization": f"Bearer {keys['admin']}", "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "comment", r.text
    firing = httpx.get(f"{server.url}/v1/alerts", headers={"Authorization": f"Bearer {keys['reader']}"}).json()
    assert [a["app_id"] for a in firing["alerts"]] == ["shop"]
