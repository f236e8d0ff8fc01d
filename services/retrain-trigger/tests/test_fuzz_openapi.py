"""Fuzz with schemathesis over the retrain trigger's OpenAPI (approvals, open runs, model
versions and comparisons, ops routes): every operation, positive and negative data from
its schema, as an anonymous caller, an all-apps admin and a key bound to one app, against
the started service (Tansu, chdb with a registered candidate version). No 5xx."""

from __future__ import annotations

import uuid
from collections import Counter

import httpx
import pytest
import schemathesis

from lookout.core.auth import ApiKeyStore
from lookout.core.serving import Lifecycle, service_app
from lookout.core.session import Session
from lookout.core.settings import CommonSettings
from lookout.retrain_trigger import versions
from lookout.retrain_trigger.service import RetrainService
from lookout.retrain_trigger.settings import RetrainSettings
from lookout.testing.fuzz import Served, fuzz_operations, keyed_callers

from .conftest import SIGNING_SECRET

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(tansu_broker, chdb_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrainfuzz")
    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="retrainfuzz.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="retrainfuzz", kafka_topic_partitions=1,
        kafka_session_timeout_ms=4_000,
    )
    settings = RetrainSettings(**common.model_dump(), retrain_dataset_dir=str(tmp / "datasets"),
                               retrain_output_dir=str(tmp / "runs"), review_signing_secret=SIGNING_SECRET)
    session = Session.connect(settings, migrate=True)
    keys = session.run(ApiKeyStore)
    _, admin = keys.create("*", ["read", "admin"], name="fuzz admin")
    _, one_app = keys.create("shop", ["read", "admin"], name="fuzz one-app key")
    service = RetrainService(settings, session)
    life = Lifecycle([service])
    server = Served(service_app(service, lifecycle=life), lifespan="off")
    server.run(life.start())
    versions.register_candidate(session, app_id="shop", model="m1", model_version="v2", run_id=uuid.uuid4())
    server.start()
    yield server, {"admin": admin, "one_app": one_app}
    server.run(life.stop())
    server.close()
    session.command("DROP DATABASE IF EXISTS retrainfuzz")
    session.close()


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, keys = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    callers = keyed_callers(**keys)
    seen: dict[str, Counter] = {}
    try:
        failures = fuzz_operations(schema, server.url, callers, seen=seen)
    finally:
        for s in callers.values():
            s.close()
    assert not failures, "\n\n".join(failures[:5])
    for op in ("admin GET /v1/retrain/runs", "admin GET /v1/models/{app_id}/{model}/versions",
               "admin GET /v1/models/{app_id}/{model}/compare"):
        assert seen[op][200] > 0, (op, seen[op])


def test_the_fuzzed_service_still_lists_versions(served):
    server, keys = served
    r = httpx.get(f"{server.url}/v1/models/shop/m1/versions", headers={"Authorization": f"Bearer {keys['admin']}"},
                  timeout=30)
    assert r.status_code == 200 and [v["model_version"] for v in r.json()] == ["v2"]
