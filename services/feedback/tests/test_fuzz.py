"""Fuzz over the service's own OpenAPI: every operation, with bodies and parameters built
from its schema and then broken in many ways, as anonymous, API-key and session callers.
No request may get a 5xx. (schemathesis is not in the dev environment; this walks the
same schema with a seeded random generator.)"""

from __future__ import annotations

import random
import uuid

import pytest

WEIRD = [None, "", "x" * 5000, -1, 0, 2**63, 1.5, True, [], {}, "00000000-0000-0000-0000-000000000000",
         "not-a-uuid", "1970-01-01", "2026-01-01T00:00:00", "\u0000\ud7ff", {"a": [1, {"b": None}]}]


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _value(spec: dict, schema: dict, rng: random.Random, depth: int = 0):
    schema = _resolve(spec, schema)
    if rng.random() < 0.25 or depth > 3:
        return rng.choice(WEIRD)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return _value(spec, rng.choice(schema[key]), rng, depth + 1)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _value(spec, v, rng, depth + 1) for k, v in props.items() if rng.random() < 0.8}
    if kind == "array":
        return [_value(spec, schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "integer":
        return rng.choice([schema.get("minimum", 0), schema.get("maximum", 10), rng.randint(-5, 10)])
    if kind == "boolean":
        return rng.random() < 0.5
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    if schema.get("format") == "date-time":
        return rng.choice(["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "yesterday"])
    return rng.choice(["shop", "a" * 300, "admin", "../../etc/passwd", "' OR 1=1 --"])


@pytest.mark.slow
def test_no_request_built_from_the_openapi_gets_a_5xx(kafka_feedback_stack):
    stack = kafka_feedback_stack
    [event_id] = stack.add_calls("shop", 1)
    stack.queue_tasks("shop", [event_id])
    stack.add_reviewer("fuzz", ["shop"])
    rng = random.Random(7)
    with stack.key_http() as keyed:
        spec = keyed.get("/openapi.json").json()
    callers = [stack.key_http(), stack.login("fuzz", "password-123"), stack.login("admin", "admin-password-1")]
    import httpx

    callers.append(httpx.Client(base_url=stack.url, timeout=30))
    failures = []
    try:
        for path, ops in spec["paths"].items():
            if path == "/review/api/logout":
                continue  # would end the sessions the rest of the walk uses
            for method, op in ops.items():
                params = op.get("parameters", [])
                body_schema = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
                               .get("schema"))
                for _ in range(40):
                    url = path
                    query = {}
                    for p in params:
                        v = _value(spec, p.get("schema", {}), rng)
                        if p["in"] == "path":
                            v = rng.choice([str(event_id), "fuzz", "ghost", str(v)])
                            url = url.replace("{" + p["name"] + "}", str(v) or "x")
                        elif p["in"] == "query" and v is not None and not isinstance(v, dict | list):
                            query[p["name"]] = v
                    kwargs = {"params": query}
                    if body_schema is not None:
                        kind = rng.random()
                        if kind < 0.8:
                            kwargs["json"] = _value(spec, body_schema, rng)
                        elif kind < 0.9:
                            kwargs["content"] = rng.choice([b"{", b"\xff\xfe", b"[]", b"null"])
                            kwargs["headers"] = {"Content-Type": "application/json"}
                    caller = rng.choice(callers)
                    r = caller.request(method.upper(), url, **kwargs)
                    if r.status_code >= 500:
                        failures.append((method, url, kwargs, r.status_code, r.text[:300]))
    finally:
        for c in callers:
            c.close()
    assert not failures, failures[:5]
