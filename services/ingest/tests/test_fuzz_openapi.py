"""Fuzz with schemathesis over ingest's OpenAPI: every operation, positive and negative
data generated from its schema, as an anonymous and as an API-key caller. No 5xx."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from lookout.testing.stack import IngestStack, ingest_settings_for

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]
EXAMPLES = 25  # per operation, each sent by every caller


def fuzz_operations(schema, base_url: str, callers: dict[str, requests.Session], skip=frozenset()) -> list[str]:
    """Every operation of the schema, positive and negative cases, through every caller;
    returns one line per failed check (a 5xx)."""
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in skip:
            continue
        strategy = st.one_of(operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
                             operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(case=strategy)
        def run(case):
            for who, session in callers.items():
                try:
                    case.call_and_validate(base_url=base_url, session=session, checks=[not_a_server_error],
                                           timeout=30)
                except Exception as exc:  # schemathesis' FailureGroup for a failed check, or a transport error
                    failures.append(f"{who} {case.operation.method.upper()} {case.operation.path}: {exc}")
                    raise

        try:
            run()
        except Exception:  # recorded above (Hypothesis may group several); next operation
            pass
    return failures


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
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json")
    keyed = requests.Session()
    keyed.headers["Authorization"] = f"Bearer {stack.api_key}"
    callers = {"anonymous": requests.Session(), "key": keyed}
    try:
        failures = fuzz_operations(schema, stack.url, callers)
    finally:
        for s in callers.values():
            s.close()
    assert not failures, "\n\n".join(failures[:5])
