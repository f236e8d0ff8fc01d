"""Fuzzing a service's OpenAPI with schemathesis: every operation, positive and negative
cases generated from its schema, sent by every kind of caller; a 5xx is a failure."""

from __future__ import annotations

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

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
