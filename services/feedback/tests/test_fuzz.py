"""Fuzz with schemathesis over the service's own OpenAPI: every operation, with positive and
negative data generated from its schema, sent as an anonymous caller, an API-key caller and
a logged-in admin (session cookie + CSRF). No request may get a 5xx."""

from __future__ import annotations

import pytest
import requests

from lookout.core.settings import CommonSettings
from lookout.testing.fuzz import assert_no_5xx

from .conftest import ADMIN, FeedbackStack

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def fuzz_stack(tansu_broker, chdb_path):
    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="fbfuzz.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="fbfuzz", kafka_topic_partitions=1,
    )
    stack = FeedbackStack(common)
    [event_id] = stack.add_calls("shop", 1)
    stack.queue_tasks("shop", [event_id])
    stack.add_reviewer("fuzz", ["shop"])
    yield stack
    stack.close()


@pytest.fixture(scope="module")
def callers(fuzz_stack) -> dict[str, requests.Session]:
    anonymous = requests.Session()
    keyed = requests.Session()
    keyed.headers["Authorization"] = f"Bearer {fuzz_stack.ingest.api_key}"
    admin = requests.Session()
    r = admin.post(f"{fuzz_stack.url}/review/api/login", json={"username": ADMIN[0], "password": ADMIN[1]},
                   timeout=30)
    assert r.status_code == 200, r.text
    admin.headers["X-CSRF-Token"] = r.json()["csrf"]
    yield {"anonymous": anonymous, "key": keyed, "admin": admin}
    for s in (anonymous, keyed, admin):
        s.close()


def test_no_request_built_from_the_openapi_gets_a_5xx(fuzz_stack, callers):
    # Logging out would end the admin session the rest of the run uses.
    assert_no_5xx(fuzz_stack.url, callers=callers, skip={"/review/api/logout"})
