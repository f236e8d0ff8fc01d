"""Fuzz with schemathesis over the retrain trigger's OpenAPI (approvals, open runs, model
versions and comparisons, ops routes): every operation, positive and negative data from
its schema, as an anonymous caller, an all-apps admin and a key bound to one app, against
the started service (Tansu, chdb with a registered candidate version). No 5xx."""

from __future__ import annotations

import uuid

import httpx
import pytest

from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.retrain_trigger import versions
from lookout.retrain_trigger.service import RetrainService
from lookout.retrain_trigger.settings import RetrainSettings
from lookout.testing.fuzz import assert_no_5xx, fuzz_settings, serving

from .conftest import SIGNING_SECRET

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(tansu_broker, chdb_path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrainfuzz")
    common = fuzz_settings(tansu_broker, chdb_path, "retrainfuzz")
    settings = RetrainSettings(**common.model_dump(), retrain_dataset_dir=str(tmp / "datasets"),
                               retrain_output_dir=str(tmp / "runs"), review_signing_secret=SIGNING_SECRET)
    session = Session.connect(settings, migrate=True)
    keys = session.run(ApiKeyStore)
    _, admin = keys.create("*", ["read", "admin"], name="fuzz admin")
    _, one_app = keys.create("shop", ["read", "admin"], name="fuzz one-app key")
    service = RetrainService(settings, session)
    with serving(service) as server:
        versions.register_candidate(session, app_id="shop", model="m1", model_version="v2", run_id=uuid.uuid4())
        yield server, {"admin": admin, "one_app": one_app}
    session.command("DROP DATABASE IF EXISTS retrainfuzz")
    session.close()


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, keys = served
    seen = assert_no_5xx(server.url, keys)
    for op in ("admin GET /v1/retrain/runs", "admin GET /v1/models/{app_id}/{model}/versions",
               "admin GET /v1/models/{app_id}/{model}/compare"):
        assert seen[op][200] > 0, (op, seen[op])


def test_the_fuzzed_service_still_lists_versions(served):
    server, keys = served
    r = httpx.get(f"{server.url}/v1/models/shop/m1/versions", headers={"Authorization": f"Bearer {keys['admin']}"},
                  timeout=30)
    assert r.status_code == 200 and [v["model_version"] for v in r.json()] == ["v2"]
