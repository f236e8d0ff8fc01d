"""Fuzz with schemathesis over the embedded overview's JSON API (/overview/api/*): every
operation, positive and negative data from its schema, as an anonymous caller (401s) and
with the stack's all-scopes key, against chdb seeded through the real schema. No 5xx: a
time or filter the store cannot take is the caller's 422, not a failed query."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from lookout.core import clickhouse, migrations
from lookout.core.api_errors import install_error_handlers
from lookout.core.auth import ApiKeyStore
from lookout.core.settings import CommonSettings
from lookout.stack import overview
from lookout.testing import sample
from lookout.testing.fuzz import Served, assert_no_5xx
from lookout.testing.stack import ALL_SCOPES

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(chdb_path):
    settings = CommonSettings(clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="overviewfuzz")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    sample.seed(client, datetime.now(UTC).replace(second=0, microsecond=0))
    keys = ApiKeyStore(client)
    _, key = keys.create("*", ALL_SCOPES, name="fuzz")
    app = FastAPI(title="overview")
    install_error_handlers(app)
    app.include_router(overview.router(lambda: client, keys=keys))
    server = Served(app, lifespan="off").start()
    yield server, key
    server.close()
    client.command("DROP DATABASE IF EXISTS overviewfuzz")


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, key = served
    seen = assert_no_5xx(server.url, {"key": key})
    # Panel and variable ids are listed in the schema, so filters and times reach the queries.
    for op in ("key GET /overview/api/panels/{panel_id}", "key GET /overview/api/variables/{name}"):
        assert seen[op][200] > 0, (op, seen[op])


@pytest.mark.parametrize("when", [
    {"from": "999999999999999"},  # epoch ms in year 33658
    {"from": "0001-01-01T00:00:00+14:00", "to": "0001-01-02T00:00:00+00:00"},  # before datetime's year 1 in UTC
    {"from": "1000-01-01T00:00:00Z", "to": "1000-01-02T00:00:00Z"},  # before ClickHouse's range
    {"from": "2400-01-01T00:00:00Z", "to": "2400-01-02T00:00:00Z"},  # after it
])
def test_times_the_store_cannot_hold_are_a_422_naming_the_parameter(served, when):
    server, key = served
    r = httpx.get(f"{server.url}/overview/api/panels/calls_total", params=when,
                  headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert r.status_code == 422 and r.json()["error"]["field"] == "from", r.text
