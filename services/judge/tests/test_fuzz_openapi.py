"""Fuzz with schemathesis over the judge's OpenAPI (ops routes and the agreement report):
every operation, positive and negative data generated from its schema, as an anonymous
caller, an all-apps reader and a reader bound to one app, against the started service
(Tansu, chdb with judge scores and reviewer ratings, the local OpenAI stub). No 5xx."""

from __future__ import annotations

import httpx
import pytest
from openai_stub import FakeOpenAI
from test_agreement import store

from lookout.core import clickhouse, migrations
from lookout.core.auth import ApiKeyStore
from lookout.core.session import Session
from lookout.judge.service import JudgeService
from lookout.judge.settings import JudgeSettings
from lookout.judge.toxicity import ProfanityModel
from lookout.testing.fuzz import assert_no_5xx, fuzz_settings, serving

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def served(tansu_broker, chdb_path):
    common = fuzz_settings(tansu_broker, chdb_path, "judgefuzz")
    openai = FakeOpenAI().start()
    settings = JudgeSettings(**common.model_dump(), judge_base_url=openai.base_url, judge_sample_rate=0.5,
                             judge_sampling_secret="judge-fuzz-sampling-secret")
    client = clickhouse.connect(settings)
    migrations.apply(client, settings.retention_days)
    store(client, [(r, r) for r in (1, 2, 3, 4, 5)])
    keys = ApiKeyStore(client)
    _, reader = keys.create("*", ["read"], name="fuzz reader")
    _, one_app = keys.create("shop", ["read"], name="fuzz one-app reader")
    service = JudgeService(settings, session=Session.of(client), toxicity_model=ProfanityModel())
    with serving(service) as server:
        yield server, {"reader": reader, "one_app": one_app}
    openai.close()
    client.command("DROP DATABASE IF EXISTS judgefuzz")


def test_no_request_built_from_the_openapi_gets_a_5xx(served):
    server, keys = served
    seen = assert_no_5xx(server.url, keys)
    # Rubric names are listed in the schema, so the cases reach the report's queries.
    assert seen["reader GET /v1/judge/agreement/{rubric}"][200] > 0
    assert seen["one_app GET /v1/judge/agreement/{rubric}"].keys() <= {403, 422}


def test_the_fuzzed_service_still_answers_the_report(served):
    server, keys = served
    r = httpx.get(f"{server.url}/v1/judge/agreement/relevance", headers={"Authorization": f"Bearer {keys['reader']}"},
                  params={"days": 7}, timeout=30)
    assert r.status_code == 200 and r.json()["pairs"] == 5
