"""Fuzz with schemathesis over ingest's OpenAPI: every operation, positive and negative
data generated from its schema, as an anonymous and as an API-key caller. No 5xx."""

from __future__ import annotations

import pytest

from lookout.testing.fuzz import assert_no_5xx
from lookout.testing.stack import IngestStack, ingest_settings_for

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]


@pytest.fixture(scope="module")
def stack(tansu_broker, chdb_path):
    from lookout.core.settings import CommonSettings

    common = CommonSettings(
        kafka_bootstrap=tansu_broker.bootstrap, kafka_idempotence="off", topic_prefix="ingestfuzz.",
        clickhouse_dsn=f"chdb://{chdb_path}", clickhouse_database="ingestfuzz", kafka_topic_partitions=1,
    )
    s = IngestStack(ingest_settings_for(common)).start()
    yield s
    s.close()


def test_no_request_built_from_the_openapi_gets_a_5xx(stack):
    assert_no_5xx(stack.url, {"key": stack.api_key})
